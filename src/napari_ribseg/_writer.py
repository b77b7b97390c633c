"""npe2 writer: rib labels as a uint8 TIFF, thin over :func:`napari_ribseg.core.io.write_label_tiff`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_ribseg.core.atomic import check_writable
from napari_ribseg.core.errors import RibsegError
from napari_ribseg.core.io import write_label_tiff
from napari_ribseg.core.stack import spacing_from_scale


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write a labels layer to ``path`` (``.tif`` added if missing) atomically; return the path.

    A layer scaled to millimetres (the reader and the widget scale layers by the stack's spacing)
    keeps that pixel size in the TIFF's resolution tags (a scale in micrometres, by the layer's
    ``units``, converted to mm). Labels that cannot be saved as uint8
    (values above 255, more than three dimensions) raise :class:`RibsegError` naming the file and
    the values: napari (npe2) takes a writer's ``ValueError`` for "this writer does not apply",
    and saving then only warned that napari-ribseg is not a valid writer for the path.
    """
    target = Path(path)
    if target.suffix.lower() not in (".tif", ".tiff"):
        target = target.with_name(target.name + ".tif")
    check_writable(target, "labels file")
    try:
        meta = meta or {}
        spacing = spacing_from_scale(meta.get("scale", ()), meta.get("units"))
        return [str(write_label_tiff(target, data, spacing))]
    except ValueError as exc:
        raise RibsegError(f"{target}: cannot save these labels: {exc}") from exc
