"""``torchrun --nproc_per_node=2 -m napari_ribseg.cli finetune`` (gloo, loopback) equals one process.

Equality is expected by design: the global batch is the same (2 processes x 1 frame vs 1 x 2), both
runs draw the same permutation (DistributedSampler with the same seed), augmentation is seeded per
frame index, the loss is a per-image mean, and the model has no dropout or batch norm. What remains
is the order of floating-point sums in the gradient all-reduce, hence a small tolerance.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
from test_training_support import synthetic_set, tiny_base

from napari_ribseg.core.io import read_paired_dataset, write_paired_dataset
from napari_ribseg.core.models import load_checkpoint
from napari_ribseg.core.training.data import TrainingSet
from napari_ribseg.core.training.loop import FinetuneConfig, finetune_sync

torch.set_num_threads(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_cpu_processes_match_one(tmp_path):
    # 4 clips x 8 frames, one clip for validation: 24 training frames = 12 global batches of 2.
    source = synthetic_set(n_clips=4, frames_per_clip=8)
    root = write_paired_dataset(tmp_path / "paired", source.images, source.masks, source.ids)
    base = tiny_base(tmp_path / "base.safetensors")
    out = tmp_path / "ddp.safetensors"
    args = [
        "--epochs",
        "1",
        "--lr",
        "3e-3",
        "--batch-size",
        "2",
        "--augment",
        "flip",
        "--val-share",
        "0.25",
        "--device",
        "cpu",
        "--seed",
        "7",
        "--patience",
        "0",
    ]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        "-m",
        "napari_ribseg.cli",
        "finetune",
        str(root),
        "--model",
        str(base.path),
        "--out",
        str(out),
        *args,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    # Only rank 0 reports: one summary line on stdout.
    assert done.stdout.count("done:") == 1, done.stdout

    data = TrainingSet.from_paired(read_paired_dataset(root))
    config = FinetuneConfig(
        epochs=1,
        lr=3e-3,
        batch_size=2,
        augment="flip",
        val_share=0.25,
        device="cpu",
        seed=7,
        early_stop_patience=0,
    )
    single = finetune_sync(base, data, config)
    ddp = load_checkpoint(out)
    history = ddp.card.extra["finetune"]["history"]
    assert single.best_epoch > 0 and ddp.card.extra["finetune"]["best_epoch"] == single.best_epoch
    for a, b in zip(history, single.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4, abs=1e-6)
        assert a["val_dice"] == pytest.approx(b["val_dice"], abs=1e-2)
    ref = single.model.state_dict()
    # Adam divides by the running gradient magnitude, so last-bit differences of the all-reduce
    # grow with every step (about 1e-4 of a tensor's scale after these 12 steps). Equal
    # trajectories must stay far below how far training moved the weights.
    before = base.model.state_dict()
    for name, tensor in ddp.model.state_dict().items():
        scale = float(ref[name].abs().max().clamp_min(1e-12))
        difference = float((tensor - ref[name]).abs().max()) / scale
        moved = float((ref[name] - before[name]).abs().max()) / scale
        assert difference < 2e-3 and (moved == 0 or difference < moved / 10), name
