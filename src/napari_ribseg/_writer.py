"""npe2 writer: rib labels as a uint8 TIFF, thin over :func:`napari_ribseg.core.io.write_label_tiff`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_ribseg.core.io import write_label_tiff


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write a labels layer to ``path`` (``.tif`` added if missing) atomically; return the path."""
    target = Path(path)
    if target.suffix.lower() not in (".tif", ".tiff"):
        target = target.with_name(target.name + ".tif")
    return [str(write_label_tiff(target, data))]
