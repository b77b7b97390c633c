"""CPU training steps with and without denormal floats flushed to zero (``core.devices``).

Each measurement runs in a fresh process, because the setting must be made before torch starts
its worker threads (they copy it when created): "off" is torch's default, "on" calls
``flush_denormals()`` first, as the ``ribseg`` training commands and the widget's fine-tune child
do. A step is the fine-tune's: 4 letterboxed hard-domain frames (820x1124 -> the model's input),
Tversky loss, Adam at 1e-4, forward + backward + update; also timed: inference of the same batch.

    python benchmarks/bench_denormals.py --threads 2
    python benchmarks/bench_denormals.py --models v-unet-compact --steps 20 --inputs random
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def _measure(
    model: str, flush: bool, steps: int, threads: int, inputs: str, channels_last: bool
) -> dict:
    """One process's numbers: mean seconds per training step and per inference batch."""
    from napari_ribseg.core.devices import flush_denormals

    if flush:
        flush_denormals()
    import torch

    from napari_ribseg.core.models import load_model
    from napari_ribseg.core.training.losses import get_loss

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = load_model(model, device="cpu").model.float()
    size = int(net.input_size)
    if inputs == "random":
        x = torch.rand(4, 1, size, size)
        y = (torch.rand(4, 1, size, size) > 0.99).float()
    else:
        sys.path.insert(0, "benchmarks")
        from bench_finetune import k_frames
        from napari_ribseg.core.training.evaluation import letterbox_set

        images, masks = letterbox_set(k_frames(4, 1_210, (820, 1124), "each"), size)
        x, y = torch.from_numpy(images), torch.from_numpy(masks).float()
    if channels_last:  # as the fine-tune trains on the CPU
        net = net.to(memory_format=torch.channels_last)
    loss_fn = get_loss("tversky")
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    net.train()
    times = []
    for _ in range(steps + 1):  # the first step warms up and is not counted
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        optimizer.step()
        times.append(time.perf_counter() - t0)
    net.eval()
    infer = []
    with torch.no_grad():
        for _ in range(4):
            t0 = time.perf_counter()
            net(x)
            infer.append(time.perf_counter() - t0)
    return {"step_s": sum(times[1:]) / steps, "infer_s": sum(infer[1:]) / 3}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="v-unet-compact,unet-compact")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--inputs", choices=("frames", "random"), default="frames")
    parser.add_argument(
        "--channels-last", action="store_true", help="NHWC weights, as the fine-tune on the CPU"
    )
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "FLUSH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        model, flush = args.child
        print(
            json.dumps(
                _measure(
                    model, flush == "on", args.steps, args.threads, args.inputs, args.channels_last
                )
            )
        )
        return 0
    layout = "channels_last" if args.channels_last else "contiguous (NCHW)"
    print(
        f"{args.steps} training steps of 4 {args.inputs}, {args.threads} torch thread(s), {layout}"
    )
    print()
    print("| model | denormals | s per training step | s per inference batch |")
    print("|---|---|---|---|")
    for model in args.models.split(","):
        for flush in ("off", "on"):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    model,
                    flush,
                    "--steps",
                    str(args.steps),
                    "--threads",
                    str(args.threads),
                    "--inputs",
                    args.inputs,
                    *(["--channels-last"] if args.channels_last else []),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            row = json.loads(out.stdout.strip().splitlines()[-1])
            label = "flushed" if flush == "on" else "kept (torch default)"
            print(f"| {model} | {label} | {row['step_s']:.3f} | {row['infer_s']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
