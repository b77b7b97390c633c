"""``ribseg review STACK``: print a review's frame statuses and counts; set statuses in batch."""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def register(subparsers) -> None:
    """Add the ``review`` subcommand."""
    parser = subparsers.add_parser(
        "review",
        help="show or set the frame statuses of a stack's review",
        description="Print the frame statuses of STACK's review (the folder <file name>.ribseg "
        "next to it, e.g. clip.dcm.ribseg) and their counts; --curate / --reject / --unreview "
        "FRAMES (e.g. 0-3,7) set them.",
    )
    parser.add_argument("stack", type=Path, metavar="STACK", help="the reviewed ultrasound stack")
    parser.add_argument("--curate", metavar="FRAMES", help="mark these frames curated, e.g. 0-3,7")
    parser.add_argument("--reject", metavar="FRAMES", help="mark these frames rejected")
    parser.add_argument("--unreview", metavar="FRAMES", help="mark these frames unreviewed again")
    parser.add_argument(
        "--project-folder", type=Path, default=None, metavar="DIR",
        help="the review is kept under DIR instead of next to the stack",
    )  # fmt: skip
    parser.add_argument(
        "--rebind", action="store_true",
        help="restore the review of this very file although it now reads to other frames than "
        "when the review was saved (the file is unchanged, the reader's rules changed: a review "
        "saved before 2026-12-04 records no signature of the file to check this), and save it "
        "bound to the frames as read now",
    )  # fmt: skip
    parser.add_argument(
        "--variable",
        default=None,
        metavar="NAME",
        help="array of a .mat/.npz holding several that the review is of (as given to predict --review)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the counts")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Apply the requested statuses, save, and print the table and counts."""
    from napari_ribseg.core.errors import DatasetError
    from napari_ribseg.core.session import ReviewSession

    for flag, text in (
        ("--unreview", args.unreview),
        ("--curate", args.curate),
        ("--reject", args.reject),
    ):
        if text is not None and not any(part.strip() for part in text.split(",")):
            # An empty list (an unset shell variable) only showed the review, exit 0.
            raise DatasetError(f"{flag} {text!r}: no frames given; expected e.g. 0-3,7")
    # Only showing a review never starts one (no empty sidecar left behind).
    changes = any((args.unreview, args.curate, args.reject)) or args.rebind
    with ReviewSession.open(
        args.stack,
        project_folder=args.project_folder,
        existing=args.rebind,
        read_only=not changes,
        rebind=args.rebind,
        variable=args.variable,
    ) as session:
        if args.rebind:
            rebound = session.project.rebound_from
            session.save()
            if rebound:
                print(
                    f"{session.project.folder}: rebound to {args.stack} as it reads now "
                    f"(content {session.project.fingerprint['sha256'][:12]}, was {rebound[:12]})"
                )
            else:
                print(f"{session.project.folder}: already bound to {args.stack}; nothing to do")
        return _run(args, session)


def _run(args: argparse.Namespace, session) -> int:
    import numpy as np

    from napari_ribseg.core.errors import DatasetError
    from napari_ribseg.core.session import parse_frames
    from napari_ribseg.core.stack import FrameStatus

    requests = (
        (args.unreview, FrameStatus.UNREVIEWED),
        (args.curate, FrameStatus.CURATED),
        (args.reject, FrameStatus.REJECTED),
    )
    asked = {status: parse_frames(text, session.n_frames) for text, status in requests if text}
    statuses = list(asked)
    for i, first in enumerate(statuses):
        for second in statuses[i + 1 :]:
            both = np.intersect1d(asked[first], asked[second])
            if both.size:
                raise DatasetError(
                    f"frames {both.tolist()} are asked to be both {first.name.lower()} and "
                    f"{second.name.lower()}; give each frame one status"
                )
    for status, frames in asked.items():
        session.set_status(frames, status)
    if asked:
        session.save()
    project = session.project
    if not args.quiet:
        changed = project.changed_pixels
        print("frame  status      uncertainty  changed_px")
        for f in range(session.n_frames):
            status = FrameStatus(int(project.statuses[f])).name.lower()
            u = float(session.uncertainty[f])
            u_text = "-" if math.isnan(u) else f"{u:.3f}"
            print(f"{f:>5}  {status:<10}  {u_text:>11}  {int(changed[f]):>10}")
    c = session.counts()
    print(
        f"{project.folder}: {c['curated']} curated, {c['rejected']} rejected, "
        f"{c['unreviewed']} unreviewed of {c['frames']} frames; {c['edited']} hand-edited, "
        f"{c['predicted']} predicted"
    )
    return 0
