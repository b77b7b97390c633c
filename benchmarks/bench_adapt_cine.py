"""Label-free adaptation as a user runs it: ``ribseg adapt`` on a 100-frame cine, timed end to end.

Issue 9 asks for "seconds to a minute on a CPU for a 100-frame cine". This writes hard-domain cines
(820x1124, seeds 580000+, never trained on) as TIFF stacks, runs the CLI with its defaults in a
subprocess (start-up, reading, adaptation, the check and the write all count), and scores base and
adapted model against the simulator's labels on every frame of the cine.

    python benchmarks/bench_adapt_cine.py --models v-unet-compact --cines 2 --frames 100 --threads 2
    python benchmarks/bench_adapt_cine.py ... --curated 5   # a review with 5 curated frames judges it
    python benchmarks/bench_adapt_cine.py ... --path widget      # the widget's child process
    python benchmarks/bench_adapt_cine.py ... --path in-process  # the widget before 2026-12-02
    python benchmarks/bench_adapt_cine.py ... --adapt-args "--mix 1.0"  # the recipe before 2026-12-03

``--path``: ``cli`` (default) runs ``ribseg adapt`` in a subprocess; ``widget`` what the widget's
button starts, ``BackgroundAdapt`` (a spawned child, denormals flushed, frames and curated masks
handed over in a file), timed from start to result; ``in-process`` the adaptation in this process
with denormals kept, as the widget ran it in napari's process before.

With ``--curated N`` the cine gets a review whose N evenly spaced frames are curated with the
simulator's labels (as a user's corrections), so the CLI leaves them out and the gate judges the
adapted model on them; Dice is then scored on the other frames only.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="v-unet-compact", help="comma-separated names/paths")
    p.add_argument("--cines", type=int, default=2)
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=580_000)
    p.add_argument("--curated", type=int, default=0, help="curated frames in a review (0: none)")
    p.add_argument("--path", choices=("cli", "widget", "in-process"), default="cli")
    p.add_argument(
        "--adapt-args",
        default="",
        help="extra `ribseg adapt` options for --path cli, e.g. '--mix 1.0' (the old recipe)",
    )
    args = p.parse_args(argv)
    if args.adapt_args and args.path != "cli":
        p.error("--adapt-args goes with --path cli")

    import numpy as np
    import tifffile
    import torch

    from napari_ribseg.core.evaluation import evaluate_model
    from napari_ribseg.core.models import load_checkpoint, load_model
    from napari_ribseg.core.session import ReviewSession
    from napari_ribseg.core.simulate import hard_domain_config, simulate_cine
    from napari_ribseg.core.stack import FrameStatus
    from napari_ribseg.core.training import TrainingSet

    torch.set_num_threads(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    ribseg = str(Path(sys.executable).with_name("ribseg"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for c in range(args.cines):
            seed = args.seed + c
            cine = simulate_cine(args.frames, hard_domain_config(seed), seed=seed)
            path = Path(tmp) / f"cine{seed}.tif"
            tifffile.imwrite(path, np.rint(cine.frames * 255).astype(np.uint8))
            curated = (
                np.linspace(0, args.frames - 1, args.curated).round().astype(int)
                if args.curated
                else np.array([], int)
            )
            if curated.size:
                with ReviewSession.open(path) as session:
                    for f in curated:
                        session.set_labels(int(f), cine.rib[f])
                        session.set_status(int(f), FrameStatus.CURATED)
            scored = sorted(set(range(args.frames)) - set(curated.tolist()))
            truth = TrainingSet(
                images=[cine.frames[i] for i in scored],
                masks=[cine.rib[i] for i in scored],
                groups=[f"cine{seed}"] * len(scored),
            )
            for name in args.models.split(","):
                out = Path(tmp) / f"adapted-{c}-{Path(name).stem}.safetensors"
                labelled = {int(f): cine.rib[f] for f in curated}
                t0 = time.perf_counter()
                said = run_adapt(
                    args.path, ribseg, path, name, out, env, labelled, shlex.split(args.adapt_args)
                )
                wall = time.perf_counter() - t0
                base = load_model(name)
                before = evaluate_model(base, truth, device="cpu").mean["dice"]
                kept = load_checkpoint(out) if out.exists() else base
                after = evaluate_model(kept, truth, device="cpu").mean["dice"]
                rows.append(
                    (name, seed, before, after, out.exists(), wall, said[-1] if said else "")
                )
                print(rows[-1], flush=True)
    print(
        f"\n{args.frames}-frame hard-domain cines (820x1124), `ribseg adapt` defaults, "
        f"{args.threads} thread(s), {args.curated} curated frames, path {args.path}; Dice on the "
        "frames not curated\n"
    )
    print("| model | cine seed | Dice before | Dice kept | promoted | wall s |")
    print("|---|---|---|---|---|---|")
    for name, seed, before, after, promoted, wall, _ in rows:
        print(f"| {name} | {seed} | {before:.3f} | {after:.3f} | {promoted} | {wall:.0f} |")
    return 0


def run_adapt(
    path_kind: str, ribseg: str, path: Path, name: str, out: Path, env, labelled, extra=()
):
    """Adapt ``name`` to the cine at ``path`` the way ``path_kind`` says; the lines it reported.
    ``extra``: more ``ribseg adapt`` options (the CLI path only)."""
    if path_kind == "cli":
        run = subprocess.run(
            [ribseg, "adapt", str(path), "--model", name, "--out", str(out), *extra],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        return (run.stdout + run.stderr).strip().splitlines()
    import tifffile

    from napari_ribseg.core.models import load_model, resolve_model
    from napari_ribseg.core.training import AdaptConfig, BackgroundAdapt, adapt_sync

    frames = tifffile.imread(path)  # uint8, as the widget's layer holds a TIFF cine
    if path_kind == "widget":
        job = BackgroundAdapt(
            resolve_model(name), frames, AdaptConfig(), out, source=path.stem, labelled=labelled
        )
        job.start()
        events = job.join()
        if job.error:
            return [f"child failed: {job.error}"]
        return [e.message for e in events if e.message]
    result = adapt_sync(
        load_model(name), frames, AdaptConfig(), out=out, source=path.stem, labelled=labelled
    )
    return [result.reason]


if __name__ == "__main__":
    sys.exit(main())
