"""Start paths of the dock widget (a bind, a run, a model listing) when the core or the system
raises an ``OSError`` or a ``ValueError``: only ``RibsegError`` was caught, so a full disk or an
unreadable folder ended as a traceback in napari's console and nothing in the widget."""

from __future__ import annotations

import errno
import logging

import numpy as np
import pytest
from qtpy.QtWidgets import QApplication

from napari_ribseg.core.stack import FrameStatus


def _stack(path, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.random((4, 64, 64), dtype=np.float32) * 0.3
    frames[:, 20:26, 8:56] += 0.6
    np.save(path, frames.clip(0, 1))
    return path


def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", "/data/reviews/clip.ribseg")


def test_a_full_disk_while_opening_a_review_is_shown_and_logged(
    docked, tmp_path, errors, monkeypatch, caplog
):
    from napari_ribseg.core.project import ReviewProject

    viewer, widget = docked
    monkeypatch.setattr(ReviewProject, "open", _disk_full)
    with caplog.at_level(logging.WARNING, logger="napari_ribseg._widgets._session"):
        assert widget.load(_stack(tmp_path / "a.npy")) is not None  # the stack is shown ...
    # ... and why it is not under review, naming the folder and the cause, once (its load binds
    # it twice: as inserted, nothing being under review, and as the load's pick).
    assert errors == ["Cannot review 'a': /data/reviews/clip.ribseg: No space left on device"]
    assert widget.session.core is None
    # Maybe not the user's doing: the traceback is kept in the log, not only the line shown.
    assert [r.exc_info[0] for r in caplog.records] == [OSError]


def test_a_bug_in_a_start_path_is_not_turned_into_a_message(docked, tmp_path, errors, monkeypatch):
    from napari_ribseg.core.project import ReviewProject

    def bug(*_args, **_kwargs):
        raise TypeError("open() got an unexpected keyword argument")

    _viewer, widget = docked
    monkeypatch.setattr(ReviewProject, "open", bug)
    with pytest.raises(TypeError):
        widget.segment_section.select_image(
            widget.session.viewer.add_image(np.zeros((2, 64, 64), np.float32), name="x")
        )


def test_a_finetune_that_cannot_start_for_a_system_reason_says_why(
    segmented, errors, monkeypatch, tiny_model
):
    from napari_ribseg.core.training import BackgroundFinetune

    _viewer, widget = segmented
    widget.set_status(0, FrameStatus.CURATED)
    widget.set_status(1, FrameStatus.CURATED)
    section = widget.finetune_section
    section.select_base(tiny_model)
    assert section.start_blocker() == ""
    monkeypatch.setattr(BackgroundFinetune, "start", _disk_full)
    assert widget.start_finetune() is False
    assert errors == [
        "Fine-tuning cannot start: /data/reviews/clip.ribseg: No space left on device"
    ]
    assert section.outcome_label.text() == errors[0]
    assert section.job is None and section.start_btn.isEnabled()


def test_a_bad_value_from_the_model_registry_is_shown(docked, errors, monkeypatch):
    import napari_ribseg.core.models as models

    def bad(*_args, **_kwargs):
        raise ValueError("model card 'x.json': widths must be positive")

    _viewer, widget = docked
    monkeypatch.setattr(models, "list_models", bad)
    widget.segment_section.refresh_models()
    assert errors == ["Could not list models: Model card 'x.json': widths must be positive"]
    assert widget.segment_section.current_model() is None


def _blocked_stack(tmp_path):
    """A stack whose review cannot open: a file sits where its review folder would go."""
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    path = _stack(blocked / "b.npy", seed=1)
    (blocked / "b.npy.ribseg").write_text("a file where the review folder would go")
    return path


@pytest.mark.parametrize("remove_previous", [False, True])
def test_a_load_that_cannot_be_reviewed_leaves_the_stack_under_review_on_screen(
    docked, tmp_path, errors, remove_previous
):
    """The load hid (or removed) the previous stack's layers before the new stack was bound; when
    the bind failed the user was left with the old stack hidden, released, and nothing new."""
    viewer, widget = docked
    widget.load_section.remove_previous = remove_previous
    widget.load(_stack(tmp_path / "a.npy"))
    widget.set_status(0, FrameStatus.CURATED)
    image, ribs = viewer.layers["a"], viewer.layers["a ribs"]
    status = widget.status_line.text()
    assert status.startswith("Review saved at")

    widget.load(_blocked_stack(tmp_path))
    assert len(errors) == 1 and errors[0].startswith("Cannot review 'b'")
    # Still under review, on screen, its ribs layer selected for the next stroke.
    assert image in viewer.layers and ribs in viewer.layers
    assert image.visible and ribs.visible
    assert _same(viewer.layers.selection.active, ribs)
    session = widget.session
    assert _same(session.image_layer, image) and _same(session.labels_layer, ribs)
    assert ribs.data is session.project.labels and ribs.editable
    assert session.project.statuses.tolist() == [1, 0, 0, 0]
    assert widget.segment_section.image_combo.currentText() == "a"
    assert widget.status_line.text() == status
    assert widget.review_section.table.item(0, 1).text() == "curated"
    # The stack that could not be reviewed is kept, hidden, for a later pick.
    assert not viewer.layers["b"].visible
    widget.set_status(1, FrameStatus.REJECTED)  # the review still records what is done
    assert session.project.statuses.tolist() == [1, 2, 0, 0]


def _same(a, b) -> bool:
    return a is b or getattr(a, "unique_id", 0) == getattr(b, "unique_id", 1)


def test_a_second_layer_of_the_same_file_takes_over_its_review(docked, tmp_path, errors):
    """One file, one review folder, one lock: the review under review is let go before the same
    folder opens for the second layer (opening first would find it locked by this viewer)."""
    viewer, widget = docked
    path = _stack(tmp_path / "a.npy")
    widget.load(path)
    widget.set_status(2, FrameStatus.CURATED)
    second = widget.load(path)
    assert errors == []
    assert _same(widget.session.image_layer, second)
    assert widget.session.project.statuses.tolist() == [0, 0, 1, 0]
    assert not viewer.layers["a"].visible and second.visible


def test_a_pick_in_the_image_picker_shows_the_stack_once(docked, tmp_path, qtbot):
    """A pick by the user emits the picker's currentIndexChanged and then its activated: both
    bound the stack and showed it (other layers hidden, outline found, view reset) twice."""
    from qtpy.QtCore import Qt

    viewer, widget = docked
    widget.load(_stack(tmp_path / "a.npy"))
    widget.load(_stack(tmp_path / "b.npy", seed=1))
    shown = []
    widget.segment_section.image_chosen.connect(lambda layer: shown.append(layer.name))
    combo = widget.segment_section.image_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["a", "b"]
    assert combo.currentText() == "b"
    combo.setFocus()
    qtbot.keyClick(combo, Qt.Key.Key_Up)  # as a user picks: the key, not setCurrentIndex
    assert combo.currentText() == "a" and widget.session.image_layer.name == "a"
    assert shown == ["a"]
    assert viewer.layers["a"].visible and not viewer.layers["b"].visible
    # A pick of the entry already shown (activated alone) still shows it, once.
    viewer.layers["a"].visible = False
    combo.activated.emit(combo.currentIndex())
    assert shown == ["a", "a"] and viewer.layers["a"].visible
    # A pick made by a script (currentIndexChanged alone), once too.
    combo.setCurrentIndex(combo.findText("b"))
    assert shown == ["a", "a", "b"]


def test_loading_a_sample_already_loaded_shows_it_once(docked, monkeypatch):
    """The sample already in the viewer was shown by the pick its load makes and then again."""
    _viewer, widget = docked
    section = widget.load_section
    image = section.load_sample("linear")
    shown = []
    show_region = section._show_region
    monkeypatch.setattr(section, "_show_region", lambda layer: shown.append(show_region(layer)))
    assert _same(section.load_sample("linear"), image)
    assert len(shown) == 1


def test_the_stack_under_review_renamed_takes_over_its_latest_edits(docked, tmp_path, errors):
    """The new review opens before the previous one is let go; the stack's file renamed on disk
    and opened again takes its review over from disk, so the previous review is saved first,
    edits not yet saved included."""
    import shutil

    viewer, widget = docked
    path = _stack(tmp_path / "a.npy")
    widget.load(path)
    project = widget.session.project
    project.labels[1, 10:20, 10:20] = 1  # a stroke not saved yet (no change of frame)
    project.mark_labels_changed([1])
    edited = project.labels.copy()
    renamed = shutil.move(path, tmp_path / "renamed.npy")
    widget.load(renamed)
    assert errors == []
    assert widget.session.image_layer.name == "renamed"
    assert widget.session.project.adopted_from is not None
    assert np.array_equal(widget.session.project.labels, edited)


def test_a_stack_refused_again_by_a_later_pick_says_so_again(docked, tmp_path, errors):
    """One notification per refusal, not one per load: the user's next pick is told again."""
    _viewer, widget = docked
    widget.load(_blocked_stack(tmp_path))
    assert len(errors) == 1 and errors[0].startswith("Cannot review 'b'")
    QApplication.processEvents()  # the user's next action comes in a later turn of the loop
    combo = widget.segment_section.image_combo
    combo.activated.emit(combo.findText("b"))
    assert len(errors) == 2 and errors[1] == errors[0]
