"""Fine-tune tab audit (2026-12-04): start lines, outcome numbers, re-segment count, resume state,
a killed child. Runs are a few epochs of the tiny model on 64x64 frames."""

from __future__ import annotations

import numpy as np
from test_finetune import _adaptation_done

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


def test_start_line_says_what_a_new_model_needs(segmented, tiny_model):
    """With 2 or 3 curated frames Start was offered with "2 curated frames ready." although the
    gate needs 3 held-out corrected frames besides one to train on: the run could only end
    without a new model. Curated frames that mark no rib started a child that failed with
    advice about mask files."""
    _viewer, widget = segmented
    section = widget.finetune_section
    section.select_base(tiny_model)
    assert "(0 so far)" in section.reason_label.text()
    assert "correct at least 4" in section.reason_label.text()
    # Two curated frames with no rib drawn: blocked, saying why.
    empty = np.zeros((64, 64), np.uint8)
    _correct(widget, [0, 1], empty)
    assert not section.start_btn.isEnabled()
    assert section.reason_label.text().startswith("None of the 2 curated frames marks a rib")
    # Drawing the ribs on them (no status change) lets it start.
    _correct(widget, [0, 1])
    assert section.start_btn.isEnabled()
    text = section.reason_label.text()
    assert text.startswith("2 curated frames ready.")
    assert "2 of the curated frames can count (at least 4 needed)" in text
    assert "cannot make a new model" in text
    _correct(widget, [2, 3])
    assert section.reason_label.text() == "4 curated frames ready."


def test_outcome_numbers_are_those_of_the_judged_frames(segmented, tiny_model):
    """The line "Held-out Dice on 2 of 3 curated frame(s)" gave the means of all 3 held-out
    frames (here 0.900 vs 0.950: the new model looked worse) while the gate judged 2 (0.750 vs
    0.550) and the card records those."""
    from napari_ribseg.core.models import ModelCard
    from napari_ribseg.core.training.gate import judge
    from napari_ribseg.core.training.loop import FinetuneResult

    _viewer, widget = segmented
    section = widget.finetune_section
    gate = judge(["a", "b", "c"], [0.5, 0.6, 1.0], [0.7, 0.8, 1.0], min_frames=3, has_rib=[1, 1, 0])
    assert gate.frames == 2 and not gate.promoted
    result = FinetuneResult(
        checkpoint=None,
        card=ModelCard(name="x", variant="unet", preset="tiny", widths=[4]),
        history=[],
        base_val_dice=0.95,
        best_val_dice=0.90,
        best_epoch=1,
        stopped=False,
        val_ids=["a", "b", "c"],
        promoted=False,
        reason=gate.reason,
        gate=gate,
    )
    section._base_name = tiny_model
    section._show_outcome(result)
    text = section.outcome_label.text()
    assert (
        f"on 2 of 3 curated frame(s) it never trained on: new 0.750 vs base {tiny_model} 0.550"
        in text
    )
    assert "nothing improved" not in text and "too few held-out corrected frames" in text


def test_resegment_after_adapting_counts_the_frames_it_writes(segmented, tiny_model):
    """After an adaptation "Re-segment" stayed disabled; and its count included unreviewed
    frames edited by hand, which the run never writes."""
    _viewer, widget = segmented
    section = widget.finetune_section
    widget.session.core.set_labels(5, BAND)  # edited by hand, still unreviewed
    widget.set_status(0, FrameStatus.CURATED)
    _adaptation_done(section, tiny_model, f"{tiny_model}-adapt-clip01", "flip consistency up")
    assert section.resegment_btn.isEnabled()
    # 6 frames: 1 curated, 1 edited by hand -> 4 written.
    assert section.resegment_btn.text() == "Re-segment 4 unreviewed frames"
    widget.session.core.set_labels(4, BAND)
    assert section.resegment_btn.text() == "Re-segment 3 unreviewed frames"


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


def test_cancel_says_the_weights_so_far_are_judged_not_kept(segmented):
    """Cancel's tooltip and "Stopping..." line said "the best checkpoint is kept"; with the gate
    the weights so far are judged and a loser leaves no model (docs/widget.md)."""
    from types import SimpleNamespace

    _viewer, widget = segmented
    section = widget.finetune_section
    assert "best checkpoint" not in section.cancel_btn.toolTip()
    assert "judged by the gate" in section.cancel_btn.toolTip()
    asked = []
    section.job = SimpleNamespace(kind="finetune", cancel=lambda: asked.append(1))
    try:
        section.cancel()
    finally:
        section.job = None
    assert asked == [1]
    assert section.progress_label.text() == (
        "Stopping after this batch; the weights so far go through the gate (kept only if they "
        "beat the base)…"
    )


def test_a_user_model_named_like_a_bundled_one(docked, stack_file):
    """A user model named like a bundled one: the Fine-tune picker listed the name twice (both
    started from the user's file), and a refresh or "Keep base model" switched the Segment choice
    from the user's model to the bundled one of that name."""
    import shutil

    from napari_ribseg.core.models import bundled_model_dir

    name = "unet-compact"
    for suffix in (".safetensors", ".json"):
        user_model_dir().mkdir(parents=True, exist_ok=True)
        shutil.copy(bundled_model_dir() / f"{name}{suffix}", user_model_dir() / f"{name}{suffix}")
    _viewer, widget = docked
    widget.load(stack_file)
    segment, section = widget.segment_section, widget.finetune_section
    segment.refresh_models()
    sources = [e.source for e in segment._entries if e.name == name]
    assert sources == ["bundled", "user"]
    mine = next(i for i, e in enumerate(segment._entries) if e.name == name and e.source == "user")
    segment.model_combo.setCurrentIndex(mine)
    texts = [section.base_combo.itemText(i) for i in range(section.base_combo.count())]
    assert texts.count(f"{name} (yours)") == 1 and name not in texts
    assert section.base_combo.currentText() == f"{name} (yours)"
    widget.session.models_changed.emit("")  # a plain refresh (a stack loaded, a model added)
    assert segment.current_model().source == "user"
    section._base_name = name
    section._keep_base()
    assert segment.current_model().source == "user"
    # The bundled twin stays selectable for segmenting, by its own entry.
    twin = next(
        i for i, e in enumerate(segment._entries) if e.name == name and e.source == "bundled"
    )
    segment.model_combo.setCurrentIndex(twin)
    widget.session.models_changed.emit("")
    assert segment.current_model().source == "bundled"


def test_use_new_model_after_its_file_was_deleted(segmented, tiny_model, errors):
    """ "Use new model" on a model whose file was deleted switched Segment to the default model
    without a word (the name was no longer listed)."""
    _viewer, widget = segmented
    section = widget.finetune_section
    name = _adaptation_done(section, tiny_model, f"{tiny_model}-adapt-gone", "flip consistency up")
    (user_model_dir() / f"{name}.safetensors").unlink()
    (user_model_dir() / f"{name}.json").unlink()
    assert widget.segment_section.select_model("unet-compact")  # in use for segmenting
    section.use_new_btn.click()
    assert widget.segment_section.current_model().name == "unet-compact"
    assert errors and errors[-1].startswith(f"{name} is no longer in the model folder")
    assert not section.use_new_btn.isEnabled()


def test_a_run_stamped_in_the_same_second_gets_a_free_name(
    segmented, qtbot, tiny_model, monkeypatch
):
    """With the clock at the second of an earlier run's model (a run a moment before, a clock
    set back, a second viewer), the child failed with "out ... exists; choose a new name or pass
    overwrite=True". Now the output is numbered before the run starts and the earlier model stays."""
    import datetime as dt
    import types

    from napari_ribseg.core.training import output

    frozen = dt.datetime(2026, 12, 5, 6, 0, 0)
    clock = types.SimpleNamespace(datetime=types.SimpleNamespace(now=lambda: frozen))
    monkeypatch.setattr(output, "_dt", clock)
    _viewer, widget = segmented
    section = widget.finetune_section
    _correct(widget, range(6))
    section.select_base(tiny_model)
    section.epochs_spin.setValue(1)
    section.val_spin.setValue(0.5)
    taken = output.stamped_output(tiny_model, widget.session.image_layer.name)
    assert taken.parent == user_model_dir() and taken.name.endswith("-20261205-060000.safetensors")
    taken.parent.mkdir(parents=True, exist_ok=True)
    taken.write_bytes(b"the earlier run's model")
    assert widget.start_finetune()
    job = section.job
    assert job.out == taken.with_name(taken.stem + "-2.safetensors")
    qtbot.waitUntil(lambda: section.job is None, timeout=120_000)
    assert job.error is None and section.result is not None, section.outcome_label.text()
    assert not section.outcome_label.text().startswith("Failed")
    assert taken.read_bytes() == b"the earlier run's model"


def test_a_run_that_cannot_start_gives_its_reserved_name_back(segmented, tiny_model, monkeypatch):
    """The output's name is reserved when it is stamped (an empty '<name>.resume/' folder in
    the model folder); a run whose child could not start must not leave it there."""
    from napari_ribseg.core.errors import RibsegError
    from napari_ribseg.core.training import background

    def refuse(self):
        raise RibsegError("no child today")

    # The job's own start() gives the name back when its child cannot start; the widget gave it
    # back a second time, which could remove a reservation another viewer made in between.
    released = _count_releases(monkeypatch)
    monkeypatch.setattr(background.BackgroundFinetune, "_start", refuse)
    monkeypatch.setattr(background.BackgroundAdapt, "_start", refuse)
    _viewer, widget = segmented
    section = widget.finetune_section
    _correct(widget, range(6))
    section.select_base(tiny_model)
    assert not widget.start_finetune()
    assert section.job is None
    folder = user_model_dir()
    assert not folder.exists() or not list(folder.glob("*.resume"))
    assert len(released) == 1, released


def _count_releases(monkeypatch) -> list:
    from napari_ribseg.core.training import output

    released: list = []
    real = output.release_output

    def counted(out):
        released.append(out)
        real(out)

    monkeypatch.setattr(output, "release_output", counted)
    return released


def test_an_adaptation_that_cannot_start_gives_its_reserved_name_back(
    docked, tiny_model, monkeypatch, tmp_path
):
    from napari_ribseg.core.errors import RibsegError
    from napari_ribseg.core.training import background

    def refuse(self):
        raise RibsegError("no child today")

    released = _count_releases(monkeypatch)
    monkeypatch.setattr(background.BackgroundAdapt, "_start", refuse)
    frames = np.random.default_rng(0).random((12, 64, 64), dtype=np.float32) * 0.2
    frames[:, 20:26, 8:56] += 0.7
    np.save(tmp_path / "cine12.npy", frames.clip(0, 1))
    _viewer, widget = docked
    widget.load(str(tmp_path / "cine12.npy"))
    section = widget.finetune_section
    section.select_base(tiny_model)
    assert section.adapt_btn.isEnabled(), section.adapt_btn.toolTip()
    assert not section.start_adapt()
    assert section.job is None
    folder = user_model_dir()
    assert not folder.exists() or not list(folder.glob("*.resume"))
    assert len(released) == 1, released
