"""Data-parallel set-up: join the process group ``torchrun`` describes, one device per process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Distributed:
    """This process's place in a data-parallel run (world 1: a plain single-process run)."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def start_distributed(device_spec: str) -> Distributed:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and not str(device_spec).startswith("cpu")
        # NCCL only moves CUDA tensors; gloo serves the CPU (and the loopback test).
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        owns = True
    return Distributed(dist.get_world_size(), dist.get_rank(), local_rank, owns)


def device_for(spec: str, ddp: Distributed) -> torch.device:
    """The device of this process: ``spec`` resolved, one GPU per process under torchrun."""
    from napari_ribseg.core.devices import resolve_device

    device = resolve_device(spec)
    if ddp.world > 1 and device.type == "cuda":
        device = torch.device("cuda", ddp.local_rank)
        torch.cuda.set_device(device)
    return device


def all_reduce_max(flag: bool, device, ddp: Distributed) -> bool:
    """``flag`` OR-ed over every process (every rank must leave a loop at the same batch)."""
    if ddp.world <= 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_reduce_sum(values: list[float], device, ddp: Distributed) -> list[float]:
    """``values`` summed over every process."""
    if ddp.world <= 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [float(v) for v in t]


def barrier(ddp: Distributed) -> None:
    if ddp.world > 1:
        import torch.distributed as dist

        dist.barrier()
