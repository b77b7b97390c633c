"""``ribseg info PATH``: what the reader registry makes of a file or frame folder."""

from __future__ import annotations

import argparse
import json


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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the description of the stack at ``args.path``; core errors propagate to ``main``."""
    from napari_ribseg.core.io import read_stack
    from napari_ribseg.core.region import detect_imaged_region

    stack = read_stack(args.path, variable=args.variable)
    info = stack.describe()
    info["reader"] = stack.metadata.get("reader")
    info["variable"] = stack.metadata.get("variable")
    info["intensity_scaling"] = stack.metadata.get("intensity_scaling")
    region = detect_imaged_region(stack.frames)
    info["imaged_region"] = region.to_dict()
    if args.json:
        print(json.dumps(info, default=str))
        return 0
    spacing = stack.spacing_mm
    lines = [
        ("source", info["source"]),
        ("reader", info["reader"]),
        ("frames", stack.n_frames),
        ("size", f"{stack.frame_shape[0]} x {stack.frame_shape[1]} (height x width)"),
        ("dtype", stack.original_dtype),
        (
            "spacing",
            f"{spacing[0]:.4g} x {spacing[1]:.4g} mm (row x col)" if spacing else "unknown",
        ),
        ("frame rate", f"{stack.frame_rate:.4g} fps" if stack.frame_rate else "unknown"),
        ("image", region.describe()),
    ]
    if info["variable"]:
        lines.insert(2, ("variable", info["variable"]))
    for key, value in lines:
        print(f"{key + ':':<12} {value}")
    return 0
