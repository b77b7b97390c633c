"""Parameters of one simulated lung-ultrasound cine, and a sampler of realistic varied ones."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from napari_ribseg.core.field_types import expected_type

PROBES = ("linear", "convex", "phased")
#: How the probe lies on the chest: ``longitudinal`` across the ribs (the "bat sign": rib,
#: intercostal space, rib) or ``transverse``, in one intercostal space parallel to the ribs, so
#: the pleural line runs across the whole view and no rib is in it.
VIEWS = ("longitudinal", "transverse")
#: Share of transverse (rib-free) clips in a "mixed" draw (``ribseg simulate --view mixed``): 16
#: of the 156 real convex test frames of issue 8 show no rib.
TRANSVERSE_SHARE = 0.1
#: ``random_config``'s ``render_rows``: real 820 x 1124 convex exports show the speckle grain and
#: rib band of a ~320-row image scaled up (grain_lat_frac 0.036, rib_thick_frac 0.018); rendered at
#: 820 rows the simulator's were half that (0.020, 0.0094). Frames of up to 320 rows are unchanged.
RENDER_ROWS = 320
# Share of each probe in random_config: most bedside lung scans are convex.
PROBE_SHARES = {"convex": 0.6, "linear": 0.25, "phased": 0.15}


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

    ``view`` is how the probe lies (:data:`VIEWS`): ``transverse`` images one intercostal space
    with no rib in it, as a real clip does when the probe turns along the ribs (about one real
    frame in ten shows no rib); ``random_config`` keeps ``longitudinal`` unless told otherwise.

    ``phased`` is a phased array: a narrow sector from a small virtual apex (``convex_radius_mm``
    of a few millimetres). The scanner fields below default to a clean image (no processing, no
    overlays, the image filling the frame); ``random_config`` draws them as real scanners set them:

    - ``clutter_db``: flat side-lobe/multipath clutter floor re unit tissue echo (dB).
    - ``shadow_fill_db``: side-lobe and reverberation clutter spread laterally (about 12 mm) from
      the echoes beside a shadow into it, dB re those echoes; ``None`` is off. Near 0 dB makes a
      rib shadow nearly as bright as the lung beside it, as real scans show.
    - ``speckle_reduction``: Gaussian smoothing (beam-grid pixels) of the log image, standing for
      spatial compounding and speckle-reduction filters.
    - ``persistence``: weight of the previous displayed frame (frame averaging), 0 to 0.9.
    - ``grey_gamma``: exponent of the grey map applied after log compression (> 1 darkens the
      mid greys, as the non-log maps of scanners do).
    - ``grey_floor``: the grey level (0 to 0.2) the map gives the weakest echo inside the image:
      scanners lift black so the image area stays distinct from the frame around it.
    - ``fan_zoom``: >= 1 magnifies a fan so it fills the frame (sides and bottom cut off).
    - ``pixel_aspect``: width / height of a fan's output pixel; > 1 is a wide scanner frame
      resized to ``size`` (the fan squeezed sideways), as frames reach a model.
    - ``image_region``: (top, left, bottom, right) fractions of the frame holding the image; the
      rest is black margin, where the overlays go.
    - ``overlays``: vendor overlays (text, depth ruler, focus marker, logo), never labelled.
    - ``jpeg_quality``: 0 for none, else 8x8-block DCT quantisation at this JPEG quality (5-100).
    - ``video_qp``: 0 for none, else an H.264-like codec at this quantiser (10-51; 4x4 blocks,
      skipped macroblocks that freeze, deblocking), as an mp4 export compresses a cine. An export
      is one or the other: when ``jpeg_quality`` is set it wins and the codec is off.
    - ``video_gop``: the codec's keyframe interval in frames (1-600).
    - ``render_rows``: 0 renders the beam image at the frame's own size; else for a frame of at
      most this many rows (64-4096), interpolated up to ``size`` before overlays and compression,
      as a scanner interpolates its few hundred scan lines and samples into a large export. The
      speckle grain and the rib band then keep their share of the frame at any export size.
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
    clutter_db: float = -22.0
    shadow_fill_db: float | None = None
    speckle_reduction: float = 0.0
    persistence: float = 0.0
    grey_gamma: float = 1.0
    grey_floor: float = 0.0
    fan_zoom: float = 1.0
    pixel_aspect: float = 1.0
    image_region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    overlays: bool = False
    jpeg_quality: int = 0
    video_qp: int = 0
    video_gop: int = 30
    render_rows: int = 0
    view: str = "longitudinal"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if problem := expected_type(value, str(f.type)):
                # int() floored a size of 64.5 to 64 and a b_lines of 2.5 to 2, in silence.
                raise ValueError(f"SimulationConfig.{f.name} must be {problem}; got {value!r}")
        if self.probe not in PROBES:
            raise ValueError(f"SimulationConfig.probe must be one of {PROBES}; got {self.probe!r}")
        if self.view not in VIEWS:
            raise ValueError(f"SimulationConfig.view must be one of {VIEWS}; got {self.view!r}")
        size = tuple(int(v) for v in self.size)
        if len(size) != 2 or min(size) < 16 or max(size) > 8192:
            # 8192: the largest frame the readers accept (core.budget.MAX_FRAME_PIXELS).
            raise ValueError(
                f"SimulationConfig.size must be (H, W) with both in 16..8192; got {self.size}"
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
        region = tuple(float(v) for v in self.image_region)
        if not (
            len(region) == 4
            and 0.0 <= region[0] < region[2] <= 1.0
            and 0.0 <= region[1] < region[3] <= 1.0
            and (region[2] - region[0]) * size[0] >= 16
            and (region[3] - region[1]) * size[1] >= 16
        ):
            raise ValueError(
                "SimulationConfig.image_region must be (top, left, bottom, right) fractions with "
                f"top < bottom, left < right, in [0, 1] and at least 16 pixels; got {self.image_region}"
            )
        object.__setattr__(self, "image_region", region)
        if not 0.0 <= self.persistence <= 0.9:
            raise ValueError(
                f"SimulationConfig.persistence must be in [0, 0.9]; got {self.persistence}"
            )
        if not 0.2 <= self.grey_gamma <= 5.0:
            raise ValueError(
                f"SimulationConfig.grey_gamma must be in [0.2, 5]; got {self.grey_gamma}"
            )
        if not 0.0 <= self.grey_floor <= 0.2:
            raise ValueError(
                f"SimulationConfig.grey_floor must be in [0, 0.2]; got {self.grey_floor}"
            )
        if not 1.0 <= self.fan_zoom <= 3.0:
            raise ValueError(f"SimulationConfig.fan_zoom must be in [1, 3]; got {self.fan_zoom}")
        if not 0.5 <= self.pixel_aspect <= 2.0:
            raise ValueError(
                f"SimulationConfig.pixel_aspect must be in [0.5, 2]; got {self.pixel_aspect}"
            )
        if not (self.jpeg_quality == 0 or 5 <= self.jpeg_quality <= 100):
            raise ValueError(
                f"SimulationConfig.jpeg_quality must be 0 (off) or in [5, 100]; got {self.jpeg_quality}"
            )
        if not (self.video_qp == 0 or 10 <= self.video_qp <= 51):
            raise ValueError(
                f"SimulationConfig.video_qp must be 0 (off) or in [10, 51]; got {self.video_qp}"
            )
        if not (self.render_rows == 0 or 64 <= self.render_rows <= 4096):
            raise ValueError(
                "SimulationConfig.render_rows must be 0 (the frame's size) or in [64, 4096]; "
                f"got {self.render_rows}"
            )
        if not 1 <= self.video_gop <= 600:
            raise ValueError(
                f"SimulationConfig.video_gop must be in [1, 600]; got {self.video_gop}"
            )
        if not -80.0 <= self.clutter_db <= 0.0:
            raise ValueError(
                f"SimulationConfig.clutter_db must be in [-80, 0]; got {self.clutter_db}"
            )
        if self.shadow_fill_db is not None and not -40.0 <= self.shadow_fill_db <= 6.0:
            raise ValueError(
                f"SimulationConfig.shadow_fill_db must be None or in [-40, 6]; got {self.shadow_fill_db}"
            )
        for name in (
            "noise",
            "sliding_mm",
            "breathing_mm",
            "jitter_mm",
            "fat_mm",
            "speckle_reduction",
        ):
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
        out["image_region"] = list(self.image_region)
        return out


def mixed_view(rng: np.random.Generator) -> str:
    """A view drawn with the real share of rib-free frames: ``transverse`` with probability
    :data:`TRANSVERSE_SHARE`, else ``longitudinal`` (``ribseg simulate --view mixed``)."""
    return "transverse" if rng.random() < TRANSVERSE_SHARE else "longitudinal"


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
    # anatomy for every probe.
    u = rng.random()
    probe = "convex" if u < PROBE_SHARES["convex"] else "linear"
    if u >= PROBE_SHARES["convex"] + PROBE_SHARES["linear"]:
        probe = "phased"
    probe = overrides.get("probe", probe)
    freq = {
        "linear": rng.uniform(6.0, 12.0),
        "convex": rng.uniform(2.5, 5.0),
        "phased": rng.uniform(2.0, 4.0),
    }
    depth = {
        "linear": rng.uniform(35.0, 60.0),
        "convex": rng.uniform(130.0, 175.0),
        "phased": rng.uniform(120.0, 160.0),
    }
    radius = {"convex": rng.uniform(40.0, 65.0), "phased": rng.uniform(6.0, 12.0)}
    fov = {"convex": rng.uniform(60.0, 78.0), "phased": rng.uniform(60.0, 85.0)}
    zoom = {"convex": rng.uniform(1.0, 1.3), "phased": rng.uniform(1.0, 1.15)}
    draw = {
        "probe": probe,
        "frequency_mhz": freq[probe],
        "depth_mm": depth[probe],
        "width_mm": rng.uniform(36.0, 50.0),
        "convex_radius_mm": radius.get(probe, radius["convex"]),
        "fov_deg": fov.get(probe, fov["convex"]),
        "gain_db": rng.uniform(-1.0, 9.0),
        "dynamic_range_db": rng.uniform(40.0, 55.0),
        "attenuation_db_cm_mhz": rng.uniform(0.5, 1.0),
        "skin_mm": rng.uniform(1.2, 2.2),
        "fat_mm": rng.uniform(1.5, 9.0),
        "rib_depth_mm": rng.uniform(9.0, 20.0),
        "rib_spacing_mm": rng.uniform(15.0, 25.0),
        "rib_width_mm": rng.uniform(10.0, 15.0),
        "pleura_offset_mm": rng.uniform(3.5, 6.5),
        "pleura_irregularity_mm": rng.uniform(0.05, 0.4),
        "a_line_decay_db": rng.uniform(5.0, 11.0),
        "b_lines": int(rng.choice([0, 0, 0, 0, 0, 1, 1, 2, 3])),
        "noise": float(10 ** rng.uniform(-2.0, -0.7)),
        # About one cine in ten has no lung sliding (as in pneumothorax).
        "sliding_mm": rng.uniform(0.5, 4.0) * float(rng.random() > 0.1),
        "breathing_mm": rng.uniform(0.2, 1.2),
        "breathing_period_s": rng.uniform(3.0, 5.0),
        "jitter_mm": rng.uniform(0.0, 0.3),
        "frame_rate": float(rng.choice([15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0])),
        # The scanner's processing and display, as real exports show them.
        "clutter_db": rng.uniform(-22.0, -14.0),
        "shadow_fill_db": rng.uniform(-4.0, 0.0),
        "speckle_reduction": rng.uniform(0.3, 1.5),
        "persistence": rng.uniform(0.0, 0.6) * float(rng.random() < 0.7),
        "grey_gamma": rng.uniform(1.0, 1.4),
        "grey_floor": rng.uniform(0.02, 0.06),
        "fan_zoom": zoom.get(probe, 1.0),
        "pixel_aspect": rng.uniform(1.15, 1.6) if probe != "linear" else 1.0,
        "image_region": _draw_region(rng),
        "overlays": bool(rng.random() < 0.7),
        # Large exports are scan lines interpolated up (no draw: other fields keep their values).
        "render_rows": RENDER_ROWS,
    }
    # Half the clips are JPEG exports, a quarter H.264 (mp4) and a quarter uncompressed. The
    # codec reuses the JPEG coin (its upper half, rescaled, is a fresh uniform) instead of a new
    # draw, so every other field, and whatever a caller draws from ``rng`` next, keeps its value.
    quality, coin = int(rng.integers(40, 96)), float(rng.random())
    draw["jpeg_quality"] = quality * int(coin < 0.5)
    draw["video_qp"] = 22 + int((coin - 0.5) * 60.0) if 0.5 <= coin < 0.75 else 0
    if probe == "linear":
        # A linear image is mostly chest wall, not lung: scanners (and users) set it darker, so it
        # shows the same grey levels as a convex scan (the real median is 22 of 255).
        # It also needs a steeper display: 11 dB less gain, a 12 dB narrower dynamic range and a
        # black lifted 0.06 more, so the chest wall is dark while the pleura and ribs stay bright
        # (real median 22, 95th percentile 135) and the rib stands only ~1.3x over its ring.
        draw["gain_db"] -= 11.0
        draw["dynamic_range_db"] -= 12.0
        draw["grey_floor"] += 0.06
        # A linear rib shadow sits a few millimetres from the bright pleural line, whose side lobes
        # the fill's source power (tissue and lung only) leaves out: fill 6 dB higher (2-6 dB), so
        # the shadow is as bright next to the pleura as real convex shadows are next to the lung.
        draw["shadow_fill_db"] += 6.0
        # Speckle at 6-12 MHz is a pixel or two wide on the beam grid: half the smoothing keeps
        # its grain as fine as real scans show it.
        draw["speckle_reduction"] *= 0.5
    draw.update(overrides)
    if overrides.get("jpeg_quality") and "video_qp" not in overrides:
        draw["video_qp"] = 0
    if overrides.get("video_qp") and "jpeg_quality" not in overrides:
        draw["jpeg_quality"] = 0
    # Keep the anatomy consistent when an override moved one part of it.
    rib_depth = float(draw["rib_depth_mm"])
    if "fat_mm" not in overrides:
        draw["fat_mm"] = float(min(draw["fat_mm"], rib_depth - draw["skin_mm"] - 3.0))
        draw["fat_mm"] = max(draw["fat_mm"], 0.5)
    if "depth_mm" not in overrides:
        draw["depth_mm"] = max(float(draw["depth_mm"]), rib_depth + draw["pleura_offset_mm"] + 15.0)
    if "image_region" not in overrides and "size" in draw:
        draw["image_region"] = fit_region(draw["image_region"], draw["size"])
    for key, value in list(draw.items()):
        if isinstance(value, np.floating):
            draw[key] = float(value)
    return SimulationConfig(**draw)


#: The fewest pixels an image region spans in each direction (SimulationConfig checks it).
MIN_REGION_PIXELS = 16


def fit_region(
    region: tuple[float, float, float, float], size: tuple[int, int]
) -> tuple[float, float, float, float]:
    """``region`` with its margins shrunk (in proportion) where it spans fewer than
    ``MIN_REGION_PIXELS`` of ``size``: a drawn margin must not make a small frame invalid.

    A region that already spans enough is returned unchanged, so frames of 20 pixels and more
    keep the draws they always had.
    """
    top, left, bottom, right = (float(v) for v in region)
    out = [top, left, bottom, right]
    for axis, (lo, hi) in enumerate(((top, bottom), (left, right))):
        n = int(size[axis])
        if (hi - lo) * n >= MIN_REGION_PIXELS:
            continue
        # The smallest span of whole pixels at or above the minimum; margins keep their ratio.
        span = min(1.0, (MIN_REGION_PIXELS + 1e-6) / n)
        margins = lo + (1.0 - hi)
        scale = (1.0 - span) / margins if margins > 0 else 0.0
        out[axis], out[axis + 2] = lo * scale, 1.0 - (1.0 - hi) * scale
    return out[0], out[1], out[2], out[3]


def _draw_region(rng: np.random.Generator) -> tuple[float, float, float, float]:
    """Where the image lies in the frame: half the time all of it, else inside black margins."""
    margins = rng.uniform([0.0, 0.0, 0.0, 0.0], [0.06, 0.08, 0.06, 0.08])
    if rng.random() < 0.5:
        return (0.0, 0.0, 1.0, 1.0)
    top, left, bottom, right = (float(m) for m in margins)
    return (top, left, 1.0 - bottom, 1.0 - right)
