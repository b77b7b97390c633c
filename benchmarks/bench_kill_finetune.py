"""20 SIGKILLs during ``ribseg finetune`` on tiny data: output absent or loadable with a matching card.

Each run fine-tunes a tiny U-Net on 12 synthetic 64x64 frames into one output; a model of another
run already sits at a second name and is never replaced without ``--overwrite``. The process is
killed at a random moment; then the output must be absent or load (card in the weights matching
them), and the other model must be bit-identical.
Run: ``.venv/bin/python benchmarks/bench_kill_finetune.py [--kills 20]``. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch
    from test_training_support import synthetic_set, tiny_base

    from napari_ribseg.core.io import write_paired_dataset
    from napari_ribseg.core.models import load_checkpoint
    from napari_ribseg.core.models.registry import safetensors_header

    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    counts = {"runs": 0, "killed": 0, "absent": 0, "loadable": 0, "broken": 0, "replaced": 0}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = synthetic_set(n_clips=3, frames_per_clip=4)
        root = write_paired_dataset(tmp / "paired", data.images, data.masks, data.ids)
        base, other = tmp / "base.safetensors", tmp / "other.safetensors"
        tiny_base(base)
        tiny_base(other, seed=1)  # an existing model the runs must not replace
        other_sha = _sha(other)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RIBSEG_MODEL_DIR": str(tmp / "models")}
        common = ["--model", str(base), "--epochs", "3", "--batch-size", "2", "--device", "cpu"]
        common += ["--val-share", "0.34", "--select", "last", "--loss", "dice", "--augment", "flip"]
        for i in range(args.kills):
            out = tmp / "new.safetensors"
            cmd = [sys.executable, "-m", "napari_ribseg.cli", "finetune", str(root), *common]
            proc = subprocess.Popen(
                [*cmd, "--out", str(out), "--overwrite", "--seed", str(i)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(3.0, 16.0))
            killed = proc.poll() is None
            if killed:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
            counts["runs"] += 1
            counts["killed"] += killed
            if not out.exists():
                counts["absent"] += 1
            else:
                try:
                    loaded = load_checkpoint(out)
                    meta = json.loads(safetensors_header(out)["__metadata__"]["ribseg_card"])
                    assert meta["widths"] == list(loaded.model.widths)
                    counts["loadable"] += 1
                except Exception:  # noqa: BLE001 - any failure to load counts as broken
                    counts["broken"] += 1
            # Without --overwrite an existing model is refused, resume state or not.
            refused = subprocess.run(
                [*cmd, "--out", str(other), "--seed", str(i)], env=env, capture_output=True
            )
            counts["replaced"] += int(_sha(other) != other_sha or refused.returncode != 2)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
