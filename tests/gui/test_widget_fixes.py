"""What a new user tripped over in the widget, each fixed and pinned by a test."""

from __future__ import annotations

import shutil
import warnings

import numpy as np

from napari_ribseg.core.stack import FrameStatus


def test_sample_selects_ribs_hides_and_locks_truth_in_mm(docked):
    viewer, widget = docked
    image = widget.load_sample("linear")
    ribs = viewer.layers[f"{image.name} ribs"]
    truth = viewer.layers[f"{image.name} ribs (ground truth)"]
    assert viewer.layers.selection.active is ribs or viewer.layers.selection.active == ribs
    assert truth.visible is False and truth.editable is False and bool(truth.locked)
    units = {layer.name: tuple(str(u) for u in layer.units) for layer in (image, ribs, truth)}
    assert set(units.values()) == {("pixel", "millimeter", "millimeter")}, units


def test_dock_leaves_the_canvas_most_of_the_window(docked, qtbot):
    viewer, widget = docked
    window = widget.window()
    window.resize(1226, 800)
    qtbot.wait(50)
    assert widget.maximumWidth() <= 0.4 * 1226
    assert widget.width() <= 0.4 * window.width()


def test_no_progress_text_before_a_run(docked):
    _viewer, widget = docked
    bar = widget.segment_section.progress
    assert not bar.isVisible() or bar.text() == ""
    assert "0 / 1" not in bar.text()


def test_second_stack_hides_the_first_resets_view_without_unit_warnings(docked, tmp_path):
    viewer, widget = docked
    first = np.random.default_rng(0).random((3, 64, 64), dtype=np.float32)
    np.save(tmp_path / "small.npy", first)
    widget.load(tmp_path / "small.npy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = widget.load_sample("convex")
    assert not [w for w in caught if "Inconsistent units" in str(w.message)]
    assert viewer.layers["small"].visible is False
    assert viewer.layers["small ribs"].visible is False
    assert image.visible and viewer.layers[f"{image.name} ribs"].visible
    # The view frames the new stack: its centre is the camera's centre.
    extent = image.extent.world[:, -2:]
    centre = extent.mean(axis=0)
    np.testing.assert_allclose(viewer.camera.center[-2:], centre, rtol=0.05, atol=1.0)

    widget.load_section.remove_previous = True
    widget.load(tmp_path / "small.npy")
    assert image.name not in viewer.layers


def test_cancelled_run_stays_on_segment_and_says_so(
    docked, qtbot, tiny_model, tmp_path, wait_worker
):
    viewer, widget = docked
    np.save(tmp_path / "long.npy", np.random.default_rng(1).random((40, 64, 64), dtype=np.float32))
    widget.load(tmp_path / "long.npy")
    widget.segment_section.select_model(tiny_model)
    worker = widget.segment("all")
    worker.yielded.connect(
        lambda event: event.kind == "batch" and event.step > 0 and widget.segment_section.cancel()
    )
    wait_worker(widget)
    assert widget.tabs.currentWidget() is widget.segment_section
    assert widget.status_line.text().startswith("Cancelled:")


def test_errors_give_the_reason_first_and_a_short_path(docked, tmp_path, errors):
    _viewer, widget = docked
    deep = tmp_path / "a" / "very" / "deep" / "folder"
    deep.mkdir(parents=True)
    bad = deep / "notes.xyz"
    bad.write_text("hello")
    assert widget.load(bad) is None
    message = errors[-1]
    assert message.startswith("Could not open: Unsupported format '.xyz'")
    assert str(tmp_path) not in message
    assert message.endswith("(…/folder/notes.xyz)")


def test_start_checkpoints_are_not_offered_for_segmenting(docked):
    _viewer, widget = docked
    names = [
        widget.segment_section.model_combo.itemText(i)
        for i in range(widget.segment_section.model_combo.count())
    ]
    assert "x-unet-compact" in names
    assert not any("salient" in n for n in names)


def test_a_uint16_layer_reaches_the_model_as_the_reader_reads_it(docked, tmp_path):
    """A 12-bit uint16 layer added by another reader (napari's own TIFF reader, ``add_image``)
    was divided by 65535 (16x too dark), and its review fingerprint differed from the CLI's."""
    import tifffile

    from napari_ribseg._widgets._session import frames_and_scaling
    from napari_ribseg.core.io import read_stack
    from napari_ribseg.core.project import stack_fingerprint

    viewer, widget = docked
    raw = np.random.default_rng(1).integers(0, 4096, (5, 32, 32), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "c.tif", raw, photometric="minisblack")
    layer = viewer.add_image(raw, name="c")
    frames, scaling = frames_and_scaling(layer)
    read = read_stack(tmp_path / "c.tif")
    np.testing.assert_array_equal(frames, read.frames)
    assert scaling["significant_bits"] == 12
    assert stack_fingerprint(frames) == stack_fingerprint(read.frames)


def test_loading_a_sample_draws_without_a_mixed_units_warning(docked, monkeypatch):
    """``make run`` printed "Inconsistent units across layers" twice (napari's canvas warns at a
    draw, through show_warning, not warnings.warn): the ribs layer and the outline made when the
    image was inserted were still in pixels when the truth layer was hidden."""
    import napari._vispy.canvas as canvas

    said = []
    monkeypatch.setattr(canvas, "show_warning", said.append)
    viewer, widget = docked
    widget.load_sample("linear")
    widget.load_sample("convex")
    assert not [m for m in said if "Inconsistent units" in str(m)]
    assert viewer.layers.extent.units is not None


def test_other_plugins_integer_and_float_layers_are_scaled_as_the_readers_scale_them(docked):
    """Until 2026-12-04 an int16 layer (0..4095, a signed 12-bit export through napari's own TIFF
    reader) was divided by 32767 (8x too dark) and a float layer of 0..255 reached the engine
    unscaled (refused at Segment: 'outside [0, 1]'); the readers stretch both from the stack's
    minimum to its maximum."""
    from napari_ribseg._widgets._session import frames_and_scaling
    from napari_ribseg.core.io.intensity import to_unit_frames

    viewer, widget = docked
    rng = np.random.default_rng(4)
    raw = rng.integers(0, 4096, (4, 24, 24)).astype(np.int16)
    raw[0, 0, :2] = (0, 4095)
    frames, scaling = frames_and_scaling(viewer.add_image(raw, name="i16"))
    assert scaling["method"] == "minmax" and scaling["max"] == 4095
    assert abs(float(frames.max()) - 1.0) < 1e-6 and float(frames.min()) == 0.0
    np.testing.assert_array_equal(frames, to_unit_frames(raw, "x")[0])

    grey = raw.astype(np.float64) / 4095 * 255
    frames, scaling = frames_and_scaling(viewer.add_image(grey, name="f64"))
    assert scaling["method"] == "minmax" and float(frames.max()) <= 1.0
    np.testing.assert_allclose(frames, raw / 4095, atol=1e-6)
    # uint8 as before (/ 255), and float32 in [0, 1] as it is.
    frames, _ = frames_and_scaling(viewer.add_image(raw.astype(np.uint8), name="u8"))
    np.testing.assert_allclose(frames, raw.astype(np.uint8) / 255, atol=1e-7)
    unit = (raw / 4095).astype(np.float32)
    frames, scaling = frames_and_scaling(viewer.add_image(unit, name="f32"))
    assert scaling == {"method": "none"}
    np.testing.assert_array_equal(frames, unit)


def test_a_review_of_an_int16_layer_saved_under_the_old_scaling_still_opens(docked):
    """The widget's int16 layers were divided by 32767 until 2026-12-04; a review bound to those
    frames' fingerprint opens on the frames as scaled now and is rebound at its next save."""
    from napari_ribseg._widgets._session import same_layer
    from napari_ribseg.core.project import stack_fingerprint
    from napari_ribseg.core.session import ReviewSession as CoreSession

    viewer, widget = docked
    raw = np.random.default_rng(5).integers(0, 4096, (5, 24, 24)).astype(np.int16)
    folder = widget.session.project_folder_for(viewer.add_image(raw, name="old-review"))
    viewer.layers.remove("old-review")  # released: the widget binds a stack when it is added
    shutil.rmtree(folder, ignore_errors=True)  # and starts its review: the old one stands in
    as_before = (raw.astype(np.float32) / np.float32(32767)).clip(0, 1)
    with CoreSession.for_frames(as_before, folder, source=None, name="old-review") as old:
        old.set_status([1], FrameStatus.CURATED)
    layer = viewer.add_image(raw, name="old-review")
    if not same_layer(layer, widget.session.image_layer):
        widget.session.bind_image(layer)
    assert widget.session.core.restored
    core = widget.session.core
    assert core.project.curated_frames.tolist() == [1]
    core.set_status([2], FrameStatus.CURATED)
    core.save()
    assert core.project.fingerprint == stack_fingerprint(core.frames)


def test_a_file_read_differently_keeps_its_review_and_says_so(docked, tmp_path):
    """A review saved while the reader read the same unchanged file to other frames (a reader
    rule changed since) was refused; it is restored and the status line says why."""
    from napari_ribseg.core.project import ReviewProject, project_dir_for

    _viewer, widget = docked
    frames = np.random.default_rng(2).random((3, 32, 32), dtype=np.float32)
    path = tmp_path / "clip.npy"
    np.save(path, frames)
    before = frames * np.float32(0.5)  # how an earlier reader read these bytes
    project, _ = ReviewProject.open(project_dir_for(path), 3, (32, 32), source=path, frames=before)
    project.labels[1, 4:8, 4:8] = 1
    project.save()
    project.close()
    widget.load(path)
    assert widget.session.core.restored
    assert widget.session.core.project.labels[1].sum() == 16
    assert "now reads differently" in widget.status_line.text()


def test_the_widget_binds_a_review_to_the_array_it_read_from_an_npz(docked, tmp_path):
    """The widget's review of an .npz records the array its layer was read from, as
    ``ribseg predict FILE --variable NAME --review`` does, so the review of array 'a' is not
    restored onto array 'b' of the same unchanged file and shape (it was, as a new reading of
    the same data, with a's statuses)."""
    import pytest

    from napari_ribseg.core.errors import ProjectError
    from napari_ribseg.core.io import read_stack
    from napari_ribseg.core.session import ReviewSession

    _viewer, widget = docked
    rng = np.random.default_rng(4)
    path = tmp_path / "data.npz"
    # 'a' is what the reader takes by default (the largest, ties by name); 'b' is another cine.
    np.savez(path, a=rng.random((4, 32, 32), dtype=np.float32), b=rng.random((4, 32, 32)))
    widget.load(path)
    project = widget.session.core.project
    project.set_status(1, FrameStatus.CURATED)
    assert project.save()
    assert project.source_signature["variable"] == "a"
    widget.session._release()
    with pytest.raises(ProjectError, match=r"variable 'a' of .*not to variable 'b'"):
        ReviewSession.open(read_stack(path, variable="b"))
