"""Does averaging each frame with its mirror image (test-time flips) help? ``FLIP_AVERAGE``'s default.

Each model predicts the test sets of ``bench_bundled.py`` twice through the product's chain
(``evaluate_model`` / ``predict_masks``): plain, and with ``flip_average=True`` (the frame and its
left-right mirror image, probabilities averaged). Reported per model and set: Dice plain and
flipped, the paired difference (mean, and how many frames gained / lost more than 0.005), spurious
components; rib pixels marked on rib-free transverse views and on fans without ribs; and the
frames/s of ``predict_stack`` at 256x256 both ways (best of ``--repeats``).

    python benchmarks/bench_flip_average.py                      # the bundled models
    python benchmarks/bench_flip_average.py --models a.safetensors --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from bench_bundled import fans_without_ribs, marked, probe_set, rib_free_set, standard_set


def paired(plain, flipped) -> dict:
    a = np.array([r["dice"] for r in plain.rows])
    b = np.array([r["dice"] for r in flipped.rows])
    diff = b - a
    return {
        "plain": float(a.mean()),
        "flipped": float(b.mean()),
        "gain": float(diff.mean()),
        "frames": len(diff),
        "gained": int((diff > 0.005).sum()),
        "lost": int((diff < -0.005).sum()),
        "spurious_plain": plain.mean.get("spurious_components"),
        "spurious_flipped": flipped.mean.get("spurious_components"),
    }


def speed(model, repeats: int) -> dict:
    from napari_ribseg.core.inference import predict_stack_sync

    frames = np.random.default_rng(0).random((16, 256, 256), dtype=np.float32) * 0.5
    out = {}
    for flip in (False, True):
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            predict_stack_sync(model, frames, device="cpu", flip_average=flip, crop_to_region=False)
            best = min(best, time.perf_counter() - t)
        out["flipped" if flip else "plain"] = len(frames) / best
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--models", nargs="+", default=["unet-compact", "v-unet-compact", "x-unet-compact"]
    )
    p.add_argument("--clips", type=int, default=12, help="standard set: clips x 4 frames")
    p.add_argument("--hard-clips", type=int, default=12, help="hard domain: clips x 2 frames")
    p.add_argument("--probe-clips", type=int, default=24, help="per-probe sets: clips x 2 frames")
    p.add_argument("--probes", nargs="*", default=["linear", "convex", "phased"])
    p.add_argument("--no-standard", action="store_true", help="skip the standard and hard sets")
    p.add_argument("--repeats", type=int, default=3, help="timing repeats (best is kept)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import torch

    from napari_ribseg.core.evaluation import evaluate_model, predict_masks
    from napari_ribseg.core.models import load_model
    from napari_ribseg.core.simulate import hard_domain_set

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    sets = {} if args.no_standard else {"standard": standard_set(args.clips, 4)[0]}
    sets |= {probe: probe_set(probe, args.probe_clips) for probe in args.probes}
    if not args.no_standard:
        sets["hard"] = hard_domain_set(args.hard_clips, 2)
    rib_free = rib_free_set(args.probe_clips)
    fans = fans_without_ribs()
    print(f"test sets made in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    rows = {}
    for name in args.models:
        model = load_model(name)
        row = {}
        for set_name, data in sets.items():
            # The hard domain runs as the product does (outside of the imaged region zeroed);
            # the 256x256 sets fill the frame, as bench_bundled scores them.
            region = None if set_name == "hard" else False
            both = [evaluate_model(model, data, region=region, flip_average=f) for f in (0, 1)]
            row[set_name] = paired(*both)
        for set_name, images in (("rib_free", rib_free.images), ("fans", fans)):
            row[set_name] = {
                "plain": marked(predict_masks(model, images, region=False, flip_average=False)),
                "flipped": marked(predict_masks(model, images, region=False, flip_average=True)),
            }
        row["frames_per_s"] = speed(model, args.repeats)
        rows[name] = row
        print(name, json.dumps(row), file=sys.stderr)
    print("| model | set | frames | Dice plain | Dice flip-averaged | gain | frames +/- |")
    print("|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        for set_name in sets:
            r = row[set_name]
            print(
                f"| {name} | {set_name} | {r['frames']} | {r['plain']:.3f} | {r['flipped']:.3f} "
                f"| {r['gain']:+.4f} | {r['gained']}/{r['lost']} |"
            )
    print("\n| model | rib-free frames marked | fan-only share marked | frames/s @256 |")
    print("|---|---|---|---|")
    for name, row in rows.items():
        free, fan, fps = row["rib_free"], row["fans"], row["frames_per_s"]
        print(
            f"| {name} | {free['plain'][0]:.3f} -> {free['flipped'][0]:.3f} | "
            f"{fan['plain'][1]:.5f} -> {fan['flipped'][1]:.5f} | "
            f"{fps['plain']:.1f} -> {fps['flipped']:.1f} |"
        )
    print(f"\n{args.threads} thread(s); {time.perf_counter() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
