"""Fine-tune and adaptation path: resume state, start rules and outcome (audit of 2026-12-04)."""

from __future__ import annotations

import time

from test_training_background import CONFIG, _wait
from test_training_support import synthetic_set, tiny_base

from napari_ribseg.core.training.background import BackgroundFinetune
from napari_ribseg.core.training.loop import FinetuneConfig
from napari_ribseg.core.training.resume import resume_paths


def _until_first_epoch(job) -> list:
    deadline = time.monotonic() + 60
    seen: list = []
    while not any(e.kind == "epoch" for e in seen) and time.monotonic() < deadline:
        seen += job.poll()
        time.sleep(0.05)
    assert any(e.kind == "epoch" for e in seen), "no epoch ended in time"
    return seen


def _long_job(tmp_path, keep_resume: bool) -> tuple[BackgroundFinetune, object]:
    tiny_base(tmp_path / "base.safetensors")
    config = FinetuneConfig(**{**CONFIG.to_dict(), "epochs": 500, "early_stop_patience": 0})
    out = tmp_path / "stamped.safetensors"
    job = BackgroundFinetune(
        tmp_path / "base.safetensors", synthetic_set(2, 4), config, out, keep_resume=keep_resume
    )
    return job, out


def test_a_cancelled_run_that_nobody_resumes_leaves_no_resume_state(tmp_path):
    """The widget's outputs are time-stamped, so no later run continues them: each Cancel left a
    65-70 MB ``<model>.resume/`` folder in the user's model folder for good."""
    job, out = _long_job(tmp_path, keep_resume=False)
    job.start()
    _until_first_epoch(job)
    assert resume_paths(out)[1].is_file(), "the state is kept while the run goes on"
    job.cancel()
    _wait(job)
    assert job.error is None, job.error_details
    assert job.result.stopped
    assert not resume_paths(out)[0].parent.exists()


def test_a_killed_run_that_nobody_resumes_leaves_no_resume_state(tmp_path):
    job, out = _long_job(tmp_path, keep_resume=False)
    job.start()
    _until_first_epoch(job)
    job.kill()
    _wait(job)
    assert job.result is None and "exit code -9" in job.error
    assert not resume_paths(out)[0].parent.exists()


def test_a_cancelled_run_keeps_its_resume_state_by_default(tmp_path):
    """``ribseg finetune --out NAME`` continues a stopped run: its state stays."""
    job, out = _long_job(tmp_path, keep_resume=True)
    job.start()
    _until_first_epoch(job)
    job.cancel()
    _wait(job)
    assert job.result.stopped and resume_paths(out)[1].is_file()
