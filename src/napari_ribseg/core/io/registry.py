"""The one reader registry: every path becomes a :class:`Stack` through :func:`read_stack`.

The npe2 reader, the ``ribseg`` CLI and the training data loader all ask :func:`find_reader` and
:func:`read_stack`; no other code opens ultrasound files. ``find_reader`` only looks at the name, the
first bytes of a file or the names in a folder, so it is cheap and never raises.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from napari_ribseg.core.errors import StackReadError, UnsupportedFormatError
from napari_ribseg.core.stack import Stack

#: Extensions of single images that a frame folder may hold.
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key putting ``frame2`` before ``frame10`` (digit runs compare as numbers)."""
    parts = _DIGITS.split(name.lower())
    # isdecimal, not isdigit: "²" is a digit that int() cannot read and \d does not split out.
    return tuple((0, int(p), p) if p.isdecimal() else (1, 0, p) for p in parts if p != "")


def natural_sorted(paths: list[Path]) -> list[Path]:
    """``paths`` in natural order of their names."""
    return sorted(paths, key=lambda p: natural_key(p.name))


def frame_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (hidden files skipped), in natural order."""
    return natural_sorted([p for p in folder.iterdir() if _is_frame(p)])


def _head(path: Path, n: int = 1024) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


_VIDEO_SUFFIXES = (".mp4", ".avi", ".mov")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
#: Extensions that other readers own; any other file is checked for the DICOM magic.
_OTHER_SUFFIXES = (*FRAME_SUFFIXES, *_IMAGE_SUFFIXES, *_VIDEO_SUFFIXES, ".mat", ".npy", ".npz")


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    # Scanners and PACS exports often name DICOM files without a DICOM extension: none
    # (IM_0001), their UID (1.2.840.113619.2.55...: pathlib sees a suffix) or US.000001.IMG. The
    # "DICM" magic follows a 128-byte preamble.
    return path.suffix.lower() not in _OTHER_SUFFIXES and _head(path, 132)[128:132] == b"DICM"


def _is_tiff(path: Path) -> bool:
    return path.suffix.lower() in (".tif", ".tiff")


def _is_frame(path: Path) -> bool:
    return (
        path.suffix.lower() in FRAME_SUFFIXES and not path.name.startswith(".") and path.is_file()
    )


def _is_folder(path: Path) -> bool:
    # Stops at the first image: napari probes folders that may hold many thousands of files.
    return path.is_dir() and any(_is_frame(p) for p in path.iterdir())


def _suffix_in(*suffixes: str) -> Callable[[Path], bool]:
    return lambda path: path.is_file() and path.suffix.lower() in suffixes


@dataclass(frozen=True)
class StackReader:
    """One format: ``accepts(path)`` is a cheap check, ``read(path, variable)`` builds the Stack."""

    name: str
    description: str
    accepts: Callable[[Path], bool]
    read: Callable[[Path, str | None], Stack]

    def __call__(self, path: str | os.PathLike, *, variable: str | None = None) -> Stack:
        return self.read(Path(path), variable)


def _read_tiff(path: Path, variable: str | None) -> Stack:
    from napari_ribseg.core.io import tiff

    return tiff.read_tiff(path)


def _read_folder(path: Path, variable: str | None) -> Stack:
    from napari_ribseg.core.io import frame_folder

    return frame_folder.read_frame_folder(path)


def _read_dicom(path: Path, variable: str | None) -> Stack:
    from napari_ribseg.core.io import dicom

    return dicom.read_dicom(path)


def _read_video(path: Path, variable: str | None) -> Stack:
    from napari_ribseg.core.io import video

    return video.read_video(path)


def _read_image(path: Path, variable: str | None) -> Stack:
    from napari_ribseg.core.io import single_image

    return single_image.read_single_image(path)


def _read_mat(path: Path, variable: str | None) -> Stack:
    from napari_ribseg.core.io import containers

    return containers.read_mat(path, variable=variable)


def _read_numpy(path: Path, variable: str | None) -> Stack:
    from napari_ribseg.core.io import containers

    return containers.read_numpy(path, variable=variable)


#: Readers in the order they are asked.
READERS: tuple[StackReader, ...] = (
    StackReader("tiff", "TIFF / OME-TIFF / ImageJ stack", lambda p: p.is_file() and _is_tiff(p), _read_tiff),
    StackReader("dicom", "DICOM (single- or multi-frame)", lambda p: p.is_file() and _is_dicom(p), _read_dicom),
    StackReader("video", "video (mp4, avi, mov)", _suffix_in(*_VIDEO_SUFFIXES), _read_video),
    StackReader("mat", "MATLAB .mat (v5 and v7.3)", _suffix_in(".mat"), _read_mat),
    StackReader("numpy", "NumPy .npy / .npz", _suffix_in(".npy", ".npz"), _read_numpy),
    StackReader("image", "image or animation (png, jpg, bmp, gif, webp)", _suffix_in(*_IMAGE_SUFFIXES), _read_image),
    StackReader("frame-folder", "folder of frames (png, jpg, bmp, tif)", _is_folder, _read_folder),
)  # fmt: skip


def find_reader(path: str | os.PathLike) -> StackReader | None:
    """The reader that handles ``path``, or ``None``; never raises."""
    try:
        path = Path(path)
        for reader in READERS:
            if reader.accepts(path):
                return reader
    except (OSError, ValueError, TypeError):
        # Unreadable, missing, oddly named or non-path inputs simply have no reader.
        return None
    return None


def read_stack(path: str | os.PathLike, *, variable: str | None = None) -> Stack:
    """Read any supported file or frame folder as a float32 (frames, H, W) stack in [0, 1].

    ``variable`` names the array to take from a .mat or .npz file (default: the largest). Raises
    :class:`StackReadError` (or its subclass :class:`UnsupportedFormatError`) naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise StackReadError(f"{path}: no such file or folder")
    reader = find_reader(path)
    if reader is None:
        if path.is_dir():
            pair = next(
                ((i, m) for i, m in (("IMG", "MASK"), ("images", "masks")) if (path / i).is_dir()),
                None,
            )
            hint = (
                f"; it is a paired dataset ({pair[0]}/ + {pair[1]}/): its images are in "
                f"{path / pair[0]}"
                if pair
                else ""
            )
            raise StackReadError(
                f"{path}: folder contains no image frames; expected files ending in "
                + ", ".join(FRAME_SUFFIXES)
                + hint
            )
        known = ", ".join(r.description for r in READERS)
        raise UnsupportedFormatError(
            f"{path}: unsupported format {path.suffix or '(no extension)'!r}; readable: {known}"
        )
    if variable is not None and reader.name not in ("mat", "numpy"):
        raise StackReadError(
            f"{path}: variable={variable!r} only applies to .mat and .npz files, not {reader.description}"
        )
    if variable is not None and path.suffix.lower() == ".npy":
        # A .npy holds one unnamed array: the name was ignored and that array read instead.
        raise StackReadError(
            f"{path}: variable={variable!r} only applies to .mat and .npz files; a .npy file "
            "holds one unnamed array"
        )
    stack = reader.read(path, variable)
    stack.metadata.setdefault("reader", reader.name)
    return stack
