"""How close is the pixel spacing derived from the imaging depth to the simulator's true spacing?

For each probe, simulated cines of known ``depth_mm`` go through the same path as ``ribseg info
--depth-mm``: :func:`detect_imaged_region` on the frames, then :func:`depth_spacing`. The error is
against the cine's true row spacing (``SimulatedCine.spacing_mm[0]``). The last columns use the
simulator's own fan as the region (``SimulatedCine.fan``, as a user who corrects the outline in the
widget gives it), which separates the depth rule from the detection. Two settings:

* ``plain``: the fan drawn whole (``fan_zoom=1``) with square pixels (``pixel_aspect=1``), as a
  scanner's screen shows it: the depth it prints spans the image's height.
* ``drawn``: ``random_config`` as drawn, with magnified fans (bottom cut off, so the image spans
  less than ``depth_mm``) and stretched frames (non-square pixels: the column spacing is off by
  the aspect, reported separately).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_depth_spacing.py [--clips 20] [--frames 32]``.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=20, help="cines per probe and setting")
    parser.add_argument("--frames", type=int, default=32, help="frames per cine")
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    args = parser.parse_args()

    from napari_ribseg.core.region import (
        ImagedRegion,
        RegionError,
        depth_spacing,
        detect_imaged_region,
    )
    from napari_ribseg.core.simulate import random_config, simulate_cine

    size = (int(args.size[0]), int(args.size[1]))
    print(f"{args.clips} cines per row, {args.frames} frames of {size[0]}x{size[1]} each")
    header = (
        "probe    setting  within 5%  median |err|  90th pct |err|  no region  col err (median)"
        "  | true region: within 5%  median |err|"
    )
    print(header)
    for setting in ("plain", "drawn"):
        for probe in ("convex", "phased", "linear"):
            errors, col_errors, missed, truth_errors = [], [], 0, []
            for seed in range(args.clips):
                fixed = {"fan_zoom": 1.0, "pixel_aspect": 1.0} if setting == "plain" else {}
                config = random_config(seed, probe=probe, size=size, **fixed)
                cine = simulate_cine(args.frames, config, seed=seed)
                fan = cine.fan if cine.fan is not None else np.ones(size, bool)
                truth = depth_spacing(ImagedRegion.from_mask(fan), config.depth_mm)
                truth_errors.append(abs(truth.spacing_mm[0] / cine.spacing_mm[0] - 1.0))
                region = detect_imaged_region(cine.frames)
                try:
                    if region.kind == "full":
                        raise RegionError("no region")
                    derived = depth_spacing(region, config.depth_mm)
                except RegionError:
                    missed += 1
                    continue
                errors.append(derived.spacing_mm[0] / cine.spacing_mm[0] - 1.0)
                col_errors.append(derived.spacing_mm[1] / cine.spacing_mm[1] - 1.0)
            err, terr = np.abs(np.asarray(errors)), np.asarray(truth_errors)
            print(
                f"{probe:<8} {setting:<8} {np.sum(err <= 0.05):>4.0f}/{len(err):<4}"
                f"  {100 * np.median(err):>11.1f}%  {100 * np.quantile(err, 0.9):>13.1f}%"
                f"  {missed:>9}  {100 * np.median(col_errors):>+15.1f}%"
                f"  | {np.sum(terr <= 0.05):>14.0f}/{len(terr):<5} {100 * np.median(terr):>11.1f}%"
            )


if __name__ == "__main__":
    main()
