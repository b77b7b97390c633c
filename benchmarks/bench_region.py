"""How well does ``detect_imaged_region`` find the simulator's imaged pixels?

For each probe, ``random_config`` cines (as drawn: margins, overlays, persistence, JPEG/H.264,
magnified fans, stretched pixels) at 256x256, plus ``hard_domain_config`` cines at 820x1124 (wide
magnified fans, dark gain, strong persistence, overlays always), go through
:func:`detect_imaged_region`. Against the simulator's truth (``SimulatedCine.fan``, the imaged
pixels) each cine scores:

* ``IoU``: of the detected region's mask with the true imaged pixels;
* ``rib out``: share of the cine's rib-label pixels outside the detected region (what the default
  ``--region auto`` would zero): must be ~0;
* ``depth err``: ``|detected / true - 1|`` of the region's visible depth, its middle column's
  height (a fitted fan's ``depth_px`` extends a cut-off arc: ``bench_depth_spacing.py`` scores
  that against the true spacing).

Per row: median, 10th percentile and worst IoU; median, 90th percentile and worst rib-out and
depth error; how many cines are within 5% depth; the kinds found; and the detection's time per
cine. Run:
``OMP_NUM_THREADS=1 python benchmarks/bench_region.py [--clips 20] [--frames 32] [--hard 8]``.
``--cache DIR`` keeps the simulated cines (npz) so a second run times only the detection.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np


def _cine(kind: str, seed: int, n_frames: int, size: tuple[int, int], cache: Path | None):
    """(frames, rib, fan) of one simulated cine, from the cache when it holds it."""
    from napari_ribseg.core.simulate import random_config, simulate_cine
    from napari_ribseg.core.simulate.domains import HARD_DOMAIN_SEED, hard_domain_config

    path = None
    if cache is not None:
        path = cache / f"{kind}-{seed}-{n_frames}-{size[0]}x{size[1]}.npz"
        if path.exists():
            with np.load(path) as data:
                return data["frames"].astype(np.float32) / 255.0, data["rib"], data["fan"]
    if kind == "hard":
        config = hard_domain_config(HARD_DOMAIN_SEED + seed)
        cine = simulate_cine(n_frames, config, seed=HARD_DOMAIN_SEED + seed)
    else:
        config = random_config(seed, probe=kind, size=size)
        cine = simulate_cine(n_frames, config, seed=seed)
    fan = cine.fan if cine.fan is not None else np.ones(cine.frames.shape[1:], bool)
    if path is not None:
        cache.mkdir(parents=True, exist_ok=True)
        frames8 = np.rint(cine.frames * 255.0).astype(np.uint8)
        np.savez_compressed(path, frames=frames8, rib=cine.rib, fan=fan)
    return cine.frames, cine.rib, fan


def _row(name: str, scores: list[dict]) -> str:
    iou = np.array([s["iou"] for s in scores])
    out = np.array([s["rib_out"] for s in scores])
    depth = np.array([s["depth"] for s in scores])
    ms = np.array([s["ms"] for s in scores])
    kinds = Counter(s["kind"] for s in scores)
    kinds_text = " ".join(f"{k}:{v}" for k, v in sorted(kinds.items()))
    return (
        f"{name:<14} {np.median(iou):6.3f} {np.quantile(iou, 0.1):6.3f} {iou.min():6.3f}"
        f"  {100 * np.median(out):6.2f}% {100 * np.quantile(out, 0.9):6.2f}% {100 * out.max():6.2f}%"
        f"  {100 * np.median(depth):6.1f}% {100 * np.quantile(depth, 0.9):6.1f}%"
        f" {100 * depth.max():6.1f}%  {np.sum(depth <= 0.05):>3}/{len(depth):<3}"
        f" {np.median(ms):7.1f}  {kinds_text}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=20, help="cines per probe at 256x256")
    parser.add_argument("--frames", type=int, default=32, help="frames per cine")
    parser.add_argument("--hard", type=int, default=8, help="hard-domain cines at 820x1124")
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    parser.add_argument("--cache", type=Path, default=None, help="folder for simulated cines")
    parser.add_argument("--verbose", action="store_true", help="one line per cine")
    args = parser.parse_args()

    from napari_ribseg.core.region import ImagedRegion, detect_imaged_region

    size = (int(args.size[0]), int(args.size[1]))
    print(
        f"{args.clips} random_config cines per probe at {size[0]}x{size[1]}, {args.hard} "
        f"hard-domain cines at 820x1124, {args.frames} frames each"
    )
    print(
        f"{'rows':<14} {'IoU: median':>11} {'p10':>6} {'worst':>6}"
        f"  {'rib out: med':>12} {'p90':>7} {'worst':>7}"
        f"  {'depth err: med':>14} {'p90':>7} {'worst':>7}  {'<=5%':>7} {'ms/cine':>7}  kinds"
    )
    plan = [(p, args.clips, size) for p in ("convex", "phased", "linear")]
    plan.append(("hard", args.hard, (820, 1124)))
    for kind, n_clips, shape in plan:
        if n_clips <= 0:
            continue
        scores = []
        for seed in range(n_clips):
            frames, rib, fan = _cine(kind, seed, args.frames, shape, args.cache)
            start = time.perf_counter()
            region = detect_imaged_region(frames)
            ms = 1000.0 * (time.perf_counter() - start)
            truth = ImagedRegion.from_mask(fan, kind="hull", source="user")
            visible = ImagedRegion.from_mask(region.mask, kind="hull", source="user")
            union = np.count_nonzero(region.mask | fan)
            rib_total = np.count_nonzero(rib)
            rib_out = np.count_nonzero(rib[:, ~region.mask]) / rib_total if rib_total else 0.0
            scores.append(
                {
                    "iou": np.count_nonzero(region.mask & fan) / union,
                    "rib_out": rib_out,
                    "depth": abs(visible.depth_px / truth.depth_px - 1.0),
                    "ms": ms,
                    "kind": region.kind,
                }
            )
            if args.verbose:
                s = scores[-1]
                print(
                    f"  {kind} {seed:>3}: IoU {s['iou']:.3f} rib out {100 * s['rib_out']:.2f}% "
                    f"depth {region.depth_px:.1f}/{truth.depth_px:.1f} px  {region.describe()}"
                )
        name = f"{kind} {shape[0]}x{shape[1]}"
        print(_row(name, scores), flush=True)


if __name__ == "__main__":
    main()
