"""Writing labels and stacks. Every file is written to a temporary name and then renamed into place."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from napari_ribseg.core.atomic import atomic_path


def labels_as_uint8(labels: np.ndarray, what: str = "labels") -> np.ndarray:
    """``labels`` as uint8 (H, W) or (N, H, W); raises ValueError for other shapes or values > 255."""
    arr = np.asarray(labels)
    if arr.ndim not in (2, 3):
        raise ValueError(f"{what} must be (H, W) or (N, H, W), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{what} of dtype {arr.dtype} are not numeric")
    if arr.size:
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi > 255 or (arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr))):
            raise ValueError(
                f"{what} must be whole numbers in 0..255 to be saved as uint8; got {lo}..{hi}"
            )
    return arr.astype(np.uint8)


def _positive_spacing(spacing_mm: tuple[float, float]) -> tuple[float, float]:
    """``spacing_mm`` as (row, col) floats; raises ValueError unless both are positive."""
    dy, dx = (float(v) for v in spacing_mm)
    if not (dy > 0 and dx > 0):
        raise ValueError(f"spacing_mm must be positive, got {spacing_mm}")
    return dy, dx


def label_resolution(spacing_mm: tuple[float, float] | None) -> dict:
    """tifffile keywords that record ``spacing_mm`` (row, col) in a label TIFF, ``{}`` for None.

    Resolution tags in pixels per centimetre (TIFF has no millimetre unit): ``read_stack``, Fiji and
    most TIFF readers give back the spacing, so masks overlay their stack in physical units.
    """
    if spacing_mm is None:
        return {}
    dy, dx = _positive_spacing(spacing_mm)
    return {"resolution": (10.0 / dx, 10.0 / dy), "resolutionunit": "CENTIMETER"}


def write_label_tiff(
    path: str | os.PathLike,
    labels: np.ndarray,
    spacing_mm: tuple[float, float] | None = None,
) -> Path:
    """Write labels as a uint8 TIFF ((H, W) or (N, H, W), zlib-compressed), atomically; with
    ``spacing_mm`` (row, col) the pixel size goes into its resolution tags."""
    import tifffile

    arr = labels_as_uint8(labels)
    resolution = label_resolution(spacing_mm)
    path = Path(path)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, arr, photometric="minisblack", compression="zlib", **resolution)
    return path


def write_png_sequence(
    folder: str | os.PathLike, labels: np.ndarray, prefix: str = "mask_"
) -> list[Path]:
    """Write each frame of uint8 labels as ``<prefix><index>.png`` (0-based, zero-padded to >= 4)."""
    from PIL import Image

    arr = labels_as_uint8(labels)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    folder = Path(folder)
    width = max(4, len(str(len(arr) - 1)))
    names = {f"{prefix}{i:0{width}d}.png" for i in range(len(arr))}
    if folder.is_dir():
        # Frames of an earlier, longer (or other-width) sequence stayed beside the new ones, and
        # the folder read back as a stack with those extra frames.
        pattern = re.compile(re.escape(prefix) + r"\d+\.png", re.IGNORECASE)
        stale = sorted(
            p.name for p in folder.iterdir() if pattern.fullmatch(p.name) and p.name not in names
        )
        if stale:
            from napari_ribseg.core.errors import OutputPathError

            raise OutputPathError(
                f"{folder}: already holds {stale[0]}"
                + (f" and {len(stale) - 1} more" if len(stale) > 1 else "")
                + f" of another sequence (this one has {len(arr)} frames); write into an empty "
                "folder or remove them"
            )
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, frame in enumerate(arr):
        target = folder / f"{prefix}{i:0{width}d}.png"
        with atomic_path(target) as tmp:
            Image.fromarray(np.ascontiguousarray(frame), mode="L").save(tmp, format="PNG")
        written.append(target)
    return written


def write_stack_tiff(
    path: str | os.PathLike,
    frames: np.ndarray,
    spacing_mm: tuple[float, float] | None = None,
    frame_rate: float | None = None,
) -> Path:
    """Write (N, H, W) or (H, W) frames as an ImageJ TIFF with mm resolution and frame interval.

    uint8, uint16 and float32 are written as they are (bool as uint8, other floats as float32), so
    :func:`~napari_ribseg.core.io.read_stack` gives back the same spacing, frame rate and values.
    """
    import tifffile

    arr = np.asarray(frames)
    if arr.ndim not in (2, 3):
        raise ValueError(f"frames must be (H, W) or (N, H, W), got shape {arr.shape}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    elif arr.dtype.kind == "f":
        arr = arr.astype(np.float32, copy=False)
    elif arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"ImageJ TIFF holds uint8, uint16 or float32, not {arr.dtype}")
    metadata: dict = {"axes": "TYX" if arr.ndim == 3 else "YX"}
    kwargs: dict = {}
    if spacing_mm is not None:
        dy, dx = _positive_spacing(spacing_mm)
        # TIFF resolution is pixels per unit; ImageJ keeps the unit name in its description.
        kwargs["resolution"] = (1.0 / dx, 1.0 / dy)
        metadata["unit"] = "mm"
    if frame_rate is not None:
        if not frame_rate > 0:
            raise ValueError(f"frame_rate must be positive, got {frame_rate}")
        metadata["finterval"] = 1.0 / float(frame_rate)
        metadata["fps"] = float(frame_rate)
    path = Path(path)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, arr, imagej=True, metadata=metadata, **kwargs)
    return path
