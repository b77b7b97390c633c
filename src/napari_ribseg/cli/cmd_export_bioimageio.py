"""``ribseg export-bioimageio``: write a model as a bioimage.io model package (.zip)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    """Add the ``export-bioimageio`` subcommand."""
    parser = subparsers.add_parser(
        "export-bioimageio",
        help="export a model to the bioimage.io format (needs the 'bioimageio' extra)",
        description="Write MODEL as a bioimage.io model package (TorchScript weights with the "
        "sigmoid, test tensors, the model card) that other tools (ilastik, deepImageJ, "
        "bioimageio.core) can run.",
    )
    parser.add_argument(
        "model", metavar="MODEL", help="a model name from `ribseg models` or a .safetensors path"
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="FILE.zip", help="package to write"
    )
    parser.add_argument(
        "--licence",
        default=None,
        metavar="SPDX",
        help="SPDX licence id of the weights (default: BSD-3-Clause, the code's licence)",
    )
    parser.add_argument(
        "--validate",
        action="store_true",
        help="run bioimageio.core's test_model on the written package",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the model and export it."""
    from napari_ribseg.core.models import load_model
    from napari_ribseg.core.models.export import export_bioimageio

    loaded = load_model(args.model, device="cpu")
    out = export_bioimageio(loaded, args.out, licence=args.licence, validate=args.validate)
    checked = ", passed bioimageio.core test_model" if args.validate else ""
    print(f"{out}: bioimage.io model package of {loaded.card.name}{checked}")
    return 0
