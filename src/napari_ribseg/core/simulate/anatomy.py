"""Tissue model of a longitudinal intercostal scan, evaluated once per cine on a padded beam grid.

Everything here is in skin coordinates (``s`` lateral, ``d`` depth, millimetres) and produces the
maps the renderer gathers each frame: scatterer amplitudes (echogenicity), specular reflectors, the
cumulative attenuation left after time-gain compensation (which makes the rib shadows), the
below-pleura artefact amplitudes (A-lines, B-line support, sub-pleural haze) and the label maps.
The grid is padded beyond the field of view so probe and breathing motion can be rendered by
shifting a window over it instead of rebuilding the anatomy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from napari_ribseg.core.simulate.config import SimulationConfig
from napari_ribseg.core.simulate.psf import DISPLAY_SIGMA_PX, axial_sigma_mm

# Attenuation of bone (dB/cm/MHz) and the round-trip transmission loss into it (dB): together they
# make the shadow behind a rib near-total while a beam grazing the rib edge is only dimmed.
BONE_ATTENUATION = 20.0
BONE_ENTRY_LOSS_DB = 12.0
# A shadow label is where bone alone has taken this much of the round-trip signal.
SHADOW_LOSS_DB = 20.0
# Amplitudes of the specular echoes relative to unit-echogenicity tissue: bone cortex and the
# tissue/air pleural interface reflect far more than soft tissue scatters (about +25 and +21 dB).
RIB_ECHO = 6.0
PLEURA_ECHO = 14.0
# Lateral reach (mm, Gaussian sigma) of the side-lobe and reverberation clutter that fills shadows.
SHADOW_FILL_MM = 12.0
# Half-thickness of the rib label in standard deviations of the displayed cortex echo: the band a
# reader sees as the bright cortex (a +29 dB echo stands out of tissue over about +-2.6 sigma).
RIB_LABEL_SIGMAS = 2.2
# Specular reflectors fade as their surface tilts away from the beam (radians, Gaussian width).
SPECULAR_ANGLE = 0.5
# Fraction of tissue / lung speckle renewed each frame (out-of-plane motion, lung sliding).
TISSUE_DECORRELATION = 0.15
# Mean power of an A-line of unit amplitude as the renderer draws it (coherent 0.8 + granular 0.5).
ALINE_POWER = 0.8**2 + 0.5**2
LUNG_DECORRELATION = 0.45


@dataclass
class Rib:
    """One rib cross-section: an ellipse whose top is the cortex the beam sees."""

    centre_s: float
    top_d: float
    half_width: float
    half_height: float


@dataclass
class Anatomy:
    """Padded-grid maps of one cine's anatomy; row ``p`` is depth ``(p - row0) * dr``."""

    row0: int
    col0: int
    d_mm: np.ndarray  # (Rp,)
    s_mm: np.ndarray  # (Cp,)
    static_field: np.ndarray  # complex64: fixed tissue speckle + specular echoes, attenuated
    static_amp: np.ndarray  # float32: amplitude of the per-frame renewed tissue speckle
    lung_amp: np.ndarray  # float32: pleura granularity + sub-pleural haze (sliding texture)
    aline_amp: np.ndarray  # float32 (orders, Rp, Cp): A-line of order k = 2, 3, ... per slice
    bline_amp: np.ndarray  # float32: where B-lines can appear (below visible pleura)
    lung_texture: np.ndarray  # complex64: sliding sub-pleural scatterers, vertically streaked
    bline_texture: np.ndarray  # complex64: ring-down texture of B-lines, long along depth
    rib: np.ndarray  # uint8
    pleura: np.ndarray  # uint8
    shadow: np.ndarray  # uint8
    ribs: list[Rib] = field(default_factory=list)
    b_line_s: list[float] = field(default_factory=list)
    b_line_sigma: list[float] = field(default_factory=list)
    b_line_amp: list[float] = field(default_factory=list)
    fat_end_mm: float = 0.0


def _kernel_gain(sigma_px: float) -> float:
    """Standard deviation of white unit noise after ``gaussian_filter1d`` with ``sigma_px``."""
    half = int(4.0 * sigma_px + 0.5)
    x = np.arange(-half, half + 1)
    k = np.exp(-0.5 * (x / sigma_px) ** 2)
    k /= k.sum()
    return float(np.sqrt(np.sum(k**2)))


def _smooth_1d(rng: np.random.Generator, n: int, sigma_px: float) -> np.ndarray:
    """Unit-variance smooth random profile with correlation length ``sigma_px``.

    Normalised by the filter's theoretical gain, not the sample's std: a profile much shorter than
    its correlation length is nearly constant and must stay a small random offset, not blow up.
    """
    sigma_px = max(sigma_px, 0.5)
    x = ndimage.gaussian_filter1d(rng.standard_normal(n), sigma_px, mode="wrap")
    return x / _kernel_gain(sigma_px)


def _smooth_2d(rng: np.random.Generator, shape: tuple[int, int], sigma_px) -> np.ndarray:
    sig = [max(float(v), 0.5) for v in sigma_px]
    x = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sig, mode="wrap")
    return x / np.float32(_kernel_gain(sig[0]) * _kernel_gain(sig[1]))


def _line(d: np.ndarray, centre, thickness: float, dr: float) -> np.ndarray:
    """Depth profile of a thin reflector at depth ``centre`` (broadcast), summing to 2 over samples.

    Diffuse speckle has unit variance per sample whatever the sample size, so a specular line is
    normalised per sample too: its echo then keeps the same contrast to tissue on fine and coarse
    grids. A reflector thinner than 0.6 sample is widened so it cannot alias between samples.
    """
    width = max(thickness, 0.6 * dr)
    scale = 2.0 * dr / (width * np.sqrt(2.0 * np.pi))
    return scale * np.exp(-0.5 * ((d - centre) / width) ** 2)


def build_anatomy(
    config: SimulationConfig,
    rng: np.random.Generator,
    *,
    n_rows: int,
    n_cols: int,
    dr: float,
    ds: float,
    pad_rows: tuple[int, int],
    pad_cols: int,
    specular_gain,
    a_line_orders: int = 4,
) -> Anatomy:
    """Draw one patient's chest wall and evaluate every map on the padded grid.

    ``specular_gain(d)`` is the PSF's gain on a laterally flat echo at depth ``d``; specular
    reflectors are divided by it so their brightness does not depend on the local beam width.
    ``a_line_orders`` is how many A-lines (orders 2, 3, ...) are modelled.
    """
    top, bottom = pad_rows
    rp, cp = n_rows + top + bottom, n_cols + 2 * pad_cols
    d1 = (np.arange(rp) - top) * dr
    s1 = (np.arange(cp) - pad_cols + 0.5 - n_cols / 2.0) * ds
    d = d1[:, None]
    s = s1[None, :]
    f = config.frequency_mhz
    px_s = 1.0 / ds
    px_d = 1.0 / dr

    # --- Chest-wall geometry -------------------------------------------------------------------
    tilt = float(rng.normal(0.0, 0.03))  # chest wall not exactly parallel to the probe
    skin = config.skin_mm
    fat_end = skin + config.fat_mm + 0.6 * _smooth_1d(rng, cp, 8.0 * px_s)[None, :]
    fat_end = np.maximum(fat_end, skin + 0.3)
    gap, width = config.rib_spacing_mm, config.rib_width_mm
    period = gap + width
    # Centre an intercostal space near the middle of the view: the classic "bat sign".
    s_gap = float(rng.uniform(-0.25, 0.25)) * min(period, n_cols * ds)
    k_lo = int(np.floor((s1[0] - s_gap) / period)) - 1
    k_hi = int(np.ceil((s1[-1] - s_gap) / period)) + 1
    ribs = []
    # A transverse view lies in one intercostal space: no rib.
    for k in range(k_lo, k_hi + 1) if config.view != "transverse" else ():
        centre = s_gap + period / 2.0 + k * period
        a = width / 2.0 * float(rng.uniform(0.9, 1.1))
        b = a * float(rng.uniform(0.4, 0.6))
        top_d = config.rib_depth_mm + tilt * centre + float(rng.normal(0.0, 0.5))
        ribs.append(Rib(centre, max(top_d, float(fat_end.max()) + 1.0), a, b))

    pleura_d = (
        config.pleura_depth_mm
        + tilt * s
        + config.pleura_irregularity_mm * _smooth_1d(rng, cp, 1.2 * px_s)[None, :]
        + 0.3 * _smooth_1d(rng, cp, 10.0 * px_s)[None, :]
    )

    # --- Echogenicity of soft tissue (scatterer amplitude) ---------------------------------
    muscle_tex = _smooth_2d(rng, (rp, cp), (0.25 * px_d, 4.0 * px_s))  # fibres parallel to skin
    fat_tex = _smooth_2d(rng, (rp, cp), (1.2 * px_d, 1.5 * px_s))  # fat lobules
    skin_gain = 1.0 + 0.15 * _smooth_1d(rng, cp, 3.0 * px_s)[None, :]
    in_skin = d < skin
    in_fat = (d >= skin) & (d < fat_end)
    in_muscle = (d >= fat_end) & (d < pleura_d)
    echo = np.zeros((rp, cp), dtype=np.float32)
    echo += np.where(in_skin & (d >= 0), 1.5 * skin_gain, 0.0).astype(np.float32)
    echo += np.where(in_fat, 0.3 * np.clip(1.0 + 0.5 * fat_tex, 0.25, 2.0), 0.0).astype(np.float32)
    echo += np.where(in_muscle, 0.9 * np.clip(1.0 + 0.35 * muscle_tex, 0.2, 2.5), 0.0).astype(
        np.float32
    )
    # Fibrous septa crossing the fat: short, slightly oblique bright strands.
    for _ in range(int(rng.integers(1, 4))):
        depth0 = skin + float(rng.uniform(0.25, 0.8)) * config.fat_mm
        s0 = float(rng.uniform(s1[0], s1[-1]))
        length = float(rng.uniform(5.0, 15.0))
        slope = float(rng.normal(0.0, 0.08))
        env = np.exp(-0.5 * ((s - s0) / (length / 2.5)) ** 2)
        echo += (1.4 * env * _line(d, depth0 + slope * (s - s0), 0.2, dr) * in_fat).astype(
            np.float32
        )

    # --- Specular reflectors (coherent, no speckle) -----------------------------------------
    specular = np.zeros((rp, cp), dtype=np.float32)
    specular += 4.0 * _line(d, 0.25, 0.15, dr) * skin_gain  # skin entry echo
    fascia_mod = np.clip(1.0 + 0.4 * _smooth_1d(rng, cp, 2.0 * px_s), 0.2, 2.0)[None, :]
    specular += 3.5 * fascia_mod * _line(d, fat_end, 0.2, dr)
    echo += (1.2 * _line(d, fat_end, 0.3, dr)).astype(np.float32)
    if config.rib_depth_mm - fat_end.mean() > 5.0:
        frac = float(rng.uniform(0.35, 0.65))
        fascia2 = fat_end + frac * (config.rib_depth_mm - fat_end) + 0.2 * tilt * s
        mod2 = np.clip(1.0 + 0.6 * _smooth_1d(rng, cp, 3.0 * px_s), 0.0, 2.0)[None, :]
        specular += 2.5 * mod2 * _line(d, fascia2, 0.2, dr)

    # --- Ribs: cortex echo, bone, label bands -------------------------------------------------
    in_bone = np.zeros((rp, cp), dtype=bool)
    rib_label = np.zeros((rp, cp), dtype=bool)
    cortex_top = np.full(cp, np.inf)
    echo_sigma = float(
        np.sqrt(
            axial_sigma_mm(f) ** 2 + ((DISPLAY_SIGMA_PX**2 + config.speckle_reduction**2) * dr**2)
        )
    )
    label_half = max(0.75, 1.5 * dr, RIB_LABEL_SIGMAS * echo_sigma)
    cortex_w = 1.5 * max(0.2, 0.6 * dr)
    for rib in ribs:
        u = (s1 - rib.centre_s) / rib.half_width
        cols = np.abs(u) < 1.0
        if not cols.any():
            continue
        uu = u[cols]
        root = np.sqrt(1.0 - uu**2)
        top_s = rib.top_d + rib.half_height * (1.0 - root)
        centre_d = rib.top_d + rib.half_height
        dc = d
        # The bone (and its loss) starts below the cortex echo, which is the reflection itself.
        inside = ((dc - centre_d) / rib.half_height) ** 2 + uu[None, :] ** 2 < 1.0
        in_bone[:, cols] |= inside & (dc > top_s[None, :] + cortex_w)
        slope = rib.half_height * uu / (rib.half_width * np.maximum(root, 1e-3))
        bright = np.exp(-((np.arctan(slope) / SPECULAR_ANGLE) ** 2))
        rough = np.clip(1.0 + 0.15 * rng.standard_normal(uu.size), 0.5, 1.5)
        prof = _line(dc, top_s[None, :], 0.2, dr)
        specular[:, cols] += (RIB_ECHO * bright * rough)[None, :] * prof
        echo[:, cols] += (2.0 * bright[None, :] * prof).astype(np.float32)
        visible = bright > 0.3
        band = np.abs(dc - top_s[None, :]) <= label_half
        rib_label[:, cols] |= band & visible[None, :]
        cortex_top[cols] = np.minimum(cortex_top[cols], top_s)
    echo[in_bone] = 0.0

    # --- Attenuation left after time-gain compensation (per beam, cumulative) ---------------
    alpha = config.attenuation_db_cm_mhz
    local = np.zeros((rp, cp), dtype=np.float64)
    local[in_fat | in_skin] = -0.2 * alpha  # fat attenuates less than the TGC assumes
    local[in_muscle] = 0.1 * alpha
    local[np.broadcast_to(d < 0, local.shape)] = 0.0
    local[np.broadcast_to(d >= pleura_d, local.shape)] = 0.0
    bone_db = np.where(in_bone, BONE_ATTENUATION, 0.0)
    per_sample = 2.0 * f * (local + bone_db) * dr / 10.0  # round trip, dB, dr in cm
    entering = in_bone & ~np.vstack([np.zeros((1, cp), dtype=bool), in_bone[:-1]])
    per_sample += BONE_ENTRY_LOSS_DB * entering
    # Exclusive cumulative sum: an echo is dimmed by what lies above it, not by itself.
    loss = np.cumsum(per_sample, axis=0) - per_sample
    bone_loss = np.cumsum(2.0 * f * bone_db * dr / 10.0 + BONE_ENTRY_LOSS_DB * entering, axis=0)
    gain = (10.0 ** (-loss / 20.0)).astype(np.float32)
    # Transmission down to the pleura of each beam: what reaches the lung and comes back.
    p_rows = np.clip(np.rint(pleura_d[0] / dr).astype(int) + top, 0, rp - 1)
    cols_idx = np.arange(cp)
    t_pleura = gain[p_rows, cols_idx][None, :]
    bone_at_pleura = bone_loss[p_rows, cols_idx][None, :]
    shadow_label = (bone_loss >= SHADOW_LOSS_DB) & (d >= cortex_top[None, :])

    # --- Pleura and the air below it ---------------------------------------------------------
    pleura_mod = np.clip(1.0 + 0.35 * _smooth_1d(rng, cp, 1.5 * px_s), 0.3, 2.0)[None, :]
    pleura_prof = _line(d, pleura_d, 0.3, dr)
    specular += PLEURA_ECHO * pleura_mod * pleura_prof
    below = np.clip((d - pleura_d) / 0.6, 0.0, 1.0)  # soft onset of the air region
    lung = 2.5 * pleura_mod * pleura_prof
    haze_len = float(rng.uniform(5.0, 12.0))
    lung += below * (0.2 * np.exp(-np.maximum(d - pleura_d, 0.0) / haze_len) + 0.07)
    # A-lines: reverberation between probe face and pleura, at k times the skin-pleura distance.
    decay = 10.0 ** (-config.a_line_decay_db / 20.0)
    # One map per order: when breathing or probe pressure moves the pleura by x, the order-k line
    # must move by k * x, so the renderer shifts each order on its own.
    alines = np.zeros((a_line_orders, rp, cp), dtype=np.float32)
    for k in range(2, a_line_orders + 2):
        thick = 0.3 * (1.0 + 0.35 * (k - 1))
        amp = PLEURA_ECHO * decay ** (k - 1) * pleura_mod * t_pleura
        alines[k - 2] = amp * _line(d, k * pleura_d, thick, dr)
    blines = below * (1.0 - 0.15 * np.clip((d - pleura_d) / max(config.depth_mm, 1.0), 0, 1))

    # Specular echoes pass the lateral filter with its DC gain; undo it so their brightness is the
    # reflector's, not the beam width's.
    spec_norm = (1.0 / np.asarray(specular_gain(d1), dtype=np.float64))[:, None]
    static_field = np.sqrt(1.0 - TISSUE_DECORRELATION**2) * echo * gain
    tissue_tex = rng.standard_normal((rp, 2 * cp), dtype=np.float32) * np.float32(np.sqrt(0.5))
    # Side-lobe and multipath clutter: a faint echo everywhere, so shadows are dark grey, not void.
    clutter = np.full((rp, cp), 10.0 ** (config.clutter_db / 20.0), dtype=np.float64)
    if config.shadow_fill_db is not None:
        # Side lobes and reverberations carry the echoes beside a shadow into it: top up every
        # dim place to the mean power of the unshadowed echoes beside it (less shadow_fill_db).
        # Normalised by the unshadowed weight, so a wide shadow fills as much as a narrow one.
        power = (echo * gain) ** 2 + (lung * t_pleura) ** 2
        power = power + (ALINE_POWER * alines.sum(axis=0) ** 2)
        lit = (~shadow_label).astype(np.float64)
        sigma = SHADOW_FILL_MM / ds
        spread = ndimage.gaussian_filter1d(power * lit, sigma, axis=1, mode="nearest")
        spread /= np.maximum(ndimage.gaussian_filter1d(lit, sigma, axis=1, mode="nearest"), 0.05)
        fill = np.maximum(10.0 ** (config.shadow_fill_db / 10.0) * spread - power, 0.0)
        clutter = np.sqrt(clutter**2 + fill)
    static = tissue_tex.view(np.complex64) * (static_field + clutter).astype(np.float32)
    static += (specular * gain * spec_norm).astype(np.float32)
    static[d1 < 0, :] = 0

    # Sub-pleural texture: vertically streaked (comet-like), renewed partly each frame.
    lung_tex = rng.standard_normal((rp, 2 * cp), dtype=np.float32)
    lung_tex = ndimage.gaussian_filter1d(lung_tex, 0.4 * px_d, axis=0)
    lung_tex /= np.float32(lung_tex.std() * np.sqrt(2.0))
    # B-lines are ring-down reverberations: their fluctuations are long along the beam.
    ring = rng.standard_normal((rp, 2 * cp), dtype=np.float32)
    ring = ndimage.gaussian_filter1d(ring, 2.5 * px_d, axis=0)
    ring /= np.float32(ring.std() * np.sqrt(2.0))
    pleura_band = np.abs(d - pleura_d) <= max(0.7, 1.5 * dr)

    # B-lines start in intercostal spaces inside the view.
    b_s, b_sig, b_amp = [], [], []
    gaps = []
    half_view = n_cols * ds / 2.0
    for left, right in zip(ribs[:-1], ribs[1:], strict=False):
        lo = left.centre_s + left.half_width + 1.5
        hi = right.centre_s - right.half_width - 1.5
        lo, hi = max(lo, -half_view + 1.0), min(hi, half_view - 1.0)
        if hi > lo:
            gaps.append((lo, hi))
    if not ribs:
        gaps.append((-half_view + 1.0, half_view - 1.0))
    for _ in range(config.b_lines if gaps else 0):
        lo, hi = gaps[int(rng.integers(len(gaps)))]
        b_s.append(float(rng.uniform(lo, hi)))
        b_sig.append(float(rng.uniform(0.6, 1.3)))
        b_amp.append(float(rng.uniform(1.4, 2.2)))

    return Anatomy(
        row0=top,
        col0=pad_cols,
        d_mm=d1,
        s_mm=s1,
        static_field=static,
        static_amp=(TISSUE_DECORRELATION * echo * gain).astype(np.float32),
        lung_amp=(lung * t_pleura).astype(np.float32),
        aline_amp=alines,
        bline_amp=(blines * t_pleura).astype(np.float32),
        lung_texture=lung_tex.view(np.complex64),
        bline_texture=ring.view(np.complex64),
        rib=rib_label.astype(np.uint8),
        pleura=(pleura_band & (bone_at_pleura < SHADOW_LOSS_DB)).astype(np.uint8),
        shadow=shadow_label.astype(np.uint8),
        ribs=ribs,
        b_line_s=b_s,
        b_line_sigma=b_sig,
        b_line_amp=b_amp,
        fat_end_mm=float(fat_end.mean()),
    )
