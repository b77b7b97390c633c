"""What recording a review's ``source_signature`` costs: the time of
:func:`napari_ribseg.core.project.source_signature` on a 1 GiB file and on a folder of PNG frames.

A review records the signature of its stack's file at every open that reads frames (and saves it
with the review), so it must stay cheap for a long cine: a file's signature reads at most 3 MiB
(first, middle and last MiB), a folder's stats every file and reads its first, middle and last
files. Times are the median of ``--repeat`` runs with the file in the page cache (as right after
the stack was read) and the first run (closer to a cold read).

    python benchmarks/bench_source_signature.py --size-gib 1 --frames 300
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _time(fn, repeat: int) -> tuple[float, float]:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return runs[0], statistics.median(runs)


def main() -> None:
    from PIL import Image

    from napari_ribseg.core.project import source_signature

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=1.0, help="size of the sparse file")
    parser.add_argument("--frames", type=int, default=300, help="PNG frames in the folder")
    parser.add_argument("--shape", type=int, nargs=2, default=(600, 800), metavar=("H", "W"))
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "cine.mp4"
        with open(big, "wb") as fh:
            fh.truncate(int(args.size_gib * (1 << 30)))
            for offset in (0, fh.tell() // 2):  # some real bytes in the sampled blocks
                fh.seek(offset)
                fh.write(rng.integers(0, 256, 1 << 20, np.uint8).tobytes())
        first, median = _time(lambda: source_signature(big), args.repeat)
        print(
            f"file of {big.stat().st_size / (1 << 30):.2f} GiB (sparse): first {first * 1e3:.1f} ms, "
            f"median {median * 1e3:.1f} ms"
        )
        folder = Path(tmp) / "frames"
        folder.mkdir()
        for i in range(args.frames):
            img = rng.integers(0, 256, tuple(args.shape), np.uint8)
            Image.fromarray(img).save(folder / f"frame{i:04d}.png")
        total = sum(p.stat().st_size for p in folder.iterdir())
        first, median = _time(lambda: source_signature(folder), args.repeat)
        print(
            f"folder of {args.frames} PNG frames {args.shape[0]}x{args.shape[1]} "
            f"({total / (1 << 20):.0f} MiB): first {first * 1e3:.1f} ms, median {median * 1e3:.1f} ms"
        )


if __name__ == "__main__":
    main()
