"""Dice of a bundled model with and without cropping to the imaged region, on exported-looking frames.

Simulated convex and linear cines are pasted into frames 1.6x wider and 1.3x taller with black
margins, then vendor overlays (text, ruler, marker, logo) are drawn over margins and image, as real
exports look. The model runs with ``crop_to_region`` True and False; Dice is against the pasted
truth. Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_region_crop.py [--model unet-compact]``.
"""

from __future__ import annotations

import argparse

import numpy as np


def exported(frames: np.ndarray, rib: np.ndarray, rng: np.random.Generator):
    from napari_ribseg.core.training.augment import draw_overlays

    n, h, w = frames.shape
    big_h, big_w = int(h * 1.3), int(w * 1.6)
    top, left = int(0.2 * (big_h - h)), (big_w - w) // 2
    out = np.zeros((n, big_h, big_w), np.float32)
    truth = np.zeros((n, big_h, big_w), np.uint8)
    out[:, top : top + h, left : left + w] = frames
    truth[:, top : top + h, left : left + w] = rib
    overlay = draw_overlays(np.zeros((big_h, big_w), np.float32), rng)  # static, like a vendor's
    return np.maximum(out, overlay), truth


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    inter = np.count_nonzero(pred & truth)
    total = np.count_nonzero(pred) + np.count_nonzero(truth)
    return 1.0 if total == 0 else 2 * inter / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="unet-compact")
    parser.add_argument("--frames", type=int, default=12)
    args = parser.parse_args()

    import torch

    from napari_ribseg.core.inference import predict_stack_sync
    from napari_ribseg.core.models import load_model
    from napari_ribseg.core.simulate import random_config, simulate_cine

    torch.set_num_threads(1)
    loaded = load_model(args.model, device="cpu")
    rng = np.random.default_rng(0)
    print(f"model {args.model}, {args.frames} frames per cine")
    print(f"{'probe':<8} {'seed':>4} {'crop':>6} {'whole':>6}  region")
    for probe in ("convex", "linear"):
        for seed in (1, 2):
            cine = simulate_cine(args.frames, random_config(seed, probe=probe), seed=seed)
            frames, truth = exported(cine.frames, cine.rib, rng)
            scores, region = {}, None
            for crop in (True, False):
                pred = predict_stack_sync(loaded, frames, device="cpu", crop_to_region=crop)
                scores[crop] = dice(pred.mask(0.5) > 0, truth > 0)
                region = pred.region if crop else region
            print(
                f"{probe:<8} {seed:>4} {scores[True]:6.3f} {scores[False]:6.3f}  "
                f"{region.describe() if region is not None else '-'}"
            )


if __name__ == "__main__":
    main()
