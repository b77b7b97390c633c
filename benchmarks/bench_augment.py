"""Milliseconds per frame of each augmentation preset at 256x256 on one CPU thread.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_augment.py [--frames 200] [--size 256]``.
Training runs on a few CPU cores in DataLoader workers, so the augmentation must stay far below the
time of one training step of a compact model (~tens of ms per frame).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()

    import cv2

    from napari_ribseg.core.training.augment import AUGMENT_PRESETS, Augmenter

    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    size = args.size
    image = rng.rayleigh(0.2, (size, size)).clip(0, 1).astype(np.float32)
    mask = np.zeros((size, size), np.uint8)
    mask[size // 8 : size // 8 + size // 50 + 2, size // 10 : size // 2] = 1
    print(f"{'preset':<10} ms/frame ({args.frames} frames, {size}x{size}, 1 thread)")
    for preset in AUGMENT_PRESETS:
        aug = Augmenter(preset)
        aug(image, mask, 0)  # warm-up: lazy imports
        start = time.perf_counter()
        for seed in range(args.frames):
            aug(image, mask, seed)
        ms = 1000 * (time.perf_counter() - start) / args.frames
        print(f"{preset:<10} {ms:8.2f}")


if __name__ == "__main__":
    main()
