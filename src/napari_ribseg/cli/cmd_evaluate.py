"""``ribseg evaluate``: score a model on a paired image/mask dataset (Dice, IoU, HD95, components)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from napari_ribseg.cli.cmd_info import add_depth_options, finite_positive
from napari_ribseg.cli.cmd_predict import add_model_options, chosen_model, mask_options

#: ``--spacing``: a length, checked before any inference.
spacing_mm = finite_positive("a pixel spacing in mm > 0")


def register(subparsers) -> None:
    """Add the ``evaluate`` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score a model on a paired image/mask dataset",
        description="Predict every image of DATA_DIR (IMG/ + MASK/ or images/ + masks/) and compare "
        "with its mask: per-frame and mean Dice, IoU, HD95 (mm when the pixel spacing is known, "
        "pixels otherwise) and spurious components (predicted components touching no true rib).",
    )
    parser.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="paired dataset folder")
    add_model_options(parser)
    physical = parser.add_mutually_exclusive_group()
    physical.add_argument(
        "--spacing",
        type=spacing_mm,
        nargs=2,
        default=None,
        metavar=("ROW_MM", "COL_MM"),
        help="pixel spacing in mm, for HD95 in mm (default: pixels; or --depth-mm)",
    )
    add_depth_options(physical, replace=False)
    parser.add_argument("--csv", type=Path, default=None, metavar="F", help="write per-frame CSV")
    parser.add_argument(
        "--json-out", type=Path, default=None, metavar="F", help="write the full result as JSON"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object on stdout (nothing else) instead of a table",
    )
    parser.set_defaults(func=run)


#: What the table prints for a value that was not measured (HD95 of a frame where neither mask
#: has a rib, or a mean over no such frame); the CSV and JSON keep their machine-readable forms.
NOT_MEASURED = "-"


def _fmt(value: float) -> str:
    # nan only ever means "not measured" here: "nan" read as a broken number.
    return "inf" if math.isinf(value) else (NOT_MEASURED if math.isnan(value) else f"{value:.3f}")


def _print_table(evaluation) -> None:
    unit = evaluation.unit
    header = ("id", "dice", "iou", f"hd95_{unit}", "spurious", "components")
    lines = [
        (
            r["id"],
            _fmt(r["dice"]),
            _fmt(r["iou"]),
            _fmt(r["hd95"]),
            str(r["spurious_components"]),
            f"{r['pred_components']}/{r['true_components']}",
        )
        for r in evaluation.rows
    ]
    for name, stats in (("mean", evaluation.mean), ("std", evaluation.std)):
        lines.append(
            (
                name,
                _fmt(stats["dice"]),
                _fmt(stats["iou"]),
                _fmt(stats["hd95"]),
                _fmt(stats["spurious_components"]),
                f"{_fmt(stats['pred_components'])}/{_fmt(stats['true_components'])}",
            )
        )
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    for index, row in enumerate([header, *lines]):
        if index == len(evaluation.rows) + 1:
            print("  ".join("-" * w for w in widths))
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if evaluation.hd95_undefined:
        print(
            f"HD95 undefined (one mask empty) in {evaluation.hd95_undefined} frame(s); "
            "the mean skips them"
        )
    if evaluation.hd95_both_empty:
        print(
            f"HD95 not measured (no rib in prediction or truth; shown as {NOT_MEASURED!r}) in "
            f"{evaluation.hd95_both_empty} frame(s); the mean skips them (their Dice is 1)"
        )


def run(args: argparse.Namespace) -> int:
    """Predict the dataset, compare with its masks, print and write the scores."""
    from napari_ribseg.cli.progress_bar import ProgressBar
    from napari_ribseg.core.atomic import check_writable
    from napari_ribseg.core.devices import resolve_device
    from napari_ribseg.core.errors import OutputPathError
    from napari_ribseg.core.evaluation import evaluate_model
    from napari_ribseg.core.io import read_paired_dataset
    from napari_ribseg.core.io.intensity import describe_scaling
    from napari_ribseg.core.models import load_model

    # Before the slow predictions, not after them (a folder failed at the end, naming a temp file).
    for target, what in ((args.csv, "--csv"), (args.json_out, "--json-out")):
        if target is not None:
            check_writable(target, what)
    if (
        args.csv is not None
        and args.json_out is not None
        and args.csv.resolve() == args.json_out.resolve()
    ):
        raise OutputPathError(f"--csv and --json-out name the same file {args.csv}")
    device = resolve_device(args.device)
    dataset = read_paired_dataset(args.data_dir)
    spacing = tuple(args.spacing) if args.spacing else None
    derived = None
    if args.depth_mm is not None:
        from napari_ribseg.core.region import frames_spacing_from_depth

        # Before the slow predictions: a data set of several depth settings fails here.
        derived = frames_spacing_from_depth(
            dataset.images, dataset.groups, args.depth_mm, what=f"'{args.data_dir}'"
        )
        spacing = derived.spacing_mm
    loaded = load_model(chosen_model(args), device="cpu")
    options = mask_options(args)
    evaluation = evaluate_model(
        loaded,
        dataset,
        threshold=options.threshold,
        postprocess=options.kwargs(),
        device=device,
        batch_size=args.batch_size,
        spacing=spacing,
        flip_average=args.flip_average,
        on_progress=ProgressBar("evaluate"),
    )
    evaluation.extra = {
        "model": getattr(loaded, "name", None) or str(args.model),
        "data": str(args.data_dir),
        "device": str(device),
        "threshold": options.threshold,
        "postprocess": options.kwargs(),
        "flip_average": evaluation.extra["flip_average"],
    }
    evaluation.extra["intensity"] = describe_scaling(dataset.scaling)
    evaluation.extra["intensity_scaling"] = dataset.scaling
    if derived is not None:
        evaluation.extra["spacing_from_depth"] = derived.to_dict()
    if args.csv is not None:
        evaluation.to_csv(args.csv)
    if args.json_out is not None:
        evaluation.to_json(args.json_out)

    if args.json:
        print(json.dumps(evaluation.to_dict(), allow_nan=False))
        return 0
    _print_table(evaluation)
    print(f"intensity: {evaluation.extra['intensity']}")
    if derived is not None:
        print(f"spacing: {derived.describe()} (median clip)")
    mean_hd95 = evaluation.mean["hd95"]
    hd95_text = (
        f"{_fmt(mean_hd95)} {evaluation.unit}"
        if not math.isnan(mean_hd95)
        else f"{NOT_MEASURED} (no frame to measure)"
    )
    print(
        f"{evaluation.n_frames} frames: Dice {_fmt(evaluation.mean['dice'])}, "
        f"IoU {_fmt(evaluation.mean['iou'])}, HD95 {hd95_text}, "
        f"spurious components {_fmt(evaluation.mean['spurious_components'])}/frame"
    )
    for flag, path in (("csv", args.csv), ("json", args.json_out)):
        if path is not None:
            print(f"wrote {flag}: {path}")
    return 0
