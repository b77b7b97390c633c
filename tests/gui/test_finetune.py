"""Fine-tuning from the widget: a real child process, 1 epoch of a tiny model on 64x64 frames."""

from __future__ import annotations

import numpy as np

from napari_ribseg.core.models import list_models, user_model_dir
from napari_ribseg.core.stack import FrameStatus


def test_start_is_disabled_with_a_reason_until_two_frames_are_curated(segmented):
    _viewer, widget = segmented
    section = widget.finetune_section
    assert not section.start_btn.isEnabled()
    assert "at least 2" in section.start_btn.toolTip()
    widget.set_status(0, FrameStatus.CURATED)
    assert not section.start_btn.isEnabled()
    widget.set_status(1, FrameStatus.CURATED)
    assert section.start_btn.isEnabled()
    assert "trains" in section.trainable_label.text()
    # The trainable count follows the freeze strategy.
    section.strategy_combo.setCurrentText("all")
    all_text = section.trainable_label.text()
    section.strategy_combo.setCurrentText("decoder")
    assert section.trainable_label.text() != all_text


def test_finetune_selects_better_model_and_resegments(segmented, qtbot, tiny_model, wait_worker):
    viewer, widget = segmented
    project = widget.session.project
    # Correct four frames to the "truth" (the bright band) and mark them curated.
    truth = np.zeros((64, 64), np.uint8)
    truth[20:26, 8:56] = 1
    for f in range(4):
        project.labels[f] = truth
        widget.set_status(f, FrameStatus.CURATED)
    viewer.layers["clip01 ribs"].refresh()
    curated = project.labels[:4].copy()

    section = widget.finetune_section
    section.select_base(tiny_model)
    section.epochs_spin.setValue(1)
    section.lr_spin.setValue(0.01)
    section.val_spin.setValue(0.25)
    assert widget.start_finetune()
    assert section.cancel_btn.isEnabled()
    qtbot.waitUntil(lambda: section.job is None, timeout=120_000)

    result = section.result
    assert result is not None, section.outcome_label.text()
    assert result.checkpoint.parent == user_model_dir()
    assert result.checkpoint.exists()
    new_name = result.checkpoint.stem
    assert new_name in {e.name for e in list_models()}
    selected = widget.segment_section.current_model().name
    better = result.best_val_dice > result.base_val_dice
    assert selected == (new_name if better else tiny_model)
    assert f"{result.base_val_dice:.3f}" in section.outcome_label.text()
    assert section.plot.dice  # the validation curve was drawn

    # The user can switch either way, then re-segment what is not reviewed yet.
    section.use_new_btn.click()
    assert widget.segment_section.current_model().name == new_name
    assert section.resegment_btn.isEnabled()
    section.resegment_btn.click()
    wait_worker(widget)
    assert project.model_name == new_name
    np.testing.assert_array_equal(project.labels[:4], curated)


def test_cancel_keeps_best_checkpoint_so_far(segmented, qtbot, tiny_model):
    viewer, widget = segmented
    project = widget.session.project
    for f in range(4):
        project.labels[f, 20:26, 8:56] = 1
        widget.set_status(f, FrameStatus.CURATED)
    section = widget.finetune_section
    section.select_base(tiny_model)
    section.epochs_spin.setValue(50)
    section.val_spin.setValue(0.25)
    # Cancel as soon as the first epoch is reported: its checkpoint is the best so far.
    section.event_received.connect(lambda event: event.kind == "epoch" and section.cancel())
    assert widget.start_finetune()
    assert not section.start_btn.isEnabled()
    qtbot.waitUntil(lambda: section.job is None, timeout=120_000)
    result = section.result
    assert result is not None and result.stopped
    assert result.checkpoint is not None and result.checkpoint.exists()
    assert len(result.history) < 50
    assert "Cancelled" in section.outcome_label.text()
    assert section.start_btn.isEnabled()
