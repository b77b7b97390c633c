"""``ribseg export-curated STACK --out DIR``: write a review's curated frames as IMG/ + MASK/."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    """Add the ``export-curated`` subcommand."""
    parser = subparsers.add_parser(
        "export-curated",
        help="write the curated frames of a stack's review as a paired IMG/+MASK/ folder",
        description="Write the curated frames of STACK's review as a paired dataset (IMG/ and "
        "MASK/, the layout `ribseg finetune DATA` and the study runner read).",
    )
    parser.add_argument("stack", type=Path, metavar="STACK", help="the reviewed ultrasound stack")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="new empty folder")
    parser.add_argument(
        "--project-folder", type=Path, default=None, metavar="DIR",
        help="the review is kept under DIR instead of next to the stack",
    )  # fmt: skip
    parser.add_argument(
        "--variable",
        default=None,
        metavar="NAME",
        help="array of a .mat/.npz holding several that the review is of (as given to predict --review)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export and print how many pairs went where."""
    from napari_ribseg.core.session import ReviewSession

    with ReviewSession.open(
        args.stack, project_folder=args.project_folder, read_only=True, variable=args.variable
    ) as session:
        return _run(args, session)


def _run(args: argparse.Namespace, session) -> int:
    data = session.training_set()
    root = session.export_curated(args.out)
    print(f"{root}: {len(data)} curated frame pairs (IMG/ + MASK/) from {session.project.folder}")
    return 0
