"""``ribseg models``: list the bundled and user checkpoints of the model registry."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    """Add the ``models`` subcommand."""
    parser = subparsers.add_parser(
        "models",
        help="list available models (bundled and user)",
        description="List the checkpoints of the model registry: bundled ones and those in the "
        "user model folder ($RIBSEG_MODEL_DIR).",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.set_defaults(func=run)


def _metrics_text(metrics) -> str:
    return ", ".join(f"{m.name}={m.value:.3g}" for m in metrics) or "-"


def run(args: argparse.Namespace) -> int:
    """Print the registry's models."""
    from napari_ribseg.core.models.registry import list_models, user_model_dir

    def warn(path, reason: str) -> None:
        print(f"ribseg models: warning: skipping {path}: {reason}", file=sys.stderr)

    entries = list_models(on_skip=warn)
    if args.json:
        rows = [
            {
                "name": e.name,
                "variant": e.card.variant,
                "preset": e.card.preset,
                "n_params": e.n_params,
                "source": e.source,
                "role": "start" if e.is_start else "rib",
                "path": str(e.path),
                "metrics": [
                    {"name": m.name, "value": m.value, "data": m.data} for m in e.card.metrics
                ],
                "description": e.card.description,
            }
            for e in entries
        ]
        print(json.dumps(rows, indent=2))
        return 0
    if not entries:
        print(f"No models found (user models go in {user_model_dir()}).")
        return 0
    header = ("name", "variant", "preset", "params", "source", "metrics")
    rows = [
        (
            e.name,
            e.card.variant,
            e.card.preset,
            f"{e.n_params:,}",
            e.source + (" (start checkpoint, not a rib model)" if e.is_start else ""),
            _metrics_text(e.card.metrics),
        )
        for e in entries
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(
        "Variant names unet, v-unet and x-unet select the best bundled model of that variant; "
        "start checkpoints only seed training."
    )
    return 0
