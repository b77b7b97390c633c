"""Where the bundled models break: Dice against one scanner setting at a time, on the hard domain.

    python benchmarks/bench_sensitivity.py --threads 2                  # every knob, the bundled models
    python benchmarks/bench_sensitivity.py --knobs shadow_fill_db,gain_db --models v-unet-compact

Real scans differ from each other more than one simulated test set shows: the real fingerprint's
10th-90th ranges (issue 8; ``../shared/tools/real_lus_ranges.json``) are wide. This benchmark takes
the hard-domain clips (``hard_domain_config``, 820x1124, seeds 610000+: never trained on, not used by
another benchmark), changes one field of their configuration to each of a few values, keeping every
other draw of the clip (a paired design: the same anatomy, motion and scanner, one knob moved), and
reports per value:

- the appearance statistic the knob moves, measured on those frames by the shared fingerprint tool
  (``--fingerprint``, default ``../shared/tools/lus_fingerprint.py``; skipped when it is missing), with
  whether its median lies inside the real scans' 10th-90th range;
- each model's mean Dice and the share of frames it fails (Dice < 0.5), through the product's
  predict chain (``evaluate_model``: default imaged-region handling, threshold 0.5).

A knob whose in-range values already cost Dice is where a real scan is likely to fail.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SEED = 610_000
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FINGERPRINT = ROOT.parent / "shared" / "tools" / "lus_fingerprint.py"

#: knob -> (values, the fingerprint statistics it moves). The hard domain draws the knob from the
#: range in brackets (``random_config``, the training mix, from the second range).
KNOBS: dict[str, tuple[tuple, tuple[str, ...]]] = {
    # hard -1..1 dB, training -4..0 (the simulator allows up to 6): the shadow's fill, relative to
    # the lung beside it
    "shadow_fill_db": ((-4.0, -2.0, 0.0, 2.0, 4.0, 6.0), ("shadow_vs_intercostal",)),
    # hard -4..2, training -1..9: overall brightness
    "gain_db": ((-10.0, -7.0, -4.0, 0.0, 4.0), ("p50", "p95")),
    # hard -18..-12, training -22..-14: side-lobe / reverberation haze, fills shadows
    "clutter_db": ((-26.0, -18.0, -12.0, -8.0, -4.0), ("shadow_vs_intercostal", "rib_vs_ring")),
    # hard 1.1..1.4, training 1.0..1.4: the grey map's curve (above 1: darker mid-greys)
    "grey_gamma": ((0.8, 1.0, 1.25, 1.6, 2.0), ("p50", "rib_vs_ring")),
    # hard 40..50, training 40..55: the log-compression window (rib vs surroundings)
    "dynamic_range_db": ((30.0, 40.0, 50.0, 60.0, 70.0), ("rib_vs_ring", "p50")),
    # hard 0.8..1.5, training 0.3..1.5: despeckle strength (grain size)
    "speckle_reduction": ((0.0, 0.5, 1.2, 2.0, 3.0), ("grain_lat_frac",)),
    # hard 2.5..5 MHz (convex): resolution and grain
    "frequency_mhz": ((2.0, 3.0, 4.0, 5.0, 6.5), ("grain_lat_frac", "rib_thick_frac")),
    # hard 320 (random_config's): the beam image's rows before it is interpolated up to 820 rows,
    # so the grain's size (real exports: a few hundred scan lines and samples interpolated up)
    "render_rows": ((160, 240, 320, 480, 820), ("grain_lat_frac", "rib_thick_frac")),
    # hard 130..175 mm (convex): where the ribs sit in the frame
    "depth_mm": ((90.0, 120.0, 150.0, 180.0, 220.0), ("rib_depth_frac", "rib_thick_frac")),
    # hard 30..60: compression blocks
    "jpeg_quality": ((10, 20, 40, 70, 95), ("grain_lat_frac",)),
}


def real_ranges(fingerprint: Path) -> dict[str, tuple[float, float]]:
    path = fingerprint.parent / "real_lus_ranges.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {k: tuple(v) for k, v in data.items() if k != "about"}


def fingerprint_of(cines: list, tool: Path) -> dict[str, float]:
    """Median of each fingerprint statistic over the frames (the shared tool, its own rules)."""
    import tifffile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for sub in ("s/IMG", "s/MASK", "sh/IMG", "sh/MASK"):
            (root / sub).mkdir(parents=True)
        n = 0
        for cine in cines:
            for f in range(len(cine.frames)):
                name = f"{n:05d}.tif"
                image = np.clip(np.rint(cine.frames[f] * 255.0), 0, 255).astype(np.uint8)
                tifffile.imwrite(root / "s/IMG" / f"img_{name}", image)
                tifffile.imwrite(root / "s/MASK" / f"mask_{name}", cine.rib[f].astype(np.uint8))
                (root / "sh/IMG" / f"img_{name}").symlink_to(root / "s/IMG" / f"img_{name}")
                tifffile.imwrite(root / "sh/MASK" / f"mask_{name}", cine.shadow[f].astype(np.uint8))
                n += 1
        table = subprocess.run(
            [sys.executable, str(tool), f"x={root / 's'}:{root / 'sh'}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    out = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 2 and cells[1] not in ("-", "x", "---"):
            try:
                out[cells[0]] = float(cells[1].split()[0])
            except ValueError:
                continue
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default="v-unet-compact,unet-compact,x-unet-compact")
    p.add_argument(
        "--knobs", default=",".join(KNOBS), help="comma-separated, of: " + ", ".join(KNOBS)
    )
    p.add_argument("--clips", type=int, default=12)
    p.add_argument("--frames", type=int, default=2, help="frames per clip")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fingerprint", type=Path, default=DEFAULT_FINGERPRINT)
    p.add_argument("--json", default=None, help="write every row here")
    args = p.parse_args(argv)
    knobs = [k for k in args.knobs.split(",") if k]
    unknown = sorted(set(knobs) - set(KNOBS))
    if unknown:
        p.error(f"unknown knobs {unknown}; choose from {list(KNOBS)}")
    models = [m for m in args.models.split(",") if m]

    import torch

    from napari_ribseg.core.evaluation import evaluate_model
    from napari_ribseg.core.models import load_model
    from napari_ribseg.core.simulate import hard_domain_config, simulate_cine
    from napari_ribseg.core.training import TrainingSet

    torch.set_num_threads(args.threads)
    tool = args.fingerprint if args.fingerprint.is_file() else None
    if tool is None:
        print(f"no fingerprint tool at {args.fingerprint}: statistics skipped", file=sys.stderr)
    ranges = real_ranges(args.fingerprint)
    loaded = {name: load_model(name) for name in models}
    t0 = time.perf_counter()
    rows = []
    for knob in knobs:
        values, stats = KNOBS[knob]
        for value in values:
            cines = []
            for i in range(args.clips):
                seed = args.seed + i
                cines.append(
                    simulate_cine(args.frames, hard_domain_config(seed, **{knob: value}), seed)
                )
            data = TrainingSet(
                images=[np.asarray(f, np.float32) for c in cines for f in c.frames],
                masks=[np.asarray(m, np.uint8) for c in cines for m in c.rib],
                groups=[f"clip{i}" for i, c in enumerate(cines) for _ in c.frames],
                ids=[f"clip{i}_f{f}" for i, c in enumerate(cines) for f in range(len(c.frames))],
                source=f"simulator:hard-domain,seed={args.seed},{knob}={value}",
            )
            measured = fingerprint_of(cines, tool) if tool else {}
            row = {"knob": knob, "value": value, "frames": len(data.images)}
            for stat in stats:
                if stat in measured:
                    row[stat] = measured[stat]
            for name, model in loaded.items():
                dice = np.array([r["dice"] for r in evaluate_model(model, data).rows])
                row[f"{name}:dice"] = float(dice.mean())
                row[f"{name}:failed"] = float((dice < 0.5).mean())
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)

    print("| knob | value | measured (real 10th-90th) | " + " | ".join(models) + " |")
    print("|---|---|---|" + "---|" * len(models))
    for row in rows:
        measured = []
        for stat in KNOBS[row["knob"]][1]:
            if stat in row:
                lo, hi = ranges.get(stat, (None, None))
                where = "" if lo is None else (" in" if lo <= row[stat] <= hi else " OUT")
                span = "" if lo is None else f" ({lo:g}-{hi:g})"
                measured.append(f"{stat} {row[stat]:.3g}{span}{where}")
        cells = [f"{row[f'{m}:dice']:.3f} ({row[f'{m}:failed']:.0%} failed)" for m in models]
        print(
            f"| {row['knob']} | {row['value']:g} | {'; '.join(measured) or '-'} | "
            + " | ".join(cells)
            + " |"
        )
    print(
        f"\n{args.clips} clips x {args.frames} frames per value (seeds {args.seed}+, 820x1124), "
        f"{args.threads} thread(s), {time.perf_counter() - t0:.0f} s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
