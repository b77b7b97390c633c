"""``ribseg predict``: segment the ribs of a stack with a model and write a label TIFF.

The mask options (``--threshold``, ``--min-size``, ``--fill-holes``, ``--keep-largest``) are
generated from the fields of :class:`~napari_ribseg.core.session.MaskOptions`, their one
declaration (default, range, help), which the widget's Mask controls also read.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from napari_ribseg.core.postprocess import MaskOptions


def bounded(kind: type, low: float, high: float) -> Callable[[str], float]:
    """argparse type: an int or float (``kind``) in [low, high]."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}; got {value}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0; got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:  # -2 was told "must be >= 0", which 0 is not enough for either
        raise argparse.ArgumentTypeError(f"must be >= 1; got {value}")
    return value


def chosen_model(args: argparse.Namespace) -> str | Path:
    """``--model``, or the registry's :func:`default_model` (said on stderr) when none is given."""
    if args.model:
        return args.model
    from napari_ribseg.core.errors import CheckpointError
    from napari_ribseg.core.models import default_model, user_model_dir

    entry = default_model()
    if entry is None:
        raise CheckpointError(
            f"no --model given and no rib model installed (user models go in {user_model_dir()})"
        )
    print(f"model: {entry.name} (the default; --model to choose)", file=sys.stderr)
    return entry.path


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``predict`` and ``evaluate``: model, device, batching, post-processing."""
    parser.add_argument(
        "--model",
        default=None,
        metavar="NAME_OR_PATH",
        help="a model name from `ribseg models` or a .safetensors checkpoint path (default: the "
        "registry's default, as in the widget: your newest model that passed its fine-tune gate, "
        "else the best bundled one)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps (default: auto)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        metavar="B",
        help="frames per batch (default: chosen from free memory)",
    )
    from napari_ribseg.core.inference import FLIP_AVERAGE

    parser.add_argument(
        "--flip-average",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average each frame's probabilities with its left-right mirror image's (test-time "
        f"augmentation, twice the time; default: {'on' if FLIP_AVERAGE else 'off'}, "
        "docs/inference.md)",
    )
    add_mask_options(parser)


#: How each mask option's value reads in ``--help`` (the option itself is MaskOptions').
METAVARS = {"threshold": "P", "min_size": "N", "keep_largest": "K"}


def add_mask_options(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per :class:`MaskOptions` field, with its default, range and help."""
    from napari_ribseg.core.postprocess import MaskOptions

    for f in dataclasses.fields(MaskOptions):
        flag = "--" + f.name.replace("_", "-")
        text = f.metadata.get("help", "")
        if isinstance(f.default, bool):
            action = "store_true" if not f.default else argparse.BooleanOptionalAction
            parser.add_argument(flag, dest=f.name, action=action, default=f.default, help=text)
            continue
        low, high = f.metadata["range"]
        parser.add_argument(
            flag,
            dest=f.name,
            type=bounded(type(f.default), low, high),
            default=f.default,
            metavar=METAVARS.get(f.name, f.name.upper()),
            help=f"{text}, in [{low}, {high}] (default: {f.default})",
        )


def mask_options(args: argparse.Namespace) -> MaskOptions:
    """The :class:`MaskOptions` the parsed ``add_mask_options`` flags describe."""
    from napari_ribseg.core.postprocess import MaskOptions

    return MaskOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(MaskOptions)})


def register(subparsers) -> None:
    """Add the ``predict`` subcommand."""
    parser = subparsers.add_parser(
        "predict",
        help="segment ribs in a stack and write a label TIFF",
        description="Run a rib-segmentation model on every frame of INPUT (TIFF, DICOM, video, "
        "frame folder, .mat, .npy/.npz) and write the rib mask as a uint8 label TIFF (0/1).",
    )
    parser.add_argument("input", type=Path, metavar="INPUT", help="the ultrasound stack to segment")
    parser.add_argument(
        "--out", type=Path, default=None, metavar="MASKS.tif", help="label TIFF to write (0/1)"
    )
    parser.add_argument(
        "--review",
        action="store_true",
        help="write the prediction into the stack's review (<file name>.ribseg) for napari; curated, "
        "rejected and hand-edited frames are left as they are",
    )
    parser.add_argument(
        "--project-folder",
        type=Path,
        default=None,
        metavar="DIR",
        help="with --review: keep the review under DIR instead of next to the stack",
    )
    parser.add_argument(
        "--prob",
        type=Path,
        default=None,
        metavar="PROB.tif",
        help="also write the rib probabilities as uint8 TIFF (p x 255)",
    )
    parser.add_argument(
        "--variable", default=None, help="array to read from a .mat/.npz holding several"
    )
    parser.add_argument(
        "--region",
        choices=("auto", "crop", "none"),
        default="auto",
        help="auto: find the ultrasound image inside the frame (fan or rectangle) and leave the "
        "outside empty; crop: also run the model on the region's box only; none: whole frames, "
        "nothing left out (default: auto; the crop lost 0.002-0.006 Dice for V-Unet and X-Unet "
        "and gained 0.002 for U-Net on the hard domain, docs/region.md)",
    )
    from napari_ribseg.cli.cmd_info import add_depth_options

    add_depth_options(parser)
    add_model_options(parser)
    parser.set_defaults(func=run)


def _refuse_overwriting_input(source: Path, *targets: Path | None) -> str | None:
    resolved = source.resolve()
    named = [t for t in targets if t is not None]
    for target in named:
        if target.resolve() == resolved:
            return f"{target} is the input file; inputs are never overwritten"
        if source.is_dir() and target.resolve().parent == resolved:
            # It would replace a frame, or become one on the next read of the folder.
            return (
                f"{target} is inside the input folder of frames; write the masks elsewhere "
                "(inputs are never overwritten)"
            )
    if len(named) == 2 and named[0].resolve() == named[1].resolve():
        return f"--out and --prob name the same file {named[0]}"
    return None


#: Suffixes of formats predict does not write: a TIFF was written under such a name.
_NOT_TIFF = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".npy", ".npz", ".mat", ".mp4")
_NOT_TIFF += (".avi", ".mov", ".dcm", ".dicom", ".csv", ".json", ".safetensors")


def _refuse_other_formats(out: Path | None, prob: Path | None) -> str | None:
    for target, flag in ((out, "--out"), (prob, "--prob")):
        if target is not None and target.suffix.lower() in _NOT_TIFF:
            return (
                f"{flag} {target}: predict writes a TIFF; name it with .tif or .tiff, "
                f"not {target.suffix}"
            )
    return None


def run(args: argparse.Namespace) -> int:
    """Read the stack, predict, threshold and write the masks (and probabilities)."""
    if args.out is None and not args.review:
        print("ribseg predict: error: give --out MASKS.tif, --review, or both", file=sys.stderr)
        return 2
    if args.project_folder is not None and not args.review:
        print(
            "ribseg predict: error: --project-folder says where the review is kept; it does "
            "nothing without --review",
            file=sys.stderr,
        )
        return 2
    if args.replace_spacing and args.depth_mm is None:
        print(
            "ribseg predict: error: --replace-spacing replaces the file's spacing with the one "
            "--depth-mm gives; add --depth-mm D (the scanner's imaging depth in mm)",
            file=sys.stderr,
        )
        return 2
    if args.depth_mm is not None and args.out is None and args.prob is None:
        print(
            "ribseg predict: error: --depth-mm records the spacing in the --out/--prob TIFFs and "
            "a review stores none; add --out MASKS.tif (in napari, Imaging depth puts the spacing "
            "on the layers)",
            file=sys.stderr,
        )
        return 2
    problem = _refuse_overwriting_input(args.input, args.out, args.prob)
    problem = problem or _refuse_other_formats(args.out, args.prob)
    if problem:
        print(f"ribseg predict: error: {problem}", file=sys.stderr)
        return 2
    from napari_ribseg.core.atomic import check_writable

    for target, what in ((args.out, "--out"), (args.prob, "--prob")):
        if target is not None:
            check_writable(target, what)  # before the slow inference, not after it

    from napari_ribseg.cli.progress_bar import ProgressBar
    from napari_ribseg.core.devices import resolve_device
    from napari_ribseg.core.jobs import run_job
    from napari_ribseg.core.models import load_model
    from napari_ribseg.core.models.registry import refuse_start_checkpoint
    from napari_ribseg.core.streaming import segment_file

    if args.depth_mm is not None:
        from napari_ribseg.core.region import check_depth

        check_depth(args.depth_mm)  # a unit slip fails before the model is loaded
    device = resolve_device(args.device)  # fail before the slow reads when the device is missing
    loaded = load_model(chosen_model(args), device="cpu")
    refuse_start_checkpoint(loaded.card, "segment ribs")
    if args.review:
        return _predict_into_review(args, loaded, device)
    options = mask_options(args)
    # Streams: frames are read and masks written one batch at a time (bounded memory).
    done = run_job(
        segment_file(
            loaded,
            args.input,
            args.out,
            prob_path=args.prob,
            threshold=options.threshold,
            variable=args.variable,
            device=device,
            batch_size=args.batch_size,
            crop_to_region=CROP_TO_REGION_OF[args.region],
            flip_average=args.flip_average,
            depth_mm=args.depth_mm,
            replace_spacing=args.replace_spacing,
            **options.kwargs(),
        ),
        ProgressBar("predict"),
    )
    prediction = done.prediction
    print(_region_text(prediction.region, args.region))
    rate = prediction.n_frames / max(prediction.elapsed_s, 1e-9)
    print(
        f"{args.out}: {prediction.n_frames} frames {done.frame_shape[0]}x{done.frame_shape[1]}, "
        f"rib pixels {100.0 * done.rib_fraction:.2f}%, "
        f"mean confidence {float(prediction.confidence.mean()):.3f} "
        f"(model {prediction.model_name}, {prediction.device}, batch {prediction.batch_size}, "
        f"{rate:.1f} frames/s)"
    )
    if args.prob is not None:
        print(f"{args.prob}: rib probability x 255 (uint8)")
    print(f"pixel spacing recorded in the TIFF(s): {_spacing_text(done.spacing_mm, done.spacing_from_depth)}")  # fmt: skip
    return 0


#: ``--region``'s choices as ``crop_to_region`` (``None``: the default, ``CROP_TO_REGION``).
CROP_TO_REGION_OF = {"auto": None, "crop": True, "none": False}


def _region_text(region, choice: str) -> str:
    """One line: the imaged region the model ran in, or why it ran on whole frames."""
    if region is not None and region.kind != "full":
        return f"imaged region: {region.describe()}"
    if choice == "none":
        return "imaged region: none (--region none: whole frames, nothing zeroed)"
    return "imaged region: none found (whole frames, nothing zeroed)"


def _spacing_text(spacing_mm, derived=None) -> str:
    if derived is not None:
        return derived.describe()
    if spacing_mm is None:
        return "none (the stack records none; --depth-mm D records the one the imaging depth gives)"
    return f"{spacing_mm[0]:.4g} x {spacing_mm[1]:.4g} mm (row x col, from the file)"


def _predict_into_review(args: argparse.Namespace, loaded, device) -> int:
    """Predict the frames the review's overwrite rule allows, store them in the review, save."""
    from napari_ribseg.cli.progress_bar import ProgressBar
    from napari_ribseg.core.io import read_stack, write_label_tiff
    from napari_ribseg.core.jobs import run_job
    from napari_ribseg.core.region import detect_imaged_region, stack_with_depth
    from napari_ribseg.core.session import ReviewSession

    stack = read_stack(args.input, variable=args.variable)
    options = mask_options(args)
    # Detected here, as segment_file does for the other path: on sampled frames of a lazy stack too.
    found = detect_imaged_region(stack.frames)
    region = None if args.region == "none" else found
    derived = None
    if args.depth_mm is not None:  # checked before the model runs
        stack, derived = stack_with_depth(stack, args.depth_mm, found, replace=args.replace_spacing)
    with ReviewSession.open(stack, project_folder=args.project_folder, options=options) as session:
        job = session.compute_prediction(
            loaded,
            device=str(device),
            batch_size=args.batch_size,
            flip_average=args.flip_average,
            region=region,
            crop_to_region=CROP_TO_REGION_OF[args.region],
        )
        written = session.apply_prediction(run_job(job, ProgressBar("predict")))
        session.save()
    print(_region_text(region, args.region))
    if args.out is not None:
        write_label_tiff(args.out, session.labels, stack.spacing_mm)
    no_prob = args.prob is not None and session.prob is None
    if args.prob is not None and not no_prob:
        write_label_tiff(args.prob, session.prob, stack.spacing_mm)
    if args.out is not None or not (args.prob is None or no_prob):
        print(f"pixel spacing recorded in the TIFF(s): {_spacing_text(stack.spacing_mm, derived)}")
    counts = session.counts()
    # The model of this run (the review's records the last one that wrote: None if none ever did).
    model_name = getattr(loaded, "name", None) or session.project.model_name
    print(
        f"{session.project.folder}: {written.size} of {stack.n_frames} frames written by "
        f"{model_name}; kept {counts['curated']} curated, {counts['rejected']} "
        f"rejected, {counts['edited']} hand-edited frames (open the stack in napari to review)"
    )
    if no_prob:
        # It was skipped in silence: the review holds no probabilities when no frame was predicted.
        print(
            f"ribseg predict: error: {args.prob} not written: the review holds no probabilities "
            "(every frame is curated, rejected or hand-edited and none was ever predicted)",
            file=sys.stderr,
        )
        return 2
    return 0
