"""TIFF, OME-TIFF and ImageJ hyperstacks through tifffile.

Uncompressed contiguous data is memory-mapped read-only (``tifffile.memmap``) and converted to float32
a chunk of frames at a time, so a multi-GB stack is not held twice; float32 data already in [0, 1]
stays a memory map. Compressed or tiled files are decoded with ``series.asarray()``.

Spacing: OME ``PhysicalSizeY/X`` (with their units), else ImageJ ``unit`` + resolution tags, else
resolution tags with ResolutionUnit centimetre. Inch resolution is ignored: it is nearly always a
screen DPI, not a physical size. Frame rate: OME ``TimeIncrement`` (in ``TimeIncrementUnit``), ImageJ
``finterval`` (in ``tunit``, seconds when absent) or ``fps``. Pages marked WhiteIsZero
(photometric 0, "min is white") are inverted so bright is always strong echo.
"""

from __future__ import annotations

import contextlib
import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from napari_ribseg.core.budget import check_frame, check_shape
from napari_ribseg.core.errors import MemoryBudgetError, StackReadError
from napari_ribseg.core.io.bit_depth import declared_bits
from napari_ribseg.core.io.intensity import arrange_frames, is_uint16, to_unit_frames
from napari_ribseg.core.stack import Stack

# Millimetres per unit, for the unit names OME and ImageJ write.
_UNIT_MM = {
    "mm": 1.0,
    "millimeter": 1.0,
    "millimetre": 1.0,
    "cm": 10.0,
    "centimeter": 10.0,
    "centimetre": 10.0,
    "m": 1000.0,
    "meter": 1000.0,
    "um": 1e-3,
    "µm": 1e-3,
    "micron": 1e-3,
    "microns": 1e-3,
    "micrometer": 1e-3,
    "nm": 1e-6,
}
# Seconds per unit, for the time unit names OME (``TimeIncrementUnit``) and ImageJ (``tunit``) write.
_TIME_S = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "ms": 1e-3,
    "msec": 1e-3,
    "millisecond": 1e-3,
    "milliseconds": 1e-3,
    "µs": 1e-6,
    "us": 1e-6,
    "usec": 1e-6,
    "microsecond": 1e-6,
    "microseconds": 1e-6,
    "min": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}


def _unit_key(unit) -> str:
    return str(unit).strip().lower().replace("\\u00b5", "µ").replace("μ", "µ")


def unit_to_mm(unit: str | None) -> float | None:
    """Millimetres per ``unit`` (``"µm"``, ``"micron"``, ``"cm"`` ...), ``None`` if unknown."""
    if not unit:
        return None
    return _UNIT_MM.get(_unit_key(unit))


def unit_to_s(unit: str | None) -> float | None:
    """Seconds per time ``unit`` (``"ms"``, ``"sec"``, ``"µs"`` ...), ``None`` if unknown."""
    if not unit:
        return None
    return _TIME_S.get(_unit_key(unit))


def _positive(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def _ome_physics(xml: str) -> tuple[tuple[float, float] | None, float | None]:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None, None
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None, None
    spacing = None
    dx, dy = _positive(pixels.get("PhysicalSizeX")), _positive(pixels.get("PhysicalSizeY"))
    ux = unit_to_mm(pixels.get("PhysicalSizeXUnit", "µm"))
    uy = unit_to_mm(pixels.get("PhysicalSizeYUnit", "µm"))
    if dx and dy and ux and uy:
        spacing = (dy * uy, dx * ux)
    rate = None
    dt = _positive(pixels.get("TimeIncrement"))
    unit_s = unit_to_s(pixels.get("TimeIncrementUnit", "s"))
    if dt and unit_s:
        rate = 1.0 / (dt * unit_s)
    return spacing, rate


def _tag_spacing(page, unit_mm: float | None) -> tuple[float, float] | None:
    try:
        res_x, res_y = page.resolution
    except (AttributeError, TypeError, ValueError, ZeroDivisionError):
        return None
    res_x, res_y = _positive(res_x), _positive(res_y)
    if unit_mm is None:
        # Only a centimetre ResolutionUnit (3) is trusted; inch (2) is a screen DPI in practice.
        unit_mm = 10.0 if int(getattr(page, "resolutionunit", 0) or 0) == 3 else None
    if not (res_x and res_y and unit_mm):
        return None
    # Resolution tags are pixels per unit.
    return (unit_mm / res_y, unit_mm / res_x)


def tiff_physics(tif) -> tuple[tuple[float, float] | None, float | None]:
    """Spacing in mm (row, col) and frame rate of an open ``tifffile.TiffFile``; ``None`` if absent."""
    spacing, rate = None, None
    if tif.is_ome and tif.ome_metadata:
        spacing, rate = _ome_physics(tif.ome_metadata)
    ij = tif.imagej_metadata or {}
    page = tif.pages.first
    if spacing is None:
        ij_unit = unit_to_mm(ij.get("unit")) if ij else None
        spacing = _tag_spacing(page, ij_unit)
    if rate is None and ij:
        # ImageJ writes ``finterval`` in ``tunit`` and leaves ``tunit`` out when it is seconds.
        finterval = _positive(ij.get("finterval"))
        unit_s = unit_to_s(ij.get("tunit") or "s")
        rate = 1.0 / (finterval * unit_s) if finterval and unit_s else _positive(ij.get("fps"))
    return spacing, rate


def page_white_is_zero(page) -> bool:
    """True for a page whose PhotometricInterpretation is WhiteIsZero (0): low values are white.

    The one check of it: the stack reader, the frame-folder reader and the streaming path ask here."""
    return page is not None and int(getattr(page, "photometric", 1)) == 0


class _TiffWarnings(logging.Handler):
    """Collects what tifffile logs: it reports a broken page chain as a warning and reads on."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def damage(self) -> str | None:
        words = ("corrupt", "truncat", "invalid page offset", "invalid tiff")
        return next((m for m in self.messages if any(w in m.lower() for w in words)), None)


@contextlib.contextmanager
def collect_tifffile_warnings() -> Iterator[_TiffWarnings]:
    logger = logging.getLogger("tifffile")
    handler = _TiffWarnings()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def read_tiff(path: Path) -> Stack:
    """Read a TIFF / OME-TIFF / ImageJ stack (grey or RGB(A); uint8, uint16 or float)."""
    import tifffile

    try:
        with collect_tifffile_warnings() as warnings, tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise StackReadError(f"{path}: TIFF contains no images (zero frames)")
            series = tif.series[0]
            axes, shape, dtype = series.axes, tuple(series.shape), np.dtype(series.dtype)
            expected = int((tif.imagej_metadata or {}).get("images", 0) or 0)
            if expected > int(
                np.prod([n for a, n in zip(axes, shape, strict=True) if a not in "YXS"])
            ):
                raise StackReadError(
                    f"{path}: file is truncated: ImageJ header announces {expected} frames, "
                    f"fewer are present"
                )
            # Budget before anything is decoded: the header's shape is all we trust so far.
            check_shape(shape, dtype.itemsize, "TIFF series", path)
            if "Y" in axes and "X" in axes:
                check_frame(shape[axes.index("Y")], shape[axes.index("X")], path)
            spacing, rate = tiff_physics(tif)
            white_is_zero = page_white_is_zero(series.keyframe)
            # Pages of another size or type form further series; they are not read, but said.
            skipped = [f"{s.axes} {tuple(s.shape)}" for s in tif.series[1:]]
            offset = series.dataoffset
            nbytes = int(np.prod(shape)) * dtype.itemsize
            if offset is not None and offset + nbytes > path.stat().st_size:
                raise StackReadError(
                    f"{path}: file is truncated: expected {nbytes} bytes of pixel data at offset "
                    f"{offset}, the file has {path.stat().st_size} bytes"
                )
            data = None if offset is not None else series.asarray()
            if damage := warnings.damage():
                raise StackReadError(f"{path}: file is truncated or corrupt: {damage}")
        if data is None:
            # Read-only memory map: pages come from disk chunk by chunk during conversion.
            data = tifffile.memmap(path, series=0, mode="r")
    except (StackReadError, MemoryBudgetError):
        raise
    except MemoryError as exc:
        raise MemoryBudgetError(f"{path}: out of memory decoding the TIFF: {exc}") from exc
    except (tifffile.TiffFileError, OSError, ValueError, KeyError, IndexError, EOFError) as exc:
        raise StackReadError(f"{path}: cannot read TIFF (truncated or corrupt?): {exc}") from exc
    except RuntimeError as exc:  # imagecodecs missing for this compression
        raise StackReadError(f"{path}: cannot decode TIFF: {exc}") from exc
    if "S" in axes and not axes.endswith("S"):
        # Planar RGB (separate colour planes): put the samples last like interleaved data.
        data = np.moveaxis(data, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    colour = axes.endswith("S") and data.shape[-1] in (2, 3, 4)
    raw, colour = arrange_frames(data, path, colour=colour)
    declared = declared_bits(path) if is_uint16(raw.dtype) else None
    frames, scaling = to_unit_frames(
        raw, path, colour=colour, invert=white_is_zero, declared=declared
    )
    return Stack(
        frames=frames,
        source=path,
        spacing_mm=spacing,
        frame_rate=rate,
        original_dtype=str(dtype),
        metadata={
            "axes": axes,
            "shape": shape,
            "intensity_scaling": scaling,
            # The source was paged from disk rather than decoded into memory.
            "source_memory_mapped": isinstance(data, np.memmap),
            "series_not_read": skipped,
        },
    )
