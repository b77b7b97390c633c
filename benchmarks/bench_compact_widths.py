"""Pick the ``compact`` widths from measurements: CPU frames/s at 256x256 and a short-training Dice.

For unet the base width is swept (level widths base x 1, 2, 4, 8, 16); for v-unet the VGG16 widths
are scaled (base x 1, 2, 4, 8, 8) and initialised with the pretrained VGG16 (HED) filters of largest
L1 norm (channel pruning). Each model trains for a fixed number of steps on the same data and is
scored by Dice on held-out frames. Data: ``core.simulate.simulate_cine`` when it exists, otherwise a
quick synthetic proxy (bright rib arcs with acoustic shadows over speckle), reported as such.

    .venv/bin/python benchmarks/bench_compact_widths.py [--quick] [--json out.json]

Frames/s: batch 1, best of 5, one torch thread by default (``--threads``), so the number is per
core and least disturbed by other load. Training: 150 steps of batch 8 at 64x64 with Adam; widths
with base 32 are timed but not trained (too slow for a laptop anyway). Runs in about 7 minutes on
2 loaded CPU cores (``--data-cache x.npz`` keeps the simulated data for a second seed).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from napari_ribseg.core.models import build_model, count_parameters, flops_per_frame

TRAIN_SIZE = 64
FPS_SIZE = 256


def proxy_frames(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Speckle images with 1-2 bright rib arcs casting shadows; mask = the rib cortex band."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    frames = np.empty((n, size, size), np.float32)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        tissue = 0.25 + 0.15 * rng.random() - 0.15 * yy
        shadow = np.ones_like(yy)
        rib = np.zeros_like(yy, dtype=bool)
        pleura_y = rng.uniform(0.45, 0.6)
        for _ in range(rng.integers(1, 3)):
            cx, half = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.2)
            top = rng.uniform(0.2, pleura_y - 0.1)
            curve = top + 0.25 * ((xx - cx) / half) ** 2 * half
            inside = np.abs(xx - cx) < half
            band = inside & (yy >= curve) & (yy < curve + rng.uniform(0.03, 0.06))
            rib |= band
            shadow[inside & (yy >= curve)] = 0.15
        pleura = (np.abs(yy - pleura_y) < 0.012) & (shadow > 0.5)
        img = tissue * shadow + 0.55 * pleura + 0.7 * rib
        speckle = rng.rayleigh(0.8, size=img.shape).astype(np.float32)
        frames[i] = np.clip(img * speckle + 0.03 * rng.standard_normal(img.shape), 0, 1)
        masks[i] = rib
    return frames, masks


def simulated_frames(n: int, size: int, seed: int):
    """Frames and rib masks from the project's simulator, or None when it is not there yet."""
    try:
        from napari_ribseg.core.simulate import random_config, simulate_cine
    except ImportError:
        return None
    rng = np.random.default_rng(seed)
    frames, masks = [], []
    while sum(len(f) for f in frames) < n:
        config = random_config(rng, size=(size, size))
        cine = simulate_cine(8, config, seed=int(rng.integers(1 << 31)))
        frames.append(cine.frames)
        masks.append(cine.rib)
    return np.concatenate(frames)[:n], np.concatenate(masks)[:n]


def frames_per_second(model: torch.nn.Module, size: int, batch: int, reps: int) -> float:
    """Best of ``reps`` timed batches: the least disturbed by other processes on a shared machine."""
    model.eval()
    x = torch.rand(batch, 1, size, size)
    best = float("inf")
    with torch.inference_mode():
        model(x)
        for _ in range(reps):
            start = time.perf_counter()
            model(x)
            best = min(best, time.perf_counter() - start)
    return batch / best


def train_dice(model, data, steps: int, batch: int, seed: int) -> float:
    """Adam 1e-3, Dice + BCE, fixed steps; Dice on the held-out frames at threshold 0.5."""
    (xtr, ytr), (xva, yva) = data
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(xtr), (batch,), generator=gen)
        x, y = xtr[idx], ytr[idx]
        if torch.rand(1, generator=gen).item() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        logits = model(x)
        p = torch.sigmoid(logits)
        dice = (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
        loss = F.binary_cross_entropy_with_logits(logits, y) + 1 - dice
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.inference_mode():
        pred = torch.cat([model(xva[i : i + 16]) for i in range(0, len(xva), 16)]) > 0
    inter = (pred & (yva > 0.5)).sum().item()
    return 2 * inter / max(1, pred.sum().item() + (yva > 0.5).sum().item())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer widths and steps (smoke run)")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0, help="initialisation and batch-order seed")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--data-cache", type=str, default=None, help="npz to reuse the data")
    parser.add_argument("--json", type=str, default=None)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    steps = 5 if args.quick else args.steps
    n_train, n_val = (32, 16) if args.quick else (160, 48)

    if args.data_cache and Path(args.data_cache).is_file():
        cached = np.load(args.data_cache)
        data, source = (cached["frames"], cached["masks"]), str(cached["source"])
    else:
        data = simulated_frames(n_train + n_val, TRAIN_SIZE, seed=0)
        source = "core.simulate (simulate_cine, random_config)"
        if data is None:
            data = proxy_frames(n_train + n_val, TRAIN_SIZE, seed=0)
            source = "synthetic proxy (simulator not available)"
        if args.data_cache:
            np.savez(args.data_cache, frames=data[0], masks=data[1], source=source)
    x = torch.from_numpy(data[0]).unsqueeze(1)
    y = torch.from_numpy(data[1].astype(np.float32)).unsqueeze(1)
    split = ((x[:n_train], y[:n_train]), (x[n_train:], y[n_train:]))

    bases = (8, 16) if args.quick else (8, 12, 16, 24, 32)
    train_bases = (8, 16) if args.quick else (8, 12, 16, 24)
    configs = [("unet", (b, 2 * b, 4 * b, 8 * b, 16 * b)) for b in bases]
    configs += [("v-unet", (b, 2 * b, 4 * b, 8 * b, 8 * b)) for b in bases]

    rows = []
    print(
        f"data: {source}; train {n_train} / val {n_val} frames at {TRAIN_SIZE}x{TRAIN_SIZE}; "
        f"{steps} steps batch 8; torch threads {threads}; {platform.processor() or platform.machine()}"
    )
    print(
        f"{'variant':8} {'widths':24} {'params':>10} {'GFLOP':>7} {'fps@256':>8} {'dice':>6} {'train_s':>7}"
    )
    for variant, widths in configs:
        torch.manual_seed(args.seed)
        model = build_model(variant, widths=widths, input_size=FPS_SIZE, pretrained=True)
        n_params = count_parameters(model)
        gflop = flops_per_frame(model, FPS_SIZE) / 1e9
        fps = frames_per_second(model, FPS_SIZE, batch=1, reps=2 if args.quick else 5)
        start = time.perf_counter()
        dice = float("nan")
        if widths[0] in train_bases:
            dice = train_dice(model, split, steps, batch=8, seed=args.seed)
        train_s = time.perf_counter() - start
        row = {
            "variant": variant,
            "widths": list(widths),
            "params": n_params,
            "gflop_per_frame": round(gflop, 3),
            "fps_256": round(fps, 2),
            "dice": None if dice != dice else round(dice, 3),
            "train_s": round(train_s, 1),
            "init": model.pretrained_source or "random",
        }
        rows.append(row)
        print(
            f"{variant:8} {str(widths):24} {n_params:>10,} {gflop:>7.2f} {fps:>8.1f} {dice:>6.3f} "
            f"{train_s:>7.1f}",
            flush=True,
        )
    for variant in ("unet", "v-unet"):
        model = build_model(variant, "paper", pretrained=False)
        fps = frames_per_second(model, FPS_SIZE, batch=1, reps=1 if args.quick else 3)
        rows.append(
            {
                "variant": variant,
                "widths": list(model.widths),
                "params": count_parameters(model),
                "gflop_per_frame": round(flops_per_frame(model, FPS_SIZE) / 1e9, 2),
                "fps_256": round(fps, 2),
                "dice": None,
                "preset": "paper",
            }
        )
        print(f"{variant:8} paper {str(model.widths):18} fps@256 {fps:.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"data": source, "steps": steps, "threads": threads, "rows": rows}, f, indent=2
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
