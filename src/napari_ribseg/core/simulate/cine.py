"""Render simulated lung-ultrasound cines: motion, speckle, PSF, envelope, log compression, scan conversion.

Per cine the anatomy is built once on a padded beam grid (:mod:`.anatomy`). Per frame the renderer
only gathers a motion-shifted window of it (probe jitter moves everything, breathing moves the deep
chest wall, lung sliding moves the sub-pleural texture and B-lines), renews part of the speckle,
convolves with the PSF, adds electronic noise, detects the envelope, log-compresses and, for a convex
probe, scan-converts. Labels are gathered through the same indices, so they match the image exactly.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from napari_ribseg.core.jobs import Progress, StopFlag, run_job
from napari_ribseg.core.simulate.anatomy import LUNG_DECORRELATION, Anatomy, build_anatomy
from napari_ribseg.core.simulate.config import SimulationConfig
from napari_ribseg.core.simulate.display import (
    Overlay,
    VideoCodec,
    draw_overlay,
    jpeg_compress,
)
from napari_ribseg.core.simulate.geometry import ProbeGeometry, probe_geometry
from napari_ribseg.core.simulate.psf import BeamPSF, build_psf, complex_gaussian, psf_margin
from napari_ribseg.core.stack import Stack

# Display level (0..1) of a unit-echogenicity tissue before gain: soft tissue shows mid-grey.
TISSUE_LEVEL = 0.35
# Share of coherent (smooth) vs granular (speckled) echo in A-lines and B-lines.
ALINE_COHERENT, ALINE_GRANULAR = 0.8, 0.5
BLINE_COHERENT, BLINE_GRANULAR = 0.35, 1.0


@dataclass
class SimulatedCine:
    """A simulated cine and its ground truth.

    ``frames`` float32 (N, H, W) in [0, 1] (8-bit levels, as a scanner stores them); ``rib``,
    ``pleura``, ``shadow`` uint8 (N, H, W) 0/1, separate classes never merged; ``spacing_mm`` (row,
    col) pixel size (exact for linear, isotropic Cartesian pixels for convex); ``fan`` bool (H, W)
    pixels inside the imaged sector (all True for linear).
    """

    frames: np.ndarray
    rib: np.ndarray
    pleura: np.ndarray
    shadow: np.ndarray
    spacing_mm: tuple[float, float]
    frame_rate: float
    config: SimulationConfig
    seed: int = 0
    fan: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    def to_stack(self) -> Stack:
        """The frames as a :class:`Stack` (labels stay here)."""
        return Stack(
            frames=self.frames,
            source=None,
            spacing_mm=self.spacing_mm,
            frame_rate=self.frame_rate,
            original_dtype="uint8",
            metadata={"simulated": True, "seed": self.seed, "config": self.config.to_dict()},
        )


@dataclass
class SimulatedFrame:
    """One simulated frame; ``envelope`` is the beam-grid envelope before log compression."""

    image: np.ndarray
    rib: np.ndarray
    pleura: np.ndarray
    shadow: np.ndarray
    spacing_mm: tuple[float, float]
    config: SimulationConfig
    envelope: np.ndarray | None = None


@dataclass
class _Motion:
    """Per-frame displacements in mm."""

    jitter_x: np.ndarray
    jitter_z: np.ndarray
    breath_x: np.ndarray
    breath_z: np.ndarray
    slide: np.ndarray


def _draw_motion(config: SimulationConfig, n: int, rng: np.random.Generator) -> _Motion:
    t = np.arange(n) / config.frame_rate
    phase = 2.0 * np.pi * t / config.breathing_period_s + rng.uniform(0.0, 2.0 * np.pi)
    breath = np.sin(phase)
    # Hand-held probe drift: a slow AR(1) process, bounded to three standard deviations.
    rho = 0.9
    jit = np.zeros((2, n))
    jit[:, 0] = rng.normal(0.0, config.jitter_mm, 2)
    steps = rng.normal(0.0, config.jitter_mm * np.sqrt(1 - rho**2), (2, n))
    for i in range(1, n):
        jit[:, i] = rho * jit[:, i - 1] + steps[:, i]
    jit = np.clip(jit, -3 * config.jitter_mm, 3 * config.jitter_mm)
    # The lung slides relative to the chest wall, slightly lagging the breath.
    slide = config.sliding_mm * np.sin(phase - 0.3)
    return _Motion(
        jitter_x=jit[0],
        jitter_z=0.5 * jit[1],
        breath_x=config.breathing_mm * breath,
        breath_z=0.4 * config.breathing_mm * np.cos(phase),
        slide=slide,
    )


class CineRenderer:
    """Holds the precomputed anatomy, PSF and geometry of one cine and renders its frames."""

    def __init__(self, config: SimulationConfig, rng: np.random.Generator) -> None:
        self.config = config
        self.rng = rng
        #: The output frame's geometry (shape, fan, spacing, overlays).
        self.geometry: ProbeGeometry = probe_geometry(config)
        #: The geometry the beam image is rendered on: the frame's own, or with ``render_rows`` a
        #: smaller frame of the same shape whose image is interpolated up to the output.
        render = config
        height, width = config.size
        if config.render_rows and height > config.render_rows:
            scale = config.render_rows / height
            render = config.replace(
                size=(config.render_rows, max(16, int(round(width * scale)))), render_rows=0
            )
        self._render_geometry = self.geometry if render is config else probe_geometry(render)
        grid = self._render_geometry.grid
        self.margin = psf_margin(render, grid)
        self.psf: BeamPSF = build_psf(render, grid, self.margin)
        mr, mc = self.margin
        lateral_mm = 3 * config.jitter_mm + config.breathing_mm + config.sliding_mm + 1.0
        axial_mm = 1.5 * config.jitter_mm + 0.4 * config.breathing_mm + 0.5
        # A-line k lies at k times the skin-pleura distance, so it moves k times as far.
        self._orders = max(
            1, int(np.ceil((config.depth_mm + 2.0) / max(config.pleura_depth_mm - 2.0, 2.0))) - 1
        )
        axial_px = int(np.ceil((self._orders + 1) * axial_mm / grid.dr_mm))
        pad_cols = mc + int(np.ceil(lateral_mm / grid.ds_mm)) + 1
        pad_rows = (mr + 1 + axial_px, mr + 1 + axial_px)
        window_d = (np.arange(self.psf.rows) - mr) * grid.dr_mm
        spec_gain = self.psf.specular_gain

        def specular_gain(d_mm: np.ndarray) -> np.ndarray:
            return np.interp(d_mm, window_d, spec_gain)

        self.anatomy: Anatomy = build_anatomy(
            config,
            rng,
            n_rows=grid.n_rows,
            n_cols=grid.n_cols,
            dr=grid.dr_mm,
            ds=grid.ds_mm,
            pad_rows=pad_rows,
            pad_cols=pad_cols,
            specular_gain=specular_gain,
            a_line_orders=self._orders,
        )
        a = self.anatomy
        self._cp = a.static_field.shape[1]
        self._flat = {
            name: getattr(a, name).reshape(-1)
            for name in (
                "static_field",
                "static_amp",
                "lung_amp",
                "bline_amp",
                "lung_texture",
                "bline_texture",
                "rib",
                "pleura",
                "shadow",
            )
        }
        # Window rows/cols relative to the beam grid (margins included).
        self._alines = [order.reshape(-1) for order in a.aline_amp]
        self._win_rows = np.arange(self.psf.rows) - mr
        self._win_cols = np.arange(self.psf.cols) - mc
        self._win_s = (self._win_cols + 0.5 - grid.n_cols / 2.0) * grid.ds_mm
        # Breathing and probe pressure move the deep chest wall; skin and fat stay on the probe.
        d = window_d
        ramp = np.clip((d - a.fat_end_mm) / max(config.rib_depth_mm - a.fat_end_mm, 1.0), 0, 1)
        self._ramp = ramp * ramp * (3 - 2 * ramp)
        self._spec_norm = (1.0 / spec_gain).astype(np.float32)[:, None]
        depth_frac = np.clip(d / config.depth_mm, 0.0, 1.0)
        # Electronic noise is amplified by the TGC: 20 dB more at the bottom than at the top.
        self._noise_rows = (config.noise * 10.0 ** (depth_frac - 1.0)).astype(np.float32)
        self._noise_rows = self._noise_rows[mr : mr + grid.n_rows, None]
        self._b_s = np.asarray(a.b_line_s)
        self._b_sig = np.asarray(a.b_line_sigma)
        self._b_amp = np.asarray(a.b_line_amp)
        self._previous: np.ndarray | None = None  # persistence: the last displayed beam image
        # An mp4 export: one codec stream per cine (a renderer renders one cine), so its first
        # frame is a keyframe. JPEG, when set, wins: an export is one or the other.
        self.codec: VideoCodec | None = None
        if config.video_qp and not config.jpeg_quality:
            self.codec = VideoCodec(config.video_qp, config.video_gop)
        self.overlay: Overlay | None = None
        self._keep_labels: np.ndarray | None = None
        # Drawn whether or not overlays are on, so switching them leaves speckle and motion alone.
        overlay_seed = int(rng.integers(2**31))
        if config.overlays:
            shape = self.geometry.output_shape
            conv = self.geometry.converter
            fan = np.ones(shape, dtype=bool) if conv is None else conv.inside
            focus = config.focus_mm if config.focus_mm is not None else config.pleura_depth_mm
            centre = fan[:, shape[1] // 2]
            top = int(np.flatnonzero(centre)[0]) if centre.any() else 0
            focus_row = top + int(focus / self.geometry.spacing_mm[0])
            orng = np.random.default_rng(overlay_seed)
            self.overlay = draw_overlay(shape, fan, self.geometry.spacing_mm, focus_row, orng)
            self._keep_labels = (~self.overlay.mask).astype(np.uint8)

    def _display(self, image: np.ndarray) -> np.ndarray:
        """Scanner processing of the log image on the beam grid: speckle reduction (compounding),
        clipping to the display range, persistence (frame averaging) and the grey map."""
        cfg = self.config
        if cfg.speckle_reduction > 0:
            image = ndimage.gaussian_filter(image, cfg.speckle_reduction, mode="nearest")
        image = np.clip(image, 0.0, 1.0)
        if cfg.persistence > 0:
            if self._previous is not None:
                image = (1.0 - cfg.persistence) * image + cfg.persistence * self._previous
            self._previous = image
        if cfg.grey_gamma != 1.0:
            image = image ** np.float32(cfg.grey_gamma)
        if cfg.grey_floor > 0:
            image = np.float32(cfg.grey_floor) + np.float32(1.0 - cfg.grey_floor) * image
        return image.astype(np.float32, copy=False)

    def _upsample(self, image: np.ndarray, labels: list[np.ndarray]):
        """Interpolate a ``render_rows`` image (bilinear) and its labels (bilinear, then >= 0.5) up
        to the output frame; the output geometry's fan cuts both, so the edge stays where it is."""
        out_shape = self.geometry.output_shape
        factors = (out_shape[0] / image.shape[0], out_shape[1] / image.shape[1])

        def up(a: np.ndarray) -> np.ndarray:
            big = ndimage.zoom(
                a.astype(np.float32, copy=False), factors, order=1, mode="nearest", grid_mode=True
            )
            return big[: out_shape[0], : out_shape[1]]

        image = up(image)
        labels = [(up(lab) >= 0.5).astype(np.uint8) for lab in labels]
        conv = self.geometry.converter
        if conv is not None:
            image = image * conv.inside
            labels = [lab * conv.inside for lab in labels]
        return image.astype(np.float32, copy=False), labels

    def _indices(self, shift_x_mm: float, ramp_x_mm: float, shift_z_mm: float) -> np.ndarray:
        grid = self._render_geometry.grid
        a = self.anatomy
        ax = np.rint(shift_z_mm * self._ramp / grid.dr_mm).astype(np.intp)
        lat = np.rint((shift_x_mm + ramp_x_mm * self._ramp) / grid.ds_mm).astype(np.intp)
        rows = a.row0 + self._win_rows - ax
        cols = a.col0 + self._win_cols[None, :] - lat[:, None]
        return rows[:, None] * self._cp + cols

    def render(self, motion: _Motion, i: int, *, want_envelope: bool = False):
        """Render frame ``i``: (image, rib, pleura, shadow, envelope-or-None) on the output grid."""
        grid = self._render_geometry.grid
        mr, mc = self.margin
        flat = self._flat
        shift_z = motion.jitter_z[i] + motion.breath_z[i]
        idx = self._indices(motion.jitter_x[i], motion.breath_x[i], shift_z)
        lung_shift = motion.jitter_x[i] + motion.breath_x[i] + motion.slide[i]
        idx_lung = self._indices(lung_shift, 0.0, shift_z)
        rows, cols = self.psf.rows, self.psf.cols

        fresh = complex_gaussian(self.rng, (rows, cols))
        field_ = np.take(flat["static_field"], idx)
        field_ += np.take(flat["static_amp"], idx) * fresh

        # B-lines and the A-lines they erase move with the lung.
        if self._b_s.size:
            z = (self._win_s[:, None] - (self._b_s + lung_shift)[None, :]) / self._b_sig[None, :]
            bprof = (np.exp(-0.5 * z**2) * self._b_amp).sum(axis=1).astype(np.float32)
            erase = np.clip(np.exp(-0.5 * (z / 1.8) ** 2).sum(axis=1), 0, 1).astype(np.float32)
        else:
            bprof = np.zeros(cols, dtype=np.float32)
            erase = bprof
        # Each A-line order k is displaced k times the pleura's axial motion (deep rows only, where
        # the motion ramp is 1; shallower rows of these maps are zero).
        dr = grid.dr_mm
        base = int(np.rint(shift_z / dr))
        alines = np.zeros(idx.shape, dtype=np.float32)
        for k, order in enumerate(self._alines, start=2):
            offset = (int(np.rint(k * shift_z / dr)) - base) * self._cp
            alines += np.take(order, idx - offset, mode="clip")
        alines *= (1.0 - erase)[None, :]
        blines = np.take(flat["bline_amp"], idx) * bprof[None, :]
        granular = np.take(flat["lung_amp"], idx)
        granular += ALINE_GRANULAR * alines
        keep = np.float32(np.sqrt(1.0 - LUNG_DECORRELATION**2))
        lung = np.take(flat["lung_texture"], idx_lung) * keep
        lung += np.float32(LUNG_DECORRELATION) * fresh
        field_ += granular * lung
        if self._b_s.size:
            field_ += BLINE_GRANULAR * blines * np.take(flat["bline_texture"], idx_lung)
        field_ += (ALINE_COHERENT * alines + BLINE_COHERENT * blines) * self._spec_norm

        echo = self.psf.apply(field_)[mr : mr + grid.n_rows, mc : mc + grid.n_cols]
        if self.config.noise > 0:
            echo = echo + self._noise_rows * complex_gaussian(self.rng, echo.shape)
        power = echo.real**2 + echo.imag**2
        cfg = self.config
        db = 10.0 * np.log10(power + np.float32(1e-12))
        image = TISSUE_LEVEL + (db + np.float32(cfg.gain_db)) / np.float32(cfg.dynamic_range_db)
        image = self._display(image.astype(np.float32, copy=False))

        core = idx[mr : mr + grid.n_rows, mc : mc + grid.n_cols]
        labels = [np.take(flat[name], core) for name in ("rib", "pleura", "shadow")]
        conv = self._render_geometry.converter
        if conv is not None:
            image = conv.image(image)
            labels = [conv.labels(lab) for lab in labels]
        if self._render_geometry is not self.geometry:
            image, labels = self._upsample(image, labels)
        if self.overlay is not None:
            image = self.overlay.apply(image)
            labels = [lab * self._keep_labels for lab in labels]
        if cfg.jpeg_quality:
            image = jpeg_compress(image, cfg.jpeg_quality)
        elif self.codec is not None:
            image = self.codec.compress(image)
        # Scanners store 8-bit grey levels.
        image = (np.rint(np.clip(image, 0.0, 1.0) * 255.0) * np.float32(1.0 / 255.0)).astype(
            np.float32, copy=False
        )
        envelope = np.sqrt(power) if want_envelope else None
        return image, labels[0], labels[1], labels[2], envelope


def simulate_cine_job(
    n_frames: int,
    config: SimulationConfig | None = None,
    seed: int = 0,
    *,
    stop: StopFlag | None = None,
) -> Generator[Progress, None, SimulatedCine]:
    """The simulation as a job: yields ``batch`` progress, returns the :class:`SimulatedCine`.

    Stopping early returns the frames made so far.
    """
    if n_frames < 1:
        raise ValueError(f"simulate_cine: n_frames must be >= 1; got {n_frames}")
    config = config if config is not None else SimulationConfig()
    rng = np.random.default_rng(seed)
    renderer = CineRenderer(config, rng)
    motion = _draw_motion(config, n_frames, rng)
    height, width = renderer.geometry.output_shape
    frames = np.empty((n_frames, height, width), dtype=np.float32)
    rib = np.empty((n_frames, height, width), dtype=np.uint8)
    pleura = np.empty_like(rib)
    shadow = np.empty_like(rib)
    done = n_frames
    report_every = max(1, n_frames // 50)
    for i in range(n_frames):
        if stop is not None and stop.is_set():
            done = i
            break
        frames[i], rib[i], pleura[i], shadow[i], _ = renderer.render(motion, i)
        if (i + 1) % report_every == 0 or i + 1 == n_frames:
            yield Progress("batch", i + 1, n_frames, "simulating frames")
    conv = renderer.geometry.converter
    fan = np.ones((height, width), dtype=bool) if conv is None else conv.inside.copy()
    a = renderer.anatomy
    grid = renderer._render_geometry.grid
    metadata = {
        "simulated": True,
        "seed": int(seed),
        "probe": config.probe,
        "rib_centres_mm": [r.centre_s for r in a.ribs],
        "rib_top_mm": [r.top_d for r in a.ribs],
        "b_lines_mm": list(a.b_line_s),
        "beam_grid": [grid.n_rows, grid.n_cols],
        "beam_spacing_mm": [grid.dr_mm, grid.ds_mm],
    }
    return SimulatedCine(
        frames=frames[:done],
        rib=rib[:done],
        pleura=pleura[:done],
        shadow=shadow[:done],
        spacing_mm=renderer.geometry.spacing_mm,
        frame_rate=float(config.frame_rate),
        config=config,
        seed=int(seed),
        fan=fan,
        metadata=metadata,
    )


def simulate_cine(
    n_frames: int, config: SimulationConfig | None = None, seed: int = 0
) -> SimulatedCine:
    """Simulate ``n_frames`` of one lung-ultrasound cine; the same seed gives the same bytes."""
    return run_job(simulate_cine_job(n_frames, config, seed))


def simulate_frame(
    config: SimulationConfig | None = None, seed: int = 0, *, return_envelope: bool = False
) -> SimulatedFrame:
    """One frame; with ``return_envelope`` also its beam-grid envelope before log compression."""
    config = config if config is not None else SimulationConfig()
    rng = np.random.default_rng(seed)
    renderer = CineRenderer(config, rng)
    motion = _draw_motion(config, 1, rng)
    image, rib, pleura, shadow, env = renderer.render(motion, 0, want_envelope=return_envelope)
    return SimulatedFrame(
        image=image,
        rib=rib,
        pleura=pleura,
        shadow=shadow,
        spacing_mm=renderer.geometry.spacing_mm,
        config=config,
        envelope=env,
    )
