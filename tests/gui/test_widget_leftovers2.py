"""Second round of widget leftovers: a brush across frames, an undo back to the saved count, a
duplicated ribs layer, a script's pick of a stack and a Re-segment with nothing to do."""

from __future__ import annotations

import copy

import numpy as np

from napari_ribseg.core.project import ReviewProject
from napari_ribseg.core.stack import FrameStatus


def _changed_cell(widget, frame: int) -> str:
    return widget.review_section.table.item(frame, 3).text()


def _same(a, b) -> bool:
    return a is b or getattr(a, "unique_id", 0) == getattr(b, "unique_id", 1)


def test_a_brush_across_frames_marks_every_frame_it_changed(docked, stack_file):
    """napari's brush with n_edit_dimensions = 3 paints a ball through several frames: only the
    frame on screen was recounted ("Changed px" 0 on the others) and counted as edited."""
    viewer, widget = docked
    widget.load(stack_file)
    widget.tabs.setCurrentWidget(widget.review_section)
    ribs = widget.session.labels_layer
    viewer.dims.set_current_step(0, 2)
    ribs.n_edit_dimensions = 3
    ribs.brush_size = 5
    ribs.paint((2, 40, 30), 1)
    changed = widget.session.project.changed_pixels
    touched = np.flatnonzero(changed).tolist()
    assert touched == [0, 1, 2, 3, 4]  # a ball of diameter 5 around frame 2
    for frame in touched:
        assert _changed_cell(widget, frame) == str(int(changed[frame]))
    assert f"{int(changed.sum())} pixels corrected by hand" in (
        widget.review_section.summary_label.text()
    )
    # An undo from another frame takes every frame of the stroke back, and their rows follow.
    viewer.dims.set_current_step(0, 5)
    ribs.undo()
    assert [_changed_cell(widget, f) for f in touched] == ["0"] * 5


def test_an_undo_back_to_the_saved_count_is_saved(docked, stack_file):
    """A save ran only when a changed-pixel count moved: two undos that land on other pixels
    with the count last saved left the review on disk different from the screen."""
    viewer, widget = docked
    widget.load(stack_file)
    ribs = widget.session.labels_layer
    project = widget.session.project
    viewer.dims.set_current_step(0, 2)
    ribs.brush_size = 5
    ribs.paint((2, 40, 20), 1)  # A
    first = np.asarray(ribs.data[2]).copy()
    ribs.paint((2, 40, 20), 0)  # A erased
    ribs.paint((2, 40, 44), 1)  # B, the same disc elsewhere
    assert project.changed_pixels[2] == int(first.sum()) > 0
    assert widget.save_project()
    ribs.undo()
    ribs.undo()  # back to A: the same count as saved, other pixels
    np.testing.assert_array_equal(project.labels[2], first)
    assert widget.save_project()
    on_disk = ReviewProject.load(project.folder)
    np.testing.assert_array_equal(on_disk.labels, project.labels)


def test_a_duplicate_of_a_deleted_ribs_layer_is_left_alone(docked, stack_file):
    """With the stack's ribs layer deleted and a napari duplicate of it kept, picking the stack
    took the duplicate over and wrote the review's labels into it."""
    viewer, widget = docked
    image = widget.load(stack_file)
    ribs = widget.session.labels_layer
    viewer.dims.set_current_step(0, 1)
    ribs.brush_size = 5
    ribs.paint((1, 40, 30), 1)
    # As napari's "Duplicate layer" makes it: its data and state deep-copied, named "... copy".
    data, state, kind = ribs.as_layer_data_tuple()
    state = copy.deepcopy(state)
    state["name"] = f"{ribs.name} copy"
    duplicate = viewer.add_labels(copy.deepcopy(np.asarray(data)), **state)
    duplicate.data[3, :4, :4] = 1  # the user's experiment
    mine = np.asarray(duplicate.data).copy()
    viewer.layers.remove(ribs)
    widget.segment_section.select_image(image)
    ribs_now = widget.session.labels_layer
    assert ribs_now is not None and not _same(ribs_now, duplicate)
    assert ribs_now.name == "clip01 ribs"
    assert int(np.asarray(ribs_now.data)[3].sum()) == 0  # the review's labels, not the copy's
    assert int(np.asarray(ribs_now.data)[1].sum()) > 0
    np.testing.assert_array_equal(np.asarray(duplicate.data), mine)
    assert duplicate.name == "clip01 ribs copy"
    # A stroke on the duplicate stays out of the review.
    duplicate.data[0, :2, :2] = 1
    assert int(widget.session.project.labels[0].sum()) == 0


def test_a_scripts_pick_shows_only_that_stack(docked, stack_file, tmp_path):
    """select_image(layer) bound the stack but left the other stack's layers on screen."""
    viewer, widget = docked
    first = widget.load(stack_file)
    np.save(tmp_path / "other.npy", np.zeros((3, 64, 64), np.float32))
    second = widget.load(tmp_path / "other.npy")
    second_ribs = widget.session.labels_layer
    assert not first.visible and second.visible
    assert widget.segment_section.select_image(first)
    assert first.visible and widget.session.labels_layer.visible
    assert not second.visible and not second_ribs.visible
    assert _same(viewer.layers.selection.active, widget.session.labels_layer)
    assert widget.segment_section.image_combo.currentText() == "clip01"


def test_a_resegment_with_nothing_to_do_says_so_in_the_status_line(segmented, qtbot):
    """After a Re-segment that had nothing to run on, the status line still announced the
    previous run ("6 of 6 frames segmented with ...")."""
    _viewer, widget = segmented
    assert widget.status_line.text().startswith("6 of 6 frames segmented with tiny-test")
    widget.session.core.set_status(list(range(6)), FrameStatus.CURATED)
    widget.save_project()
    widget.finetune_section.resegment_requested.emit()
    assert widget.segment_section.worker is None
    text = widget.status_line.text()
    assert text.startswith("Nothing to segment: no unreviewed frame (6 curated)"), text
    assert "segmented with" not in text


def test_a_fill_across_frames_is_counted_on_every_frame_and_undone_at_once(docked, stack_file):
    """The fill bucket with n_edit_dimensions = 3 floods every frame the background connects:
    the accidental wipe of a whole stack shows in every row and one Ctrl-Z takes it back."""
    viewer, widget = docked
    widget.load(stack_file)
    widget.tabs.setCurrentWidget(widget.review_section)
    ribs = widget.session.labels_layer
    viewer.dims.set_current_step(0, 1)
    ribs.n_edit_dimensions = 3
    ribs.fill((1, 10, 10), 1)
    assert [_changed_cell(widget, f) for f in range(6)] == [str(64 * 64)] * 6
    assert widget.session.core.frames_for("unreviewed").size == 0  # all kept from the model
    ribs.undo()
    assert [_changed_cell(widget, f) for f in range(6)] == ["0"] * 6


def test_a_stroke_on_a_duplicated_ribs_layer_says_it_is_not_reviewed(docked, stack_file, infos):
    """Strokes on a napari duplicate of the ribs layer were ignored without a word."""
    viewer, widget = docked
    widget.load(stack_file)
    ribs = widget.session.labels_layer
    # As napari's "Duplicate layer" makes it: its data and state deep-copied, named "... copy".
    data, state, _kind = ribs.as_layer_data_tuple()
    state = copy.deepcopy(state)
    state["name"] = f"{ribs.name} copy"
    duplicate = viewer.add_labels(copy.deepcopy(np.asarray(data)), **state)
    viewer.dims.set_current_step(0, 2)
    ribs.brush_size = duplicate.brush_size = 5
    ribs.paint((2, 40, 30), 1)  # on the review's own layer: nothing to say
    assert not [m for m in infos if "not part of the review" in m]
    duplicate.paint((2, 20, 30), 1)
    duplicate.paint((2, 50, 30), 1)
    told = [m for m in infos if "not part of the review" in m]
    expected = (
        "Strokes on 'clip01 ribs copy' are not part of the review: it is a copy of a ribs layer "
        "(napari's Duplicate Layer), yours to keep; corrections of 'clip01' go on 'clip01 ribs'."
    )
    assert told == [expected]
    labels = widget.session.project.labels[2]
    assert int(labels[20].sum()) == 0 and int(labels[40].sum()) > 0  # the copy's strokes stay out
    assert _same(widget.session.labels_layer, ribs)
