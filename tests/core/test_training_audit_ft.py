"""Fine-tune and adaptation path: resume state, start rules and outcome (audit of 2026-12-04)."""

from __future__ import annotations

import os
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


def test_adapt_is_blocked_when_curated_frames_leave_no_frame_to_check_on(tmp_path):
    """A 10-frame stack with frames 2 and 7 curated (the two check frames) was let through; the
    child then failed ("Adaptation failed: ... check the settings and try again")."""
    import numpy as np

    from napari_ribseg.core.session import ReviewSession, start_blocker
    from napari_ribseg.core.stack import FrameStatus

    session = ReviewSession.for_frames(np.zeros((10, 8, 8), np.float32), tmp_path / "r")
    session.set_status([2], FrameStatus.CURATED)
    assert start_blocker(session, "adapt", base="unet") == ""
    session.set_status([7], FrameStatus.CURATED)
    assert start_blocker(session, "adapt", base="unet") == (
        "Cannot adapt to this stack: 2 of 10 frames are curated; label-free adaptation needs "
        "uncurated frames to learn from and to check on (every 5th frame from frame 2 is checked "
        "on: 0 of them uncurated, 8 uncurated frames to learn from)."
    )
    from napari_ribseg.core.training.adapt import adapt_split

    fit, check, problem = adapt_split(10, [2])
    assert list(check) == [7] and len(fit) == 8 and problem == ""
    session.close(save=False)


def test_finetune_note_counts_the_curated_frames_a_gate_can_judge(tmp_path):
    """Rib-free frames and the base's own masks accepted unchanged cannot judge a new model."""
    import numpy as np

    from napari_ribseg.core.session import ReviewSession, finetune_note, start_blocker
    from napari_ribseg.core.stack import FrameStatus

    session = ReviewSession.for_frames(np.zeros((6, 8, 8), np.float32), tmp_path / "r")
    band = np.zeros((8, 8), np.uint8)
    band[2:4] = 1
    for f in range(4):
        session.set_labels(f, band)
    session.set_status([0, 1, 2, 3], FrameStatus.CURATED)
    assert start_blocker(session, "finetune", base="m") == ""
    assert finetune_note(session, base="m") == "4 curated frames ready."
    session.set_labels(3, band * 0)  # no rib in view
    assert "3 of the curated frames can count (at least 4 needed)" in finetune_note(
        session, base="m"
    )
    # Frames 0 and 1 are model m's own masks, accepted unchanged.
    project = session.project
    project.model_name = "m"
    project.confidence[:] = 0.9
    project.model_labels[:2] = project.labels[:2]
    assert "1 of the curated frames can count" in finetune_note(session, base="m")
    assert "3 of the curated frames can count" in finetune_note(session, base="other")
    # What "Re-segment unreviewed frames" writes, counted for the named frames only.
    assert list(session.writable_of([3, 4, 5])) == [4, 5]
    session.set_labels(5, band)
    assert list(session.writable_of([4, 5])) == [4]
    session.close(save=False)


_EXIT_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from test_training_audit_ft import _long_job, _until_first_epoch
from pathlib import Path

if __name__ == "__main__":
    job, out = _long_job(Path({tmp!r}), keep_resume=False)
    job.start()
    _until_first_epoch(job)
    print(job._process.pid, flush=True)
    # The viewer's process ends here with the child mid-run (napari quit during a fine-tune).
"""


def test_quitting_mid_run_judges_what_it_has_and_leaves_no_resume_state(tmp_path):
    """Quitting napari during a fine-tune: multiprocessing terminated the daemon child at exit,
    so the run was never judged and a model that beat its base was lost (docs/widget.md said the
    child judges the weights it has, as Cancel does). Its resume state must still go."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    tests = str(Path(__file__).parent)
    script = tmp_path / "quit.py"
    script.write_text(_EXIT_SCRIPT.format(tests=tests, tmp=str(tmp_path)), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=180, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    pid = int(done.stdout.split()[0])
    try:
        os.kill(pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive, "the child outlived the viewer's process"
    out = tmp_path / "stamped.safetensors"
    assert not resume_paths(out)[0].parent.exists()
    # Stopped as Cancel stops it, the child judged its weights: the tiny base marks nothing,
    # so what it learned beats it and is kept.
    assert out.is_file()


def test_a_stamped_adaptation_cancelled_killed_or_not_started_gives_its_name_back(tmp_path):
    """stamped_output reserves the name (an empty ``.resume/`` folder); an adaptation keeps no
    resume state, so nothing removed that folder: a cancelled run must give it back in the
    child, a killed one in the parent, and a run that never started at once."""
    import datetime as dt

    import numpy as np
    import pytest
    from test_training_background import _banded_stack, _cancel_after_first_batch

    from napari_ribseg.core.training.adapt import AdaptConfig
    from napari_ribseg.core.training.background import BackgroundAdapt
    from napari_ribseg.core.training.output import stamped_output

    tiny_base(tmp_path / "base.safetensors")
    frames, _ = _banded_stack()
    folder = tmp_path / "models"
    now = dt.datetime(2026, 12, 5, 6, 0, 0)
    config = AdaptConfig(steps=100_000, device="cpu")

    out = stamped_output("base", "clip", "adapt", now=now, model_dir=folder)
    job = BackgroundAdapt(tmp_path / "base.safetensors", frames, config, out)
    _cancel_after_first_batch(job)
    assert job.error is None, job.error_details
    assert job.result.checkpoint is None and os.listdir(folder) == []

    out = stamped_output("base", "clip", "adapt", now=now, model_dir=folder)
    job = BackgroundAdapt(tmp_path / "base.safetensors", frames, config, out)
    job.start()
    deadline = time.monotonic() + 60
    while not any(e.kind == "batch" for e in job.poll()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert resume_paths(out)[0].parent.is_dir(), "reserved while it runs"
    job.kill()
    _wait(job)
    assert "exit code -9" in job.error and os.listdir(folder) == []

    out = stamped_output("base", "clip", "adapt", now=now, model_dir=folder)
    uneven = [np.zeros((64, 64), np.float32), np.zeros((32, 32), np.float32)] * 3
    job = BackgroundAdapt(tmp_path / "base.safetensors", uneven, config, out)
    with pytest.raises(ValueError):
        job.start()
    assert os.listdir(folder) == []


def test_a_child_whose_base_does_not_load_gives_the_name_back_before_it_reports(tmp_path):
    """The base fails to load in the child, before any door runs (no door's clean-up): the child
    gives back the reserved name itself, before the parent hears of the failure."""
    import datetime as dt

    from napari_ribseg.core.training.output import stamped_output

    folder = tmp_path / "models"
    out = stamped_output("gone", "clip", now=dt.datetime(2026, 12, 5, 6, 0, 0), model_dir=folder)
    job = BackgroundFinetune(tmp_path / "gone.safetensors", synthetic_set(2, 4), CONFIG, out)
    job.start()
    deadline = time.monotonic() + 60
    while job.error is None and time.monotonic() < deadline:
        job.poll()
        time.sleep(0.02)
    assert job.error is not None and "gone.safetensors" in job.error
    assert os.listdir(folder) == []  # already, not once the parent has seen the child die
    _wait(job)


def test_the_parent_leaves_a_name_its_child_gave_back_to_whoever_took_it_since(tmp_path):
    """A widget run (keep_resume=False) whose child failed and reported it had given its name
    back already; the parent, seeing the child dead, still removed the resume folder of that name
    (shutil.rmtree), which by then could be another viewer's reservation, or its run's state.
    Now the parent cleans up only after a child that died without a word."""
    import datetime as dt

    from napari_ribseg.core.training.output import stamped_output

    folder = tmp_path / "models"
    now = dt.datetime(2026, 12, 5, 6, 0, 0)
    out = stamped_output("gone", "clip", now=now, model_dir=folder)
    job = BackgroundFinetune(
        tmp_path / "gone.safetensors", synthetic_set(2, 4), CONFIG, out, keep_resume=False
    )
    job.start()
    job._process.join(60)  # dead, its error sent, not yet read by this process
    assert job.exitcode == 1 and os.listdir(folder) == []
    other = stamped_output("gone", "clip", now=now, model_dir=folder)
    assert other == out  # another viewer, the same second: the name is free again
    (resume_paths(other)[0].parent / "state.json").write_text("{}")  # its run is under way
    _wait(job)
    assert job.error is not None and "gone.safetensors" in job.error
    assert os.listdir(resume_paths(other)[0].parent) == ["state.json"]
