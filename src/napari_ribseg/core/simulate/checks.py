"""Physics measurements on simulated cines, used by the benchmark and the documentation.

Each function measures what a sonographer would: speckle statistics, shadow contrast, A-line spacing.
The tests implement their own versions independently, so a bug here cannot hide one in the model.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from napari_ribseg.core.simulate.cine import SimulatedCine
from napari_ribseg.core.simulate.config import SimulationConfig
from napari_ribseg.core.simulate.psf import envelope_homogeneous


def speckle_ratio(config: SimulationConfig, seed: int = 0) -> float:
    """Mean / std of the envelope of homogeneous speckle (Rayleigh: 1.913)."""
    env = envelope_homogeneous(config, seed).astype(np.float64)
    return float(env.mean() / env.std())


def intercostal_columns(cine: SimulatedCine, margin: int = 4) -> np.ndarray:
    """Columns with visible pleura in every frame and no rib shadow, ``margin`` columns from edges."""
    clear = cine.pleura.any(axis=1).all(axis=0) & ~cine.shadow.any(axis=1).any(axis=0)
    width = 2 * margin + 1
    clear = np.convolve(clear, np.ones(width), mode="same") >= width
    return np.flatnonzero(clear)


def shadow_contrast(cine: SimulatedCine) -> float:
    """Mean grey level under ribs / between ribs, in the 0.8-3 mm band above the pleura."""
    dr = cine.spacing_mm[0]
    pleura_top = int(np.flatnonzero(cine.pleura.any(axis=(0, 2))).min())
    band = np.zeros(cine.frames.shape[1:], dtype=bool)
    band[max(pleura_top - int(3.0 / dr), 0) : pleura_top - int(0.8 / dr)] = True
    band &= ~cine.rib.any(axis=0)
    under = cine.shadow.all(axis=0) & band
    between = np.zeros_like(band)
    between[:, intercostal_columns(cine)] = True
    between &= band
    return float(cine.frames[:, under].mean() / cine.frames[:, between].mean())


def a_line_depths(cine: SimulatedCine) -> list[float]:
    """Depths (mm) of the pleura and the A-lines below it, from the mean intercostal depth profile."""
    dr = cine.spacing_mm[0]
    cols = intercostal_columns(cine)
    profile = cine.frames[:, :, cols].mean(axis=(0, 2))
    profile = np.convolve(profile, np.ones(3) / 3, mode="same")
    pleura_rows = np.flatnonzero(cine.pleura[:, :, cols].any(axis=(0, 2)))
    start = max(int(pleura_rows.min()) - 2, 1)
    peaks, _ = signal.find_peaks(profile, prominence=0.05, distance=max(int(5.0 / dr), 1))
    depths = []
    for i in peaks:
        if i < start or i >= len(profile) - 1:
            continue
        a, b, c = profile[i - 1 : i + 2]
        denom = a - 2 * b + c
        depths.append((i + (0.5 * (a - c) / denom if denom else 0.0)) * dr)
    return depths


def a_line_spacing_error(cine: SimulatedCine) -> tuple[float, float]:
    """(max |A-line spacing - skin-pleura distance| in mm, the same in pixels)."""
    depths = a_line_depths(cine)
    if len(depths) < 2:
        raise ValueError("fewer than one A-line below the pleura; use a deeper image")
    pleura = depths[0]
    errors = [abs((b - a) - pleura) for a, b in zip(depths[:-1], depths[1:], strict=False)]
    worst = float(max(errors))
    return worst, worst / cine.spacing_mm[0]
