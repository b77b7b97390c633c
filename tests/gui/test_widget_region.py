"""The imaged region in the dock: shown as a Shapes layer on load, edits change what the model sees."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from napari_ribseg._widgets.region import REGION_LAYER

# The synthetic fan cine (speckle, margins, text, ruler, logo) of the core tests, loaded by path:
# both test files are called test_region.py, so a plain import would find this one.
_spec = importlib.util.spec_from_file_location(
    "core_test_region", Path(__file__).parents[1] / "core" / "test_region.py"
)
_core = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_core)
_fan_cine, _iou = _core._fan_cine, _core._iou


def test_loading_adds_the_region_and_edits_change_it(
    docked, qtbot, tiny_model, tmp_path, wait_worker
):
    viewer, widget = docked
    frames, truth = _fan_cine(6)
    path = tmp_path / "fan.npy"
    np.save(path, frames)
    assert widget.load(str(path)) is not None
    assert REGION_LAYER in viewer.layers
    region = widget.segment_section.current_region()
    assert region is not None and _iou(region.mask, truth) >= 0.95

    # The user draws a smaller box: the model must run inside it and leave the rest empty.
    box = np.array([[20.0, 30.0], [20.0, 90.0], [70.0, 90.0], [70.0, 30.0]])
    viewer.layers[REGION_LAYER].data = [box]
    region = widget.segment_section.current_region()
    assert region.bbox == (20, 30, 71, 91)
    assert region.mask.sum() == 51 * 61

    assert widget.segment_section.select_model(tiny_model)
    assert widget.segment("all") is not None
    wait_worker(widget)
    prob = widget.session.prob
    assert prob is not None and prob.shape == frames.shape
    assert not prob[:, ~region.mask].any()
    assert prob[:, region.mask].any()


BOX = np.array([[20.0, 30.0], [20.0, 90.0], [70.0, 90.0], [70.0, 30.0]])


def test_a_renamed_stack_keeps_the_outline_the_user_drew(
    docked, qtbot, tiny_model, tmp_path, wait_worker
):
    # The outline was linked to its stack by name: after a rename in the layer list, Segment
    # re-detected the region, the depth found none and picking the stack replaced the outline.
    viewer, widget = docked
    frames, _truth = _fan_cine(6)
    np.save(tmp_path / "fan.npy", frames)
    image = widget.load(str(tmp_path / "fan.npy"))
    viewer.layers[REGION_LAYER].data = [BOX]
    image.name = "patient 7 left"

    region = widget.segment_section.current_region()
    assert region is not None and region.bbox == (20, 30, 71, 91)
    widget.load_section.show_stack(image)  # Segment -> Image picks it again
    assert [len(shape) for shape in viewer.layers[REGION_LAYER].data] == [4]
    derived = widget.load_section.depth_control.apply_depth(102.0)
    assert derived is not None and derived.depth_px == 51.0  # the box's rows 20-70

    assert widget.segment_section.select_model(tiny_model)
    assert widget.segment("all") is not None
    wait_worker(widget)
    prob = widget.session.prob
    assert not prob[:, ~region.mask].any()
    assert prob[:, region.mask].any()


def test_an_emptied_outline_runs_the_model_on_whole_frames_and_says_so(
    docked, qtbot, tiny_model, tmp_path, wait_worker, monkeypatch
):
    # Deleting every shape used to bring the detected region back silently on Segment, while
    # the imaging depth called it an error. Now it means "no region": whole frames, said.
    viewer, widget = docked
    frames, truth = _fan_cine(6)
    np.save(tmp_path / "fan.npy", frames)
    assert widget.load(str(tmp_path / "fan.npy")) is not None
    viewer.layers[REGION_LAYER].data = []

    region = widget.segment_section.current_region()
    assert region is not None and region.kind == "full" and region.mask.all()
    errors: list[str] = []
    monkeypatch.setattr("napari_ribseg._widgets._session.notify_error", errors.append)
    assert widget.load_section.depth_control.apply_depth(84.0) is None
    assert len(errors) == 1 and "outline is empty (Segment then runs on whole frames)" in errors[0]

    assert widget.segment_section.select_model(tiny_model)
    assert widget.segment("all") is not None
    wait_worker(widget)
    prob = widget.session.prob
    assert prob[:, ~truth].any(), "the model ran inside a region detected again"
    assert "on whole frames (the imaged-region outline is empty)" in widget.status_line.text()
