"""Frames read on demand and label pages written as they come, for stacks larger than memory.

:func:`open_frames` gives the frames of a file as an array-like that the inference engine reads one
batch at a time. An uncompressed grey uint8/uint16 TIFF (what scanners export and what
``write_stack_tiff`` writes) is read with ``os.pread`` per batch: no page of it stays mapped in the
process, so resident memory holds one batch, not the stack. Any other file goes through the one
reader registry (:func:`~napari_ribseg.core.io.registry.read_stack`) and is held as float32, as
before; a lazy reader for another format is a matter of adding a branch here.

:class:`LabelTiffStream` appends uint8 pages to a temporary file next to the target and renames it
over the target only when every frame was written, so an interrupted run leaves no partial file.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_ribseg.core.atomic import atomic_path
from napari_ribseg.core.budget import check_frame
from napari_ribseg.core.errors import StackReadError
from napari_ribseg.core.io.bit_depth import agreed_bits, declared_bits
from napari_ribseg.core.io.intensity import full_scale, is_uint16, uint16_scaling


class TiffFrames:
    """(N, H, W) raw frames of an uncompressed contiguous TIFF series, read per request.

    Indexing with an int, a slice or an int array returns a fresh ndarray of the file's dtype
    (native byte order); nothing is cached. uint16 samples that fit in fewer bits (the depth the
    file declares, ``MaxSampleValue``, or the reader's
    :func:`~napari_ribseg.core.io.intensity.uint16_bits` of the whole file's maximum, found by one
    pass at opening) come back as float32 in [0, 1], divided as the reader divides them.
    """

    def __init__(self, path: Path, offset: int, shape: tuple[int, int, int], dtype: np.dtype):
        self.path, self.offset = path, int(offset)
        # ``dtype`` is as stored (ImageJ writes big-endian); frames come back in native order.
        self._stored = np.dtype(dtype)
        self.shape, self.dtype, self.ndim = shape, self._stored.newbyteorder("="), 3
        self._frame_bytes = shape[1] * shape[2] * self._stored.itemsize
        self._divisor: np.float32 | None = None
        if is_uint16(self._stored):
            step = max(1, (64 << 20) // max(1, self._frame_bytes))
            top = max(
                int(self._read(np.arange(s, min(s + step, shape[0]))).max())
                for s in range(0, shape[0], step)
            )
            # The depth the file declares, as read_tiff takes it (one rule: agreed_bits).
            declared = agreed_bits([(path, declared_bits(path), top)])[0]
            divisor, _record = uint16_scaling(top, declared)
            if divisor != full_scale(self._stored):
                self._divisor, self.dtype = np.float32(divisor), np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self._frame_bytes

    def __getitem__(self, index: Any) -> np.ndarray:
        single = isinstance(index, int | np.integer)
        indices = np.arange(self.shape[0])[index]
        out = self._read(np.atleast_1d(indices).astype(np.int64))
        if self._divisor is not None:
            out = np.clip(out.astype(np.float32) / self._divisor, 0.0, 1.0)
        return out[0] if single else out

    def _read(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *self.shape[1:]), dtype=self._stored.newbyteorder("="))
        with open(self.path, "rb") as f:
            fd = f.fileno()
            start = 0
            while start < len(indices):
                # Consecutive frames are one read.
                stop = start + 1
                while stop < len(indices) and indices[stop] == indices[stop - 1] + 1:
                    stop += 1
                size = (stop - start) * self._frame_bytes
                data = os.pread(fd, size, self.offset + int(indices[start]) * self._frame_bytes)
                if len(data) != size:
                    raise StackReadError(
                        f"{self.path}: file is truncated: frame {int(indices[start])} and the "
                        f"{stop - start - 1} after it need {size} bytes, got {len(data)}"
                    )
                block = np.frombuffer(data, dtype=self._stored)
                block = block.reshape(stop - start, *self.shape[1:])
                out[start:stop] = block
                start = stop
        return out


def _lazy_tiff(path: Path) -> tuple[TiffFrames, tuple[float, float] | None] | None:
    """A :class:`TiffFrames` and the file's spacing in mm when its first series is grey (black is
    zero), integer, contiguous and one axis of frames; anything else goes to the registry's reader,
    so both paths read a file the same way."""
    import tifffile

    from napari_ribseg.core.io.tiff import (
        collect_tifffile_warnings,
        page_white_is_zero,
        tiff_physics,
    )

    try:
        # Collected, not printed: a truncated file's "invalid page offset" reached stderr as a
        # second line before the reader's one-line error.
        with collect_tifffile_warnings() as warnings, tifffile.TiffFile(path) as tif:
            if not tif.series:
                return None
            announced = int((tif.imagej_metadata or {}).get("images", 0) or 0)
            series = tif.series[0]
            # tifffile reports the native dtype; the bytes are in the file's order.
            dtype = np.dtype(series.dtype).newbyteorder(tif.byteorder)
            shape, offset, axes = tuple(series.shape), series.dataoffset, series.axes
            white_is_zero = page_white_is_zero(series.keyframe)
            spacing, _rate = tiff_physics(tif)
    except (tifffile.TiffFileError, OSError, ValueError, KeyError, IndexError, EOFError):
        return None  # the registry's reader gives the specific error
    if warnings.damage():
        # A truncated ImageJ stack read as its first page alone: 1 frame segmented, exit 0.
        return None  # the registry's reader names the damage
    if "S" in axes or full_scale(dtype) is None or dtype.kind == "b" or offset is None:
        return None
    if white_is_zero or len(shape) < 2 or axes[-2:] != "YX":
        return None
    if sum(n > 1 for n in shape[:-2]) > 1:
        return None  # time x channels (or z): not one axis of frames; the reader says so
    height, width = shape[-2:]
    n_frames = int(np.prod(shape[:-2], dtype=np.int64)) if len(shape) > 2 else 1
    check_frame(height, width, path)
    if announced > n_frames:
        return None  # fewer frames than the ImageJ header announces: the reader says truncated
    frames = TiffFrames(path, offset, (n_frames, int(height), int(width)), dtype)
    if offset + frames.nbytes > path.stat().st_size:
        return None
    return frames, spacing


def open_frames(
    path: str | os.PathLike, *, variable: str | None = None
) -> tuple[Any, tuple[float, float] | None]:
    """Frames of ``path`` for :func:`~napari_ribseg.core.inference.predict_stack`, lazily if
    possible, and the file's pixel spacing in mm (row, col; ``None`` when it records none).

    The frames are a :class:`TiffFrames` (raw uint8/uint16 scaled by the engine, or float32 for
    uint16 of fewer significant bits, as the readers scale them) for an uncompressed grey TIFF, else the float32 frames of ``read_stack``.
    """
    from napari_ribseg.core.io.registry import read_stack

    path = Path(path)
    if path.is_file() and path.suffix.lower() in (".tif", ".tiff") and variable is None:
        lazy = _lazy_tiff(path)
        if lazy is not None:
            return lazy
    stack = read_stack(path, variable=variable)
    return stack.frames, stack.spacing_mm


class LabelTiffStream:
    """Write uint8 (N, H, W) pages in order, committed atomically on a clean exit.

    Use as a context manager; :meth:`write` appends frames. Leaving the block by an exception, or
    with fewer frames than ``n_frames``, removes the temporary file and leaves the target untouched.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        n_frames: int,
        spacing_mm: tuple[float, float] | None = None,
    ) -> None:
        from napari_ribseg.core.io.writers import label_resolution

        self.path, self.n_frames, self.written = Path(path), int(n_frames), 0
        self._resolution = label_resolution(spacing_mm)  # checked before any frame is computed
        self._stack = contextlib.ExitStack()
        self._writer = None

    def __enter__(self) -> LabelTiffStream:
        import tifffile

        tmp = self._stack.enter_context(atomic_path(self.path))
        self._writer = self._stack.enter_context(tifffile.TiffWriter(tmp))
        return self

    def write(self, pages: np.ndarray) -> None:
        """Append frames (uint8, (n, H, W)); the same frame shape every time."""
        pages = np.asarray(pages)
        if pages.dtype != np.uint8 or pages.ndim != 3:
            raise ValueError(f"expected uint8 (n, H, W) pages; got {pages.dtype} {pages.shape}")
        # metadata=None: readers see all pages as one generic (N, H, W) series.
        self._writer.write(
            pages, photometric="minisblack", compression="zlib", metadata=None, **self._resolution
        )
        self.written += len(pages)

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None and self.written != self.n_frames:
            exc = ValueError(f"{self.path}: {self.written} of {self.n_frames} frames written")
            self._stack.__exit__(type(exc), exc, None)
            raise exc
        return bool(self._stack.__exit__(exc_type, exc, tb))


__all__ = ["LabelTiffStream", "TiffFrames", "open_frames"]
