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
    """``<model folder>/<base>-<kind>-<stack>-<YYYYmmdd-HHMMSS>.safetensors`` (widget runs)."""
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    name = f"{safe_name(base)}-{kind}-{safe_name(stack)}-{stamp}"
    return model_output_path(name, model_dir=model_dir)
