"""Fine-tuning from the widget: a real child process, 1 epoch of a tiny model on 64x64 frames."""

from __future__ import annotations

import numpy as np
import pytest

from napari_ribseg.core.models import default_model, list_models, user_model_dir
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
    section.strategy_combo.setCurrentIndex(section.strategy_combo.findData("all"))
    all_text = section.trainable_label.text()
    section.strategy_combo.setCurrentIndex(section.strategy_combo.findData("decoder"))
    assert section.trainable_label.text() != all_text
    # Choices are named by what trains, under "Train:".
    labels = [section.strategy_combo.itemText(i) for i in range(section.strategy_combo.count())]
    assert labels[0] == "all layers" and "decoder only" in labels
    assert not any(label.lower().startswith("freeze") for label in labels)


def _curate_all(viewer, widget):
    project = widget.session.project
    truth = np.zeros((64, 64), np.uint8)
    truth[20:26, 8:56] = 1
    for f in range(6):
        project.labels[f] = truth
        widget.set_status(f, FrameStatus.CURATED)
    viewer.layers["clip01 ribs"].refresh()
    return project


def test_finetune_that_wins_the_gate_becomes_the_default_and_resegments(
    segmented, qtbot, tiny_model, wait_worker
):
    viewer, widget = segmented
    project = _curate_all(viewer, widget)
    curated = project.labels[:6].copy()
    section = widget.finetune_section
    section.select_base(tiny_model)
    section.epochs_spin.setValue(40)
    section.lr_spin.setValue(0.01)
    section.val_spin.setValue(0.5)
    assert widget.start_finetune()
    assert section.cancel_btn.isEnabled()
    qtbot.waitUntil(lambda: section.job is None, timeout=120_000)

    result = section.result
    assert result is not None, section.outcome_label.text()
    # The untrained base finds no band; the trained model does, on 3 held-out frames.
    assert result.promoted and result.gate.frames == 3, result.reason
    assert result.checkpoint.parent == user_model_dir() and result.checkpoint.exists()
    new_name = result.checkpoint.stem
    assert new_name in {e.name for e in list_models()}
    assert widget.segment_section.current_model().name == new_name
    # With no current choice (napari opened again) the widget's default is the gate's winner.
    segment = widget.segment_section
    segment.model_combo.setCurrentIndex(-1)
    segment.refresh_models()
    assert segment.current_model().name == new_name == default_model().name
    assert f"{result.base_val_dice:.3f}" in section.outcome_label.text()
    assert section.plot.dice  # the held-out curve was drawn

    section.keep_base_btn.click()
    assert widget.segment_section.current_model().name == tiny_model
    section.use_new_btn.click()
    assert widget.segment_section.current_model().name == new_name
    assert section.resegment_btn.isEnabled()
    section.resegment_btn.click()  # nothing unreviewed: the curated labels stay as they are
    wait_worker(widget)
    np.testing.assert_array_equal(project.labels[:6], curated)


def test_finetune_that_cannot_improve_leaves_no_model_and_keeps_the_base(
    segmented, qtbot, tiny_model, accept_base_predictions
):
    _viewer, widget = segmented
    # Accepted without edits: the labels are the base model's own prediction, so no held-out
    # frame was corrected and there is nothing a new model could be judged better on.
    accept_base_predictions(widget, tiny_model)
    before = {e.name for e in list_models()}
    section = widget.finetune_section
    section.select_base(tiny_model)
    section.epochs_spin.setValue(2)
    section.lr_spin.setValue(0.01)
    section.val_spin.setValue(0.5)
    assert widget.start_finetune()
    qtbot.waitUntil(lambda: section.job is None, timeout=120_000)
    result = section.result
    assert result is not None and not result.promoted and result.checkpoint is None
    assert {e.name for e in list_models()} == before, "no copy of the base poses as a new model"
    assert widget.segment_section.current_model().name == tiny_model
    assert "No new model" in section.outcome_label.text()
    assert "too few held-out corrected frames to judge" in section.outcome_label.text()
    assert not section.use_new_btn.isEnabled()


def test_plot_has_ticks_and_no_clipped_exponent_labels(segmented):
    _viewer, widget = segmented
    plot = widget.finetune_section.plot
    plot.reset(40)
    assert plot.x_ticks() == [0, 10, 20, 30, 40]
    assert plot.loss_top() == 0.0  # empty: no "1e-06" axis label
    for epoch, loss in enumerate([0.9, 0.5, 0.3], start=1):
        plot.add("loss", epoch, loss)
    assert plot.loss_top() == pytest.approx(1.035)  # the curve stays below the top border
    assert plot.loss_tick(1.035e-6 * 0) == "0" and "e" not in plot.loss_tick(0.0004)
    plot.grab()  # paints without error


def test_spawn_guard_is_stated_and_the_child_error_shown(tmp_path):
    from types import SimpleNamespace

    from napari_ribseg._widgets.finetune import explain_child_failure, spawn_guard_problem

    script = tmp_path / "train.py"
    script.write_text("import napari_ribseg\nrun_finetune()\n")
    problem = spawn_guard_problem(SimpleNamespace(__file__=str(script)))
    assert 'if __name__ == "__main__":' in problem and str(script) in problem
    script.write_text('if __name__ == "__main__":\n    run_finetune()\n')
    assert spawn_guard_problem(SimpleNamespace(__file__=str(script))) == ""
    details = (
        "Traceback ...\nRuntimeError: An attempt has been made to start a new process before "
        "the current process has finished its bootstrapping phase."
    )
    text = explain_child_failure("ended without a result (exit code 1)", details)
    assert "__main__" in text and "bootstrapping phase" in text
    assert "ValueError: bad" in explain_child_failure("exit code -6", "x\nValueError: bad")


def test_cancel_judges_the_weights_so_far_and_keeps_no_loser(
    segmented, qtbot, tiny_model, accept_base_predictions
):
    _viewer, widget = segmented
    accept_base_predictions(widget, tiny_model)  # nothing to win on
    section = widget.finetune_section
    section.select_base(tiny_model)
    section.epochs_spin.setValue(50)
    section.val_spin.setValue(0.5)
    # Cancel as soon as the first epoch is reported; the weights so far go through the gate.
    section.event_received.connect(lambda event: event.kind == "epoch" and section.cancel())
    assert widget.start_finetune()
    assert not section.start_btn.isEnabled()
    qtbot.waitUntil(lambda: section.job is None, timeout=120_000)
    result = section.result
    assert result is not None and result.stopped and len(result.history) < 50
    assert result.checkpoint is None and not result.promoted
    assert "Cancelled before the end" in section.outcome_label.text()
    assert widget.segment_section.current_model().name == tiny_model
    assert section.start_btn.isEnabled()


def test_plot_spans_the_runs_epochs_when_they_follow_from_steps(segmented):
    from napari_ribseg.core.jobs import Progress

    _viewer, widget = segmented
    section = widget.finetune_section
    section.plot.reset(0)  # "Epochs: from steps": the count is unknown when the run starts
    section._on_event(Progress("val_dice", 0, 240, values={"val_dice": 0.4}))
    section._on_event(Progress("loss", 120, 240, values={"loss": 0.3, "val_loss": 0.35}))
    assert section.plot.epochs == 240
    assert section.plot.loss == [(120.0, 0.3)] and section.plot.dice == [(0.0, 0.4)]
    assert section.plot.x_ticks()[-1] == 240


def _adaptation_done(section, tiny_model, name, reason, gate=None):
    """Save the tiny model as an adapted one (its card says how it was judged) and hand the
    section the result ``adapt`` would return; the adapted model's name."""
    from types import SimpleNamespace

    from napari_ribseg.core.models import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(user_model_dir() / f"{tiny_model}.safetensors")
    loaded.card.extra["adapt"] = {"teacher_view": "raw", "gate": gate}
    loaded.card.name = name
    path = save_checkpoint(loaded.model, loaded.card, user_model_dir() / f"{name}.safetensors")
    section._base_name = tiny_model
    section._adapt_done(
        SimpleNamespace(
            checkpoint=path,
            reason=reason,
            teacher_view="raw",
            frames_trained=4,
            frames_checked=2,
            seconds=1.0,
            gate=None if gate is None else SimpleNamespace(**gate),
        )
    )
    return name


def test_an_adapted_model_is_offered_not_selected_and_never_the_default(segmented, tiny_model):
    """A label-free check cannot show an adapted model is better (it promoted losses of 0.01-0.03
    Dice on 100-frame cines): the widget keeps the base selected and offers "Use new model"."""
    _viewer, widget = segmented
    section = widget.finetune_section
    segment = widget.segment_section
    name = _adaptation_done(
        section,
        tiny_model,
        f"{tiny_model}-adapt-clip01",
        "flip consistency 0.900 -> 0.950 on 2 held-out frames",
    )
    assert segment.current_model().name == tiny_model
    assert "not selected" in section.outcome_label.text()
    assert section.use_new_btn.isEnabled()
    section.use_new_btn.click()
    assert segment.current_model().name == name
    # napari opened again: the default is not the adapted model, however new.
    segment.model_combo.setCurrentIndex(-1)
    segment.refresh_models()
    assert segment.current_model().name != name
    assert default_model().name != name


def test_an_adaptation_that_won_the_gate_on_curated_frames_is_selected(segmented, tiny_model):
    _viewer, widget = segmented
    section = widget.finetune_section
    name = _adaptation_done(
        section,
        tiny_model,
        f"{tiny_model}-adapt-gated",
        "judged on the stack's curated frames: better than the base: Dice 0.5 -> 0.7",
        gate={"promoted": True, "frames": 3},
    )
    assert widget.segment_section.current_model().name == name
    assert "is selected" in section.outcome_label.text()
    assert default_model().name == name  # judged with labels, like a fine-tune


def test_adapt_to_this_stack_runs_in_a_child_process_and_reports(
    docked, qtbot, tiny_model, wait_worker, tmp_path
):
    """The button starts a BackgroundAdapt (denormals flushed there, not in napari), blocks a
    fine-tune while it runs, and its outcome names what it learned from and checked on."""
    from napari_ribseg.core.training import BackgroundAdapt

    rng = np.random.default_rng(0)
    frames = rng.random((12, 64, 64), dtype=np.float32) * 0.2
    frames[:, 20:26, 8:56] += 0.7
    np.save(tmp_path / "cine12.npy", frames.clip(0, 1))
    _viewer, widget = docked
    widget.load(str(tmp_path / "cine12.npy"))
    assert widget.segment_section.select_model(tiny_model)
    section = widget.finetune_section
    section.select_base(tiny_model)
    assert section.adapt_btn.isEnabled()
    before = {e.name for e in list_models()}
    section.adapt_btn.click()
    assert isinstance(section.job, BackgroundAdapt) and section.cancel_btn.isEnabled()
    assert not section.adapt_btn.isEnabled() and not section.start_btn.isEnabled()
    assert "Adaptation is running" in section.start_blocker()
    qtbot.waitUntil(lambda: section.job is None, timeout=120_000)
    result = section.adapt_result
    assert result is not None, section.outcome_label.text()
    assert (result.frames_trained, result.frames_checked) == (10, 2)
    text = section.outcome_label.text()
    assert "10 frames learned from, 2 checked" in text
    made = {e.name for e in list_models()} - before
    if result.promoted:
        assert made == {result.checkpoint.stem} and result.checkpoint.parent == user_model_dir()
    else:
        assert not made and "No new model" in text and result.reason in text
    assert section.adapt_btn.isEnabled() and not section.cancel_btn.isEnabled()


def test_change_kept_is_auto_by_default_and_reaches_the_config(segmented):
    """The widget's "Change kept" is FinetuneConfig's mix: auto (0) by default, a set value goes
    into the run's config."""
    from napari_ribseg.core.training import FinetuneConfig

    _viewer, widget = segmented
    section = widget.finetune_section
    assert section.mix_spin.value() == FinetuneConfig().mix == 0.0
    assert section.mix_spin.specialValueText() == "auto"
    assert section.config().mix == 0.0
    section.mix_spin.setValue(0.75)
    assert section.config().mix == 0.75
    assert "fine-tuned change" in section.mix_spin.toolTip()


def test_closing_napari_stops_a_running_finetune(
    segmented, qtbot, tiny_model, accept_base_predictions
):
    """napari closing its window sends the dock nothing; the fine-tune child was left running."""
    viewer, widget = segmented
    accept_base_predictions(widget, tiny_model)
    section = widget.finetune_section
    section.select_base(tiny_model)
    section.epochs_spin.setValue(5000)
    section.val_spin.setValue(0.5)
    viewer.window.show()  # as a user has it: the dock learns its window when shown
    assert widget.start_finetune()
    job = section.job
    qtbot.waitUntil(job.is_alive, timeout=60_000)
    viewer.close()
    qtbot.waitUntil(lambda: not job.is_alive(), timeout=60_000)
    assert widget._shut_down and widget.session.core is None, "the review was released"
