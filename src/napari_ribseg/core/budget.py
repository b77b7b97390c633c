"""The memory budget: a size a file's header declares is checked before any array is made.

Hostile or damaged files declare sizes that would take the machine (a 151-byte TIFF claiming
100000 x 100000 pixels, an .npz zip bomb, a DICOM of 65535^2 x 1000). Every reader, the checkpoint
loader and the review project ask :func:`check_allocation` first; the answer is a
:class:`MemoryBudgetError` naming the file, the size and the limit, never a MemoryError.

The limit is ``min(available RAM / 2, 8 GiB)`` measured when asked (psutil), at least 256 MiB;
``RIBSEG_MAX_BYTES`` overrides it (tests set a few MB; a workstation with a 20 GB stack may raise
it). Half of the available memory leaves room for the float32 copy and the model's activations.
"""

from __future__ import annotations

import os
from pathlib import Path

from napari_ribseg.core.errors import MemoryBudgetError

MAX_BYTES_ENV = "RIBSEG_MAX_BYTES"
DEFAULT_CAP = 8 * 1024**3
FLOOR = 256 * 1024**2
#: The most pixels one frame may have (PIL's bomb limit follows it): 8192 x 8192. Larger frames are
#: refused with a message rather than predicted with a multi-GB peak.
MAX_FRAME_PIXELS = 8192 * 8192
#: An .npz member that inflates more than this (declared bytes / compressed bytes) and to more than
#: :data:`BOMB_MIN_BYTES` is refused as a zip bomb before any byte is inflated. Ultrasound compresses
#: 2-20x; only constant data approaches deflate's ceiling of ~1030x.
MAX_COMPRESSION_RATIO = 500
BOMB_MIN_BYTES = 256 * 1024**2


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PB"  # pragma: no cover


def max_bytes() -> int:
    """The current allocation limit in bytes (see the module docstring)."""
    env = os.environ.get(MAX_BYTES_ENV)
    if env:
        try:
            value = int(float(env))
        except ValueError:
            value = 0
        if value > 0:
            return value
    try:
        import psutil

        available = int(psutil.virtual_memory().available)
    except (ImportError, OSError):
        available = 2 * DEFAULT_CAP
    return max(FLOOR, min(available // 2, DEFAULT_CAP))


def check_allocation(nbytes: float, what: str, path: str | os.PathLike | None = None) -> None:
    """Raise :class:`MemoryBudgetError` when ``nbytes`` exceeds the limit.

    ``what`` says what would be allocated (``"3000 frames of 512x512 uint8"``); ``path`` the file
    whose header asked for it.
    """
    limit = max_bytes()
    if nbytes < 0 or nbytes > limit or nbytes != nbytes:
        where = f"{Path(path)}: " if path is not None else ""
        raise MemoryBudgetError(
            f"{where}{what} would need {_human(float(nbytes))}, more than the memory limit of "
            f"{_human(limit)} (set {MAX_BYTES_ENV} to change it)"
        )


def check_shape(shape, itemsize: int, what: str, path: str | os.PathLike | None = None) -> int:
    """Check an array of ``shape`` x ``itemsize`` bytes (plus its float32 copy); return its bytes."""
    n = 1
    for s in shape:
        s = int(s)
        if s < 0:
            where = f"{Path(path)}: " if path is not None else ""
            raise MemoryBudgetError(f"{where}{what} declares a negative size {tuple(shape)}")
        n *= s
    # The stack is converted to float32, so the larger of the two is what must fit.
    check_allocation(
        n * max(int(itemsize), 4), f"{what} of shape {tuple(int(s) for s in shape)}", path
    )
    return n * int(itemsize)


def check_frame(height: int, width: int, path: str | os.PathLike | None = None) -> None:
    """Refuse single frames larger than :data:`MAX_FRAME_PIXELS` (inference would need GBs)."""
    if int(height) * int(width) > MAX_FRAME_PIXELS:
        where = f"{Path(path)}: " if path is not None else ""
        raise MemoryBudgetError(
            f"{where}frames of {int(height)}x{int(width)} pixels are larger than the "
            f"{MAX_FRAME_PIXELS:,}-pixel limit (8192x8192); crop or downsample the data first"
        )
