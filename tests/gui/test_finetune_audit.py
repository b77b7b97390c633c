"""Fine-tune tab audit (2026-12-04): start lines, outcome numbers, re-segment count, resume state,
a killed child. Runs are a few epochs of the tiny model on 64x64 frames."""

from __future__ import annotations

import numpy as np

from napari_ribseg.core.models import user_model_dir
from napari_ribseg.core.stack import FrameStatus

BAND = np.zeros((64, 64), np.uint8)
BAND[20:26, 8:56] = 1


def _correct(widget, frames, mask=BAND):
    """Hand-correct ``frames`` to ``mask`` and curate them."""
    core = widget.session.core
    for f in frames:
        core.set_labels(f, mask)
        widget.set_status(f, FrameStatus.CURATED)


def _start_long_run(widget, section, tiny_model, qtbot):
    _correct(widget, range(6))
    section.select_base(tiny_model)
    section.epochs_spin.setValue(500)
    section.val_spin.setValue(0.5)
    epochs = []
    section.event_received.connect(lambda e: e.kind == "epoch" and epochs.append(e))
    assert widget.start_finetune()
    qtbot.waitUntil(lambda: bool(epochs), timeout=120_000)
    return section.job


def test_cancel_leaves_no_resume_state_in_the_model_folder(segmented, qtbot, tiny_model):
    """Every cancelled fine-tune left a '<model>.resume/' folder (65-70 MB for the compact models)
    in the model folder; the widget's outputs are time-stamped, so nothing ever resumed it."""
    _viewer, widget = segmented
    section = widget.finetune_section
    job = _start_long_run(widget, section, tiny_model, qtbot)
    assert list(user_model_dir().glob("*.resume")), "the state is kept while it runs"
    section.cancel()
    qtbot.waitUntil(lambda: section.job is None and not job.is_alive(), timeout=120_000)
    assert section.result is not None and section.result.stopped
    assert not list(user_model_dir().glob("*.resume"))
    assert section.start_btn.isEnabled()


def test_a_killed_child_is_reported_and_the_tab_stays_usable(segmented, qtbot, tiny_model):
    _viewer, widget = segmented
    section = widget.finetune_section
    job = _start_long_run(widget, section, tiny_model, qtbot)
    job.kill()
    qtbot.waitUntil(lambda: section.job is None, timeout=60_000)
    assert section.outcome_label.text().startswith("Failed: finetune process ended")
    assert "exit code -9" in section.outcome_label.text()
    assert section.start_btn.isEnabled() and not section.cancel_btn.isEnabled()
    assert not section.use_new_btn.isEnabled()
    assert not list(user_model_dir().glob("*.resume"))
