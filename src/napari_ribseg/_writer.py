"""npe2 writer: rib labels as a uint8 TIFF, thin over :func:`napari_ribseg.core.io.write_label_tiff`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_ribseg.core.io import write_label_tiff


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write a labels layer to ``path`` (``.tif`` added if missing) atomically; return the path.

    A layer scaled to millimetres (the reader and the widget scale layers by the stack's spacing)
    keeps that pixel size in the TIFF's resolution tags.
    """
    target = Path(path)
    if target.suffix.lower() not in (".tif", ".tiff"):
        target = target.with_name(target.name + ".tif")
    scale = [float(v) for v in (meta or {}).get("scale", ())[-2:]]
    spacing = tuple(scale) if len(scale) == 2 and scale != [1.0, 1.0] else None
    return [str(write_label_tiff(target, data, spacing))]
