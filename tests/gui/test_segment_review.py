"""Load -> segment -> review and correct, driven through the docked widget."""

from __future__ import annotations

import json

import numpy as np
from app_model.types import KeyBinding

from napari_ribseg._widgets import RibSegWidget
from napari_ribseg.core.postprocess import probability_to_mask
from napari_ribseg.core.project import project_dir_for, saved_array, saved_file
from napari_ribseg.core.stack import FrameStatus


def test_dock_load_segment(docked, qtbot, tiny_model, stack_file, wait_worker):
    viewer, widget = docked
    assert isinstance(widget, RibSegWidget)
    image = widget.load(stack_file)
    assert image is not None and image.data.shape == (6, 64, 64)
    session = widget.session
    assert session.image_layer.unique_id == image.unique_id
    assert "clip01 ribs" in viewer.layers
    assert widget.load_section.frames_label.text() == "6"

    assert widget.segment_section.select_model(tiny_model)
    assert widget.segment("all") is not None
    wait_worker(widget)
    project = session.project
    assert session.has_prob.all()
    assert np.isfinite(project.confidence).all()
    expected = probability_to_mask(session.prob, 0.5)
    np.testing.assert_array_equal(project.labels, expected)
    assert viewer.layers["clip01 ribs"].data is project.labels
    table = widget.review_section.table
    assert table.rowCount() == 6
    assert table.horizontalHeaderItem(2).text() == "Uncertainty"
    assert table.item(0, 2).text() == f"{session.core.uncertainty[0]:.2f}"
    # The run was saved at once into the sidecar folder next to the data.
    sidecar = project_dir_for(stack_file)
    qtbot.waitUntil(lambda: saved_file(sidecar, "project.json").exists(), timeout=5000)
    assert json.loads(saved_file(sidecar, "project.json").read_text())["n_frames"] == 6

    # The probability map is one tick away, and "current frame" runs exactly one frame.
    widget.segment_section.show_prob_check.setChecked(True)
    assert "clip01 rib probability" in viewer.layers
    session.go_to(3)
    widget.segment_section.scope_combo.setCurrentIndex(0)
    widget.segment_section.run_btn.click()
    wait_worker(widget)
    assert widget.segment_section.progress_label.text().startswith("1 of 1 frames")

    # "Average with the mirror image" starts at the product's default and reaches the model: an
    # untrained model is lopsided, so its mirror image changes the frame's probabilities.
    from napari_ribseg.core.inference import FLIP_AVERAGE

    flip = widget.segment_section.flip_check
    assert flip.isChecked() is FLIP_AVERAGE
    before = session.prob[3].copy()
    flip.setChecked(not FLIP_AVERAGE)
    widget.segment_section.run_btn.click()
    wait_worker(widget)
    assert not np.array_equal(session.prob[3], before)
    flip.setChecked(FLIP_AVERAGE)
    widget.segment_section.run_btn.click()
    wait_worker(widget)
    np.testing.assert_array_equal(session.prob[3], before)


def test_review_shortcuts_corrections_and_protection(segmented, qtbot, wait_worker):
    viewer, widget = segmented
    session, project = widget.session, widget.session.project
    labels = viewer.layers["clip01 ribs"]

    # A correction with napari's own paint tool on frame 1 ...
    session.go_to(1)
    labels.brush_size = 3
    before = project.labels[1].copy()
    labels.selected_label = 1
    labels.paint((1, 40, 40), 1)
    painted = int(np.count_nonzero(project.labels[1] != before))
    assert painted > 0
    assert project.changed_pixels[1] == painted
    table = widget.review_section.table
    assert table.item(1, 3).text() == str(painted)
    # napari's undo and redo write into the array without a paint event; the table follows
    # (it kept showing the undone correction).
    labels.undo()
    assert table.item(1, 3).text() == "0" and project.changed_pixels[1] == 0
    labels.redo()
    assert table.item(1, 3).text() == str(painted)
    # ... and one by editing the data directly, as a script would.
    project.labels[2, 0:2, 0:5] = 1 - project.labels[2, 0:2, 0:5]
    labels.refresh()

    # Shortcuts are bound on the viewer; call them as napari would on a key press.
    keymap = viewer.keymap
    session.go_to(1)
    keymap[KeyBinding.from_str("Shift-C")](viewer)
    session.go_to(2)
    keymap[KeyBinding.from_str("Shift-C")](viewer)
    session.go_to(3)
    keymap[KeyBinding.from_str("Shift-R")](viewer)
    assert project.statuses.tolist() == [0, 1, 1, 2, 0, 0]
    table = widget.review_section.table
    assert table.item(1, 1).text() == "curated"
    assert table.item(3, 1).text() == "rejected"
    assert table.item(2, 3).text() == "10"

    session.go_to(0)
    keymap[KeyBinding.from_str("Shift-N")](viewer)
    assert session.current_frame() == 4
    keymap[KeyBinding.from_str("Shift-L")](viewer)
    todo = [0, 4, 5]
    uncertainty = session.core.uncertainty
    least = todo[int(np.argmax(uncertainty[todo]))]
    if least == 4:  # the shortcut skips the frame already shown
        least = max((f for f in todo if f != 4), key=lambda f: uncertainty[f])
    assert session.current_frame() == least

    # Live threshold: unreviewed frames follow the slider, curated and rejected ones never do.
    curated = project.labels[[1, 2, 3]].copy()
    widget.segment_section.threshold_slider.setValue(0.9)
    widget.segment_section.min_size_spin.setValue(2)
    qtbot.waitUntil(
        lambda: np.array_equal(
            project.labels[0], probability_to_mask(session.prob[0], 0.9, min_size=2)
        ),
        timeout=5000,
    )
    np.testing.assert_array_equal(project.labels[[1, 2, 3]], curated)

    # Re-running the model on every frame keeps curated and rejected frames as they were.
    widget.segment("all")
    wait_worker(widget)
    np.testing.assert_array_equal(project.labels[[1, 2, 3]], curated)
    assert project.statuses[3] == FrameStatus.REJECTED


def test_autosave_on_frame_change_and_restore(make_napari_viewer_proxy, segmented, stack_file):
    viewer, widget = segmented
    project = widget.session.project
    widget.session.go_to(0)
    project.labels[0, 5:8, 5:8] = 1 - project.labels[0, 5:8, 5:8]
    widget.viewer.layers["clip01 ribs"].refresh()
    widget.set_status(4, FrameStatus.CURATED)
    widget.session.go_to(2)  # changing frame saves
    sidecar = project_dir_for(stack_file)
    saved = saved_array(sidecar, "labels")
    np.testing.assert_array_equal(saved, project.labels)

    # Closing the widget saves too.
    widget.set_status(5, FrameStatus.REJECTED)
    project.labels[5, 0, 0] = 1 - project.labels[5, 0, 0]
    widget.close()
    assert saved_array(sidecar, "labels")[5, 0, 0] == project.labels[5, 0, 0]

    # A fresh viewer opening the same file gets the review back.
    viewer2 = make_napari_viewer_proxy()
    _dock, widget2 = viewer2.window.add_plugin_dock_widget("napari-ribseg", "Rib Segmentation")
    widget2.load(stack_file)
    restored = widget2.session.project
    np.testing.assert_array_equal(restored.labels, project.labels)
    assert restored.statuses[4] == FrameStatus.CURATED
    assert restored.statuses[5] == FrameStatus.REJECTED
    assert restored.changed_pixels[0] == 9
    assert "Restored" in widget2.load_section.project_label.text()
    assert widget2.review_section.table.item(4, 1).text() == "curated"


def test_cancel_keeps_finished_batches(docked, qtbot, tiny_model, tmp_path, wait_worker):
    viewer, widget = docked
    frames = np.random.default_rng(1).random((40, 64, 64), dtype=np.float32)
    np.save(tmp_path / "long.npy", frames)
    widget.load(tmp_path / "long.npy")
    widget.segment_section.select_model(tiny_model)
    worker = widget.segment("all")
    # Stop as soon as the first batch is reported: the rest must not run, the first is kept.
    worker.yielded.connect(
        lambda event: event.kind == "batch" and event.step > 0 and widget.segment_section.cancel()
    )
    wait_worker(widget)
    done = widget.session.has_prob
    assert 0 < done.sum() < 40
    assert "Cancelled" in widget.segment_section.progress_label.text()
    assert np.isfinite(widget.session.project.confidence[done]).all()
    assert np.isnan(widget.session.project.confidence[~done]).all()


def test_bad_file_is_an_error_notification(docked, tmp_path, errors):
    viewer, widget = docked
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"this is not a tiff")
    assert widget.load(bad) is None
    assert widget.load(tmp_path / "missing.npy") is None
    assert len(errors) == 2
    assert "broken.tif" in errors[0]
    assert len(viewer.layers) == 0
    assert widget.session.project is None


def test_chosen_project_folder_holds_the_review(docked, stack_file, tmp_path):
    _viewer, widget = docked
    widget.load_section.set_project_folder(tmp_path / "reviews")
    widget.load(stack_file)
    widget.set_status(0, FrameStatus.REJECTED)
    saved = json.loads(
        saved_file(
            project_dir_for(stack_file, root=tmp_path / "reviews"), "project.json"
        ).read_text()
    )
    assert saved["statuses"][0] == int(FrameStatus.REJECTED)
    assert not project_dir_for(stack_file).exists()


def test_sample_is_one_click_away(docked, tmp_path):
    viewer, widget = docked
    widget.load_section.sample_linear_btn.click()
    image = widget.session.image_layer
    assert image is not None and image.data.shape[0] == 24
    assert image.scale[1] != 1.0  # physical spacing is the layer scale
    assert widget.load_section.spacing_label.text().endswith("mm/pixel")
    assert f"{image.name} ribs" in viewer.layers
    # A sample has no file: its review goes to the projects folder of the settings.
    assert widget.session.project.folder.name == f"{image.name}.ribseg"

    # Clicked again after another stack: the same layer and its review come back, not a copy
    # named "... [1]" with an empty review.
    widget.set_status(3, 1)
    widget.load_sample("convex")
    assert widget.load_section.spacing_label.text().endswith("mm/pixel")
    again = widget.load_sample("linear")
    assert again.name == image.name and f"{image.name} [1]" not in viewer.layers
    assert widget.session.image_layer.name == image.name and again.visible
    assert widget.session.project.statuses[3] == 1


def test_dropped_file_is_put_under_review(docked, stack_file):
    viewer, widget = docked
    # What napari does when a file is dropped on it: open through our npe2 reader.
    viewer.open(stack_file, plugin="napari-ribseg")
    assert widget.session.image_layer is not None
    assert widget.session.image_layer.name == "clip01"
    assert "clip01 ribs" in viewer.layers
    assert widget.session.project.folder == project_dir_for(stack_file)
    assert widget.segment_section.image_combo.currentText() == "clip01"


def test_settings_survive_a_new_widget(docked, make_napari_viewer_proxy):
    _viewer, widget = docked
    device = widget.segment_section.device_combo
    device.setCurrentText("cpu")
    strategy = widget.finetune_section.strategy_combo
    strategy.setCurrentIndex(strategy.findData("decoder"))
    viewer2 = make_napari_viewer_proxy()
    _dock, widget2 = viewer2.window.add_plugin_dock_widget("napari-ribseg", "Rib Segmentation")
    assert widget2.segment_section.device_combo.currentText() == "cpu"
    assert widget2.finetune_section.strategy_combo.currentData() == "decoder"
    assert widget2.finetune_section.strategy_combo.currentText() == "decoder only"
