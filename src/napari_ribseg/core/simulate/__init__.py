"""The lung-ultrasound simulator: training data, sample data and test oracle.

A convolution model of B-mode imaging at complex baseband: a millimetre tissue model of an
intercostal scan (skin, fat, muscle with fascia, rib cortex arcs with acoustic shadows, pleural line,
A-line reverberations, optional B-lines) is filled with fully developed speckle, attenuated and
time-gain compensated, convolved with a depth-dependent Gaussian PSF, envelope-detected,
log-compressed and (convex probe) scan-converted. Cines add lung sliding, breathing and probe jitter.
See ``docs/simulator.md``.
"""

from napari_ribseg.core.simulate.cine import (
    SimulatedCine,
    SimulatedFrame,
    simulate_cine,
    simulate_cine_job,
    simulate_frame,
)
from napari_ribseg.core.simulate.config import PROBES, SimulationConfig, random_config
from napari_ribseg.core.simulate.psf import envelope_homogeneous

RAYLEIGH_MEAN_STD_RATIO = 1.9131  # sqrt(pi / (4 - pi)): fully developed speckle

__all__ = [
    "PROBES",
    "RAYLEIGH_MEAN_STD_RATIO",
    "SimulatedCine",
    "SimulatedFrame",
    "SimulationConfig",
    "envelope_homogeneous",
    "random_config",
    "simulate_cine",
    "simulate_cine_job",
    "simulate_frame",
]
