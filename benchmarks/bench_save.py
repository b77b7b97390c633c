"""What one review save costs on a long stack: the autosave of every slider step.

    OMP_NUM_THREADS=1 python benchmarks/bench_save.py [--frames 100 400] [--size 820 1124]
        [--chunk-frames 16 ...]

For each stack length, a review with labels, model labels and probabilities (uint8, random) is
saved once, then timed (median of ``--repeats``): ``save()`` with nothing changed (the exact check
of scripts and of closing); the widget's slider-step save with nothing changed; and the step save
after a one-frame edit written into ``labels`` in place and reported as the widget reports a
stroke; the save after a model run on one frame (the widget's "current frame"); and a forced save, which writes every array (as after a model run on every frame). Also the parts of the old dirty check: changed-pixel counts, CRC-32 of the labels, sha256
of the probabilities. Single-threaded, no GUI; projects go to a temporary folder. ``--chunk-frames``
times each chunk size of the saved arrays (format 3, ``core.project.CHUNK_FRAMES``) in turn.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

import napari_ribseg.core.project as project_module
from napari_ribseg.core.project import ReviewProject


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(n: int, shape: tuple[int, int], repeats: int, root: Path) -> dict[str, float]:
    rng = np.random.default_rng(0)
    project = ReviewProject.new(root / f"s{n}.ribseg", n, shape)
    project.model_labels[:] = rng.random((n, *shape), dtype=np.float32) > 0.9
    project.labels[:] = project.model_labels
    project.probabilities = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    project.save(force=True)
    step_mode = "check_all" in inspect.signature(project.save).parameters
    step = (lambda: project.save(check_all=False)) if step_mode else project.save
    out = {
        "counts": timed(lambda: project.changed_pixels, repeats),
        "crc32": timed(lambda: zlib.crc32(memoryview(project.labels).cast("B")), repeats),
        "sha256 prob": timed(
            (lambda: project._prob_digests(None))
            if hasattr(project, "_prob_digests")  # per frame since format 3
            else project._prob_sha,
            repeats,
        ),
        "save() nothing changed": timed(project.save, repeats),
        "step save nothing changed": timed(step, repeats),
    }
    frame = [0]

    def edit_and_save() -> None:
        i = frame[0] % n
        frame[0] += 7
        project.labels[i, 10:20, 10:20] ^= 1  # a stroke written in place, as napari paints
        if step_mode:
            project.mark_labels_changed([i])
        else:
            project.mark_labels_changed()
        assert step()

    out["step save after a one-frame edit"] = timed(edit_and_save, repeats)
    per_frame_prob = bool(inspect.signature(project.mark_probabilities_changed).parameters)

    def predict_one_and_save() -> None:
        i = frame[0] % n
        frame[0] += 7
        project.apply_prediction([i], project.model_labels[i : i + 1] ^ 1, [0.5])
        project.probabilities[i] ^= 1  # as ReviewSession.apply_prediction writes them
        if per_frame_prob:
            project.mark_probabilities_changed([i])
        else:
            project.mark_probabilities_changed()
        assert project.save()  # a model run's save is exact

    out["save after a model run on one frame"] = timed(predict_one_and_save, repeats)
    # A model run on every frame: all three arrays written (the chunked format's worst case).
    out["save(force=True), every array written"] = timed(lambda: project.save(force=True), repeats)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 400])
    parser.add_argument("--size", type=int, nargs=2, default=[820, 1124])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--chunk-frames",
        type=int,
        nargs="+",
        default=None,
        help="chunk sizes to time (default: the shipped CHUNK_FRAMES only)",
    )
    args = parser.parse_args()
    chunks = args.chunk_frames or [getattr(project_module, "CHUNK_FRAMES", 0)]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for chunk in chunks:
            if chunk:
                project_module.CHUNK_FRAMES = chunk
            for n in args.frames:
                rows[(n, chunk)] = run(n, tuple(args.size), args.repeats, Path(tmp) / f"c{chunk}")
                print(f"{n} frames, chunks of {chunk or 'all'} done", flush=True)
    names = list(next(iter(rows.values())))
    print("| frames | chunk frames | " + " | ".join(f"{k} (s)" for k in names) + " |")
    print("|---" * (len(names) + 2) + "|")
    for (n, chunk), row in rows.items():
        cells = " | ".join(f"{row[k]:.3f}" for k in names)
        print(f"| {n} | {chunk or 'one file'} | {cells} |")


if __name__ == "__main__":
    main()
