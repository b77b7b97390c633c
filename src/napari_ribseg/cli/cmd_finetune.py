"""``ribseg finetune DATA --model M --out NAME``: fine-tune a model on a paired image/mask folder.

Every training option is generated from ``FinetuneConfig`` (core/training/config.py), its single
declaration. Also runs data-parallel under ``torchrun --nproc_per_node=N -m napari_ribseg.cli
finetune ...``; only rank 0 prints and writes files. torch is imported inside :func:`run`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from napari_ribseg.core.training.output import model_output_path as output_path

__all__ = ["output_path", "register", "run"]


def register(subparsers) -> None:
    """Add the ``finetune`` subcommand."""
    from napari_ribseg.core.training.config import add_arguments

    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune a model on curated frames (paired image/mask folder)",
        description="Fine-tune a rib-segmentation model on a paired folder (IMG/+MASK/ or "
        "images/+masks/) or a STACK's curated frames. Held-out frames are whole clips, never "
        "frames of a training clip (with one clip only, e.g. one STACK: a contiguous block of its "
        "frames); the new model is kept only when it beats the base on them (see --select).",
    )
    parser.add_argument(
        "data",
        type=Path,
        metavar="DATA",
        help="paired image/mask folder, or a STACK whose review has curated frames",
    )
    parser.add_argument("--model", required=True, help="base model: registry name or checkpoint")
    parser.add_argument(
        "--out",
        required=True,
        help="new model: a name (saved in the user model folder) or a path ending in .safetensors",
    )
    parser.add_argument(
        "--project-folder", type=Path, default=None, metavar="DIR",
        help="with a STACK: its review is kept under DIR instead of next to the stack",
    )  # fmt: skip
    parser.add_argument(
        "--variable", default=None, metavar="NAME",
        help="with a STACK: the array of a .mat/.npz holding several that the review is of",
    )  # fmt: skip
    add_arguments(parser)
    parser.add_argument(
        "--no-resume", action="store_true", help="ignore a resume state beside the output"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing model of the same name"
    )
    parser.set_defaults(func=run)


def _training_data(path: Path, project_folder: Path | None = None, variable: str | None = None):
    """A paired folder as is; a stack (file or frame folder) through its review's curated frames
    (kept next to it, or under ``project_folder``; a stack without a review is an error)."""
    from napari_ribseg.core.io import find_reader, read_paired_dataset
    from napari_ribseg.core.training.data import TrainingSet

    if path.is_dir() and find_reader(path) is None:
        for flag, value in (("--project-folder", project_folder), ("--variable", variable)):
            if value is not None:
                from napari_ribseg.core.errors import TrainingError

                # It was ignored: a paired folder has no review to look for.
                raise TrainingError(
                    f"{path} is a paired image/mask folder, which has no review; {flag} "
                    "applies to a STACK whose review is kept there"
                    if flag == "--project-folder"
                    else f"{path} is a paired image/mask folder; {flag} applies to a STACK"
                )
        return TrainingSet.from_paired(read_paired_dataset(path))
    from napari_ribseg.core.session import ReviewSession

    with ReviewSession.open(
        path, project_folder=project_folder, read_only=True, variable=variable
    ) as session:
        return session.training_set()


def run(args: argparse.Namespace) -> int:
    """Fine-tune; print where the model went (or why there is none) and the held-out Dice."""
    from napari_ribseg.cli.progress_bar import ProgressBar
    from napari_ribseg.core.errors import TrainingError
    from napari_ribseg.core.io.intensity import describe_scaling
    from napari_ribseg.core.jobs import run_job
    from napari_ribseg.core.models import load_model, resolve_model
    from napari_ribseg.core.training.config import config_from_args, setting_spec
    from napari_ribseg.core.training.loop import finetune, refuse_existing_out

    out = output_path(args.out)
    base_path = resolve_model(args.model)
    if out.resolve() == Path(base_path).resolve():
        raise TrainingError(f"--out {out} is the base model itself; choose a new name")
    # Before the data and the model are read; the core checks again with the same rule.
    resume = not args.no_resume
    refuse_existing_out(
        out, overwrite=args.overwrite, resume=resume, name="--out", ask="pass --overwrite"
    )
    config = config_from_args(args)
    step_default = setting_spec("progressive_step").default
    if config.progressive_step != step_default and config.strategy != "progressive":
        # Only the progressive strategy unfreezes in steps: the option was ignored in silence.
        raise TrainingError(
            f"--progressive-step {config.progressive_step} applies only to --strategy "
            f"progressive; this run's strategy is {config.strategy!r}"
        )
    data = _training_data(args.data, args.project_folder, args.variable)
    base = load_model(base_path)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    if main_rank and data.intensity_scaling is not None:
        print(f"intensity: {describe_scaling(data.intensity_scaling)}", file=sys.stdout)
    bar = ProgressBar("finetune", kind="batch") if main_rank else None
    job = finetune(base, data, config, out=out, resume=resume, overwrite=args.overwrite)
    result = run_job(job, bar)
    if main_rank:
        state = "stopped" if result.stopped else "done"
        dice = f"held-out Dice {result.base_val_dice:.3f} -> {result.best_val_dice:.3f}"
        if result.checkpoint is None:
            print(f"{state}: no new model, the base stays: {result.reason}", file=sys.stdout)
        else:
            note = "" if result.promoted else " (kept by --select last although the gate failed)"
            print(
                f"{state}: {result.checkpoint}{note} ({dice}, {len(result.history)} "
                f"epoch{'' if len(result.history) == 1 else 's'}, "
                f"{len(result.val_ids)} held-out frames): {result.reason}",
                file=sys.stdout,
            )
    return 0
