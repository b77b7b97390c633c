"""npe2 sample data: short simulated lung-ultrasound cines with their ground-truth rib labels.

Thin over :mod:`napari_ribseg.core.simulate`; deterministic (fixed seeds) and quick (24 frames of
256 x 256, well under a second each). The cines are drawn with the scanner display chain calibrated
to real convex scans (``random_config``: dark grey map, shadows nearly as bright as the lung,
speckle reduction, vendor overlays), so the sample looks like what a user's scanner exports.
"""

from __future__ import annotations

from typing import Any

from napari_ribseg.core.simulate import SimulationConfig, random_config, simulate_cine

LayerData = tuple[Any, dict, str]

N_FRAMES = 24
LINEAR_SEED = 20240
CONVEX_SEED = 20241
#: The samples' image layer names (a sample's review, having no file, is kept under this name).
SAMPLE_NAMES = {"linear": "Simulated LUS (linear)", "convex": "Simulated LUS (convex)"}


def _layers(config: SimulationConfig, seed: int, name: str) -> list[LayerData]:
    cine = simulate_cine(N_FRAMES, config, seed)
    metadata = {
        **cine.to_stack().describe(),
        **cine.to_stack().metadata,
        "spacing_mm": list(cine.spacing_mm),
        "frame_rate": cine.frame_rate,
    }
    image_kwargs: dict[str, Any] = {
        "name": name,
        "contrast_limits": (0.0, 1.0),
        "metadata": metadata,
    }
    label_kwargs: dict[str, Any] = {"name": f"{name} ribs (ground truth)", "opacity": 0.5}
    # Both in millimetres (the layers' scale is what the widget's Spacing line reports); the labels
    # share the image's scale so they overlay it. A convex fan's pixels are not square.
    image_kwargs["scale"] = (1.0, *cine.spacing_mm)
    label_kwargs["scale"] = (1.0, *cine.spacing_mm)
    # With their units: napari drops every layer's units (and warns) while two layers' differ.
    image_kwargs["units"] = label_kwargs["units"] = ("pixel", "mm", "mm")
    return [(cine.frames, image_kwargs, "image"), (cine.rib, label_kwargs, "labels")]


def sample_config(probe: str) -> SimulationConfig:
    """The sample cines' configuration (also ``sample_data/demo_linear.tif``'s): a linear probe
    at 50 mm depth and 40 mm width, or a convex one, with a scanner's display chain."""
    if probe == "linear":
        return random_config(
            LINEAR_SEED, probe="linear", size=(256, 256), depth_mm=50.0, width_mm=40.0
        )
    return random_config(CONVEX_SEED, probe="convex", size=(256, 256))


def linear_cine() -> list[LayerData]:
    """A linear-probe intercostal cine (bat sign, A-lines, B-lines, sliding) and its rib labels."""
    return _layers(sample_config("linear"), LINEAR_SEED, SAMPLE_NAMES["linear"])


def convex_cine() -> list[LayerData]:
    """A convex-probe cine (wide fan, radial rib shadows, A-lines) and its rib labels."""
    return _layers(sample_config("convex"), CONVEX_SEED, SAMPLE_NAMES["convex"])
