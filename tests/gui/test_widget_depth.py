"""The imaging depth in the Load section: it sets the stack's layers' scale from the region."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from napari_ribseg._widgets.region import REGION_LAYER
from napari_ribseg.core.io import write_stack_tiff

# The synthetic fan cine of the core tests (radii 34..118 px: 84 px deep), loaded by path.
_spec = importlib.util.spec_from_file_location(
    "core_test_region_depth", Path(__file__).parents[1] / "core" / "test_region.py"
)
_core = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_core)


def test_imaging_depth_sets_the_layer_scales(docked, tmp_path) -> None:
    viewer, widget = docked
    frames, _ = _core._fan_cine(6)
    path = tmp_path / "fan.npy"
    np.save(path, frames)
    image = widget.load(str(path))
    assert image is not None and tuple(image.scale) == (1.0, 1.0, 1.0)
    control = widget.load_section.depth_control
    assert control.depth_spin.value() == 0.0  # unknown by default
    assert control.depth_spin.text() == "unknown"

    # The user shortens the outline to the top half: the depth now spans 48 rows.
    box = np.array([[0.0, 20.0], [0.0, 100.0], [47.0, 100.0], [47.0, 20.0]])
    viewer.layers[REGION_LAYER].data = [box]
    control.depth_spin.setValue(96.0)
    control.apply_btn.click()
    mm = 96.0 / 48
    assert tuple(image.scale[-2:]) == pytest.approx((mm, mm))
    assert tuple(widget.session.labels_layer.scale[-2:]) == pytest.approx((mm, mm))
    assert tuple(viewer.layers[REGION_LAYER].scale) == pytest.approx((mm, mm))
    assert tuple(str(u) for u in image.units)[-2:] == ("millimeter", "millimeter")
    label = widget.load_section.spacing_label.text()
    assert label.startswith("2 x 2 mm/pixel") and "96 mm depth" in label


def test_a_files_spacing_is_kept_unless_replacing_is_ticked(docked, tmp_path) -> None:
    _viewer, widget = docked
    frames, _ = _core._fan_cine(6)
    tif = write_stack_tiff(tmp_path / "fan.tif", frames, spacing_mm=(0.5, 0.5))
    image = widget.load(str(tif))
    control = widget.load_section.depth_control
    assert control.apply_depth(84.0) is None
    assert tuple(image.scale[-2:]) == pytest.approx((0.5, 0.5))
    control.replace_box.setChecked(True)
    derived = control.apply_depth(84.0)
    assert derived is not None and derived.spacing_mm[0] == pytest.approx(1.0, rel=0.05)
    assert tuple(image.scale[-2:]) == pytest.approx(derived.spacing_mm)
