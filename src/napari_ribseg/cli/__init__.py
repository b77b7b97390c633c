"""The ``ribseg`` command line: thin over ``napari_ribseg.core``.

Each subcommand lives in a module ``cmd_<name>.py`` in this package that defines
``register(subparsers) -> None``; the parser it adds sets ``func`` to a callable taking the parsed
arguments and returning an exit code. Errors from the core become one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
import warnings

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


#: Commands that train: they run with denormal floats flushed (core.devices.flush_denormals).
TRAINING_COMMANDS = ("finetune", "adapt", "pretrain-salient", "experiment")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    if args.command in TRAINING_COMMANDS:
        from napari_ribseg.core.devices import flush_denormals

        flush_denormals()  # before torch starts its threads (CPU training speed)
    previous_format = warnings.formatwarning
    warnings.formatwarning = _warning_line_format(args.command)
    # For this command only: a caller of main() (a script, a test) keeps its own logging after it.
    warning_lines = _WarningLines(args.command)
    package_logger = logging.getLogger("napari_ribseg")
    package_logger.addHandler(warning_lines)
    try:
        return int(args.func(args) or 0)
    except RibsegError as exc:
        _error_line(args.command, str(exc))
        return 2
    except KeyboardInterrupt:
        _error_line(args.command, "interrupted")
        return 130
    except MemoryError:
        _error_line(args.command, "out of memory (set RIBSEG_MAX_BYTES lower to refuse such input)")
        return 2
    except BrokenPipeError:
        # `ribseg models | head`: the reader left; say nothing (was "error: Broken pipe").
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # the flush at exit would fail the same way
        except (OSError, ValueError):  # a stdout without a file descriptor (a captured one)
            pass
        return 1
    except OSError as exc:
        # Read-only target, a folder given as a file, a name too long, a full disk.
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        _error_line(args.command, f"{where}{exc.strerror or exc}")
        return 2
    except (UnicodeError, ValueError, RecursionError, OverflowError) as exc:
        _error_line(args.command, f"{type(exc).__name__}: {exc}")
        return 2
    except Exception as exc:  # noqa: BLE001 - e.g. SafetensorError; a user never gets a traceback
        _error_line(args.command, f"unexpected {type(exc).__name__}: {exc}")
        return 2
    finally:
        warnings.formatwarning = previous_format
        package_logger.removeHandler(warning_lines)


def _warning_line_format(command: str):
    """``warnings.formatwarning`` for the CLI: one line, ``ribseg <command>: warning: ...`` (was
    '<source path>:<line>: UserWarning: ...' and the source line that raised it)."""

    def format_warning(message, category, filename, lineno, line=None) -> str:
        return f"ribseg {command}: warning: {' '.join(str(message).split())}\n"

    return format_warning


class _WarningLines(logging.Handler):
    """The package's logged warnings as ``ribseg <command>: warning: ...`` lines on stderr (they
    reached it bare through logging's last-resort handler, e.g. 'Skipping unreadable checkpoint
    ...' before a one-line error)."""

    def __init__(self, command: str) -> None:
        super().__init__(logging.WARNING)
        self.command = command

    def emit(self, record: logging.LogRecord) -> None:
        text = " ".join(record.getMessage().split())
        print(f"ribseg {self.command}: warning: {text}", file=sys.stderr)


def _error_line(command: str, message: str) -> None:
    """One line on stderr that survives any file name (non-UTF-8 bytes become replacements)."""
    text = " ".join(str(message).split())
    if text != "interrupted":
        text = f"error: {text}"
    line = f"ribseg {command}: {text}"
    # File names with undecodable bytes arrive as lone surrogates; they cannot be printed strictly.
    line = line.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    print(line.encode(encoding, "replace").decode(encoding), file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
