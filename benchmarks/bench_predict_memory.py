"""Peak memory of ``ribseg predict`` on a long 512x512 uint8 cine, against the stack's bytes.

Writes an uncompressed uint8 TIFF of N frames (default 1000, 262 MB) and an 8-frame one, runs
``ribseg predict`` on each in a fresh process, and reports each run's peak resident memory
(``ru_maxrss``), the difference (the memory that grows with the stack, above the baseline of
Python, torch and the model), that difference divided by the stack's bytes (goal <= 2.5), and
frames/s. Run:

    OMP_NUM_THREADS=2 python benchmarks/bench_predict_memory.py                # 1000 frames
    python benchmarks/bench_predict_memory.py --frames 200 --model unet-compact --json out.json

Frames are simulated B-mode-like noise with bright bands (content does not change memory).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_CHILD = """
import resource, sys, time
from napari_ribseg.cli import main
start = time.perf_counter()
rc = main(sys.argv[1:])
elapsed = time.perf_counter() - start
print("BENCH", rc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, elapsed)
"""


def _write_stack(path: Path, n_frames: int, side: int) -> int:
    import tifffile

    rng = np.random.default_rng(0)
    rows = np.arange(side)[:, None]
    band = ((rows // 40) % 3 == 0).astype(np.uint8) * 90
    # Frame by frame: the benchmark itself never holds the stack.
    with tifffile.TiffWriter(path) as tif:
        for _ in range(n_frames):
            noise = rng.integers(0, 120, (side, side), dtype=np.uint8)
            tif.write(noise + band, contiguous=True, photometric="minisblack")
    return n_frames * side * side


def _run(stack: Path, out: Path, model: str, batch: int | None) -> tuple[int, float, float]:
    argv = ["predict", str(stack), "--out", str(out), "--model", model, "--device", "cpu"]
    if batch:
        argv += ["--batch-size", str(batch)]
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, *argv], capture_output=True, text=True, check=False
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH")), None)
    if proc.returncode or line is None:
        raise RuntimeError(f"ribseg predict failed: {proc.stderr[-2000:]}")
    _tag, rc, peak, elapsed = line.split()
    if int(rc):
        raise RuntimeError(f"ribseg predict exited {rc}: {proc.stderr[-2000:]}")
    rate = re.search(r"([0-9.]+) frames/s", proc.stdout)
    return int(peak), float(elapsed), float(rate.group(1)) if rate else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--model", default="unet-compact")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        small, large = folder / "small.tif", folder / "large.tif"
        _write_stack(small, 8, args.side)
        stack_bytes = _write_stack(large, args.frames, args.side)
        base_peak, _, _ = _run(small, folder / "small_masks.tif", args.model, args.batch_size)
        t0 = time.perf_counter()
        peak, elapsed, rate = _run(large, folder / "large_masks.tif", args.model, args.batch_size)
        wall = time.perf_counter() - t0
    result = {
        "frames": args.frames,
        "side": args.side,
        "model": args.model,
        "stack_mb": stack_bytes / 1e6,
        "baseline_peak_mb": base_peak / 1e6,
        "peak_mb": peak / 1e6,
        "above_baseline_mb": (peak - base_peak) / 1e6,
        "ratio_to_stack": (peak - base_peak) / stack_bytes,
        "frames_per_s": rate,
        "process_s": elapsed,
        "wall_s": wall,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
