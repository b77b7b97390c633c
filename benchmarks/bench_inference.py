"""Inference throughput of every model variant and preset, against this machine's convolution peak.

For each (variant, preset) at 256x256 it reports frames/s of ``predict_stack`` at the batch size it
chooses, the model's FLOPs per frame, the achieved GFLOP/s as a fraction of the convolution
throughput measured on this machine in the same run (the practical roofline: U-Nets are almost all
3x3 convolutions), and the same model run naively (batch 1, autograd on, default memory layout) with
the speed-up. Run:

    python benchmarks/bench_inference.py                      # CPU/auto, all variants and presets
    python benchmarks/bench_inference.py --presets compact --frames 64 --device cuda

Weights are random (``pretrained=False``): speed does not depend on their values.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

from napari_ribseg.core.devices import resolve_device
from napari_ribseg.core.inference import predict_stack_sync
from napari_ribseg.core.models import VARIANTS, build_model, flops_per_frame

SIZE = 256
#: Default frames per measurement by preset (CPU); paper models are ~55-90 GFLOP per frame.
CPU_FRAMES = {"tiny": 64, "compact": 16, "paper": 4}
GPU_FRAMES = {"tiny": 1024, "compact": 512, "paper": 128}
#: Convolutions typical of the U-Nets' levels: (batch, channels, side).
PEAK_SHAPES = [(8, 64, 128), (8, 128, 64), (8, 256, 32)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def conv_peak_gflops(device: torch.device, autocast: torch.dtype | None, seconds: float) -> float:
    """Best GFLOP/s of large 3x3 convolutions, in the precision and layout inference uses."""
    best = 0.0
    for batch, channels, side in PEAK_SHAPES:
        x = torch.rand(batch, channels, side, side, device=device).contiguous(
            memory_format=torch.channels_last
        )
        w = torch.randn(channels, channels, 3, 3, device=device).contiguous(
            memory_format=torch.channels_last
        )
        flops = 2.0 * batch * channels * channels * 9 * side * side
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=autocast or torch.float32, enabled=bool(autocast)),
        ):
            F.conv2d(x, w, padding=1)  # warm-up: kernel selection
            _sync(device)
            reps, start = 0, time.perf_counter()
            while reps < 3 or time.perf_counter() - start < seconds:
                F.conv2d(x, w, padding=1)
                reps += 1
                if device.type != "cpu" and reps % 10 == 0:
                    _sync(device)
            _sync(device)
            elapsed = time.perf_counter() - start
        best = max(best, flops * reps / elapsed / 1e9)
    return best


def naive_frames_per_s(model: torch.nn.Module, frames: np.ndarray, device: torch.device) -> float:
    """One frame at a time, autograd on, default layout, float32: what a first script does."""
    model.to(device)
    start = time.perf_counter()
    for frame in frames:
        x = torch.from_numpy(frame)[None, None].to(device)
        prob = torch.sigmoid(model(x))[0, 0].detach().cpu().numpy()
        _ = np.rint(prob * 255).astype(np.uint8)
    return len(frames) / (time.perf_counter() - start)


def bench_one(
    variant: str,
    preset: str,
    n_frames: int,
    n_naive: int,
    device: torch.device,
    ablation: bool = False,
) -> dict:
    """Time one variant and preset: the product path, the naive loop, optionally the ablations."""
    torch.manual_seed(0)
    model = build_model(variant, preset, input_size=SIZE, pretrained=False)
    gflop = flops_per_frame(model, SIZE) / 1e9
    frames = np.random.default_rng(0).random((n_frames, SIZE, SIZE), dtype=np.float32)
    # Warm-up batch: first-call kernel selection and allocator growth are not steady state.
    predict_stack_sync(model, frames[:2], device=device, batch_size=2)
    pred = predict_stack_sync(model, frames, device=device)
    fps = pred.n_frames / pred.elapsed_s
    naive_model = build_model(variant, preset, input_size=SIZE, pretrained=False)
    naive_frames_per_s(naive_model, frames[:1], device)  # warm-up
    naive = naive_frames_per_s(naive_model, frames[:n_naive], device)
    extra = {}
    if ablation:
        # Which of the optimisations matter here: layout, and batching under inference_mode.
        flat = predict_stack_sync(
            model, frames, device=device, batch_size=pred.batch_size, channels_last=False
        )
        extra["contiguous_frames_per_s"] = flat.n_frames / flat.elapsed_s
        one = predict_stack_sync(model, frames[:n_naive], device=device, batch_size=1)
        extra["batch1_frames_per_s"] = one.n_frames / one.elapsed_s
    return {
        **extra,
        "variant": variant,
        "preset": preset,
        "gflop_per_frame": gflop,
        "batch": pred.batch_size,
        "frames": n_frames,
        "frames_per_s": fps,
        "gflops": fps * gflop,
        "naive_frames": n_naive,
        "naive_frames_per_s": naive,
        "speedup": fps / naive,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--presets", nargs="+", default=["compact", "paper"])
    parser.add_argument(
        "--frames", type=int, default=None, help="frames per run (default by preset)"
    )
    parser.add_argument("--naive-frames", type=int, default=None, help="frames of the naive loop")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--peak-seconds", type=float, default=2.0, help="time per peak conv shape")
    parser.add_argument("--json", type=str, default=None, help="also write the results here")
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="also time the chosen batch without channels-last, and batch 1 with inference_mode",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    autocast = None
    if device.type == "cuda":
        autocast = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    defaults = CPU_FRAMES if device.type == "cpu" else GPU_FRAMES
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(
        f"device {device} ({name or platform.machine()}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads, load average {load[0]:.2f}, "
        f"precision {str(autocast).removeprefix('torch.') if autocast else 'float32'}, "
        f"input {SIZE}x{SIZE}"
    )
    peak = conv_peak_gflops(device, autocast, args.peak_seconds)
    print(f"measured 3x3 convolution peak: {peak:.1f} GFLOP/s")

    rows = []
    header = (
        f"{'variant':8} {'preset':8} {'GFLOP/fr':>8} {'batch':>5} {'frames':>6} {'fr/s':>8} "
        f"{'GFLOP/s':>8} {'%peak':>6} {'naive fr/s':>10} {'speed-up':>8}"
    )
    print(header)
    print("-" * len(header))
    for preset in args.presets:
        for variant in args.variants:
            n = args.frames or defaults.get(preset, 16)
            n_naive = args.naive_frames or max(1, min(n, defaults.get(preset, 16) // 2))
            row = bench_one(variant, preset, n, n_naive, device, args.ablation)
            row["percent_of_peak"] = 100.0 * row["gflops"] / peak
            rows.append(row)
            print(
                f"{variant:8} {preset:8} {row['gflop_per_frame']:8.2f} {row['batch']:5d} "
                f"{n:6d} {row['frames_per_s']:8.2f} {row['gflops']:8.1f} "
                f"{row['percent_of_peak']:6.1f} {row['naive_frames_per_s']:10.2f} "
                f"{row['speedup']:7.2f}x",
                flush=True,
            )
            if args.ablation:
                print(
                    f"{'':17} ablation: same batch without channels-last "
                    f"{row['contiguous_frames_per_s']:.2f} fr/s; batch 1 with inference_mode "
                    f"{row['batch1_frames_per_s']:.2f} fr/s",
                    flush=True,
                )
    end_load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at the end {end_load:.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"device": str(device), "peak_gflops": peak, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
