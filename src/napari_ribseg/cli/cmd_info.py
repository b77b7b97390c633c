"""``ribseg info PATH``: what the reader registry makes of a file or frame folder."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable


def finite_positive(expected: str) -> Callable[[str], float]:
    """An argparse type: a finite number > 0, checked before any work; ``expected`` says what
    the error message asks for ("a depth in mm > 0")."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}")
        return value

    return parse


#: ``--depth-mm`` (the core checks the scanner range).
positive_mm = finite_positive("a depth in mm > 0 (160 for 16 cm)")


def add_depth_options(parser: argparse.ArgumentParser, *, replace: bool = True) -> None:
    """``--depth-mm`` (and ``--replace-spacing``): pixel spacing from the scanner's imaging depth."""
    parser.add_argument(
        "--depth-mm",
        type=positive_mm,
        default=None,
        metavar="D",
        help="imaging depth the scanner shows, in mm (160 for 16 cm): gives the pixel spacing "
        "from the detected image's height when the file records none (PNG, JPEG, video)",
    )
    if replace:
        parser.add_argument(
            "--replace-spacing",
            action="store_true",
            help="with --depth-mm: replace a spacing the file records (otherwise an error)",
        )


def register(subparsers) -> None:
    """Add the ``info`` subcommand."""
    parser = subparsers.add_parser(
        "info",
        help="show frames, size, dtype, spacing and frame rate of an ultrasound stack",
        description="Read PATH through the reader registry and describe the stack.",
    )
    parser.add_argument("path", metavar="PATH", help="file or folder of frames")
    parser.add_argument("--variable", metavar="NAME", help="array to read from a .mat or .npz file")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_depth_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the description of the stack at ``args.path``; core errors propagate to ``main``."""
    from napari_ribseg.core.io import read_stack
    from napari_ribseg.core.io.intensity import describe_scaling
    from napari_ribseg.core.region import check_depth, detect_imaged_region, stack_with_depth

    if args.replace_spacing and args.depth_mm is None:
        # Ignored in silence (predict refuses it the same way).
        print(
            "ribseg info: error: --replace-spacing replaces the file's spacing with the one "
            "--depth-mm gives; add --depth-mm D (the scanner's imaging depth in mm)",
            file=sys.stderr,
        )
        return 2
    if args.depth_mm is not None:
        check_depth(args.depth_mm)  # a unit slip fails before the read
    stack = read_stack(args.path, variable=args.variable)
    region = detect_imaged_region(stack.frames)
    derived = None
    if args.depth_mm is not None:
        found = region if region.kind != "full" else None
        stack, derived = stack_with_depth(stack, args.depth_mm, found, replace=args.replace_spacing)
    info = stack.describe()
    info["reader"] = stack.metadata.get("reader")
    info["variable"] = stack.metadata.get("variable")
    info["intensity_scaling"] = stack.metadata.get("intensity_scaling")
    info["series_not_read"] = stack.metadata.get("series_not_read", [])
    info["imaged_region"] = region.to_dict()
    info["spacing_from_depth"] = derived.to_dict() if derived else None
    if args.json:
        print(json.dumps(info, default=str))
        return 0
    spacing = stack.spacing_mm
    spacing_text = f"{spacing[0]:.4g} x {spacing[1]:.4g} mm (row x col)" if spacing else "unknown"
    if derived is not None:
        spacing_text += (
            f", from {derived.depth_mm:g} mm imaging depth over {derived.depth_px:.1f} px "
            f"({derived.region})"
        )
    lines = [
        ("source", info["source"]),
        ("reader", info["reader"]),
        ("frames", stack.n_frames),
        ("size", f"{stack.frame_shape[0]} x {stack.frame_shape[1]} (height x width)"),
        ("dtype", stack.original_dtype),
        ("intensity", describe_scaling(info["intensity_scaling"])),
        ("spacing", spacing_text),
        ("frame rate", f"{stack.frame_rate:.4g} fps" if stack.frame_rate else "unknown"),
        ("image", region.describe()),
    ]
    if info["variable"]:
        lines.insert(2, ("variable", info["variable"]))
    if skipped := stack.metadata.get("series_not_read"):
        lines.append(
            (
                "note",
                f"only the first image series was read; {len(skipped)} more not read: "
                + "; ".join(skipped),
            )
        )
    for key, value in lines:
        print(f"{key + ':':<12} {value}")
    return 0
