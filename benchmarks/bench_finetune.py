"""How much do K curated frames of a new domain help, per freeze strategy? (Markdown table.)

For each model (bundled ones by default; compact models built and pre-trained on a simulated linear
probe domain when none are bundled), fine-tune on K = 5, 10, 20 frames of a *shifted* simulated
domain (default: convex 2.5 MHz, 140 mm deep, low gain; none of which the source domain contains)
and report, per freeze strategy, the Dice on other clips of that domain before and after, with the
wall time of the fine-tune. Everything shrinks with --ks, --strategies, --epochs, --size.

    python benchmarks/bench_finetune.py --ks 5,10 --strategies all,decoder --epochs 5
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np


def _parse_domain(items: list[str]) -> dict:
    """``key=value`` pairs -> SimulationConfig overrides (numbers parsed, else strings)."""
    out: dict = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = float(value) if "." in value or "e" in value.lower() else int(value)
        except ValueError:
            out[key] = value
    return out


def _clips(n_clips: int, frames: int, seed: int, size: int, domain: dict, rng_seed: int):
    from napari_ribseg.core.training import TrainingSet

    rng = np.random.default_rng(rng_seed)
    return TrainingSet.from_simulator(n_clips, frames, rng, seed=seed, size=(size, size), **domain)


def _k_frames(k: int, seed: int, size: int, domain: dict):
    """K frames from ceil(K / 5) clips, spread through each cine (neighbours are near-duplicates)."""
    n_clips = max(1, math.ceil(k / 5))
    per_clip = math.ceil(k / n_clips)
    stride = 3
    pool = _clips(n_clips, per_clip * stride, seed, size, domain, rng_seed=seed)
    picked = [i for i in range(len(pool)) if (i % (per_clip * stride)) % stride == 0][:k]
    return pool.subset(picked, source=f"{pool.source} (every {stride}th frame, K={k})")


def _models(args):
    """(label, LoadedModel) pairs: the requested/bundled models, else pre-trained compact ones."""
    import torch

    from napari_ribseg.core.models import (
        LoadedModel,
        ModelCard,
        build_model,
        list_models,
        load_model,
    )
    from napari_ribseg.core.training import FinetuneConfig, finetune_sync

    if args.models == "built":
        names = []
    elif args.models:
        names = args.models.split(",")
    else:
        names = [e.name for e in list_models() if e.source == "bundled"]
    loaded = [(n, load_model(n)) for n in names]
    if loaded and not args.pretrain_epochs:
        return loaded
    if not loaded:
        loaded = []
        for variant in ("unet", "v-unet"):
            torch.manual_seed(args.seed)
            model = build_model(variant, "compact", input_size=args.size, pretrained=True)
            card = ModelCard(
                name=f"{variant}-compact-{args.size}",
                variant=variant,
                preset="compact",
                widths=list(model.widths),
                input_size=args.size,
            )
            loaded.append((card.name, LoadedModel(model=model, card=card, path=Path(card.name))))
    # Pre-train on the source domain (random linear-probe configs) so "before" means something.
    source = _clips(args.pretrain_clips, 8, 10_000, args.size, {"probe": "linear"}, 10_000)
    config = FinetuneConfig(
        epochs=max(1, args.pretrain_epochs or 3),
        lr=1e-3,
        batch_size=4,
        augment="flip",
        device=args.device,
        early_stop_patience=0,
    )
    out = []
    for label, base in loaded:
        t0 = time.perf_counter()
        result = finetune_sync(base, source, config)
        print(
            f"pre-trained {label} on {len(source)} source frames in "
            f"{time.perf_counter() - t0:.0f} s: val Dice {result.best_val_dice:.3f}",
            flush=True,
        )
        base = LoadedModel(model=result.model, card=result.card, path=base.path)
        out.append((f"{label}+source", base))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        default="",
        help="comma-separated names/paths; default: the bundled models; 'built': compact "
        "models built here and pre-trained on the source domain",
    )
    parser.add_argument("--ks", default="5,10,20", help="frames of the new domain to fine-tune on")
    parser.add_argument("--strategies", default="all,encoder,bottleneck,decoder,progressive")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--augment", default="flip")
    parser.add_argument(
        "--domain",
        nargs="*",
        default=["probe=convex", "frequency_mhz=2.5", "depth_mm=140.0", "gain_db=-10.0"],
        help="SimulationConfig overrides of the shifted domain, key=value",
    )
    parser.add_argument(
        "--size", type=int, default=128, help="simulated frame (and built model) size"
    )
    parser.add_argument("--test-clips", type=int, default=4)
    parser.add_argument("--test-frames", type=int, default=6)
    parser.add_argument("--pretrain-epochs", type=int, default=0, help="source-domain epochs")
    parser.add_argument("--pretrain-clips", type=int, default=12)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    from napari_ribseg.core.training import FinetuneConfig, evaluate_dice, finetune_sync

    domain = _parse_domain(args.domain)
    ks = [int(k) for k in args.ks.split(",")]
    strategies = args.strategies.split(",")
    # Test clips come from seeds no K-frame set uses.
    test = _clips(args.test_clips, args.test_frames, 5_000, args.size, domain, rng_seed=5_000)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"

    rows = []
    for label, base in _models(args):
        base.model.to(device)
        before = evaluate_dice(base.model, test, device=device)
        for k in ks:
            frames = _k_frames(k, seed=100 + k, size=args.size, domain=domain)
            for strategy in strategies:
                config = FinetuneConfig(
                    strategy=strategy,
                    epochs=args.epochs,
                    lr=args.lr,
                    batch_size=args.batch_size,
                    augment=args.augment,
                    device=device,
                    seed=args.seed,
                    early_stop_patience=max(3, args.epochs // 3),
                )
                t0 = time.perf_counter()
                result = finetune_sync(base, frames, config)
                wall = time.perf_counter() - t0
                after = evaluate_dice(result.model, test, device=device)
                rows.append(
                    (
                        label,
                        k,
                        strategy,
                        before,
                        after,
                        result.base_val_dice,
                        result.best_val_dice,
                        len(result.history),
                        wall,
                    )
                )
                print(
                    f"{label} K={k} {strategy}: test Dice {before:.3f} -> {after:.3f} "
                    f"({wall:.1f} s)",
                    flush=True,
                )

    print()
    print(
        f"Shifted domain: {domain}; test: {len(test)} frames of {args.test_clips} other clips; "
        f"device {device}; {args.epochs} epochs max, lr {args.lr}, augment {args.augment}"
    )
    print()
    print(
        "| model | K | strategy | test Dice before | test Dice after | val Dice base -> best "
        "| epochs | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, k, strategy, before, after, vb, va, epochs, wall in rows:
        print(
            f"| {label} | {k} | {strategy} | {before:.3f} | {after:.3f} | {vb:.3f} -> {va:.3f} "
            f"| {epochs} | {wall:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
