"""``ribseg pretrain-salient [DATA] --out NAME``: pre-train the X-Unet on salient objects.

DATA is a salient-object set in its download layout (DUTS, ECSSD, XPIE, MSRA10K or images/+masks/);
``--synthetic N`` composes N images from scikit-image's bundled photographs instead (no download),
and the model card then says so. torch is imported inside :func:`run`, not at CLI start-up.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_ribseg.cli.cmd_info import finite_positive
from napari_ribseg.cli.cmd_predict import non_negative_int, positive_int


def input_size(text: str) -> int:
    """argparse type of ``--size``: a model input size (a multiple of 16 in 16..4096)."""
    value = positive_int(text)
    if value % 16 or not 16 <= value <= 4096:
        raise argparse.ArgumentTypeError(f"expected a multiple of 16 in 16..4096; got {text!r}")
    return value


positive_float = finite_positive("a number > 0")


def register(subparsers) -> None:
    """Add the ``pretrain-salient`` subcommand."""
    parser = subparsers.add_parser(
        "pretrain-salient",
        help="pre-train the plain U-Net (X-Unet) on salient-object images",
        description="Train the plain U-Net from scratch on a salient-object set (grayscale), as the "
        "X-Unet of Cheng & Lam (2021) was on XPIE, and save it as an x-unet checkpoint whose card "
        "names the data set. DATA layouts: DUTS-TR-Image/DUTS-TR-Mask, images/ground_truth_mask "
        "(ECSSD), img/gt (XPIE), <stem>.jpg+<stem>.png in one folder (MSRA10K), images/masks. "
        "Without DATA, --synthetic N composes N images from scikit-image's sample photographs.",
    )
    parser.add_argument(
        "data", type=Path, nargs="?", default=None, metavar="DATA", help="salient-object folder"
    )
    parser.add_argument(
        "--out",
        required=True,
        help="new model: a name (saved in the user model folder) or a path ending in .safetensors",
    )
    parser.add_argument(
        "--synthetic",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="compose N synthetic salient images instead of reading DATA",
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=20, help="passes over the images (default: 20)"
    )
    parser.add_argument(
        "--preset",
        default="compact",
        choices=("paper", "compact", "tiny"),
        help="model widths (default: compact)",
    )
    parser.add_argument(
        "--size",
        type=input_size,
        default=256,
        help="training and model input size (16-4096, a multiple of 16; default: 256)",
    )
    parser.add_argument(
        "--lr", type=positive_float, default=1e-3, help="Adam learning rate (default: 0.001)"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=8, help="images per optimiser step (default: 8)"
    )
    parser.add_argument(
        "--limit", type=positive_int, default=None, help="read at most this many images of DATA"
    )
    parser.add_argument(
        "--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)"
    )
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing model of the same name"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the pre-training with a progress bar; print where the checkpoint went."""
    from napari_ribseg.cli.cmd_finetune import output_path
    from napari_ribseg.cli.progress_bar import ProgressBar
    from napari_ribseg.core.errors import DatasetError
    from napari_ribseg.core.jobs import run_job
    from napari_ribseg.core.training.loop import refuse_existing_out
    from napari_ribseg.core.training.salient import pretrain_salient

    out = output_path(args.out)
    # ribseg finetune's rule: a run resuming its own interrupted output may replace what that run
    # wrote (it was refused, so an interrupted pre-training could only start over with --overwrite).
    refuse_existing_out(
        out, overwrite=args.overwrite, resume=True, name="--out", ask="pass --overwrite"
    )
    if args.data is None and args.synthetic <= 0:
        raise DatasetError("pretrain-salient needs DATA or --synthetic N")
    if args.data is not None and args.synthetic > 0:
        raise DatasetError("pretrain-salient: give DATA or --synthetic N, not both")
    if args.limit is not None and args.data is None:
        # It was ignored: --synthetic N already says how many images.
        raise DatasetError(
            "pretrain-salient: --limit applies to DATA; --synthetic N sets the count"
        )
    result = run_job(
        pretrain_salient(
            args.data,
            synthetic=args.synthetic,
            preset=args.preset,
            size=args.size,
            epochs=args.epochs,
            lr=args.lr,
            batch_size=args.batch_size,
            seed=args.seed,
            device=args.device,
            out=out,
            limit=args.limit,
            overwrite=args.overwrite,
        ),
        ProgressBar("pretrain-salient", kind="batch"),
    )
    state = "stopped" if result.stopped else "done"
    print(
        f"{state}: {result.checkpoint} ({result.dataset}, {result.n_images} images, validation "
        f"Dice {result.best_val_dice:.3f}); {result.statement}",
        file=sys.stdout,
    )
    return 0
