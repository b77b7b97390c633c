"""``ribseg finetune DATA --model M --out NAME``: fine-tune a model on a paired image/mask folder.

Also runs data-parallel under ``torchrun --nproc_per_node=N -m napari_ribseg.cli finetune ...``;
only rank 0 prints and writes files. torch is imported inside :func:`run`, not at CLI start-up.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(subparsers) -> None:
    """Add the ``finetune`` subcommand."""
    from napari_ribseg.core.training.augment import AUGMENT_PRESETS
    from napari_ribseg.core.training.freeze import FREEZE_STRATEGIES

    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune a model on curated frames (paired image/mask folder)",
        description="Fine-tune a rib-segmentation model on a paired folder (IMG/+MASK/ or "
        "images/+masks/). Validation frames are whole clips, never frames of a training clip.",
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
    parser.add_argument("--strategy", default="all", choices=sorted(FREEZE_STRATEGIES))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--augment", default="flip", choices=AUGMENT_PRESETS)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--val-share", type=float, default=0.2)
    parser.add_argument("--loss", default="dice_bce", choices=("dice", "dice_bce"))
    parser.add_argument("--optimizer", default="adam", choices=("adam", "adamw"))
    parser.add_argument("--schedule", default="cosine", choices=("cosine", "plateau", "none"))
    parser.add_argument("--patience", type=int, default=5, help="early-stop patience (0: off)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument(
        "--no-resume", action="store_true", help="ignore a resume state beside the output"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing model of the same name"
    )
    parser.set_defaults(func=run)


def output_path(out: str) -> Path:
    """A model name -> ``user_model_dir()/NAME.safetensors``; a ``.safetensors`` path stays as is."""
    from napari_ribseg.core.errors import TrainingError
    from napari_ribseg.core.models import user_model_dir

    path = Path(out)
    if path.suffix == ".safetensors":
        return path
    if path.suffix or "/" in out or os.sep in out:
        raise TrainingError(
            f"--out {out!r}: expected a model name (no folder, no suffix) or a path ending in "
            ".safetensors"
        )
    return user_model_dir() / f"{out}.safetensors"


def _training_data(path: Path):
    """A paired folder as is; a stack (file or frame folder) through its review's curated frames."""
    from napari_ribseg.core.io import find_reader, read_paired_dataset
    from napari_ribseg.core.training.data import TrainingSet

    if path.is_dir() and find_reader(path) is None:
        return TrainingSet.from_paired(read_paired_dataset(path))
    from napari_ribseg.core.session import ReviewSession

    with ReviewSession.open(path) as session:
        return session.training_set()


def run(args: argparse.Namespace) -> int:
    """Fine-tune and print where the model went and its validation Dice before/after."""
    from napari_ribseg.cli.progress_bar import ProgressBar
    from napari_ribseg.core.errors import TrainingError
    from napari_ribseg.core.jobs import run_job
    from napari_ribseg.core.models import load_model, resolve_model
    from napari_ribseg.core.training.loop import FinetuneConfig, finetune, resume_paths

    out = output_path(args.out)
    base_path = resolve_model(args.model)
    if out.resolve() == Path(base_path).resolve():
        raise TrainingError(f"--out {out} is the base model itself; choose a new name")
    # An existing model is only replaced on request, unless this run resumes an interrupted one.
    resuming = not args.no_resume and resume_paths(out)[1].is_file()
    if out.exists() and not resuming and not args.overwrite:
        raise TrainingError(f"--out {out} exists; choose a new name or pass --overwrite")
    config = FinetuneConfig(
        strategy=args.strategy,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        schedule=args.schedule,
        loss=args.loss,
        augment=args.augment,
        val_share=args.val_share,
        early_stop_patience=args.patience,
        seed=args.seed,
        device=args.device,
        num_workers=args.workers,
    )
    config.validate()
    data = _training_data(args.data)
    base = load_model(base_path)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    bar = ProgressBar("finetune", kind="batch") if main_rank else None
    result = run_job(finetune(base, data, config, out=out, resume=not args.no_resume), bar)
    if main_rank:
        state = "stopped" if result.stopped else "done"
        print(
            f"{state}: {result.checkpoint} (validation Dice {result.base_val_dice:.3f} -> "
            f"{result.best_val_dice:.3f}, best epoch {result.best_epoch}, "
            f"{len(result.history)} epochs, {len(result.val_ids)} validation frames)",
            file=sys.stdout,
        )
    return 0
