"""``ribseg experiment CONFIG --out DIR``: run the transfer-learning study grid and write its report.

CONFIG is a preset (``paper``: the full study, sized for a GPU; ``smoke``: minutes on a CPU) or a
YAML file (``base: <preset>`` plus overrides). Re-running with the same ``--out`` resumes: cells
already in ``DIR/results.csv`` are skipped, and refused when the settings, the data's contents or its
folds changed (``DIR/study.json``). ``--no-resume`` starts afresh, keeping the old CSV as
``results.csv.bak``. ``--report-only`` rebuilds the report from the CSV with the study's own config.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    """Add the ``experiment`` subcommand."""
    parser = subparsers.add_parser(
        "experiment",
        help="run the variants x strategies x sizes x augmentations x folds study",
        description="Fine-tune every cell of the study grid from each variant's pretrained "
        "initialisation, evaluate on held-out clips per fold, and write results.csv, report.md, "
        "plots and prediction overlays into DIR. Resumable: finished cells are skipped.",
    )
    parser.add_argument("config", metavar="CONFIG", help="preset name (paper, smoke) or YAML file")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--device", default=None, help="override the config's device")
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help="start a fresh results.csv (the old one is kept as results.csv.bak)",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rebuild report.md and plots from results.csv"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run (or resume) the study with a progress line per cell."""
    from napari_ribseg.cli.progress_bar import ProgressBar
    from napari_ribseg.core.experiments import load_study_config
    from napari_ribseg.core.experiments.runner import report_study, run_study
    from napari_ribseg.core.jobs import run_job

    if args.out.exists() and not args.out.is_dir():
        # Was "<out>: File exists" from the first mkdir.
        print(
            f"ribseg experiment: error: {args.out}: is a file; --out takes a folder (new, or a "
            "study's to resume)",
            file=sys.stderr,
        )
        return 2
    config = load_study_config(args.config)
    if args.device:
        config.finetune.device = args.device
    if args.report_only:
        report = report_study(config, args.out)
        print(f"report: {report}", file=sys.stdout)
        return 0
    from napari_ribseg.core.devices import resolve_device

    resolve_device(config.finetune.device)  # a missing device left --out with only study.json
    result = run_job(
        run_study(config, args.out, resume=not args.no_resume),
        ProgressBar("experiment", kind="cell"),
    )
    state = "stopped" if result.stopped else "done"
    print(
        f"{state}: {result.completed} cells run, {result.skipped} resumed; {result.csv}; "
        f"report {result.report}",
        file=sys.stdout,
    )
    return 0
