"""A 12-bit export in 16-bit files: Dice as read now (its bit depth) against as read before (/65535).

    cd benchmarks && python bench_uint16_bits.py --threads 2

The hard-domain test set (12 clips x 2 frames, 820x1124, seeds 500000+, never trained on) is written
as a paired IMG/+MASK/ folder twice (``write_paired_dataset``, TIFF): 8-bit images (the reference),
and the same pictures as 12-bit samples in 16-bit images (``round(v * 4095)``). Each folder is read by the product's reader
(``read_paired_dataset``) and scored with ``evaluate_model``, as ``ribseg evaluate`` does. "before"
is the 12-bit folder divided by 65535, the rule until 2026-12-03 (the reader's frames x 4095 / 65535).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default="v-unet-compact,unet-compact,x-unet-compact")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    from napari_ribseg.core.evaluation import evaluate_model
    from napari_ribseg.core.io.paired import read_paired_dataset, write_paired_dataset
    from napari_ribseg.core.models import load_model
    from napari_ribseg.core.simulate import hard_domain_set

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = hard_domain_set(12, 2)
    ids = [f"{g}_{i:03d}" for i, g in enumerate(data.groups)]  # clip_id gives the clip
    eight = [np.round(im * 255).astype(np.uint8) for im in data.images]
    twelve = [np.round(im * 4095).astype(np.uint16) for im in data.images]
    with tempfile.TemporaryDirectory() as tmp:
        write_paired_dataset(Path(tmp, "8"), eight, data.masks, ids=ids)
        write_paired_dataset(Path(tmp, "12"), twelve, data.masks, ids=ids)
        sets = {"8-bit": read_paired_dataset(Path(tmp, "8"))}
        sets["12-bit in 16-bit, now"] = now = read_paired_dataset(Path(tmp, "12"))
    before = type(now)(
        [im * np.float32(4095 / 65535) for im in now.images],
        now.masks,
        now.ids,
        now.groups,
        now.root,
    )
    sets["12-bit in 16-bit, before (/65535)"] = before
    print("| model | " + " | ".join(sets) + " |")
    print("|---|" + "---|" * len(sets))
    for name in [m for m in args.models.split(",") if m]:
        loaded = load_model(name)
        cells = [evaluate_model(loaded, d).mean["dice"] for d in sets.values()]
        print(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |", flush=True)
    grey = [
        float(np.median(np.concatenate([im.ravel() for im in d.images]))) for d in sets.values()
    ]
    print("\nmedian grey: " + ", ".join(f"{g * 255:.1f}/255" for g in grey))
    print(f"{len(data.images)} frames; {args.threads} thread(s); {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
