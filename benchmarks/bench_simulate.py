"""Simulator speed (frames/s, one thread) and physics checks; prints one line per measurement.

Run: ``python benchmarks/bench_simulate.py``.
"""

from __future__ import annotations

import os

# One core, as the simulator's target: set before numpy/scipy load their thread pools.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import time  # noqa: E402

from napari_ribseg.core.simulate import (  # noqa: E402
    HARD_DOMAIN_SEED,
    RAYLEIGH_MEAN_STD_RATIO,
    SimulationConfig,
    hard_domain_config,
    random_config,
    simulate_cine,
)
from napari_ribseg.core.simulate.checks import (  # noqa: E402
    a_line_depths,
    a_line_spacing_error,
    shadow_contrast,
    speckle_ratio,
)

LINEAR = SimulationConfig(probe="linear", size=(256, 256))
CONVEX = SimulationConfig(probe="convex", size=(256, 256), frequency_mhz=3.5, depth_mm=120.0)


def frames_per_second(config: SimulationConfig, n: int = 120) -> tuple[float, float, float]:
    """(wall-clock frames/s, CPU-time frames/s, setup ms) for an ``n``-frame cine.

    Both clocks are reported: on a shared machine the wall clock includes time other processes
    held the core, while the process CPU time is what the simulator itself costs.
    """
    simulate_cine(2, config, seed=0)  # warm caches and imports
    t0 = time.perf_counter()
    simulate_cine(1, config, seed=1)
    setup = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    simulate_cine(n, config, seed=1)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return n / wall, n / cpu, setup * 1e3


def main() -> None:
    # Clean physics (no scanner chain), then the calibrated chain random_config draws (overlays,
    # JPEG or H.264, speckle reduction, persistence), then the hard domain at its real
    # 820 x 1124 size.
    scanner = random_config(7, probe="convex", size=(256, 256), overlays=True, jpeg_quality=60)
    hard = hard_domain_config(HARD_DOMAIN_SEED)
    cases = (
        ("linear 256x256", LINEAR, 120),
        ("convex 256x256", CONVEX, 120),
        ("convex+scanner chain 256x256", scanner, 120),
        (
            "convex+scanner chain, H.264 QP 30 256x256",
            scanner.replace(jpeg_quality=0, video_qp=30),
            120,
        ),
        ("hard domain 820x1124", hard, 12),
    )
    for name, config, n in cases:
        wall, cpu, setup = frames_per_second(config, n)
        print(
            f"speed {name}, one thread: {wall:.1f} frames/s wall clock, "
            f"{cpu:.1f} frames/s CPU time (setup {setup:.0f} ms, included)"
        )
    for name, config in (("linear", LINEAR), ("convex", CONVEX)):
        ratio = speckle_ratio(config, seed=0)
        dev = 100 * (ratio / RAYLEIGH_MEAN_STD_RATIO - 1)
        print(f"speckle {name}: mean/std {ratio:.3f} (Rayleigh 1.913, {dev:+.1f}%)")
    contrasts = [
        shadow_contrast(simulate_cine(4, LINEAR.replace(b_lines=0), seed=s)) for s in range(3)
    ]
    print(
        f"shadow contrast (under rib / intercostal, linear): {', '.join(f'{c:.3f}' for c in contrasts)}"
    )
    aline = SimulationConfig(
        size=(256, 256), depth_mm=60.0, rib_depth_mm=12.0, pleura_offset_mm=5.0, b_lines=0
    )
    for seed in range(3):
        cine = simulate_cine(8, aline, seed=seed)
        err_mm, err_px = a_line_spacing_error(cine)
        depths = ", ".join(f"{d:.2f}" for d in a_line_depths(cine))
        print(
            f"A-lines seed {seed}: peaks at {depths} mm; spacing error {err_mm:.2f} mm "
            f"({err_px:.2f} px)"
        )
    # Spread of the random configurations the training data draws from.
    configs = [random_config(seed, size=(256, 256)) for seed in range(200)]
    counts = {p: sum(c.probe == p for c in configs) for p in ("convex", "linear", "phased")}
    print("random_config probes of 200: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
