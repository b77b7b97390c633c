"""Does a per-frame uncertainty rank frames by how wrong the mask is? (Spearman vs per-frame Dice.)

For each bundled rib model, simulate clips of randomly drawn configs (plus a shifted domain, where
errors are common), predict, and report the Spearman rank correlation between each per-frame score
and the per-frame Dice against the simulator's truth. A useful "least confident" score correlates
negatively with Dice (high uncertainty = low Dice); the old confidence should correlate positively.

    OMP_NUM_THREADS=1 python benchmarks/bench_uncertainty.py --clips 10 --frames 6 --size 256

Measured 2026-12-01 on the retrained bundled models (2 shared CPU cores, 1 thread; 60 frames of
random simulated configs + 60 of a convex, -8 dB gain domain; Spearman rho against per-frame
Dice; negative is good for an uncertainty):

| model | frames | mean Dice | confidence (old) | band share (used) | entropy | flip |
|---|---|---|---|---|---|---|
| unet | 120 | 0.732 | +0.70 | -0.75 | -0.77 | -0.61 |
| v-unet | 120 | 0.783 | +0.40 | -0.45 | -0.46 | -0.42 |
| x-unet | 120 | 0.675 | +0.59 | -0.60 | -0.60 | -0.50 |

Re-run 2026-12-05 on the models bundled since (same command, 2 CPU cores, 1 thread): mean Dice is
higher and its spread narrower, and every score ranks frames weakly (rho, confidence / band share /
entropy / flip): unet +0.35 / -0.39 / -0.42 / -0.34 (Dice 0.836), v-unet +0.06 / -0.20 / -0.23 /
-0.07 (0.848), x-unet -0.07 / -0.12 / -0.12 / -0.18 (0.841). No score beats the band share by more
than 0.06 on any model, so it stays.

The band share (share of the rib-like area with 0.1 < p < 0.9) ranks frames about as well as the
entropy and better than flip disagreement at no extra forward pass; it is what "least confident"
(Shift-L) and the review table use.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--models", default="unet,v-unet,x-unet")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from napari_ribseg.core.inference import frame_confidence, predict_stack_sync
    from napari_ribseg.core.models import load_model
    from napari_ribseg.core.training import TrainingSet
    from napari_ribseg.core.uncertainty import flip_disagreement, frame_uncertainty, mean_entropy

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(7)
    size = (args.size, args.size)
    normal = TrainingSet.from_simulator(args.clips, args.frames, rng, seed=500, size=size)
    shifted = TrainingSet.from_simulator(
        args.clips, args.frames, rng, seed=900, size=size, probe="convex", gain_db=-8.0
    )
    print(f"data: {len(normal)} + {len(shifted)} frames ({args.size} px), threads {args.threads}")
    print("| model | frames | mean Dice | confidence | band share (used) | entropy | flip |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        loaded = load_model(name)
        rows = {k: [] for k in ("dice", "conf", "band", "ent", "flip")}
        t0 = time.perf_counter()
        for data in (normal, shifted):
            frames = np.stack(data.images)
            truth = np.stack(data.masks).astype(bool)
            pred = predict_stack_sync(loaded, frames, device="cpu")
            flipped = predict_stack_sync(
                loaded, np.ascontiguousarray(frames[..., ::-1]), device="cpu"
            )
            mask = pred.prob >= 128
            inter = np.count_nonzero(mask & truth, axis=(1, 2))
            total = np.count_nonzero(mask, axis=(1, 2)) + np.count_nonzero(truth, axis=(1, 2))
            rows["dice"].append(np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0))
            rows["conf"].append(frame_confidence(pred.prob))
            rows["band"].append(frame_uncertainty(pred.prob))
            rows["ent"].append(mean_entropy(pred.prob))
            rows["flip"].append(flip_disagreement(pred.prob, flipped.prob))
        r = {k: np.concatenate(v) for k, v in rows.items()}
        print(
            f"| {name} | {r['dice'].size} | {r['dice'].mean():.3f} | "
            f"{spearman(r['conf'], r['dice']):+.2f} | {spearman(r['band'], r['dice']):+.2f} | "
            f"{spearman(r['ent'], r['dice']):+.2f} | {spearman(r['flip'], r['dice']):+.2f} |"
            f"  ({time.perf_counter() - t0:.0f} s)"
        )


if __name__ == "__main__":
    main()
