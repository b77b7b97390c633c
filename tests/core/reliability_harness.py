"""Kill-during-save harness shared by the reliability test and benchmarks/bench_kill_review.py.

A forked child saves states 1, 2, 3, ... of one review as fast as it can and reports each state on a
pipe once ``save`` returned; the parent SIGKILLs it at a random moment, loads the review and checks
that it is exactly one committed state (never a mix), not older than the last reported one.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import numpy as np

from napari_ribseg.core.project import ReviewProject

N, H, W = 4, 24, 24


def state_arrays(k: int) -> dict[str, np.ndarray]:
    """The arrays of state ``k``: every file of a save depends on k, so a mix is detectable."""
    rng = np.random.default_rng(k)
    model = (rng.random((N, H, W)) > 0.6).astype(np.uint8)
    labels = model.copy()
    labels[:, : k % H, 0] ^= 1  # a correction of k % H pixels per frame
    return {
        "labels": labels,
        "model_labels": model,
        "probabilities": (rng.random((N, H, W)) * 255).astype(np.uint8),
        "statuses": np.full(N, k % 3, np.uint8),
    }


def _child(folder: Path, start: int, write_fd: int) -> None:
    project, _ = ReviewProject.open(folder, N, (H, W), source="clip.tif")
    k = start
    while True:
        arrays = state_arrays(k)
        project.labels[:] = arrays["labels"]
        project.model_labels[:] = arrays["model_labels"]
        project.probabilities = arrays["probabilities"]
        project.statuses[:] = arrays["statuses"]
        project.model_name = f"state-{k}"
        project.mark_labels_changed()
        project._model_dirty = True
        project.save()
        os.write(write_fd, f"{k}\n".encode())
        k += 1


def loaded_state(folder: Path) -> int:
    """The state the saved review holds; raise AssertionError when it is a mix of states."""
    project = ReviewProject.load(folder)
    k = int(project.model_name.split("-")[1])
    expected = state_arrays(k)
    for key, value in expected.items():
        got = project.probabilities if key == "probabilities" else getattr(project, key)
        assert got is not None and np.array_equal(got, value), f"{key} is not from state {k}"
    return k


def kill_run(folder: Path, kills: int, seed: int = 0, max_delay_s: float = 0.03) -> dict:
    """Kill a saving child ``kills`` times; return counts of mixed, lost and unloadable outcomes."""
    rng = random.Random(seed)
    counts = {"kills": 0, "mixed": 0, "lost": 0, "unloadable": 0, "max_state": 0}
    last_confirmed = 0
    for _ in range(kills):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            os.close(read_fd)
            try:
                _child(folder, last_confirmed + 1, write_fd)
            finally:
                os._exit(1)
        os.close(write_fd)
        time.sleep(rng.uniform(0.0, max_delay_s))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        reported = b""
        while chunk := os.read(read_fd, 65536):
            reported += chunk
        os.close(read_fd)
        confirmed = [int(x) for x in reported.split()]
        if confirmed:
            last_confirmed = confirmed[-1]
        counts["kills"] += 1
        if not (folder / "v000001").exists() and not any(folder.glob("v*")):
            continue  # killed before the first save: nothing to check yet
        try:
            k = loaded_state(folder)
        except AssertionError:
            counts["mixed"] += 1
            continue
        except Exception:  # noqa: BLE001 - any load failure counts as unloadable
            counts["unloadable"] += 1
            continue
        if k < last_confirmed:
            counts["lost"] += 1
        last_confirmed = max(last_confirmed, k)
        counts["max_state"] = max(counts["max_state"], k)
    return counts
