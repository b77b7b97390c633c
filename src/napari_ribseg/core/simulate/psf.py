"""Point-spread function of the imaging system at complex baseband, and envelope detection.

Convolving a complex (analytic) scatterer field with the complex baseband pulse is the standard fast
equivalent of simulating RF lines and taking the Hilbert envelope: the carrier is demodulated away, so
the grid only has to resolve the pulse envelope, not the wavelength. The baseband pulse of a
Gaussian-modulated pulse is a Gaussian; the lateral beam profile is a Gaussian whose width grows away
from the transmit focus (Gaussian-beam law). Both kernels have unit energy so a homogeneous field of
unit-variance scatterers gives a unit-power speckle everywhere, whatever the local resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy import ndimage

from napari_ribseg.core.simulate.config import SimulationConfig
from napari_ribseg.core.simulate.geometry import BeamGrid, probe_geometry

SPEED_OF_SOUND_MM_US = 1.54
PULSE_CYCLES = 3.0
# Standard deviation (pixels) of the display/decimation filter: a scanner samples the RF far more
# finely than the displayed image and low-passes before decimating, so speckle grains are never
# smaller than about a pixel.
DISPLAY_SIGMA_PX = 0.6
FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def wavelength_mm(frequency_mhz: float) -> float:
    return SPEED_OF_SOUND_MM_US / frequency_mhz


def axial_sigma_mm(frequency_mhz: float) -> float:
    """Sigma of the pulse-echo envelope in depth: FWHM = pulse length / 2 = cycles * lambda / 2."""
    return PULSE_CYCLES * wavelength_mm(frequency_mhz) / 2.0 * FWHM_TO_SIGMA


def lateral_sigma_mm(config: SimulationConfig, d_mm: np.ndarray) -> np.ndarray:
    """Lateral beam sigma at depth ``d_mm``: lambda * F-number at the focus, widening away from it.

    The Rayleigh range is set to a quarter of the image depth rather than the textbook single-focus
    value, because scanners focus dynamically on receive and the beam stays narrow over a long range.
    """
    f_number = 3.0
    sigma0 = wavelength_mm(config.frequency_mhz) * f_number * FWHM_TO_SIGMA
    focus = config.focus_mm if config.focus_mm is not None else config.pleura_depth_mm
    z_r = config.depth_mm / 4.0
    return sigma0 * np.sqrt(1.0 + ((np.asarray(d_mm, dtype=np.float64) - focus) / z_r) ** 2)


@dataclass
class BeamPSF:
    """Separable PSF on a beam-grid window of ``rows`` x ``cols`` (margins included).

    ``apply`` convolves a complex64 field in place-free fashion: axial convolution on the
    interleaved real/imaginary view (one call), then a per-row lateral Gaussian through the FFT,
    which gives every depth its own beam width exactly and costs two FFTs.
    """

    rows: int
    cols: int
    axial_kernel: np.ndarray  # float32, unit energy
    lateral_transfer: np.ndarray  # float32 (rows, cols_fft), unit energy per row
    cols_fft: int
    # float64 (rows,): gain of the lateral filter on a laterally flat (specular) echo
    specular_gain: np.ndarray

    def apply(self, field: np.ndarray) -> np.ndarray:
        """Return the complex baseband echo (same shape) of a complex64 scatterer field."""
        interleaved = field.view(np.float32)
        axial = ndimage.convolve1d(interleaved, self.axial_kernel, axis=0, mode="constant")
        spectrum = scipy.fft.fft(axial.view(np.complex64), n=self.cols_fft, axis=1, workers=1)
        spectrum *= self.lateral_transfer
        echo = scipy.fft.ifft(spectrum, axis=1, workers=1)
        return echo[:, : self.cols]


def build_psf(config: SimulationConfig, grid: BeamGrid, margin: tuple[int, int]) -> BeamPSF:
    """PSF for the window of beam-grid rows ``-margin[0] .. n_rows + margin[0]`` (and columns)."""
    mr, mc = margin
    rows = grid.n_rows + 2 * mr
    cols = grid.n_cols + 2 * mc
    d = (np.arange(rows) - mr) * grid.dr_mm

    sig_ax = np.hypot(axial_sigma_mm(config.frequency_mhz) / grid.dr_mm, DISPLAY_SIGMA_PX)
    half = int(np.ceil(3.5 * sig_ax))
    x = np.arange(-half, half + 1, dtype=np.float64)
    kern = np.exp(-0.5 * (x / sig_ax) ** 2)
    kern /= np.sqrt(np.sum(kern**2))

    sig_lat = np.hypot(lateral_sigma_mm(config, d) / grid.lateral_pixel_mm(d), DISPLAY_SIGMA_PX)
    # Circular FFT convolution: the margin columns absorb the wrap-around.
    cols_fft = scipy.fft.next_fast_len(cols)
    freqs = scipy.fft.fftfreq(cols_fft)
    transfer = np.exp(-2.0 * (np.pi * sig_lat[:, None] * freqs[None, :]) ** 2)
    energy = np.sqrt(np.mean(transfer**2, axis=1))
    transfer /= energy[:, None]
    # A laterally uniform (specular) echo passes the lateral filter with its DC gain.
    specular_gain = transfer[:, 0].astype(np.float64)
    return BeamPSF(
        rows=rows,
        cols=cols,
        axial_kernel=kern.astype(np.float32),
        lateral_transfer=transfer.astype(np.float32),
        cols_fft=cols_fft,
        specular_gain=specular_gain,
    )


def psf_margin(config: SimulationConfig, grid: BeamGrid) -> tuple[int, int]:
    """Rows and columns of margin that keep the convolution free of edge effects."""
    d = np.linspace(0.0, config.depth_mm, 16)
    sig_lat = np.hypot(lateral_sigma_mm(config, d) / grid.lateral_pixel_mm(d), DISPLAY_SIGMA_PX)
    sig_ax = np.hypot(axial_sigma_mm(config.frequency_mhz) / grid.dr_mm, DISPLAY_SIGMA_PX)
    return int(np.ceil(4 * sig_ax)) + 1, int(np.ceil(4 * sig_lat.max())) + 1


def complex_gaussian(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Circular complex Gaussian field of unit variance (fully developed speckle scatterers)."""
    real = rng.standard_normal((shape[0], 2 * shape[1]), dtype=np.float32)
    real *= np.float32(np.sqrt(0.5))
    return real.view(np.complex64)


def envelope_homogeneous(config: SimulationConfig, seed: int = 0) -> np.ndarray:
    """Envelope (before log compression) of a homogeneous scattering medium on the beam grid.

    Uses exactly the simulator's PSF; fully developed speckle must come out Rayleigh distributed
    (mean / std = sqrt(pi / (4 - pi)) = 1.913) with unit mean power.
    """
    grid = probe_geometry(config).grid
    margin = psf_margin(config, grid)
    psf = build_psf(config, grid, margin)
    rng = np.random.default_rng(seed)
    echo = psf.apply(complex_gaussian(rng, (psf.rows, psf.cols)))
    mr, mc = margin
    return np.abs(echo[mr : mr + grid.n_rows, mc : mc + grid.n_cols]).astype(np.float32)
