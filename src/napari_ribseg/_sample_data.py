"""npe2 sample data: short simulated lung-ultrasound cines with their ground-truth rib labels.

Thin over :mod:`napari_ribseg.core.simulate`; deterministic (fixed seeds) and quick (24 frames of
256 x 256, well under a second each).
"""

from __future__ import annotations

from typing import Any

from napari_ribseg.core.simulate import SimulationConfig, simulate_cine

LayerData = tuple[Any, dict, str]

N_FRAMES = 24
LINEAR_SEED = 20240
CONVEX_SEED = 20241


def _layers(config: SimulationConfig, seed: int, name: str, *, scaled: bool) -> list[LayerData]:
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
    if scaled:
        # Labels share the image's scale so they overlay it in millimetres.
        image_kwargs["scale"] = (1.0, *cine.spacing_mm)
        label_kwargs["scale"] = (1.0, *cine.spacing_mm)
    return [(cine.frames, image_kwargs, "image"), (cine.rib, label_kwargs, "labels")]


def linear_cine() -> list[LayerData]:
    """A linear-probe intercostal cine (bat sign, A-lines, lung sliding) and its rib labels."""
    config = SimulationConfig(probe="linear", size=(256, 256), b_lines=0)
    return _layers(config, LINEAR_SEED, "Simulated LUS (linear)", scaled=True)


def convex_cine() -> list[LayerData]:
    """A convex-probe cine (fan, radial rib shadows, A-lines, two B-lines) and its rib labels."""
    config = SimulationConfig(
        probe="convex", size=(256, 256), frequency_mhz=3.5, depth_mm=100.0, b_lines=2
    )
    return _layers(config, CONVEX_SEED, "Simulated LUS (convex)", scaled=False)
