"""Choose the default mask options (threshold, min_size, fill_holes) from a measurement.

    python benchmarks/bench_mask_options.py --threads 2            # validation sets: choose
    python benchmarks/bench_mask_options.py --threads 2 --test     # test sets: confirm

Each bundled model predicts every frame once (the product's predict chain, ``predict_images``);
the sweep then turns the stored probabilities into masks with each combination of
``MaskOptions`` fields (``probability_to_mask``) and scores them: mean Dice per frame (a frame with
no rib and no mark scores 1) and spurious components per frame (components touching no rib).

Sets (``--test`` off): the validation sets of ``bench_validate_bundled.py`` (standard seeds 95000+,
linear 96000+, phased 96250+, convex 96500+, 24 clips x 2 frames at 256x256; hard domain 530000+,
30 frames at 820x1124 with the default imaged-region handling). ``--test``: the reported sets of
``bench_bundled.py`` (standard 90000+ 12 x 4, linear 97000+, convex 98000+, phased 99000+, hard
500000+ 12 x 2).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
MIN_SIZES = (0, 10, 20, 40, 80)
FILL = (False, True)


def _sets(test: bool):
    from napari_ribseg.core.simulate import hard_domain_set

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_bundled import probe_set, standard_set

    if test:
        standard, _ = standard_set(12, 4)
        probes = {p: probe_set(p, 24) for p in ("linear", "convex", "phased")}
        hard = hard_domain_set(12, 2)
    else:
        standard, _ = standard_set(24, 2, seed=95_000)
        seeds = {"linear": 96_000, "phased": 96_250, "convex": 96_500}
        probes = {p: probe_set(p, 24, seed=s) for p, s in seeds.items()}
        hard = hard_domain_set(30, 1, seed=530_000)
    # (data, region handling as in bench_bundled: the 256x256 sets without, the hard domain with
    # the default detection)
    return {"standard": (standard, False), **{p: (d, False) for p, d in probes.items()}} | {
        "hard": (hard, None)
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "models", nargs="*", default=["v-unet-compact", "unet-compact", "x-unet-compact"]
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--test", action="store_true", help="the reported test sets instead")
    args = p.parse_args(argv)

    import torch

    from napari_ribseg.core.inference import predict_images_sync
    from napari_ribseg.core.metrics import dice, spurious_components
    from napari_ribseg.core.models import load_model
    from napari_ribseg.core.postprocess import probability_to_mask

    torch.set_num_threads(args.threads)
    sets = _sets(args.test)
    truths = {k: [np.asarray(m) > 0 for m in d.masks] for k, (d, _) in sets.items()}
    combos = list(itertools.product(THRESHOLDS, MIN_SIZES, FILL))
    # table[combo][set] = (mean Dice, spurious components per frame), one table per model
    names = list(sets)
    print(f"sets: {', '.join(f'{k} {len(d.images)}' for k, (d, _) in sets.items())} frames")
    best_rows = []
    for name in args.models:
        t0 = time.perf_counter()
        model = load_model(name)
        probs = {
            k: predict_images_sync(model, list(d.images), crop_to_region=region)
            for k, (d, region) in sets.items()
        }
        t_pred = time.perf_counter() - t0
        table = {}
        for combo in combos:
            threshold, min_size, fill = combo
            row = {}
            for k in sets:
                pairs = [
                    (probability_to_mask(pr, threshold, min_size=min_size, fill_holes=fill) > 0, t)
                    for pr, t in zip(probs[k], truths[k], strict=True)
                ]
                row[k] = (
                    float(np.mean([dice(m, t) for m, t in pairs])),
                    float(np.mean([spurious_components(m, t) for m, t in pairs])),
                )
            table[combo] = row
        print(f"\n{name} (predicted in {t_pred:.0f} s; Dice / spurious components per frame)")
        print("| threshold | min_size | fill holes | " + " | ".join(names) + " | mean Dice |")
        print("|---|---|---|" + "---|" * (len(names) + 1))
        for combo, row in table.items():
            mean = np.mean([row[k][0] for k in names])
            cells = " | ".join(f"{row[k][0]:.3f} / {row[k][1]:.2f}" for k in names)
            print(
                f"| {combo[0]} | {combo[1]} | {'yes' if combo[2] else 'no'} | {cells} | {mean:.3f} |"
            )
        default = table[(0.5, 0, False)]
        best = max(table, key=lambda c: np.mean([table[c][k][0] for k in names]))
        best_rows.append((name, best, default, table[best]))
    print("\n| model | best (threshold, min_size, fill) | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for name, best, default, row in best_rows:
        cells = " | ".join(f"{default[k][0]:.3f} -> {row[k][0]:.3f}" for k in names)
        print(f"| {name} | {best} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
