"""The bit depth a 16-bit file declares for its samples, read before the depth is guessed.

A PNG's ``sBIT`` chunk (significant bits; Pillow does not parse it) and a TIFF's tag 281
``MaxSampleValue`` say how many of the 16 stored bits a scanner filled. Without them the depth is
guessed from the stack's maximum (:func:`~napari_ribseg.core.io.intensity.uint16_bits`), which reads
a dark stack too bright (a 12-bit stack whose brightest pixel is below 1024 reads as 10-bit: 4
times). A declared depth is used only if every file of the stack (folder, clip) declares the same
and the data fit it (:func:`agreed_bits`). An ImageJ display range is not a bit depth and is never
used.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Iterable
from pathlib import Path

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Samples of each PNG colour type that sBIT gives a depth for: grey, RGB, palette, grey+alpha, RGBA
_SBIT_COLOUR = {0: 1, 2: 3, 3: 3, 4: 1, 6: 3}


def declared_bits(path: str | os.PathLike) -> tuple[int, str] | None:
    """``(bits, where from)`` that a 16-bit PNG (``sBIT``) or TIFF (``MaxSampleValue``) declares
    for its samples, or ``None`` when it declares none (or is another format, or not 16-bit)."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".png":
            return _png_sbit(path)
        if suffix in (".tif", ".tiff"):
            return _tiff_max_sample(path)
    except (OSError, ValueError, struct.error):
        return None  # unreadable headers are the reader's to report; the depth is guessed
    return None


def _png_sbit(path: Path) -> tuple[int, str] | None:
    """The significant bits of a 16-bit PNG's colour samples (alpha left out, as in the maximum)
    from its ``sBIT`` chunk, by a walk over the chunks before the image data."""
    with open(path, "rb") as f:
        if f.read(8) != _PNG_SIGNATURE:
            return None
        depth = colour_type = None
        while True:
            head = f.read(8)
            if len(head) < 8:
                return None
            length, kind = struct.unpack(">I4s", head)
            if kind in (b"IDAT", b"IEND"):
                return None  # sBIT must come before the image data
            data = f.read(length)
            f.seek(4, os.SEEK_CUR)  # CRC
            if kind == b"IHDR":
                depth, colour_type = data[8], data[9]
                if depth != 16:
                    return None
            elif kind == b"sBIT" and colour_type in _SBIT_COLOUR:
                samples = data[: _SBIT_COLOUR[colour_type]]
                bits = max(samples) if samples else 0
                return (bits, "sBIT") if 1 <= bits <= 16 else None


def _tiff_max_sample(path: Path) -> tuple[int, str] | None:
    """The depth a 16-bit TIFF's tag 281 ``MaxSampleValue`` (first page) declares: the bits of
    that value, when below 65535."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
        if getattr(page, "bitspersample", 16) != 16:
            return None
        tag = page.tags.get(281)
        if tag is None:
            return None
        value = tag.value
        top = int(max(value)) if isinstance(value, tuple | list) else int(value)
        if not 0 < top < 65535:
            return None
        return top.bit_length(), "MaxSampleValue"


def agreed_bits(
    files: Iterable[tuple[str | os.PathLike, tuple[int, str] | None, int]],
) -> tuple[tuple[int, str] | None, str | None]:
    """The depth all ``(file, declared, its maximum)`` of one stack or clip declare, and a note.

    ``None`` (the depth is then guessed from the maximum) when a file declares none, files
    disagree, or a file's data exceed its declared depth (a ``UserWarning`` names that file). The
    note says why the declared depths were not used (``None`` when none was declared)."""
    found: dict[tuple[int, str] | None, list[str]] = {}
    for file, declared, top in files:
        name = Path(file).name
        if declared is not None and top > 2 ** declared[0] - 1:
            warnings.warn(
                f"{file}: its {declared[1]} declares {declared[0]}-bit samples, but its largest "
                f"value is {top} (above {2 ** declared[0] - 1}); its bit depth is guessed from "
                "the maximum instead",
                UserWarning,
                stacklevel=3,
            )
            declared = None
        found.setdefault(declared, []).append(name)
    declared_ones = [d for d in found if d is not None]
    if not declared_ones:
        return None, None
    if len(found) == 1:
        return declared_ones[0], None
    parts = [
        f"{'none' if d is None else f'{d[0]} ({d[1]})'} in {len(names)} file"
        + ("s" if len(names) > 1 else "")
        for d, names in found.items()
    ]
    return None, "declared bit depths not used, the files do not agree: " + ", ".join(parts)
