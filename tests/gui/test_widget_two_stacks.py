"""Two stacks in one viewer, picked back and forth in Segment -> Image (found by a workflow audit):
each review keeps its own masks, the picked stack is shown with its own outline, the mask options
shown are the ones used, and a deleted ribs layer comes back."""

from __future__ import annotations

import warnings

import numpy as np

from napari_ribseg._widgets.region import REGION_LAYER
from napari_ribseg.core.project import ReviewProject


def _two_stacks(tmp_path):
    """A full-frame clip and a clip with black margins (so its outline is a smaller box)."""
    rng = np.random.default_rng(3)
    full = rng.random((4, 64, 80), dtype=np.float32) * 0.3
    full[:, 20:26, 8:70] += 0.6
    boxed = np.zeros((4, 64, 80), np.float32)
    boxed[:, 8:56, 16:64] = rng.random((4, 48, 48), dtype=np.float32) * 0.5 + 0.2
    np.save(tmp_path / "full.npy", full.clip(0, 1))
    np.save(tmp_path / "boxed.npy", boxed)
    return tmp_path / "full.npy", tmp_path / "boxed.npy"


def _pick(widget, name: str) -> None:
    combo = widget.segment_section.image_combo
    combo.setCurrentIndex(combo.findText(name))


def test_picking_a_stack_back_keeps_its_review_and_shows_it_with_its_own_outline(
    docked, tiny_model, tmp_path, wait_worker
):
    viewer, widget = docked
    full_path, boxed_path = _two_stacks(tmp_path)
    seg = widget.segment_section
    assert seg.select_model(tiny_model)
    widget.load(full_path)
    seg.threshold_slider.setValue(0.3)
    widget.segment("all")
    wait_worker(widget)
    widget.set_status(0, 1)
    full_labels = widget.session.project.labels.copy()
    assert full_labels.any()

    widget.load(boxed_path)  # same frame size: the case where masks could cross over
    # The options on screen are the ones the new stack's masks are drawn with.
    assert widget.session.core.options.threshold == 0.3
    widget.segment("all")
    wait_worker(widget)
    boxed_labels = widget.session.project.labels.copy()
    assert not np.array_equal(full_labels, boxed_labels)
    boxed_region = viewer.layers[REGION_LAYER]
    boxed_region.data = [np.array([[10.0, 18.0], [10.0, 60.0], [50.0, 60.0], [50.0, 18.0]])]

    _pick(widget, "full")
    project = widget.session.project
    assert np.array_equal(project.labels, full_labels), "the other stack's masks crossed over"
    assert viewer.layers["full ribs"].data is project.labels
    assert viewer.layers["full"].visible and viewer.layers["full ribs"].visible
    assert not viewer.layers["boxed"].visible and not viewer.layers["boxed ribs"].visible
    assert viewer.layers.selection.active.name == "full ribs"
    # The full-frame clip's own outline (the whole frame), not the boxed clip's box.
    region = widget.segment_section.current_region()
    assert region is None or region.mask.all()
    widget.session.go_to(2)  # a frame change autosaves
    disk, _ = ReviewProject.open(project.folder, 4, (64, 80), lock=False)
    assert np.array_equal(disk.labels, full_labels) and disk.statuses.tolist() == [1, 0, 0, 0]

    # Back to the boxed clip: the outline the user drew comes back, not a fresh detection.
    _pick(widget, "boxed")
    assert np.array_equal(widget.session.project.labels, boxed_labels)
    region = widget.segment_section.current_region()
    assert region is not None and region.bbox == (10, 18, 51, 61)


def test_a_deleted_ribs_layer_comes_back_and_painting_the_old_one_changes_nothing(
    docked, tiny_model, tmp_path, wait_worker
):
    viewer, widget = docked
    full_path, boxed_path = _two_stacks(tmp_path)
    assert widget.segment_section.select_model(tiny_model)
    widget.load(full_path)
    viewer.layers.remove("full ribs")
    widget.segment("all")
    wait_worker(widget)
    assert "full ribs" in viewer.layers, "segmenting shows the masks again"
    assert viewer.layers["full ribs"].data is widget.session.project.labels
    full_labels = widget.session.project.labels.copy()

    widget.load(boxed_path)
    # The earlier stack's layer is no longer wired to a review: replacing its data changes
    # neither review.
    before = widget.session.project.labels.copy()
    viewer.layers["full ribs"].data = np.ones((4, 64, 80), np.uint8)
    assert np.array_equal(widget.session.project.labels, before)
    _pick(widget, "full")
    assert np.array_equal(widget.session.project.labels, full_labels)


def test_ellipse_outline_is_filled_as_an_ellipse_and_has_the_images_units(docked, tmp_path):
    viewer, widget = docked
    _full, boxed_path = _two_stacks(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        widget.load_sample("linear")  # in mm
        widget.load(boxed_path)
    assert not [w for w in caught if "Inconsistent units" in str(w.message)]
    region_layer = viewer.layers[REGION_LAYER]
    assert tuple(str(u) for u in region_layer.units) == ("pixel", "pixel")
    region_layer.data = []
    region_layer.add_ellipses([[32, 40], [20, 24]])  # centre (row, col), radii
    rows, cols = np.mgrid[:64, :80]
    ellipse = ((rows - 32) / 20) ** 2 + ((cols - 40) / 24) ** 2 <= 1
    region = widget.segment_section.current_region()
    assert not (region.mask & ~ellipse).any(), "the bounding box's corners are not the ellipse"
    assert region.mask.sum() >= 0.95 * ellipse.sum()


def test_closing_the_dock_releases_the_review_and_a_new_dock_can_pick_the_stack(
    make_napari_viewer_proxy, tmp_path
):
    """napari's dock x only takes the widget out of its dock (setParent(None)): the widget must
    still save, stop and let go, so a dock opened again can put the stack under review."""
    from napari_ribseg.core.project import _held_here

    viewer = make_napari_viewer_proxy()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-ribseg", "Rib Segmentation")
    full_path, _boxed = _two_stacks(tmp_path)
    widget.load(full_path)
    widget.set_status(1, 1)
    folder = widget.session.project.folder
    assert _held_here(folder)
    viewer.window.remove_dock_widget(widget)
    assert not _held_here(folder), "the closed widget still holds the review"
    assert widget.session.core is None

    _dock, again = viewer.window.add_plugin_dock_widget("napari-ribseg", "Rib Segmentation")
    combo = again.segment_section.image_combo
    combo.activated.emit(combo.findText("full"))  # a pick of the entry already shown
    assert again.session.project is not None
    assert again.session.project.statuses.tolist() == [0, 1, 0, 0]
    # The old widget reacts to nothing any more: a new layer does not bind it again.
    viewer.add_image(np.zeros((2, 64, 80), np.float32), name="later")
    assert widget.session.core is None


def test_picking_the_stack_under_review_again_shows_its_hidden_layers(segmented, errors, tmp_path):
    """A load whose stack cannot be reviewed leaves the stack under review on screen (it hid its
    layers until 2026-12-05); layers hidden by hand: picking it again in Segment -> Image bound
    nothing new and showed nothing."""
    from napari_ribseg.core.stack import Stack

    viewer, widget = segmented
    seg = widget.segment_section
    seg.show_prob_check.setChecked(True)
    image, ribs, prob = (
        viewer.layers[n] for n in ("clip01", "clip01 ribs", "clip01 rib probability")
    )
    bad = np.zeros((3, 64, 64), np.float32)
    bad[1, 5, 5] = np.nan
    widget.load_section.add_stack(Stack(bad, source=tmp_path / "broken.npy"))
    assert errors and "Cannot review 'broken'" in errors[-1]
    assert _same(widget.session.image_layer, image)  # still the one under review ...
    assert image.visible and ribs.visible and prob.visible  # ... on screen, not under the new one
    assert not viewer.layers["broken"].visible
    assert _same(viewer.layers.selection.active, prob)  # selected before the load, as it was
    image.visible = ribs.visible = prob.visible = False  # hidden by hand (the eyes)
    viewer.layers.selection.active = viewer.layers["broken"]
    combo = seg.image_combo
    combo.activated.emit(combo.findText("clip01"))  # the user picks it again
    assert image.visible and ribs.visible and prob.visible
    assert not viewer.layers["broken"].visible
    assert _same(viewer.layers.selection.active, ribs)
    # Hidden by hand (the eye in the layer list), shown again the same way.
    ribs.visible = prob.visible = False
    widget.segment_section.select_image(image)
    assert ribs.visible and prob.visible
    assert _same(widget.session.labels_layer, ribs) and ribs.editable


def _same(a, b) -> bool:
    return a is b or getattr(a, "unique_id", 0) == getattr(b, "unique_id", 1)
