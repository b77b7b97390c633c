"""Named simulation domains: the hard test domain pushed to the real-scan fingerprint, and the
edge training domain (scanner settings at the edges of real scans).

Training draws ``random_config`` with seeds 10000+ (test 90000+, ``scripts/train_bundled.py``).
The hard domain is a *test* set kept out of training: its clips use seeds from
``HARD_DOMAIN_SEED`` (500000) on, and its configurations sit on the hard side of what real convex
lung scans show: dark gain, shadows nearly as bright as the lung beside them, vendor overlays, a
wide magnified fan, JPEG compression, at the 820 x 1124 frame size of real exports (rendered at
``random_config``'s 320 rows and interpolated up, as a scanner does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from napari_ribseg.core.simulate.config import SimulationConfig, fit_region, random_config

if TYPE_CHECKING:
    from napari_ribseg.core.training import TrainingSet

HARD_DOMAIN_SEED = 500_000
HARD_DOMAIN_SIZE = (820, 1124)
DOMAINS = ("standard", "hard", "edge")

#: The scanner settings ``edge_config`` redraws, and their ranges: where the bundled models were
#: measured to lose Dice inside the real scans' fingerprint (``benchmarks/bench_sensitivity.py``,
#: docs/models.md "Sensitivity"): shadows filled up to as bright as the lung beside them (real
#: shadow / intercostal ratios reach 1.03), speckle smoothed from not at all to twice as much as
#: ``random_config`` does, and side-lobe clutter. ``random_config`` draws -4..0 dB, 0.3..1.5 and
#: -22..-14 dB.
EDGE_RANGES = {
    "shadow_fill_db": (0.0, 6.0),
    "speckle_reduction": (0.0, 3.0),
    "clutter_db": (-18.0, -6.0),
}

#: What belongs to the person scanned (anatomy, tissue, motion), not to the scanner and its
#: settings: ``same_scanner`` takes these from another configuration.
SUBJECT_FIELDS = (
    "attenuation_db_cm_mhz",
    "skin_mm",
    "fat_mm",
    "rib_depth_mm",
    "rib_spacing_mm",
    "rib_width_mm",
    "pleura_offset_mm",
    "pleura_irregularity_mm",
    "a_line_decay_db",
    "b_lines",
    "sliding_mm",
    "breathing_mm",
    "breathing_period_s",
    "jitter_mm",
)


def same_scanner(scanner: SimulationConfig, subject: SimulationConfig) -> SimulationConfig:
    """Another person on the same scanner: ``subject``'s anatomy and motion (``SUBJECT_FIELDS``),
    everything else (probe, frame, depth, gain, grey map, overlays, codec...) from ``scanner``.

    A user fine-tunes on frames of one patient and segments the next patients of the same machine:
    benchmarks that test on clips sharing the scanner measure that, not a change of scanner.
    """
    return scanner.replace(**{name: getattr(subject, name) for name in SUBJECT_FIELDS})


def hard_domain_config(
    rng: np.random.Generator | int | None = None, **overrides: Any
) -> SimulationConfig:
    """A convex configuration on the hard side of real scans (``overrides`` fix any field).

    Same anatomy and motion ranges as ``random_config``; the scanner is set the hard way: dark
    gain, shadow fill within 1 dB of the lung beside it, wide (70-80 degrees) magnified fan with
    margins for overlays, overlays always, JPEG quality 30-60, strong speckle reduction and
    persistence. The frame is 820 x 1124 (H x W) unless ``size`` is overridden.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    size = overrides.pop("size", HARD_DOMAIN_SIZE)
    base = random_config(rng, probe="convex", size=size)
    top, side = rng.uniform(0.02, 0.06), rng.uniform(0.04, 0.1)
    hard = {
        "gain_db": float(rng.uniform(-4.0, 2.0)),
        "dynamic_range_db": float(rng.uniform(40.0, 50.0)),
        "clutter_db": float(rng.uniform(-18.0, -12.0)),
        "shadow_fill_db": float(rng.uniform(-1.0, 1.0)),
        "fov_deg": float(rng.uniform(70.0, 80.0)),
        "fan_zoom": float(rng.uniform(1.05, 1.3)),
        "pixel_aspect": 1.0,
        "image_region": (float(top), float(side), 1.0, float(1.0 - side)),
        "overlays": True,
        "jpeg_quality": int(rng.integers(30, 61)),
        "speckle_reduction": float(rng.uniform(0.8, 1.5)),
        "persistence": float(rng.uniform(0.3, 0.6)),
        "grey_gamma": float(rng.uniform(1.1, 1.4)),
        "grey_floor": float(rng.uniform(0.02, 0.05)),
    }
    hard["image_region"] = fit_region(hard["image_region"], base.size)
    hard.update(overrides)
    return base.replace(**hard)


def edge_config(rng: np.random.Generator | int | None = None, **overrides: Any) -> SimulationConfig:
    """``random_config`` with the scanner settings of ``EDGE_RANGES`` redrawn at the edges of real
    scans (``overrides`` fix any field). Any probe; a linear probe keeps its own shadow fill
    (drawn 2-6 dB already) and halves the smoothing, as ``random_config`` does. A training domain:
    ``scripts/train_bundled.py --edge-clips``.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    base = random_config(rng, **overrides)
    # Always draw all three, so a clip's other fields do not depend on which are overridden.
    edges = {name: float(rng.uniform(lo, hi)) for name, (lo, hi) in EDGE_RANGES.items()}
    if base.probe == "linear":
        edges["shadow_fill_db"] = base.shadow_fill_db
        edges["speckle_reduction"] *= 0.5
    return base.replace(**{k: v for k, v in edges.items() if k not in overrides})


def domain_config(
    domain: str, rng: np.random.Generator | int | None = None, **overrides: Any
) -> SimulationConfig:
    """``random_config`` for ``"standard"``, ``hard_domain_config`` for ``"hard"``,
    ``edge_config`` for ``"edge"``."""
    if domain == "standard":
        return random_config(rng, **overrides)
    if domain == "hard":
        return hard_domain_config(rng, **overrides)
    if domain == "edge":
        return edge_config(rng, **overrides)
    raise ValueError(f"simulation domain must be one of {DOMAINS}; got {domain!r}")


def hard_domain_set(
    n_clips: int,
    frames_per_clip: int,
    seed: int = HARD_DOMAIN_SEED,
    *,
    stride: int = 1,
    scanner_seed: int | None = None,
    **overrides: Any,
) -> TrainingSet:
    """The hard-domain test set as a ``TrainingSet`` (rib masks), one group per clip.

    Clip ``i`` draws its configuration from ``hard_domain_config(seed + i)`` and is simulated
    with seed ``seed + i``, so a clip is the same whatever ``n_clips`` is. Keep ``seed`` at
    ``HARD_DOMAIN_SEED`` or above so it never meets the training seeds. ``stride``: every
    ``stride``-th frame of a clip ``frames_per_clip * stride`` frames long (neighbouring frames
    are near-duplicates). ``scanner_seed``: every clip keeps its own subject (anatomy, motion)
    but is imaged by the one scanner of ``hard_domain_config(scanner_seed)`` (``same_scanner``:
    a user's next patients on the same machine). ``overrides`` fix fields of every clip.
    """
    from napari_ribseg.core.training import TrainingSet

    if n_clips < 1 or frames_per_clip < 1 or stride < 1:
        raise ValueError(
            "hard_domain_set: n_clips, frames_per_clip and stride must be >= 1; got "
            f"{n_clips}, {frames_per_clip}, {stride}"
        )
    shared = None if scanner_seed is None else hard_domain_config(scanner_seed, **overrides)

    def config(clip_seed: int) -> SimulationConfig:
        own = hard_domain_config(clip_seed, **overrides)
        return own if shared is None else same_scanner(shared, own)

    clips = ((config(seed + i), seed + i) for i in range(n_clips))
    source = f"simulator:hard-domain,seed={seed},clips={n_clips}x{frames_per_clip}"
    if stride > 1:
        source += f",stride={stride}"
    if scanner_seed is not None:
        source += f",scanner={scanner_seed}"
    data = TrainingSet.from_cines(
        clips, frames_per_clip * stride, group="hard{seed:06d}", source=source
    )
    if stride == 1:
        return data
    return data.subset(range(0, len(data), stride))
