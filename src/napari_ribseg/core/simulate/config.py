"""Parameters of one simulated lung-ultrasound cine, and a sampler of realistic varied ones."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

PROBES = ("linear", "convex")


@dataclass(frozen=True)
class SimulationConfig:
    """Acquisition, anatomy and motion parameters of one simulated cine (lengths in millimetres).

    The defaults are a typical adult intercostal scan with a linear probe. ``rib_spacing_mm`` is the
    intercostal gap between neighbouring rib edges, ``rib_depth_mm`` the skin-to-rib-surface depth at
    the top of the rib arc, ``pleura_offset_mm`` how far the pleural line lies below that surface.
    ``noise`` is the electronic noise amplitude relative to mean tissue echo at the bottom of the image
    (it falls 20 dB towards the top, as the time-gain compensation amplifies it less there).
    ``sliding_mm`` is the lung-sliding excursion at the pleura, ``breathing_mm`` the chest-wall (rib
    and pleura) motion and ``jitter_mm`` the standard deviation of hand-held probe motion.
    """

    probe: str = "linear"
    size: tuple[int, int] = (256, 256)
    frequency_mhz: float = 7.5
    depth_mm: float = 50.0
    width_mm: float = 40.0
    convex_radius_mm: float = 50.0
    fov_deg: float = 70.0
    focus_mm: float | None = None
    gain_db: float = 0.0
    dynamic_range_db: float = 60.0
    attenuation_db_cm_mhz: float = 0.7
    skin_mm: float = 1.6
    fat_mm: float = 4.0
    rib_depth_mm: float = 14.0
    rib_spacing_mm: float = 20.0
    rib_width_mm: float = 12.0
    pleura_offset_mm: float = 5.0
    pleura_irregularity_mm: float = 0.2
    a_line_decay_db: float = 8.0
    b_lines: int = 0
    noise: float = 0.05
    sliding_mm: float = 2.0
    breathing_mm: float = 0.6
    breathing_period_s: float = 4.0
    jitter_mm: float = 0.15
    frame_rate: float = 30.0

    def __post_init__(self) -> None:
        if self.probe not in PROBES:
            raise ValueError(f"SimulationConfig.probe must be one of {PROBES}; got {self.probe!r}")
        size = tuple(int(v) for v in self.size)
        if len(size) != 2 or min(size) < 16:
            raise ValueError(
                f"SimulationConfig.size must be (H, W) with both >= 16; got {self.size}"
            )
        object.__setattr__(self, "size", size)
        positive = (
            "frequency_mhz",
            "depth_mm",
            "width_mm",
            "convex_radius_mm",
            "dynamic_range_db",
            "rib_width_mm",
            "rib_spacing_mm",
            "rib_depth_mm",
            "pleura_offset_mm",
            "breathing_period_s",
            "frame_rate",
            "skin_mm",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"SimulationConfig.{name} must be > 0; got {getattr(self, name)}")
        if not 10 <= self.fov_deg <= 120:
            raise ValueError(f"SimulationConfig.fov_deg must be in [10, 120]; got {self.fov_deg}")
        if self.b_lines < 0:
            raise ValueError(f"SimulationConfig.b_lines must be >= 0; got {self.b_lines}")
        if self.rib_depth_mm + self.pleura_offset_mm >= self.depth_mm:
            raise ValueError(
                "SimulationConfig: the pleura (rib_depth_mm + pleura_offset_mm = "
                f"{self.rib_depth_mm + self.pleura_offset_mm}) must lie above depth_mm={self.depth_mm}"
            )
        if self.skin_mm + self.fat_mm >= self.rib_depth_mm:
            raise ValueError(
                f"SimulationConfig: skin_mm + fat_mm ({self.skin_mm + self.fat_mm}) must be less "
                f"than rib_depth_mm ({self.rib_depth_mm})"
            )
        for name in ("noise", "sliding_mm", "breathing_mm", "jitter_mm", "fat_mm"):
            if getattr(self, name) < 0:
                raise ValueError(f"SimulationConfig.{name} must be >= 0; got {getattr(self, name)}")

    @property
    def pleura_depth_mm(self) -> float:
        """Nominal skin-to-pleura distance (also the A-line spacing)."""
        return self.rib_depth_mm + self.pleura_offset_mm

    def replace(self, **changes) -> SimulationConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain JSON-able dict, e.g. for stack metadata."""
        out = dataclasses.asdict(self)
        out["size"] = list(self.size)
        return out


def random_config(rng: np.random.Generator | int | None = None, **overrides) -> SimulationConfig:
    """Draw a realistic, varied configuration; ``overrides`` fix any field (e.g. ``probe="convex"``).

    Probe-dependent ranges follow clinical practice: linear 5-12 MHz, 35-60 mm deep; convex
    2.5-5 MHz, 80-160 mm deep. Anatomy spans thin to obese adults.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    names = {f.name for f in dataclasses.fields(SimulationConfig)}
    unknown = set(overrides) - names
    if unknown:
        raise TypeError(f"random_config: unknown SimulationConfig fields {sorted(unknown)}")

    # Every draw happens in a fixed order whatever the overrides, so one seed gives the same
    # anatomy for both probes.
    probe = str(rng.choice(PROBES))
    probe = overrides.get("probe", probe)
    linear_freq, convex_freq = rng.uniform(6.0, 12.0), rng.uniform(2.5, 5.0)
    linear_depth, convex_depth = rng.uniform(35.0, 60.0), rng.uniform(80.0, 160.0)
    draw = {
        "probe": probe,
        "frequency_mhz": linear_freq if probe == "linear" else convex_freq,
        "depth_mm": linear_depth if probe == "linear" else convex_depth,
        "width_mm": rng.uniform(36.0, 50.0),
        "convex_radius_mm": rng.uniform(40.0, 65.0),
        "fov_deg": rng.uniform(55.0, 80.0),
        "gain_db": rng.uniform(-6.0, 6.0),
        "dynamic_range_db": rng.uniform(50.0, 70.0),
        "attenuation_db_cm_mhz": rng.uniform(0.5, 1.0),
        "skin_mm": rng.uniform(1.2, 2.2),
        "fat_mm": rng.uniform(1.5, 9.0),
        "rib_depth_mm": rng.uniform(10.0, 22.0),
        "rib_spacing_mm": rng.uniform(15.0, 25.0),
        "rib_width_mm": rng.uniform(10.0, 15.0),
        "pleura_offset_mm": rng.uniform(3.5, 6.5),
        "pleura_irregularity_mm": rng.uniform(0.05, 0.4),
        "a_line_decay_db": rng.uniform(5.0, 11.0),
        "b_lines": int(rng.choice([0, 0, 0, 1, 2, 3, 4])),
        "noise": float(10 ** rng.uniform(-2.0, -0.7)),
        # About one cine in ten has no lung sliding (as in pneumothorax).
        "sliding_mm": rng.uniform(0.5, 4.0) * float(rng.random() > 0.1),
        "breathing_mm": rng.uniform(0.2, 1.2),
        "breathing_period_s": rng.uniform(3.0, 5.0),
        "jitter_mm": rng.uniform(0.0, 0.3),
        "frame_rate": float(rng.choice([15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0])),
    }
    draw.update(overrides)
    # Keep the anatomy consistent when an override moved one part of it.
    rib_depth = float(draw["rib_depth_mm"])
    if "fat_mm" not in overrides:
        draw["fat_mm"] = float(min(draw["fat_mm"], rib_depth - draw["skin_mm"] - 3.0))
        draw["fat_mm"] = max(draw["fat_mm"], 0.5)
    if "depth_mm" not in overrides:
        draw["depth_mm"] = max(float(draw["depth_mm"]), rib_depth + draw["pleura_offset_mm"] + 15.0)
    for key, value in list(draw.items()):
        if isinstance(value, np.floating):
            draw[key] = float(value)
    return SimulationConfig(**draw)
