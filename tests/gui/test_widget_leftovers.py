"""Leftovers of the widget audit: undo off screen, renamed stacks, a discarded run's reason, the
closed dock's temporary files and ribs layer, and two stacks of one name."""

from __future__ import annotations

import numpy as np

from napari_ribseg.core.stack import FrameStatus


def _changed_cell(widget, frame: int) -> str:
    return widget.review_section.table.item(frame, 3).text()


def test_changed_px_follows_an_undo_of_a_frame_not_on_screen(docked, stack_file, qtbot):
    viewer, widget = docked
    image = widget.load(stack_file)
    widget.tabs.setCurrentWidget(widget.review_section)
    ribs = widget.session.labels_layer
    viewer.dims.set_current_step(0, 2)
    ribs.brush_size = 5
    ribs.paint((2, 40, 30), 1)  # a stroke on frame 2, as the brush makes it
    assert int(_changed_cell(widget, 2)) > 0
    viewer.dims.set_current_step(0, 4)
    ribs.undo()  # Ctrl-Z on frame 4 undoes the stroke on frame 2
    assert widget.session.project.changed_pixels[2] == 0
    assert _changed_cell(widget, 2) == "0"
    assert "0 pixels corrected by hand" in widget.review_section.summary_label.text()
    ribs.redo()
    painted = int(widget.session.project.changed_pixels[2])
    assert painted > 0 and _changed_cell(widget, 2) == str(painted)
    assert image.name == "clip01"


def test_the_ribs_layer_cannot_be_painted_after_the_dock_closes(docked, stack_file):
    """Strokes after the dock closed were saved nowhere: the layer was still paintable."""
    viewer, widget = docked
    widget.load(stack_file)
    ribs = widget.session.labels_layer
    assert ribs.editable
    viewer.window.remove_dock_widget(widget)
    assert widget.session.core is None
    assert ribs.editable is False
    # A dock opened again and the stack picked: paintable again, feeding that dock's review.
    _dock, again = viewer.window.add_plugin_dock_widget("napari-ribseg", "Rib Segmentation")
    combo = again.segment_section.image_combo
    combo.activated.emit(combo.findText("clip01"))
    assert again.session.labels_layer is not None
    assert again.session.labels_layer.name == "clip01 ribs" and ribs.editable is True
    again.shutdown()


def _ribs_layers(viewer) -> list:
    from napari.layers import Labels

    return [layer for layer in viewer.layers if isinstance(layer, Labels)]


def test_a_renamed_stack_keeps_its_ribs_layer_and_is_named_as_renamed(docked, stack_file, tmp_path):
    viewer, widget = docked
    image = widget.load(stack_file)
    ribs = widget.session.labels_layer
    assert widget.status_line.text() == "Reviewing 'clip01' (6 frames)."
    image.name = "patient A"
    assert ribs.name == "patient A ribs"
    assert widget.status_line.text() == "Reviewing 'patient A' (6 frames)."
    widget.set_status(1, FrameStatus.CURATED)
    combo = widget.segment_section.image_combo
    assert combo.currentText() == "patient A"
    assert widget.session.core.name == "patient A"
    # Another stack, then this one again: its own ribs layer, not a second one beside it.
    np.save(tmp_path / "other.npy", np.zeros((3, 64, 64), np.float32))
    widget.load(tmp_path / "other.npy")
    combo.activated.emit(combo.findText("patient A"))
    assert widget.session.image_layer.name == "patient A"
    assert widget.session.labels_layer.name == "patient A ribs" and ribs.editable
    assert sorted(layer.name for layer in _ribs_layers(viewer)) == ["other ribs", "patient A ribs"]
    assert "'patient A'" in widget.status_line.text()
    assert widget.session.project.statuses.tolist()[1] == FrameStatus.CURATED


def test_a_2d_image_and_a_stack_of_one_name_each_keep_their_own_ribs_layer(docked, tmp_path):
    """A stack's image deleted (its ribs layer left) and a 2-D image of the same name added: each
    pick of the image made one more ribs layer ("clip ribs [1]", "[2]", ...)."""
    viewer, widget = docked
    frames = np.random.default_rng(0).random((4, 64, 64), dtype=np.float32)
    np.save(tmp_path / "clip.npy", frames)
    stack = widget.load(tmp_path / "clip.npy")
    stack_ribs = widget.session.labels_layer
    stack_ribs.data[2, 5:9, 5:9] = 1
    kept = np.asarray(stack_ribs.data).copy()
    viewer.layers.remove(stack)
    flat = viewer.add_image(frames[0] * 0.5, name="clip")  # bound: nothing else under review
    assert flat.name == "clip" and widget.session.image_layer.name == "clip"
    flat_ribs = widget.session.labels_layer
    assert flat_ribs.ndim == 2 and not same(flat_ribs, stack_ribs)
    np.save(tmp_path / "other.npy", np.zeros((3, 64, 64), np.float32))
    other = widget.load(tmp_path / "other.npy")
    for _ in range(2):
        widget.segment_section.select_image(flat)
        assert same(widget.session.labels_layer, flat_ribs)
        widget.segment_section.select_image(other)
    assert len(_ribs_layers(viewer)) == 3, [layer.name for layer in _ribs_layers(viewer)]
    np.testing.assert_array_equal(np.asarray(stack_ribs.data), kept)
    assert stack_ribs.editable is False  # its stack is gone: nothing records strokes on it


def same(a, b) -> bool:
    from napari_ribseg._widgets._session import same_layer

    return same_layer(a, b)


def test_closing_the_dock_mid_finetune_leaves_no_temporary_files(
    segmented, qtbot, tiny_model, accept_base_predictions, tmp_path, monkeypatch
):
    """The run's temporary files (its training data, the child's error log) stayed on disk after
    the dock closed until Python collected the job, at exit at the latest."""
    import tempfile

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    viewer, widget = segmented
    accept_base_predictions(widget, tiny_model)
    section = widget.finetune_section
    section.select_base(tiny_model)
    section.epochs_spin.setValue(5000)
    section.val_spin.setValue(0.5)
    assert widget.start_finetune()
    job = section.job  # held, as anything may hold it: no garbage collection cleans up for us
    qtbot.waitUntil(job.is_alive, timeout=60_000)
    assert sorted(p.name.split("-")[1] for p in temp.iterdir()) == ["finetune", "finetune"]
    viewer.window.remove_dock_widget(widget)
    qtbot.waitUntil(lambda: not job.is_alive(), timeout=60_000)
    qtbot.waitUntil(lambda: not any(temp.iterdir()), timeout=10_000)
    assert list(temp.iterdir()) == []


def test_a_duplicated_ribs_layer_is_not_taken_for_the_stacks_own(docked, stack_file, tmp_path):
    viewer, widget = docked
    image = widget.load(stack_file)
    ribs = widget.session.labels_layer
    # As napari's "Duplicate layer" makes it: the same data and metadata, another name.
    copy = viewer.add_labels(np.asarray(ribs.data).copy(), name="my copy", metadata=ribs.metadata)
    copy.data[0, :4, :4] = 1
    viewer.layers.move(viewer.layers.index(copy), 0)  # listed before the original
    np.save(tmp_path / "other.npy", np.zeros((3, 64, 64), np.float32))
    widget.load(tmp_path / "other.npy")
    widget.segment_section.select_image(image)
    assert same(widget.session.labels_layer, ribs)
    assert int(np.asarray(copy.data)[0, :4, :4].sum()) == 16  # the copy is left as it was


def test_a_renamed_layer_without_a_file_keeps_its_review(docked, tmp_path):
    """A script's (or another plugin's) layer has no file: its review folder was named after the
    layer, so after a rename picking it again opened a new, empty review (statuses gone)."""
    viewer, widget = docked
    image = viewer.add_image(np.random.default_rng(0).random((4, 64, 64), np.float32), name="a")
    widget.set_status(1, FrameStatus.CURATED)
    folder = widget.session.project.folder
    image.name = "b"
    np.save(tmp_path / "other.npy", np.zeros((3, 64, 64), np.float32))
    widget.load(tmp_path / "other.npy")
    widget.segment_section.select_image(image)
    assert widget.session.project.folder == folder
    assert widget.session.project.statuses.tolist() == [0, 1, 0, 0]
