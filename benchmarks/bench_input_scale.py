"""Would a larger model input help full-screen exports? Dice against the letterbox size.

    python benchmarks/bench_input_scale.py --threads 2                     # the bundled models
    python benchmarks/bench_input_scale.py --sizes 256,320 --models v-unet-compact

A real export (820x1124) reaches a model trained at 256 shrunk 4.4x; the bundled models were
trained on frames of at most 288x384. The networks are fully convolutional, so the same weights
can take a larger letterbox (a multiple of 16). This scores each model with its input set to each
size, through the product's predict chain (``evaluate_model``), on sets of 820x1124 frames no model
trained on:

- ``convex export``: ``random_config`` convex clips as 820x1124 exports (the convex test set's
  seeds, 98000+, 1 frame each);
- ``hard``: the hard-domain test set (12 clips x 2 frames, seeds 500000+);
- ``linear export``: ``random_config`` linear clips as 820x1124 exports (seeds 97000+);
- ``hard, shadow 6 dB``: the sensitivity benchmark's hard clips with shadows as bright as the lung
  (seeds 610000+), where the models lose most inside the real range.

The product letterboxes to the card's ``input_size`` (256): this measures whether to change that.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default="v-unet-compact,unet-compact,x-unet-compact")
    p.add_argument("--sizes", default="256,288,320,352", help="letterbox sizes, multiples of 16")
    p.add_argument("--clips", type=int, default=24, help="clips of the convex export set")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if any(s % 16 for s in sizes):
        p.error(f"--sizes must be multiples of 16; got {sizes}")

    import torch

    from napari_ribseg.core.evaluation import evaluate_model
    from napari_ribseg.core.models import load_model
    from napari_ribseg.core.simulate import hard_domain_set

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_bundled import EXPORT_SIZE, probe_set

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    sets = {
        "convex export": probe_set("convex", args.clips, frames=1, size=EXPORT_SIZE),
        "hard": hard_domain_set(12, 2),
        "linear export": probe_set("linear", args.clips // 2, frames=1, size=EXPORT_SIZE),
        "hard, shadow 6 dB": hard_domain_set(10, 1, seed=610_000, shadow_fill_db=6.0),
    }
    print("| model | input | " + " | ".join(sets) + " |")
    print("|---|---|" + "---|" * len(sets))
    for name in [m for m in args.models.split(",") if m]:
        loaded = load_model(name)
        for size in sizes:
            # The letterbox size the engine reads (the card's and the module's, as a checkpoint
            # trained at that size would carry them).
            loaded.model.input_size = loaded.card.input_size = size
            cells = [evaluate_model(loaded, data).mean["dice"] for data in sets.values()]
            print(
                f"| {name} | {size} | " + " | ".join(f"{c:.3f}" for c in cells) + " |", flush=True
            )
    frames = ", ".join(f"{k} {len(v.images)}" for k, v in sets.items())
    print(f"\nframes: {frames}; {args.threads} thread(s); {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
