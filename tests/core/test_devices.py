"""Device resolution: what exists is offered, what does not raises DeviceError (no silent fallback)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from napari_ribseg.core.devices import available_devices, resolve_device
from napari_ribseg.core.errors import DeviceError

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")


def test_cpu_is_always_available():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert available_devices()[-1] == "cpu"


@needs_no_cuda
def test_auto_picks_cpu_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert available_devices() == ["cpu"]


@needs_no_cuda
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:1"])
def test_unavailable_cuda_raises_with_a_reason(spec):
    with pytest.raises(DeviceError, match="CUDA is not available") as info:
        resolve_device(spec)
    assert "available: " in str(info.value) and "cpu" in str(info.value)


def test_unavailable_mps_raises(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="MPS is not available"):
        resolve_device("mps")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "tpu", "cpu:1", "auto:0"])
def test_malformed_specs_raise(spec):
    with pytest.raises(DeviceError):
        resolve_device(spec)


def test_cuda_index_checked_against_device_count(monkeypatch):
    # Pretend to have two GPUs: only the bookkeeping is exercised, no CUDA call is made.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert available_devices() == ["cuda:0", "cuda:1", "cpu"]
    with pytest.raises(DeviceError, match="2 CUDA device"):
        resolve_device("cuda:2")


def test_mps_preferred_after_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    assert available_devices() == ["mps", "cpu"]


def test_my_core_modules_import_without_torch():
    code = (
        "import sys, napari_ribseg.core.devices, napari_ribseg.core.inference,"
        " napari_ribseg.core.postprocess, napari_ribseg.core.metrics,"
        " napari_ribseg.cli.cmd_predict, napari_ribseg.cli.cmd_evaluate;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_flush_denormals_makes_cpu_maths_treat_denormals_as_zero():
    from napari_ribseg.core.devices import flush_denormals

    tiny = torch.tensor([1e-39], dtype=torch.float32)  # a denormal float32
    assert float(tiny * 1.0) > 0
    flush_denormals()
    try:
        assert float(tiny * 1.0) == 0.0
    finally:
        torch.set_flush_denormal(False)
    assert float(tiny * 1.0) > 0


@pytest.mark.parametrize(
    ("argv", "flushed"),
    [
        (["adapt", "missing.tif", "--model", "unet-compact", "--out", "x"], True),
        (["finetune", "missing_dir", "--model", "unet-compact", "--out", "x"], True),
        (["models"], False),
    ],
)
def test_training_commands_flush_denormals_before_they_start(monkeypatch, argv, flushed, tmp_path):
    import napari_ribseg.core.devices as devices
    from napari_ribseg.cli import main

    calls = []
    monkeypatch.setattr(devices, "flush_denormals", lambda: calls.append(True))
    monkeypatch.chdir(tmp_path)
    main(argv)
    assert bool(calls) == flushed
