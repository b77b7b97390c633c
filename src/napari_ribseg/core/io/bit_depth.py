"""The bit depth a 16-bit file declares for its samples, read before the depth is guessed.

A PNG's ``sBIT`` chunk (significant bits; Pillow does not parse it) and a TIFF's tag 281
``MaxSampleValue`` say how many of the 16 stored bits a scanner filled. ``MaxSampleValue`` is a
value, not a count of bits: 4095 (``2**12 - 1``) is 12-bit data, and any other value (5000) is the
white point the file declares, read as full scale (dividing 5000 by ``2**13 - 1`` for its 13 bits
read the brightest sample the file allows as 0.61). Without them the depth is
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
from typing import NamedTuple

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Samples of each PNG colour type that sBIT gives a depth for: grey, RGB, palette, grey+alpha, RGBA
_SBIT_COLOUR = {0: 1, 2: 3, 3: 3, 4: 1, 6: 3}


class DeclaredDepth(NamedTuple):
    """The depth a file declares for its samples: ``bits`` (those of ``white``), where it says
    so (``sBIT``, ``MaxSampleValue``), and ``white``, the sample value read as full scale
    (``2**bits - 1`` unless a ``MaxSampleValue`` names another value)."""

    bits: int
    source: str
    white: int

    @classmethod
    def of_bits(cls, bits: int, source: str) -> DeclaredDepth:
        return cls(int(bits), source, 2 ** int(bits) - 1)

    @property
    def is_white_point(self) -> bool:
        """True when ``white`` is not ``2**bits - 1``: a declared maximum, not a bit count."""
        return self.white != 2**self.bits - 1

    def describe(self) -> str:
        """``12 (sBIT)`` or ``white point 5000 (MaxSampleValue)``."""
        if self.is_white_point:
            return f"white point {self.white} ({self.source})"
        return f"{self.bits} ({self.source})"


def declared_bits(path: str | os.PathLike) -> DeclaredDepth | None:
    """The :class:`DeclaredDepth` a 16-bit PNG (``sBIT``) or TIFF (``MaxSampleValue``) declares
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


def _png_sbit(path: Path) -> DeclaredDepth | None:
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
                return DeclaredDepth.of_bits(bits, "sBIT") if 1 <= bits <= 16 else None


def _tiff_max_sample(path: Path) -> DeclaredDepth | None:
    """The depth a 16-bit TIFF's tag 281 ``MaxSampleValue`` declares on its first page (and no
    other value on a later one), when below 65535: that value as the white point, of its bits
    (4095: 12 bits; 5000: 13 bits, white 5000).

    The TIFF specification calls the tag the maximum sample value; scanners and exporters write
    ``2**n - 1`` for n-bit data, and a value that is not one is the brightest sample the writer
    allows (a detector's saturation level), so it, not ``2**13 - 1``, is read as 1.0."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
        if getattr(page, "bitspersample", 16) != 16:
            return None
        tag = page.tags.get(281)
        if tag is None:
            return None
        top = _max_sample(tag.value)
        if not 0 < top < 65535:
            return None
        # Writers put the tag on the first page only (tifffile, ImageJ) or on each; a page that
        # names another value (clips of two detectors in one file) would be divided by the first
        # page's white point, so the depth is then guessed from the maximum.
        others = {_max_sample(t.value) for t in _later_tags(tif)} - {top}
        if others:
            warnings.warn(
                f"{path}: its pages declare different MaxSampleValue ({top} on the first, "
                f"{', '.join(str(v) for v in sorted(others))} on others); its bit depth is "
                "guessed from the maximum instead",
                UserWarning,
                stacklevel=4,
            )
            return None
        return DeclaredDepth(top.bit_length(), "MaxSampleValue", top)


def _max_sample(value) -> int:
    return int(max(value)) if isinstance(value, tuple | list) else int(value)


def _later_tags(tif) -> Iterable:
    """Tag 281 of every page after the first that has one."""
    for index, page in enumerate(tif.pages):
        if index == 0:
            continue
        tag = getattr(page, "tags", {}).get(281)
        if tag is not None:
            yield tag


def agreed_bits(
    files: Iterable[tuple[str | os.PathLike, DeclaredDepth | None, int]],
) -> tuple[DeclaredDepth | None, str | None]:
    """The depth all ``(file, declared, its maximum)`` of one stack or clip declare, and a note.

    ``None`` (the depth is then guessed from the maximum) when a file declares none, files
    disagree, or a file's data exceed its declared depth (a ``UserWarning`` names that file). The
    note says why the declared depths were not used (``None`` when none was declared)."""
    found: dict[DeclaredDepth | None, list[str]] = {}
    for file, declared, top in files:
        name = Path(file).name
        if declared is not None and top > declared.white:
            says = (
                f"a maximum sample value of {declared.white}"
                if declared.is_white_point
                else f"{declared.bits}-bit samples"
            )
            warnings.warn(
                f"{file}: its {declared.source} declares {says}, but its largest value is {top} "
                f"(above {declared.white}); its bit depth is guessed from the maximum instead",
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
        f"{'none' if d is None else d.describe()} in {len(names)} file"
        + ("s" if len(names) > 1 else "")
        for d, names in found.items()
    ]
    return None, "declared bit depths not used, the files do not agree: " + ", ".join(parts)
