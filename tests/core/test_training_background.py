"""BackgroundFinetune: the job in a spawned child process, events through a queue, cancel, crashes."""

from __future__ import annotations

import time

import pytest
from test_training_support import synthetic_set, tiny_base

from napari_ribseg.core.models import load_checkpoint
from napari_ribseg.core.training.background import BackgroundFinetune, _child_main
from napari_ribseg.core.training.loop import FinetuneConfig, FinetuneResult

CONFIG = FinetuneConfig(
    epochs=1, lr=3e-3, batch_size=1, augment="none", schedule="none", device="cpu"
)


def _wait(job: BackgroundFinetune, timeout: float = 60.0) -> list:
    events = []
    deadline = time.monotonic() + timeout
    while job.is_alive() and time.monotonic() < deadline:
        events += job.poll()  # what the widget's QTimer does
        time.sleep(0.05)
    events += job.join(5)
    assert not job.is_alive(), "child did not finish in time"
    return events


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
    job.start()
    deadline = time.monotonic() + 60
    seen = []
    while not any(e.kind == "batch" for e in seen) and time.monotonic() < deadline:
        seen += job.poll()
        time.sleep(0.05)
    job.cancel()
    _wait(job)
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
            str(tmp_path / "missing.safetensors"),
            str(data_path),
            CONFIG.to_dict(),
            str(tmp_path / "o.safetensors"),
            True,
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
