"""The widget's one-click path, timed: ``BackgroundFinetune`` (a spawned child process) with the
defaults on ``bench_finetune``'s K hard-domain frames (scanner each, replica 0).

The child process is what the widget starts; its wall time includes spawning, importing torch,
loading the model and the gate. Compare with ``bench_finetune.py``'s in-process rows.

    python benchmarks/bench_finetune_child.py --model v-unet-compact --k 20
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="v-unet-compact")
    parser.add_argument("--k", type=int, default=20)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_finetune import replica_frames
    from napari_ribseg.core.training import FinetuneConfig
    from napari_ribseg.core.training.background import BackgroundFinetune

    frames = replica_frames(args.k, 0, (820, 1124), "each")
    with tempfile.TemporaryDirectory() as tmp:
        job = BackgroundFinetune(
            args.model, frames, FinetuneConfig(device="cpu"), Path(tmp) / "child.safetensors"
        )
        t0 = time.perf_counter()
        job.start()
        events = job.join()
        wall = time.perf_counter() - t0
    if job.error:
        print(f"child failed: {job.error}")
        return 1
    for event in events:
        if event.kind == "message":
            print(event.message)
    print(
        f"{args.model}, K={args.k}, widget path (child process): {wall:.0f} s; "
        f"promoted: {job.result.promoted}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
