"""Why full-screen exports lose Dice: the rib band where it reaches the model, and what does not matter.

    python benchmarks/bench_export_size.py --threads 2

The convex test set scores 0.83 at 256x256 and 0.74 as 820x1124 exports (``bench_bundled.py``,
``convex_export_set_dice``) for the bundled V-Unet. For 16 convex ``random_config`` clips (seeds
98000+, the convex test set's, 1 frame each) this reports:

- per set (convex at 256x256, convex as 820x1124 exports, the hard domain): the rib band's
  thickness (pixels per rib column) on the frame and where it reaches the 256 model input, and the
  Dice ceiling of the resolution alone (the true mask letterboxed to 256 and back, against itself);
- the model's Dice at both sizes with one scanner setting changed (pixel aspect, fan zoom,
  margins, compression, full-size rendering), to see whether any of them carries the loss.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

OVERRIDES = {
    "as drawn": {},
    "square pixels": {"pixel_aspect": 1.0},
    "rendered at full size": {"render_rows": 0},
    "fan zoom 1.2": {"fan_zoom": 1.2},
    "margins": {"image_region": (0.04, 0.07, 1.0, 0.93)},
    "no compression": {"jpeg_quality": 0, "video_qp": 0},
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="v-unet-compact")
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    from napari_ribseg.core.evaluation import evaluate_model
    from napari_ribseg.core.metrics import dice
    from napari_ribseg.core.models import letterbox, load_model, unletterbox
    from napari_ribseg.core.simulate import hard_domain_set

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_bundled import EXPORT_SIZE, PROBE_SEEDS, _random_clips

    torch.set_num_threads(args.threads)
    seed = PROBE_SEEDS["convex"]

    def convex(size, **overrides):
        return _random_clips(args.clips, 1, seed, "convex", probe="convex", size=size, **overrides)[
            0
        ]

    sets = {
        "convex 256x256": convex((256, 256)),
        "convex 820x1124": convex(EXPORT_SIZE),
        "hard 820x1124": hard_domain_set(args.clips, 1),
    }
    print("| set | rib band, px of the frame | px at the 256 input | Dice ceiling at 256 |")
    print("|---|---|---|---|")
    for name, data in sets.items():
        bands, ceilings = [], []
        for mask in data.masks:
            rib = np.asarray(mask) > 0
            bands.append(rib.sum() / max(int(rib.any(axis=0).sum()), 1))
            small, box = letterbox(rib[None].astype(np.float32), 256)
            ceilings.append(dice(unletterbox(small, box)[0] > 0.5, rib))
        band = float(np.mean(bands))
        at_input = band * 256 / max(data.masks[0].shape)
        print(f"| {name} | {band:.1f} | {at_input:.1f} | {np.mean(ceilings):.3f} |")

    model = load_model(args.model)
    print(f"\n| {args.model}, setting | Dice at 256x256 | Dice at 820x1124 |")
    print("|---|---|---|")
    for name, overrides in OVERRIDES.items():
        cells = [
            evaluate_model(model, convex(size, **overrides)).mean["dice"]
            for size in ((256, 256), EXPORT_SIZE)
        ]
        print(f"| {name} | {cells[0]:.3f} | {cells[1]:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
