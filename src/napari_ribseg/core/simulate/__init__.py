"""The lung-ultrasound simulator: training data, sample data and test oracle.

A convolution model of B-mode imaging at complex baseband: a millimetre tissue model of an
intercostal scan (skin, fat, muscle with fascia, rib cortex arcs with acoustic shadows, pleural line,
A-line reverberations, optional B-lines) is filled with fully developed speckle, attenuated and
time-gain compensated, convolved with a depth-dependent Gaussian PSF, envelope-detected,
log-compressed and (convex or phased-array probe) scan-converted. A display chain adds what real
scanners do (speckle reduction, persistence, grey maps, side-lobe and reverberation clutter that
fills shadows, vendor overlays, JPEG compression), calibrated against real convex scans. Cines add
lung sliding, breathing and probe jitter. ``hard_domain_config`` / ``hard_domain_set`` make the
hard test domain (seeds 500000+, never used in training). See ``docs/simulator.md``.
"""

from napari_ribseg.core.simulate.cine import (
    SimulatedCine,
    SimulatedFrame,
    simulate_cine,
    simulate_cine_job,
    simulate_frame,
)
from napari_ribseg.core.simulate.config import PROBES, VIEWS, SimulationConfig, random_config
from napari_ribseg.core.simulate.domains import (
    DOMAINS,
    EDGE_RANGES,
    HARD_DOMAIN_SEED,
    HARD_DOMAIN_SIZE,
    SUBJECT_FIELDS,
    domain_config,
    edge_config,
    hard_domain_config,
    hard_domain_set,
    same_scanner,
)
from napari_ribseg.core.simulate.psf import envelope_homogeneous

RAYLEIGH_MEAN_STD_RATIO = 1.9131  # sqrt(pi / (4 - pi)): fully developed speckle

__all__ = [
    "DOMAINS",
    "EDGE_RANGES",
    "HARD_DOMAIN_SEED",
    "HARD_DOMAIN_SIZE",
    "PROBES",
    "VIEWS",
    "RAYLEIGH_MEAN_STD_RATIO",
    "SUBJECT_FIELDS",
    "SimulatedCine",
    "SimulatedFrame",
    "SimulationConfig",
    "domain_config",
    "envelope_homogeneous",
    "edge_config",
    "hard_domain_config",
    "hard_domain_set",
    "random_config",
    "same_scanner",
    "simulate_cine",
    "simulate_cine_job",
    "simulate_frame",
]
