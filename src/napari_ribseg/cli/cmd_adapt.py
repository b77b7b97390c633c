"""``ribseg adapt STACK --model M --out NAME``: adapt a model to one stack without labels.

Self-training on the stack's own frames with a label-free check on held-out frames (see
``core/training/adapt.py``); when the check fails, no model is written and the reason is printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    """Add the ``adapt`` subcommand."""
    from napari_ribseg.core.training.adapt import AdaptConfig
    from napari_ribseg.core.training.config import FinetuneConfig

    defaults, gate = AdaptConfig(), FinetuneConfig()
    parser = subparsers.add_parser(
        "adapt",
        help="adapt a model to one stack without labels (self-training with a check)",
        description="Adapt a rib-segmentation model to a stack's own unlabelled frames. Every "
        f"{defaults.check_every}th frame is held out; the adapted model is kept only when it "
        "is more self-consistent there than the base. When the stack's review has curated "
        "frames, they are left out and judge the result instead (the fine-tune's gate: at "
        f"least {gate.gate_frames} corrected frames, a mean Dice gain above {gate.gate_margin}, "
        "better on most).",
    )
    parser.add_argument("stack", type=Path, metavar="STACK", help="the stack to adapt to")
    parser.add_argument("--model", required=True, help="base model: registry name or checkpoint")
    parser.add_argument(
        "--out", required=True, help="new model: a name or a path ending in .safetensors"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=defaults.steps,
        help=f"optimiser steps (default: {defaults.steps})",
    )
    parser.add_argument(
        "--lr", type=float, default=defaults.lr, help=f"learning rate (default: {defaults.lr:g})"
    )
    parser.add_argument(
        "--teacher",
        choices=("best", "mean"),
        default=defaults.teacher,
        help="best: the view (raw or contrast-stretched) the base is most flip-consistent on; "
        f"mean: both views averaged (default: {defaults.teacher})",
    )
    parser.add_argument(
        "--temporal",
        type=int,
        default=defaults.temporal,
        metavar="R",
        help="average each frame's teacher with its neighbours within R frames that look like it "
        f"(0: each frame alone; default: {defaults.temporal})",
    )
    parser.add_argument(
        "--mix",
        type=float,
        default=defaults.mix,
        help="share of the adapted change kept: base + mix x (adapted - base) "
        f"(default: {defaults.mix})",
    )
    parser.add_argument(
        "--device",
        default=defaults.device,
        help=f"auto, cpu, cuda, cuda:N, mps (default: {defaults.device})",
    )
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help=f"random seed (default: {defaults.seed})"
    )
    parser.add_argument(
        "--project-folder", type=Path, default=None, metavar="DIR",
        help="the stack's review (its curated frames judge the result) is kept under DIR",
    )  # fmt: skip
    parser.add_argument(
        "--variable", default=None, metavar="NAME",
        help="array to read from a .mat/.npz holding several",
    )  # fmt: skip
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing model of the same name"
    )
    parser.set_defaults(func=run)


def _curated(stack, base_name: str, project_folder: Path | None = None) -> tuple[dict, list]:
    """The curated frames' rib masks of the stack's review, if it has one (none is created), and
    those that are ``base_name``'s own masks accepted unchanged."""
    from napari_ribseg.core.project import project_dir_for, review_exists
    from napari_ribseg.core.session import ReviewSession, curated_masks, unedited_frames

    if stack.source is None and project_folder is None:
        return {}, []
    folder = project_dir_for(stack.source, root=project_folder, name=stack.name)
    scaling, variable = (stack.metadata.get(k) for k in ("intensity_scaling", "variable"))
    if not review_exists(folder, stack.frames, stack.source, scaling, variable):
        return {}, []
    with ReviewSession.open(stack, project_folder=project_folder, read_only=True) as session:
        return curated_masks(session.project), unedited_frames(session.project, base_name)


def run(args: argparse.Namespace) -> int:
    """Adapt and print what was done and whether a new model was kept."""
    from napari_ribseg.cli.progress_bar import ProgressBar
    from napari_ribseg.core.errors import TrainingError
    from napari_ribseg.core.io import read_stack
    from napari_ribseg.core.jobs import run_job
    from napari_ribseg.core.models import load_model
    from napari_ribseg.core.models.registry import refuse_start_checkpoint
    from napari_ribseg.core.training.adapt import AdaptConfig, adapt
    from napari_ribseg.core.training.output import model_output_path

    out = model_output_path(args.out)
    from napari_ribseg.core.models import resolve_model

    if out.resolve() == Path(resolve_model(args.model)).resolve():
        # With --overwrite a kept adaptation replaced its own base (finetune refuses this).
        raise TrainingError(f"--out {out} is the base model itself; choose a new name")
    from napari_ribseg.core.training.loop import refuse_existing_out

    # Before the stack and the model are read; adapt checks again with the same rule.
    refuse_existing_out(out, overwrite=args.overwrite, name="--out", ask="pass --overwrite")
    config = AdaptConfig(
        steps=args.steps,
        lr=args.lr,
        teacher=args.teacher,
        temporal=args.temporal,
        mix=args.mix,
        device=args.device,
        seed=args.seed,
    )
    config.validate()
    stack = read_stack(args.stack, variable=args.variable)
    base = load_model(args.model)
    refuse_start_checkpoint(base.card, "adapt to a stack by its own confident ribs")
    labelled, unedited = _curated(stack, base.card.name, args.project_folder)
    if labelled:
        print(
            f"{len(labelled)} curated frames in the stack's review: left out, they judge the result"
        )
    bar = ProgressBar("adapt", kind="batch")
    job = adapt(
        base,
        stack.frames,
        config,
        out=out,
        source=args.stack.name,
        labelled=labelled,
        unedited=unedited,
        overwrite=args.overwrite,
    )
    result = run_job(job, bar)
    if result.checkpoint is not None:
        print(f"adapted: {result.checkpoint} ({result.reason}; {result.seconds:.0f} s)")
    else:
        print(f"no new model, the base stays: {result.reason} ({result.seconds:.0f} s)")
    sys.stdout.flush()
    return 0
