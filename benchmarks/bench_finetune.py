"""Does fine-tuning on K corrected frames (and label-free adaptation) help on a *hard* domain?

The hard domain pushes simulated convex frames to the fingerprint of real scans (issue 9): dark
(low gain, narrow dynamic range), soft shadows, a wide fan, scanner overlays (text, depth ruler,
colour bar), JPEG compression, 820x1124 pixels; ribs cover ~0.2% of a frame. None of it is in the
bundled models' training data. For each model and K = 5, 10, 20 corrected frames it reports the
Dice on >= 40 held-out frames of other clips before and after fine-tuning with the current
defaults (``FinetuneConfig()``) and with the old defaults (lr 1e-4, patience 5, flips, best epoch),
whether the gate promoted the result, and the wall time; then label-free adaptation on whole
stacks of other clips. One command, so it can be rerun when the bundled models change:

    python benchmarks/bench_finetune.py                       # bundled unet-compact, K=5,10,20
    python benchmarks/bench_finetune.py --models unet-compact,v-unet-compact --ks 20 --threads 2
"""

from __future__ import annotations

import argparse
import io
import math
import time

import numpy as np


def hard_domain_config(rng: np.random.Generator, size: tuple[int, int]):
    """A SimulationConfig of the hard domain: dark, low dynamic range, wide convex fan."""
    from napari_ribseg.core.simulate import random_config

    return random_config(
        rng,
        probe="convex",
        size=size,
        gain_db=float(rng.uniform(-16.0, -9.0)),
        dynamic_range_db=float(rng.uniform(38.0, 48.0)),
        fov_deg=float(rng.uniform(85.0, 100.0)),
        noise=float(rng.uniform(0.05, 0.12)),
    )


def scanner_look(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Overlays (text blocks, depth ruler, colour bar), soft shadows and JPEG compression."""
    from PIL import Image
    from scipy.ndimage import gaussian_filter

    h, w = frame.shape
    out = gaussian_filter(frame, sigma=1.2)  # soft edges and shadows, as compressed real scans
    for _ in range(3):  # text blocks in the corners
        y = int(rng.choice([rng.integers(0, h // 12), rng.integers(h - h // 10, h - 12)]))
        x = (
            int(rng.integers(0, w // 5))
            if rng.random() < 0.5
            else int(rng.integers(4 * w // 5, w - 60))
        )
        block = rng.random((12, 60)) > 0.6
        out[y : y + 12, x : x + 60] = np.maximum(out[y : y + 12, x : x + 60], 0.9 * block)
    ruler_x = w - 14
    out[:, ruler_x : ruler_x + 2] = np.maximum(out[:, ruler_x : ruler_x + 2], 0.35)
    for y in range(0, h, h // 16):
        out[y : y + 2, ruler_x - 6 : ruler_x + 2] = 0.8
    bar = np.linspace(0, 1, h // 4)[:, None]
    out[h // 8 : h // 8 + len(bar), 4:12] = bar
    buf = io.BytesIO()
    Image.fromarray((np.clip(out, 0, 1) * 255).astype(np.uint8)).save(buf, "JPEG", quality=35)
    return np.asarray(Image.open(buf), np.float32) / 255.0


def hard_domain_set(n_clips: int, frames: int, seed: int, size: tuple[int, int], stride: int = 1):
    """A TrainingSet of hard-domain clips (one group per clip; every ``stride``-th frame kept)."""
    from napari_ribseg.core.simulate import simulate_cine
    from napari_ribseg.core.training import TrainingSet

    try:  # the simulator's own preset, once it exists
        from napari_ribseg.core.simulate import hard_domain  # type: ignore[attr-defined]
    except ImportError:
        hard_domain = None
    images, masks, groups, ids = [], [], [], []
    for clip in range(n_clips):
        rng = np.random.default_rng(seed + clip)
        config = hard_domain(rng, size=size) if hard_domain else hard_domain_config(rng, size)
        cine = simulate_cine(frames * stride, config, seed + clip)
        for f in range(0, frames * stride, stride):
            image = np.asarray(cine.frames[f], np.float32)
            images.append(image if hard_domain else scanner_look(image, rng))
            masks.append(np.asarray(cine.rib[f], np.uint8))
            groups.append(f"hard{seed + clip:05d}")
            ids.append(f"hard{seed + clip:05d}_f{f:04d}")
    return TrainingSet(images, masks, groups, f"hard domain seed={seed}", ids=ids)


def k_frames(k: int, seed: int, size: tuple[int, int]):
    """K corrected frames from ceil(K / 5) clips, every 3rd frame (neighbours are near-duplicates)."""
    n_clips = max(1, math.ceil(k / 5))
    per_clip = math.ceil(k / n_clips)
    data = hard_domain_set(n_clips, per_clip, seed, size, stride=3)
    return data.subset(list(range(k)), source=f"{data.source} (K={k})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="unet-compact", help="comma-separated names/paths")
    parser.add_argument("--ks", default="5,10,20", help="corrected frames to fine-tune on")
    parser.add_argument("--recipes", default="new,old", help="new (defaults), old (pre-issue-9)")
    parser.add_argument("--height", type=int, default=820)
    parser.add_argument("--width", type=int, default=1124)
    parser.add_argument("--test-clips", type=int, default=40)
    parser.add_argument("--test-frames", type=int, default=1)
    parser.add_argument("--adapt-stacks", type=int, default=2, help="0: skip adaptation")
    parser.add_argument("--adapt-frames", type=int, default=40)
    parser.add_argument("--set", nargs="*", default=[], help="FinetuneConfig overrides k=v")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    import torch

    from napari_ribseg.core.models import load_model
    from napari_ribseg.core.training import FinetuneConfig, evaluate_dice, finetune_sync
    from napari_ribseg.core.training.adapt import adapt_sync
    from napari_ribseg.core.training.config import OLD_DEFAULTS, setting_spec

    torch.set_num_threads(args.threads)
    size = (args.height, args.width)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = setting_spec(key).type(value)
    t0 = time.perf_counter()
    test = hard_domain_set(args.test_clips, args.test_frames, 50_000, size, stride=3)
    print(f"test: {len(test)} frames of {args.test_clips} clips ({time.perf_counter() - t0:.0f} s)")
    rows = []
    for name in args.models.split(","):
        base = load_model(name, device=args.device)
        before = evaluate_dice(base.model, test, device=args.device)
        for k in [int(k) for k in args.ks.split(",") if k]:
            frames = k_frames(k, 1_000 + 10 * k, size)
            for recipe in args.recipes.split(","):
                settings = {"device": args.device, **overrides}
                if recipe == "old":
                    settings.update(OLD_DEFAULTS)
                config = FinetuneConfig(**settings)
                t0 = time.perf_counter()
                result = finetune_sync(base, frames, config)
                wall = time.perf_counter() - t0
                # What the user ends up with: the new model if promoted, else the base.
                kept = result.model if result.promoted else base.model
                trained = evaluate_dice(result.model, test, device=args.device)
                after = evaluate_dice(kept, test, device=args.device)
                gate = result.gate
                verdict = (
                    f"{'yes' if result.promoted else 'no'} ({gate.frames} fr)"
                    if gate
                    else ("yes" if result.promoted else "no") + f" (best ep {result.best_epoch})"
                )
                rows.append(
                    (name, f"K={k}", recipe, config.strategy, before, trained, after, verdict, wall)
                )
                print(rows[-1], result.reason, flush=True)
        if args.adapt_stacks:
            stacks = hard_domain_set(args.adapt_stacks, args.adapt_frames, 70_000, size)
            for g in stacks.group_names:
                stack = stacks.subset([i for i, x in enumerate(stacks.groups) if x == g])
                t0 = time.perf_counter()
                res = adapt_sync(base, stack.images, source=g)
                wall = time.perf_counter() - t0
                b = evaluate_dice(base.model, stack, device=args.device)
                trained = evaluate_dice(res.model, stack, device=args.device)
                after = trained if res.promoted else b
                verdict = f"{'yes' if res.promoted else 'no'} ({res.frames_checked} fr)"
                rows.append(
                    (
                        name,
                        f"adapt {g}",
                        "adapt",
                        res.teacher_view,
                        b,
                        trained,
                        after,
                        verdict,
                        wall,
                    )
                )
                print(rows[-1], res.reason, flush=True)

    print()
    print(
        f"Hard domain {size[0]}x{size[1]}; test {len(test)} frames of {args.test_clips} other "
        f"clips; {args.threads} torch thread(s) on {args.device}; overrides {overrides or 'none'}"
    )
    print()
    print(
        "| model | frames | recipe | strategy / teacher | Dice before | Dice trained | "
        "Dice kept | promoted | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, k, recipe, strategy, before, trained, after, verdict, wall in rows:
        print(
            f"| {name} | {k} | {recipe} | {strategy} | {before:.3f} | {trained:.3f} | "
            f"{after:.3f} | {verdict} | {wall:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
