"""The napari sample-data contributions: layer tuples, ground truth, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from napari_ribseg._sample_data import convex_cine, linear_cine


@pytest.mark.parametrize("make", [linear_cine, convex_cine], ids=["linear", "convex"])
def test_sample_is_image_plus_rib_labels(make):
    layers = make()
    assert [kind for _, _, kind in layers] == ["image", "labels"]
    (frames, image_kwargs, _), (ribs, label_kwargs, _) = layers
    assert frames.shape == (24, 256, 256) and frames.dtype == np.float32
    assert frames.min() >= 0.0 and frames.max() <= 1.0
    assert ribs.shape == frames.shape and ribs.dtype == np.uint8
    assert 0.001 < ribs.mean() < 0.08
    assert label_kwargs["name"].endswith("ribs (ground truth)")
    assert image_kwargs["metadata"]["simulated"] is True
    assert image_kwargs["metadata"]["spacing_mm"]


def test_linear_sample_is_scaled_in_mm_and_deterministic():
    (frames, kwargs, _), (ribs, label_kwargs, _) = linear_cine()
    assert kwargs["scale"] == pytest.approx((1.0, 50.0 / 256, 40.0 / 256))
    assert label_kwargs["scale"] == kwargs["scale"]
    (again, _, _), (ribs_again, _, _) = linear_cine()
    assert frames.tobytes() == again.tobytes() and ribs.tobytes() == ribs_again.tobytes()


def test_convex_sample_is_scaled_as_its_metadata_says():
    """Its Spacing line read the metadata's mm while the layers were in pixels, and Imaging depth
    then refused ("already records a spacing"): the scale is now the recorded spacing."""
    (_, kwargs, _), (_, label_kwargs, _) = convex_cine()
    assert kwargs["scale"][1:] == pytest.approx(tuple(kwargs["metadata"]["spacing_mm"]))
    assert label_kwargs["scale"] == kwargs["scale"]


def test_manifest_points_at_the_sample_functions():
    from pathlib import Path

    import yaml

    import napari_ribseg

    manifest = yaml.safe_load((Path(napari_ribseg.__file__).parent / "napari.yaml").read_text())
    commands = {c["id"]: c["python_name"] for c in manifest["contributions"]["commands"]}
    keys = {s["key"]: commands[s["command"]] for s in manifest["contributions"]["sample_data"]}
    assert keys == {
        "linear": "napari_ribseg._sample_data:linear_cine",
        "convex": "napari_ribseg._sample_data:convex_cine",
    }
