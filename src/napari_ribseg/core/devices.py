"""Compute devices: which exist on this machine, and turning a user's choice into a ``torch.device``.

torch is imported inside the functions so that importing this module (e.g. from the widget to fill
its device picker lazily) does not pull torch in at plugin import time.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from napari_ribseg.core.errors import DeviceError

if TYPE_CHECKING:
    import torch

_SPEC = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """Device names that really exist here, best first: ``cuda:0``.. then ``mps``, always ``cpu``.

    ``"auto"`` is not listed; the widget adds it to its picker itself.
    """
    import torch

    names: list[str] = []
    if torch.cuda.is_available():
        names.extend(f"cuda:{i}" for i in range(torch.cuda.device_count()))
    if _mps_available():
        names.append("mps")
    names.append("cpu")
    return names


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"`` into an available device.

    ``"auto"`` (or ``None``) picks CUDA, then Apple MPS, then the CPU. An explicit device that is
    not available raises :class:`DeviceError`; there is deliberately no silent fallback to the CPU,
    because a user who asked for the GPU would otherwise wait 50x longer without knowing why.
    """
    import torch

    text = "auto" if spec is None else str(spec).strip().lower()
    match = _SPEC.match(text)
    if match is None:
        raise DeviceError(
            f"unknown device {spec!r}: expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' "
            f"(available here: {', '.join(available_devices())})"
        )
    kind, index = match.group(1), match.group(2)
    if kind in ("auto", "cpu") and index is not None:
        raise DeviceError(f"device {spec!r} takes no index: use {kind!r}")

    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        if index not in (None, "0"):
            raise DeviceError(
                f"device {spec!r} does not exist: Apple MPS has a single device 'mps'"
            )
        if not _mps_available():
            raise DeviceError(
                f"device {spec!r} requested but Apple MPS is not available here "
                f"(needs an Apple-silicon Mac and a torch build with MPS); "
                f"available: {', '.join(available_devices())}"
            )
        return torch.device("mps")

    # kind == "cuda"
    if not torch.cuda.is_available():
        build = torch.version.cuda
        why = (
            "this torch build has no CUDA support (CPU-only wheel)"
            if build is None
            else f"torch is built for CUDA {build} but no usable NVIDIA GPU/driver was found"
        )
        raise DeviceError(
            f"device {spec!r} requested but CUDA is not available: {why}; "
            f"available: {', '.join(available_devices())}"
        )
    count = torch.cuda.device_count()
    number = torch.cuda.current_device() if index is None else int(index)
    if number >= count:
        raise DeviceError(
            f"device {spec!r} does not exist: this machine has {count} CUDA device(s) "
            f"(cuda:0..cuda:{count - 1})"
        )
    return torch.device("cuda", number)


def flush_denormals() -> None:
    """Make this process's CPU float maths treat denormal numbers (below ~1.2e-38) as zero.

    Training on the CPU slows down when activations, gradients and Adam's moments fall into the
    denormal range, which x86 processors handle in microcode: a 4-frame V-Unet training step
    took 1.10 s with them and 0.71 s without on the 2-core machine (U-Net 0.84 / 0.61 s;
    inference unchanged; ``benchmarks/bench_denormals.py``). Values that small change no Dice a
    float32 network reports. Call it first thing in a process that trains (the ``ribseg``
    training commands and the widget's fine-tune child do): torch's worker threads copy the
    setting when they are created, so set later it reaches only the calling thread.
    """
    import torch

    torch.set_flush_denormal(True)
