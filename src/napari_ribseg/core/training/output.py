"""Where a new model goes: the one resolver for fine-tune, adaptation and pre-training outputs."""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path

from napari_ribseg.core.models.paths import model_output_path

__all__ = ["model_output_path", "safe_name", "stamped_output"]


def safe_name(name: str) -> str:
    """A file-name-safe version of a layer, stack or model name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "stack"


def stamped_output(
    base: str,
    stack: str,
    kind: str = "ft",
    now: _dt.datetime | None = None,
    *,
    model_dir: str | Path | None = None,
) -> Path:
    """``<model folder>/<base>-<kind>-<stack>-<YYYYmmdd-HHMMSS>.safetensors`` (widget runs), with
    ``-2``, ``-3``, ... appended when that name is taken.

    Taken means a model, its card or a resume state of that name is in the folder (a run earlier
    in the same second, a clock set back, a second viewer): the training doors refuse an
    existing output, so the name must be free before the run starts, never found taken at its end.
    """
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    name = f"{safe_name(base)}-{kind}-{safe_name(stack)}-{stamp}"
    target = model_output_path(name, model_dir=model_dir)
    number = 2
    while _taken(target):
        target = model_output_path(f"{name}-{number}", model_dir=model_dir)
        number += 1
    return target


def _taken(weights: Path) -> bool:
    """Whether a model, card or resume state (``core.training.resume``) of this name exists."""
    # The names come from the modules that write them (imported here: both load torch, which a
    # run is about to use anyway).
    from napari_ribseg.core.models.checkpoint import checkpoint_paths
    from napari_ribseg.core.training.resume import resume_paths

    resume_folder = resume_paths(weights)[0].parent
    return any(
        path.exists() or path.is_symlink() for path in (*checkpoint_paths(weights), resume_folder)
    )
