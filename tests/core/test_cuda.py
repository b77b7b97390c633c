"""What only a CUDA GPU can check: autocast, the out-of-memory retry, NCCL data-parallel training.

Marked ``cuda`` and skipped without a GPU; ``benchmarks/gpu_check.sh`` runs them on a GPU machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from napari_ribseg.core.inference import predict_stack_sync
from napari_ribseg.core.models import build_model

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return build_model("unet", "tiny", input_size=64, pretrained=False)


def test_autocast_on_cuda_stays_close_to_float32_on_the_cpu(unet):
    frames = np.random.default_rng(0).random((6, 64, 80), dtype=np.float32)
    cpu = predict_stack_sync(unet, frames, device="cpu")
    messages = []
    gpu = predict_stack_sync(
        unet, frames, device="cuda", on_progress=lambda e: messages.append(e.message)
    )
    assert any("autocast" in (m or "") for m in messages)
    diff = np.abs(gpu.prob.astype(int) - cpu.prob.astype(int))
    assert diff.mean() < 1.0 and diff.max() <= 8  # bf16 keeps ~3 significant digits


class OutOfMemoryAbove(nn.Module):
    """Raises CUDA's own out-of-memory error for batches larger than ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.input_size, self.limit, self.seen = 64, limit, []
        self.scale = nn.Parameter(torch.tensor(40.0))

    def forward(self, x):
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (simulated, batch {x.shape[0]})")
        self.seen.append(int(x.shape[0]))
        return self.scale * (x - 0.5)


def test_out_of_memory_retries_with_a_smaller_batch_on_cuda():
    net = OutOfMemoryAbove(limit=3)
    frames = np.random.default_rng(1).random((10, 64, 64), dtype=np.float32)
    pred = predict_stack_sync(net, frames, device="cuda", batch_size=8)
    assert pred.complete and pred.batch_size == 2 and max(net.seen) == 2
    assert pred.prob.shape == (10, 64, 64)


def test_a_real_out_of_memory_batch_is_halved_until_it_fits():
    from napari_ribseg.core.inference import activation_bytes_per_frame

    # A batch sized to need ~1.5x the free GPU memory (bf16 activations) must fail and be halved.
    big = build_model("unet", "compact", input_size=2048, pretrained=False)
    per_frame = activation_bytes_per_frame(big, 2048, bytes_per_value=2)
    free, _total = torch.cuda.mem_get_info()
    n = int(1.5 * free / per_frame) + 1
    frames = np.broadcast_to(np.zeros((1, 2048, 2048), np.uint8), (n, 2048, 2048))
    messages = []
    pred = predict_stack_sync(
        big, frames, device="cuda", batch_size=n, on_progress=lambda e: messages.append(e.message)
    )
    assert pred.complete and pred.batch_size < n
    assert any("out of memory" in (m or "") for m in messages)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_nccl_data_parallel_finetune_on_every_gpu(tmp_path):
    sys.path.insert(0, os.path.dirname(__file__))
    from test_training_support import synthetic_set, tiny_base

    from napari_ribseg.core.io import write_paired_dataset
    from napari_ribseg.core.models import load_checkpoint

    source = synthetic_set(n_clips=4, frames_per_clip=8)
    root = write_paired_dataset(tmp_path / "paired", source.images, source.masks, source.ids)
    base = tiny_base(tmp_path / "base.safetensors")
    out = tmp_path / "ddp.safetensors"
    n_gpus = torch.cuda.device_count()
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={n_gpus}",
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
        *("--epochs", "2", "--batch-size", "2", "--device", "cuda", "--seed", "7"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("done:") == 1, done.stdout
    history = load_checkpoint(out).card.extra["finetune"]["history"]
    assert len(history) >= 1 and np.isfinite(history[-1]["train_loss"])
