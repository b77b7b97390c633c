"""``ribseg gui [PATH] [--sample linear|convex]``: napari with the Rib Segmentation widget docked."""

from __future__ import annotations

import argparse
import os
import sys

SAMPLES = ("linear", "convex")


def register(subparsers) -> None:
    """Add the ``gui`` subcommand."""
    parser = subparsers.add_parser(
        "gui",
        help="open napari with the Rib Segmentation widget (and a stack or sample)",
        description=(
            "Start napari, dock the Rib Segmentation widget and open PATH (a file or a folder of "
            "frames) or a simulated sample cine. A saved review next to PATH is restored."
        ),
    )
    parser.add_argument("path", metavar="PATH", nargs="?", help="ultrasound stack to open")
    parser.add_argument(
        "--sample", choices=SAMPLES, help="open a simulated cine instead of (or beside) PATH"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Open the viewer and block until it is closed; the return value is the exit code."""
    if args.path is not None and not os.path.exists(args.path):
        # A typo opened the whole viewer (seconds) only to show "Could not open" inside it.
        print(f"ribseg gui: error: {args.path}: no such file or folder", file=sys.stderr)
        return 2
    # napari and Qt are imported here, not at module level: `ribseg --help` and every other
    # subcommand must work on a headless server without them.
    try:
        import napari
    except ImportError:
        print(
            "ribseg gui: napari is not installed; install it with `pip install napari-ribseg[all]`",
            file=sys.stderr,
        )
        return 2
    viewer = napari.Viewer(title="napari-ribseg")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-ribseg", "Rib Segmentation")
    if args.sample:
        widget.load_sample(args.sample)
    if args.path:
        # Load errors become napari notifications inside the widget; the viewer still opens.
        widget.load(args.path)
    napari.run()
    return 0
