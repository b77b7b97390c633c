"""User-visible bugs found by an audit of the dock widget's bindings (2026-12-04)."""

from __future__ import annotations

import numpy as np


def _stack(path, n=4, shape=(64, 64), seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.random((n, *shape), dtype=np.float32) * 0.3
    frames[:, 20:26, 8:56] += 0.6
    np.save(path, frames.clip(0, 1))
    return path


def _pick(widget, name: str) -> None:
    combo = widget.segment_section.image_combo
    combo.setCurrentIndex(combo.findText(name))


def test_a_single_2d_image_is_reviewed_painted_and_shown_with_its_probabilities(
    docked, tiny_model, wait_worker, errors
):
    """A 2-D image (one frame) raised "units ... must have length ndim=3" when its 3-D ribs
    layer was added with the image's 2-D scale, and left the review without a ribs layer."""
    viewer, widget = docked
    rng = np.random.default_rng(0)
    image = (rng.random((64, 64)) * 0.3).astype(np.float32)
    image[20:26, 8:56] += 0.6
    viewer.add_image(image, name="single")  # dropped or added from a script
    session = widget.session
    assert session.image_layer.name == "single" and session.n_frames == 1
    ribs = viewer.layers["single ribs"]
    assert ribs.ndim == 2 and np.shares_memory(ribs.data, session.project.labels)
    assert widget.segment_section.select_model(tiny_model)
    widget.segment_section.show_prob_check.setChecked(True)
    widget.segment("all")
    wait_worker(widget)
    assert session.has_prob.tolist() == [True]
    assert viewer.layers["single rib probability"].ndim == 2
    before = session.project.labels[0].copy()
    ribs.brush_size = 5
    ribs.selected_label = 1
    ribs.paint((50, 50), 1)  # the paint tool writes into the review
    assert (
        session.project.changed_pixels[0]
        == np.count_nonzero(session.project.labels[0] != before)
        > 0
    )
    widget.set_status(0, 1)
    assert widget.review_section.table.item(0, 1).text() == "curated"
    assert errors == []


def test_a_stack_whose_review_cannot_open_leaves_no_half_bound_review(docked, tmp_path, errors):
    """After a failed bind the widget kept showing the previous stack's table and status line,
    Segment stayed enabled (then said "Nothing to segment"), Shift-C did nothing, and picking the
    previous stack back did nothing: it still counted as the one under review. Since 2026-12-05
    the previous review is let go only once the new one opened: a failed bind leaves it under
    review, whole (its table, status line and Segment button), and its review still saves."""
    viewer, widget = docked
    a = _stack(tmp_path / "a.npy")
    blocked = tmp_path / "b"
    blocked.mkdir()
    b = _stack(blocked / "b.npy", seed=1)
    (blocked / "b.npy.ribseg").write_text("a file where the review folder would go")
    widget.load(a)
    widget.set_status(0, 1)
    status = widget.status_line.text()
    widget.load(b)
    assert len(errors) == 1 and errors[0].startswith("Cannot review 'b'")
    session = widget.session
    assert session.image_layer.name == "a" and session.core is not None
    assert widget.review_section.table.rowCount() == 4
    assert widget.status_line.text() == status
    assert widget.segment_section.run_btn.isEnabled()
    assert widget.segment_section.image_combo.currentText() == "a"

    _pick(widget, "a")  # a pick of it changes nothing
    assert session.image_layer.name == "a"
    assert session.project.statuses.tolist() == [1, 0, 0, 0]
    assert viewer.layers["a ribs"].data is session.project.labels
    assert widget.review_section.table.item(0, 1).text() == "curated"


def test_a_left_stacks_probability_map_is_not_offered_as_a_stack(segmented, tmp_path):
    """Once another stack was loaded, the first one's "<name> rib probability" layer was listed in
    Segment -> Image; picking it started a review of the probability map as if it were a scan."""
    viewer, widget = segmented
    widget.segment_section.show_prob_check.setChecked(True)
    assert "clip01 rib probability" in viewer.layers
    widget.load(_stack(tmp_path / "b.npy", seed=1))
    combo = widget.segment_section.image_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["clip01", "b"]


def test_a_review_that_cannot_be_saved_says_so_and_says_when_its_changes_are_dropped(
    docked, tmp_path, errors
):
    """A failed save was notified once ("Your labels stay in the viewer") while the status line
    kept "Review saved at ..."; loading another stack then dropped the unsaved statuses and edits
    without a word, and picking the stack back showed the last save."""
    import shutil

    viewer, widget = docked
    a = _stack(tmp_path / "a.npy")
    widget.load(a)
    widget.set_status(2, 1)  # saved
    assert "Review saved at" in widget.status_line.text()
    folder = widget.session.project.folder
    shutil.rmtree(folder)
    folder.write_text("the review folder became unwritable")
    widget.set_status(0, 1)
    widget.set_status(1, 2)
    assert len(errors) == 1 and errors[0].startswith("Could not save the review")
    assert "Review NOT saved" in widget.status_line.text()
    assert "Review saved at" not in widget.status_line.text()

    widget.load(_stack(tmp_path / "b.npy", seed=1))
    assert len(errors) == 2, "leaving the review dropped its unsaved changes silently"
    assert errors[1].startswith("The review of 'a' could not be saved")
    assert "not kept" in errors[1]


def test_an_rgb_layer_given_to_select_image_is_refused_with_a_reason(docked, tmp_path, errors):
    """Segment -> Image never lists RGB layers, but select_image (the scripts' door, and the Load
    section's) took an (H, W, 3) layer for H frames of W x 3 pixels: napari raised a units error
    while adding a ribs layer, and the review already opened stayed half made."""
    viewer, widget = docked
    widget.load(_stack(tmp_path / "a.npy"))
    widget.set_status(1, 1)
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    layer = viewer.add_image(rgb, name="colour", rgb=True)
    assert widget.segment_section.select_image(layer) is False
    assert len(errors) == 1 and errors[0].startswith(
        "Cannot review 'colour': Layer 'colour' is an RGB"
    )
    assert "colour ribs" not in viewer.layers
    # The stack under review stays under review.
    assert widget.session.image_layer.name == "a"
    assert widget.session.project.statuses.tolist() == [0, 1, 0, 0]


def test_review_keys_act_only_on_a_frame_of_the_stack_that_is_on_screen(
    docked, tmp_path, tiny_model, monkeypatch
):
    """A longer stack, hidden, keeps napari's frame slider range: on frame 6 of an 8-frame range
    a 4-frame stack shows nothing, yet Shift-C curated (Revert reverted, Segment "Current frame"
    ran on) its last frame, 3, which the user never saw."""
    from napari.utils.key_bindings import KeyBinding

    import napari_ribseg._widgets.review as review
    import napari_ribseg._widgets.segment as segment

    infos: list[str] = []
    monkeypatch.setattr(review, "notify_info", infos.append)
    monkeypatch.setattr(segment, "notify_info", infos.append)
    viewer, widget = docked
    widget.load(_stack(tmp_path / "long.npy", n=8))
    widget.load(_stack(tmp_path / "short.npy", n=4, seed=1))
    project = widget.session.project
    project.labels[3, :2, :2] = 1  # a hand edit on the short stack's last frame
    viewer.dims.set_current_step(0, 6)
    viewer.keymap[KeyBinding.from_str("Shift-C")](viewer)
    viewer.keymap[KeyBinding.from_str("Shift-R")](viewer)
    widget.review_section.revert_btn.click()
    assert widget.segment_section.select_model(tiny_model)
    assert widget.segment("current") is None
    assert project.statuses.tolist() == [0, 0, 0, 0]
    assert project.changed_pixels[3] == 4
    message = "Frame 6 is not part of 'short' (4 frames): move the slider onto one of its frames."
    assert infos == [message, message, message, "Nothing to segment: " + message]

    viewer.dims.set_current_step(0, 2)  # a frame of the stack: the keys work as before
    viewer.keymap[KeyBinding.from_str("Shift-C")](viewer)
    assert project.statuses.tolist() == [0, 0, 1, 0]


def test_a_ribs_layer_left_by_a_deleted_stack_takes_the_new_stacks_scale(docked, tmp_path, errors):
    """A stack given in mm (Imaging depth) was deleted; another stack loaded under the same name
    got the old '<name> ribs' layer back with the old scale (0.625 mm per pixel) over an image in
    pixels: the masks were drawn at 0.625 of their size and every stroke landed on other pixels."""
    viewer, widget = docked
    widget.load(_stack(tmp_path / "a.npy", n=4))
    assert widget.load_section.depth_control.apply_depth(40) is not None
    assert tuple(viewer.layers["a ribs"].scale) == (1.0, 0.625, 0.625)
    viewer.layers.remove("a")
    (tmp_path / "other").mkdir()
    widget.load(_stack(tmp_path / "other" / "a.npy", n=6, shape=(80, 96), seed=3))
    image, ribs = viewer.layers["a"], viewer.layers["a ribs"]
    assert ribs.data is widget.session.project.labels and ribs.data.shape == (6, 80, 96)
    assert tuple(ribs.scale) == tuple(image.scale) == (1.0, 1.0, 1.0)
    assert tuple(ribs.translate) == tuple(image.translate)
    assert tuple(str(u) for u in ribs.units) == tuple(str(u) for u in image.units)
    # A stroke at the image's pixel (row 50, col 70) of frame 5 lands on that pixel of the review.
    ribs.brush_size = 1
    ribs.selected_label = 1
    ribs.paint(ribs.world_to_data(image.data_to_world((5, 50, 70))), 1)
    assert widget.session.project.labels[5, 50, 70] == 1
    assert errors == []


def test_the_brush_always_paints_ribs(docked, tmp_path):
    """napari's "new label" key (M) or the label spin box chose label 2: strokes with it were drawn
    transparent (the rib colour map knows label 1 only), counted as changed pixels, and were not
    ribs for training (rib = label 1): painting a rib erased it, unseen."""
    viewer, widget = docked
    widget.load(_stack(tmp_path / "a.npy"))
    ribs = viewer.layers["a ribs"]
    ribs.selected_label = 2
    assert ribs.selected_label == 1
    ribs.brush_size = 1
    ribs.paint((1, 40, 40), ribs.selected_label)
    assert widget.session.project.labels[1, 40, 40] == 1
    assert ribs.colormap.map(np.array([ribs.selected_label]))[0, 3] == 1.0  # drawn opaque
    ribs.selected_label = 0  # background (erasing) stays possible
    assert ribs.selected_label == 0


def test_the_resegment_button_counts_the_unreviewed_frames_of_the_stack_under_review(
    segmented, tmp_path
):
    """ "Re-segment N unreviewed frames" was counted once, when the fine-tune ended: curating more
    frames or picking another stack left N as it was, though the button runs on the stack under
    review and its unreviewed frames now."""
    from types import SimpleNamespace

    viewer, widget = segmented  # clip01: 6 frames
    section = widget.finetune_section
    for frame in (0, 1):
        widget.set_status(frame, 1)
    section._base_name = "tiny-test"
    section._show_outcome(  # as a fine-tune that found nothing better reports
        SimpleNamespace(val_ids=["a"], checkpoint=None, gate=None, best_val_dice=0.1,
                        base_val_dice=0.2, reason="no gain", stopped=False)
    )  # fmt: skip
    assert section.resegment_btn.text() == "Re-segment 4 unreviewed frames"
    widget.set_status(2, 1)
    assert section.resegment_btn.text() == "Re-segment 3 unreviewed frames"
    widget.load(_stack(tmp_path / "b.npy", n=8, seed=1))
    assert section.resegment_btn.text() == "Re-segment 8 unreviewed frames"


def test_a_ribs_layer_whose_review_was_let_go_cannot_be_painted(docked, tmp_path):
    """After its image was deleted (or another stack was loaded) a stack's ribs layer stayed
    paintable though no review recorded it: strokes were saved nowhere, and picking or loading the
    stack again replaced them with the saved review, without a word."""
    viewer, widget = docked
    a = _stack(tmp_path / "a.npy")
    widget.load(a)
    widget.load(_stack(tmp_path / "b.npy", seed=1))
    assert not viewer.layers["a ribs"].editable and viewer.layers["b ribs"].editable
    _pick(widget, "a")
    assert viewer.layers["a ribs"].editable and not viewer.layers["b ribs"].editable
    assert viewer.layers["a ribs"].data is widget.session.project.labels

    viewer.layers.remove("a")
    assert widget.session.core is None
    assert not viewer.layers["a ribs"].editable
    widget.load(a)  # the stack again: its ribs layer is the review's and paintable again
    assert viewer.layers["a ribs"].editable
    assert viewer.layers["a ribs"].data is widget.session.project.labels


def test_show_probability_map_shows_the_map_of_the_stack_under_review(
    segmented, tmp_path, tiny_model, wait_worker
):
    """With "Show probability map" ticked, picking a stack back (or reopening one whose review has
    probabilities) showed no map though the box stayed ticked; untick and tick again added a
    second "<name> rib probability [1]" layer beside the hidden first."""
    viewer, widget = segmented  # clip01, segmented
    check = widget.segment_section.show_prob_check
    check.setChecked(True)
    widget.load(_stack(tmp_path / "b.npy", seed=1))
    widget.segment("all")
    wait_worker(widget)
    assert viewer.layers["b rib probability"].visible
    _pick(widget, "clip01")
    maps = [x.name for x in viewer.layers if "probability" in x.name]
    assert maps == ["clip01 rib probability", "b rib probability"]
    shown = viewer.layers["clip01 rib probability"]
    assert shown.visible and not viewer.layers["b rib probability"].visible
    np.testing.assert_array_equal(shown.data, widget.session.prob)
    check.setChecked(False)
    check.setChecked(True)
    assert sorted(x.name for x in viewer.layers if "probability" in x.name) == sorted(maps)


def test_review_keys_with_no_stack_under_review_say_so(docked, monkeypatch):
    """Shift-C/R/N/L (and Revert) with no stack under review did nothing, without a word."""
    from napari.utils.key_bindings import KeyBinding

    import napari_ribseg._widgets.review as review

    infos: list[str] = []
    monkeypatch.setattr(review, "notify_info", infos.append)
    viewer, widget = docked
    assert widget.session.project is None
    for key in ("Shift-C", "Shift-R", "Shift-N", "Shift-L"):
        viewer.keymap[KeyBinding.from_str(key)](viewer)
    widget.review_section.revert_frame()
    assert infos == [review.NO_STACK] * 5
    assert "No stack under review" in review.NO_STACK
