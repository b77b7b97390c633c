"""Accuracy of rib models on simulated test sets no model trained on: the numbers in docs/models.md.

    python benchmarks/bench_bundled.py                       # the bundled models
    python benchmarks/bench_bundled.py --models a.safetensors b.safetensors --json out.json

Test sets (seeds never used in training, see scripts/train_bundled.py):
- ``standard``: ``random_config`` clips (seeds 90000+, 256x256, 4 frames each), also split by probe;
- ``probe``: per-probe sets large enough to compare linear with convex (``--probe-clips`` clips of
  each probe, 2 frames each, 256x256; seeds 97000+ linear, 98000+ convex, 99000+ phased): the
  standard set's probe split rests on its 2-6 clips of each probe;
- ``convex_export``: the convex set's clips again as 820x1124 full-screen exports (the real
  scans' size: a ~320-row scanner image interpolated up, shrunk 3-4x on its way to the model);
- ``hard``: the hard domain pushed to the real-scan fingerprint (dark, shadows as bright as the lung,
  overlays, wide fan, JPEG, 820x1124; seeds 500000+): the default (whole frame, outside of the
  detected imaged region zeroed), cropped to the region's box, and with no region at all;
- ``fan_fp``: rib pixels marked on convex fans with no rib (share of the frame; lower is better);
- ``rib_free``: transverse views (probe along the ribs, no rib in view; ``random_config`` clips of
  any probe, seeds 99500+, ``--probe-clips`` x 2 frames): the share of frames with any rib pixel
  and the marked share of the frame (about one real frame in ten shows no rib).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

TEST_SEED = 90_000


def _random_clips(n_clips: int, frames: int, first_seed: int, source: str, probe=None, **overrides):
    """``random_config`` clips of seeds ``first_seed``+ at 256x256 (probe and any other field
    fixed when given), and their configs."""
    from napari_ribseg.core.simulate import random_config
    from napari_ribseg.core.training import TrainingSet

    fixed = {"size": (256, 256)} | ({"probe": probe} if probe else {}) | overrides
    seeds = [first_seed + i for i in range(n_clips)]
    configs = [random_config(np.random.default_rng(s), **fixed) for s in seeds]
    data = TrainingSet.from_cines(zip(configs, seeds, strict=True), frames, source=source)
    return data, configs


def standard_set(n_clips: int, frames: int, seed: int = TEST_SEED):
    """``random_config`` clips of seeds ``seed``+ at 256x256, and the probe of each frame."""
    data, configs = _random_clips(n_clips, frames, seed, "standard test")
    return data, [c.probe for c in configs for _ in range(frames)]


#: First seed of each per-probe test set (bench_validate_bundled.py validates on 96000+).
PROBE_SEEDS = {"linear": 97_000, "convex": 98_000, "phased": 99_000}


def probe_set(probe: str, n_clips: int, frames: int = 2, seed: int | None = None, size=(256, 256)):
    """``random_config`` clips with the probe fixed: seeds ``PROBE_SEEDS[probe]``+ at 256x256
    (or ``size``: the same clips as a full-screen export, e.g. 820x1124)."""
    first = PROBE_SEEDS[probe] if seed is None else seed
    return _random_clips(n_clips, frames, first, f"{probe} test", probe=probe, size=size)[0]


#: Full-screen export size of the real scans (H, W): the convex set again at this size.
EXPORT_SIZE = (820, 1124)


#: First seed of the rib-free test set (transverse views; bench_validate_bundled.py: 96750+).
RIB_FREE_SEED = 99_500


def rib_free_set(n_clips: int = 24, frames: int = 2, seed: int = RIB_FREE_SEED):
    """Transverse views (the probe along the ribs: pleura, A- and B-lines, no rib) of
    ``random_config`` clips, any probe, at 256x256: what an empty mask must come back for."""
    return _random_clips(n_clips, frames, seed, "rib-free test", view="transverse")[0]


def marked(masks) -> tuple[float, float]:
    """(share of frames with any rib pixel, rib pixels per frame as a share of the frame)."""
    return (
        float(np.mean([np.asarray(m).any() for m in masks])),
        float(np.mean([np.asarray(m).mean() for m in masks])),
    )


def fans_without_ribs(n: int = 8):
    from scipy import ndimage as ndi

    from napari_ribseg.core.region import fan_mask

    out = []
    for seed in range(n):
        rng = np.random.default_rng(seed)
        h, w = (256, 320) if seed % 2 else (410, 562)
        fan = fan_mask(
            (h, w), (-rng.uniform(0.1, 0.5) * h, w / 2), (-38.0, 38.0), (0.4 * h, 1.3 * h)
        ).astype(bool)
        speckle = ndi.gaussian_filter(rng.rayleigh(1.0, (h, w)), (1.5, 2.5))
        image = np.where(fan, rng.uniform(0.06, 0.2) * speckle / speckle.mean(), 0.0)
        ring = fan & ~ndi.binary_erosion(fan, iterations=3)
        image[ring] = rng.uniform(0.4, 0.9)
        out.append(np.clip(image, 0, 1).astype(np.float32))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--models", nargs="+", default=["unet-compact", "v-unet-compact", "x-unet-compact"]
    )
    p.add_argument("--clips", type=int, default=12)
    p.add_argument("--hard-clips", type=int, default=12)
    p.add_argument("--probe-clips", type=int, default=24, help="clips of each per-probe set")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import torch

    from napari_ribseg.core.evaluation import evaluate_model, predict_masks
    from napari_ribseg.core.models import load_model
    from napari_ribseg.core.simulate import hard_domain_set

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    standard, probes = standard_set(args.clips, 4)
    hard = hard_domain_set(args.hard_clips, 2)
    fans = fans_without_ribs()
    per_probe = {probe: probe_set(probe, args.probe_clips) for probe in PROBE_SEEDS}
    rib_free = rib_free_set(args.probe_clips)
    convex_export = probe_set("convex", args.probe_clips, size=EXPORT_SIZE)
    print(f"test sets made in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    rows = {}
    for name in args.models:
        model = load_model(name)
        ev = evaluate_model(model, standard, region=False)
        per = np.array([r["dice"] for r in ev.rows])
        by_probe = {
            probe: float(per[[p == probe for p in probes]].mean()) for probe in sorted(set(probes))
        }
        hard_auto = evaluate_model(model, hard).mean  # the default: whole frame, outside zeroed
        hard_crop = evaluate_model(model, hard, region=True).mean
        hard_full = evaluate_model(model, hard, region=False).mean
        fan_masks = predict_masks(model, fans, region=False)
        free_frames, free_share = marked(predict_masks(model, rib_free.images, region=False))
        probe_dice = {
            probe: evaluate_model(model, data, region=False).mean["dice"]
            for probe, data in per_probe.items()
        }
        rows[name] = {
            "standard_dice": ev.mean["dice"],
            **{f"standard_dice_{k}": v for k, v in by_probe.items()},
            "standard_spurious": ev.mean.get("spurious_components"),
            **{f"{probe}_set_dice": v for probe, v in probe_dice.items()},
            "convex_export_set_dice": evaluate_model(model, convex_export).mean["dice"],
            "hard_dice": hard_auto["dice"],
            "hard_dice_crop": hard_crop["dice"],
            "hard_dice_no_region": hard_full["dice"],
            "hard_spurious": hard_auto.get("spurious_components"),
            "hard_spurious_no_region": hard_full.get("spurious_components"),
            "fan_fp_share": float(np.mean([m.mean() for m in fan_masks])),
            "rib_free_frames_marked": free_frames,
            "rib_free_fp_share": free_share,
        }
        print(name, json.dumps(rows[name]), file=sys.stderr)
    keys = list(next(iter(rows.values())))
    print("| model | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[k]:.4g}" for k in keys) + " |")
    n_std, n_hard = len(standard.images), len(hard.images)
    print(
        f"\nstandard: {n_std} frames of {args.clips} clips; per-probe sets: {args.probe_clips} "
        f"clips x 2 frames each; hard: {n_hard} frames of {args.hard_clips} clips; "
        f"{args.threads} thread(s); {time.perf_counter() - t0:.0f} s"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
