"""The ``ribseg`` command line: thin over ``napari_ribseg.core``.

Each subcommand lives in a module ``cmd_<name>.py`` in this package that defines
``register(subparsers) -> None``; the parser it adds sets ``func`` to a callable taking the parsed
arguments and returning an exit code. Errors from the core become one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from napari_ribseg import __version__
from napari_ribseg.core.errors import RibsegError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ribseg",
        description="Rib segmentation in lung ultrasound: simulate, predict, evaluate, fine-tune.",
    )
    parser.add_argument("--version", action="version", version=f"napari-ribseg {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            importlib.import_module(f"{__name__}.{info.name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except RibsegError as exc:
        print(f"ribseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ribseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
