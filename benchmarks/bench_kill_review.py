"""300 SIGKILLs at random moments of ReviewProject.save: count mixed, lost and unloadable reviews.

Run: ``.venv/bin/python benchmarks/bench_kill_review.py [--kills 300]``. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))
from reliability_harness import kill_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "clip.tif.ribseg"
        start = time.perf_counter()
        counts = kill_run(folder, kills=args.kills, seed=args.seed, max_delay_s=0.12)
        leftovers = sorted(p.name for p in folder.iterdir())
    counts["seconds"] = round(time.perf_counter() - start, 1)
    counts["files_left"] = len(leftovers)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
