"""Training in a spawned child process: events through a queue, cancel, crashes, both job kinds."""

from __future__ import annotations

import time

import numpy as np
import pytest
from test_training_support import synthetic_set, tiny_base

from napari_ribseg.core.models import load_checkpoint
from napari_ribseg.core.training.adapt import AdaptConfig, AdaptResult, adapt_sync
from napari_ribseg.core.training.background import (
    BackgroundAdapt,
    BackgroundFinetune,
    _child_main,
    load_adapt_data,
    save_adapt_data,
)
from napari_ribseg.core.training.loop import FinetuneConfig, FinetuneResult

CONFIG = FinetuneConfig(
    epochs=1, lr=3e-3, batch_size=1, augment="none", schedule="none", device="cpu"
)


def _wait(job, timeout: float = 60.0) -> list:
    events = []
    deadline = time.monotonic() + timeout
    while job.is_alive() and time.monotonic() < deadline:
        events += job.poll()  # what the widget's QTimer does
        time.sleep(0.05)
    events += job.join(5)
    assert not job.is_alive(), "child did not finish in time"
    return events


def _cancel_after_first_batch(job) -> None:
    """Start the job, cancel it once it reports a batch, and wait for it to end."""
    job.start()
    deadline = time.monotonic() + 60
    seen = []
    while not any(e.kind == "batch" for e in seen) and time.monotonic() < deadline:
        seen += job.poll()
        time.sleep(0.05)
    job.cancel()
    _wait(job)


def test_round_trip_one_epoch(tmp_path):
    tiny_base(tmp_path / "base.safetensors")
    out = tmp_path / "tuned.safetensors"
    job = BackgroundFinetune(tmp_path / "base.safetensors", synthetic_set(3, 4), CONFIG, out)
    assert job.poll() == [] and not job.is_alive()
    job.start()
    events = _wait(job)
    assert job.error is None, job.error_details
    assert isinstance(job.result, FinetuneResult) and job.result.model is None
    assert job.result.checkpoint == out and out.is_file() and job.exitcode == 0
    kinds = [e.kind for e in events]
    assert kinds.count("batch") == 8 and kinds.count("epoch") == 1 and kinds[-1] == "done"
    assert load_checkpoint(out).card.metric("dice") == pytest.approx(
        job.result.best_val_dice, abs=1e-6
    )


def test_cancel_keeps_the_best_checkpoint(tmp_path):
    tiny_base(tmp_path / "base.safetensors")
    data_path = synthetic_set(3, 4).save_npz(tmp_path / "set.npz")
    out = tmp_path / "tuned.safetensors"
    config = FinetuneConfig(**{**CONFIG.to_dict(), "epochs": 50, "early_stop_patience": 0})
    job = BackgroundFinetune(tmp_path / "base.safetensors", data_path, config, out)
    _cancel_after_first_batch(job)
    assert job.error is None, job.error_details
    assert job.result.stopped and out.is_file()
    assert len(job.result.history) < 50


def test_child_crash_is_reported_as_one_line(tmp_path):
    # The child's entry point, run in-process: spawning a process only to fail is slow.
    import queue
    import threading

    events = queue.Queue()
    data_path = synthetic_set(2, 2).save_npz(tmp_path / "set.npz")
    with pytest.raises(SystemExit):
        _child_main(
            "finetune",
            str(tmp_path / "missing.safetensors"),
            str(data_path),
            CONFIG.to_dict(),
            str(tmp_path / "o.safetensors"),
            {"resume": True},
            events,
            threading.Event(),
        )
    kind, message, details = events.get_nowait()
    assert kind == "error" and message.startswith("CheckpointError") and "Traceback" in details


def test_killed_child_reports_its_exit_code(tmp_path):
    tiny_base(tmp_path / "base.safetensors")
    config = FinetuneConfig(**{**CONFIG.to_dict(), "epochs": 500, "early_stop_patience": 0})
    killed = BackgroundFinetune(
        tmp_path / "base.safetensors", synthetic_set(2, 4), config, tmp_path / "k.safetensors"
    )
    killed.start()
    deadline = time.monotonic() + 60
    while not any(e.kind == "batch" for e in killed.poll()) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.kill()
    events = _wait(killed)
    assert killed.result is None and "exit code -9" in killed.error
    assert events[-1].kind == "error"


def _banded_stack(n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    frames = (rng.random((n, 64, 64)) * 50).astype(np.uint8)
    frames[:, 20:26, 8:56] += 180
    band = np.zeros((64, 64), np.uint8)
    band[20:26, 8:56] = 1
    return frames, band


def test_adapt_stack_file_round_trip_keeps_dtype_and_curated_masks(tmp_path):
    frames, band = _banded_stack(6)
    path = save_adapt_data(tmp_path / "s.npz", frames, {4: band, 1: band * 0})
    back, labelled = load_adapt_data(path)
    assert back.dtype == np.uint8 and np.array_equal(back, frames)
    assert sorted(labelled) == [1, 4] and labelled[4].sum() == band.sum() and not labelled[1].any()


def test_adapt_in_a_child_gives_what_it_gives_in_process(tmp_path):
    """The widget's path (child process, denormals flushed) and the CLI's (in process) agree: same
    frames, curated masks and seed give the same verdict, frame counts and consistency numbers."""
    base = tiny_base(tmp_path / "base.safetensors")
    frames, band = _banded_stack()
    labelled = {0: band, 5: band, 10: band}
    config = AdaptConfig(steps=3, device="cpu")
    here = adapt_sync(base, frames, config, source="clip", labelled=labelled)
    out = tmp_path / "adapted.safetensors"
    job = BackgroundAdapt(
        tmp_path / "base.safetensors", frames, config, out, source="clip", labelled=labelled
    )
    job.start()
    events = _wait(job)
    assert job.error is None, job.error_details
    there = job.result
    assert isinstance(there, AdaptResult) and there.model is None
    assert (there.frames_trained, there.frames_checked) == (7, 2)
    assert there.gate is not None and there.gate.frame_ids == here.gate.frame_ids
    assert there.promoted == here.promoted and there.teacher_view == here.teacher_view
    assert there.base_consistency == pytest.approx(here.base_consistency, abs=1e-6)
    assert there.new_consistency == pytest.approx(here.new_consistency, abs=0.02)
    assert (there.checkpoint == out) == there.promoted == out.exists()
    assert events[-1].kind == "done" and any(e.kind == "batch" for e in events)


def test_a_cancelled_adaptation_ends_without_a_model(tmp_path):
    tiny_base(tmp_path / "base.safetensors")
    frames, _ = _banded_stack()
    out = tmp_path / "adapted.safetensors"
    config = AdaptConfig(steps=100_000, device="cpu")
    job = BackgroundAdapt(tmp_path / "base.safetensors", frames, config, out)
    _cancel_after_first_batch(job)
    assert job.error is None, job.error_details
    assert not job.result.promoted and "stopped before the end" in job.result.reason
    assert job.result.checkpoint is None and not out.exists()


def test_end_stops_the_run_and_removes_its_temporary_files_when_the_child_ends(
    tmp_path, monkeypatch
):
    """An owner that polls no more (a closed dock): the data and log stayed until collection."""
    import tempfile

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    tiny_base(tmp_path / "base.safetensors")
    config = FinetuneConfig(
        epochs=500, lr=3e-3, batch_size=1, augment="none", schedule="none", device="cpu"
    )
    job = BackgroundFinetune(tmp_path / "base.safetensors", synthetic_set(3, 4), config, None)
    job.start()
    deadline = time.monotonic() + 60
    while not any(e.kind == "batch" for e in job.poll()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(list(temp.iterdir())) == 2  # the training data's folder and the child's log
    thread = job.end(grace=30)
    thread.join(60)
    assert not thread.is_alive() and not job.is_alive()
    assert job.result is not None and job.result.stopped  # judged as after Cancel
    assert list(temp.iterdir()) == []
