"""Choose between candidate bundled models on validation sets no reported number uses.

    python benchmarks/bench_validate_bundled.py --threads 2 v-unet-compact out/r7/v-unet-compact.safetensors

Standard: ``random_config`` clips of seeds 95000+ (24 clips x 2 frames, 256x256; the reported test
set of ``bench_bundled.py`` and the training script is 90000+), split by probe; linear and convex
sets of 24 clips x 2 frames each (seeds 96000+ and 96500+; reported: 97000+, 98000+), a phased set
of 24 clips x 2 frames (seeds 96250+; reported: 99000+), also scored on its frames that show at
least 50 rib pixels or none; rib-free: transverse views (no rib in view) of 24 clips x 2 frames,
any probe (seeds 96750+; reported: 99500+), the share of them with any rib pixel; hard: the hard
domain from seed 530000 (30 clips x 1 frame; reported: 500000+, fine-tune benchmark 501000+,
550000+, 570000+); hard edges: hard-domain clips at the edges of real scans where the models lose
(``bench_sensitivity.py``, reported: 610000+): 15 clips with shadows filled 5 dB (seeds 620000+)
and 15 with little speckle smoothing, 0.3 (seeds 625000+), one frame each; the convex set's
clips again as 820x1124 full-screen exports. Threshold 0.5, the product's predict chain
(``evaluate_model``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="registry names or checkpoints")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--flip-average",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average each frame's prediction with its mirror image's (test-time flips; "
        "default: the product's FLIP_AVERAGE, docs/inference.md)",
    )
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from napari_ribseg.core.evaluation import evaluate_model, predict_masks
    from napari_ribseg.core.models import load_model
    from napari_ribseg.core.simulate import hard_domain_set

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_bundled import EXPORT_SIZE, marked, probe_set, rib_free_set, standard_set

    torch.set_num_threads(args.threads)
    standard, probes = standard_set(24, 2, seed=95_000)
    probes = np.array(probes)
    hard = hard_domain_set(30, 1, seed=530_000)
    edges = (
        hard_domain_set(15, 1, seed=620_000, shadow_fill_db=5.0),
        hard_domain_set(15, 1, seed=625_000, speckle_reduction=0.3),
    )
    linear, convex = probe_set("linear", 24, seed=96_000), probe_set("convex", 24, seed=96_500)
    phased = probe_set("phased", 24, seed=96_250)
    convex_export = probe_set("convex", 24, seed=96_500, size=EXPORT_SIZE)
    rib_free = rib_free_set(24, seed=96_750)
    print(
        "| model | standard | convex | linear | phased | linear set | convex set | phased set "
        "| phased, rib >= 50 px | hard | hard spurious / frame | rib-free frames marked "
        "| hard edges: shadow 5 dB | speckle 0.3 | convex set at 820x1124 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    # A narrow sector often shows a sliver of rib at its edge (a few pixels): one stray or
    # missing mark there scores Dice 0 or 1, so the phased set is also scored on the frames that
    # show a rib of at least 50 pixels (or none).
    visible = np.array([m.sum() == 0 or m.sum() >= 50 for m in phased.masks])
    flips = {"flip_average": args.flip_average}
    for name in args.models:
        model = load_model(name)
        ev = evaluate_model(model, standard, region=False, **flips)
        per = np.array([r["dice"] for r in ev.rows])
        by = [float(per[probes == probe].mean()) for probe in ("convex", "linear", "phased")]
        sets = [evaluate_model(model, d, region=False, **flips) for d in (linear, convex, phased)]
        shown = np.array([r["dice"] for r in sets[2].rows])[visible].mean()
        h = evaluate_model(model, hard, **flips).mean
        cells = [ev.mean["dice"], *by, *(e.mean["dice"] for e in sets), shown, h["dice"]]
        cells.append(h.get("spurious_components", 0.0))
        free = predict_masks(model, rib_free.images, region=False, **flips)
        cells.append(marked(free)[0])
        cells.extend(evaluate_model(model, e, **flips).mean["dice"] for e in edges)
        cells.append(evaluate_model(model, convex_export, **flips).mean["dice"])
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
