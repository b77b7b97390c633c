"""Leftovers of the widget audit: undo off screen, renamed stacks, a discarded run's reason, the
closed dock's temporary files and ribs layer, and two stacks of one name."""

from __future__ import annotations


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
