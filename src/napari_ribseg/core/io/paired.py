"""Paired image/mask datasets: the reference study layout and a generic one.

Layouts (folder names matched case-insensitively):

* ``IMG/`` + ``MASK/`` with ``img_<id>.tif`` and ``mask_<id>.tif`` (the reference study);
* ``images/`` + ``masks/`` with matching stems, any image extension (png, jpg, bmp, tif).

Images become float32 2-D in [0, 1] by the stack rules; masks become uint8 0/1 by
:func:`~napari_ribseg.core.io.intensity.binarize_mask`. ``groups`` holds each sample's clip id, the id
minus a trailing frame number (``c003_f0012`` -> ``c003``, ``clip1f001`` -> ``clip1``), so
train/validation splits go by clip.

uint16 images are divided **per clip**: all frames of a clip by ``2**bits - 1`` for the bit depth
(8, 10, 12, 14 or 16) of the clip's largest value, as a stack is, so a dark frame of a 12-bit clip
stays dark next to its bright ones (divided by its own depth, 8 bits, it read 16 times too bright); and
clips are not pooled, since a dataset may gather clips of several scanners (pooled, an 8-bit-in-16
clip next to a 12-bit one read 16 times too dark: 0.032 instead of 0.510). An id without a frame
number is its own clip, so such an image is divided by its own bit depth (before, every uint16
image of the dataset shared one divisor). Clips of different bit depths are named in a warning;
:attr:`PairedDataset.scaling` records the divisor of each clip (``describe_scaling`` says it in one
line). WhiteIsZero TIFF images are inverted after scaling, ``1 - v``, as stacks are.

:func:`write_paired_dataset` writes images in their own dtype (uint8, uint16, or float32 for float
input) and masks as uint8 0/255 TIFF, so reading back gives exactly the images' [0, 1] values and the
0/1 masks. The dataset is built in a temporary sibling folder and renamed into place, so a dataset is
either complete or absent; an existing non-empty folder is never written into.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_ribseg.core.errors import DatasetError, StackReadError
from napari_ribseg.core.io.bit_depth import agreed_bits, declared_bits
from napari_ribseg.core.io.intensity import (
    arrange_frames,
    binarize_mask,
    describe_scaling,
    is_uint16,
    luma,
    mask_array,
    sample_max,
    to_unit_frames,
    uint16_scaling,
)
from napari_ribseg.core.io.registry import FRAME_SUFFIXES, natural_key

LAYOUTS = {
    "IMG/MASK": ("IMG", "MASK", "img_", "mask_"),
    "images/masks": ("images", "masks", "", ""),
}

#: Words that mark the trailing number as a frame (``f0012``, ``frame12``, ``t0001``, ``img0005``).
_FRAME_WORDS = ("frame", "img", "fr", "f", "t")
_FRAME_WORD = "|".join(_FRAME_WORDS)
# A frame number after a separator, optionally after a frame word (c003_f0012, P1_t0001,
# scan2_img0005), or after a frame word straight after the clip's own number (clip1f001).
_TRAILING_FRAME = re.compile(
    rf"^(?:(?P<clip>.*?)[-_. ]+(?:{_FRAME_WORD})?|(?P<joined>.*?\d)(?:{_FRAME_WORD}))[-_. ]?\d+$",
    re.IGNORECASE,
)
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]*$")


@dataclass
class PairedDataset:
    """Images (float32 2-D, [0, 1]) with binary masks (uint8 2-D, 0/1), their ids and clip groups."""

    images: list[np.ndarray]
    masks: list[np.ndarray]
    ids: list[str]
    groups: list[str]
    root: Path
    #: How the images were scaled (an ``intensity_scaling`` record): ``divide-by-dtype``, with
    #: ``uint16_clips`` (clip -> its divisor record) when any image is uint16 (``divide-per-clip``
    #: when all are), and ``inverted`` when WhiteIsZero images were inverted.
    scaling: dict = field(default_factory=lambda: {"method": "divide-by-dtype"})

    def __len__(self) -> int:
        return len(self.ids)


def clip_id(sample_id: str) -> str:
    """The clip a sample belongs to: its id without a trailing frame number, else the id itself."""
    match = _TRAILING_FRAME.match(sample_id)
    clip = (match.group("clip") or match.group("joined") or "") if match else ""
    # "frame_7" is all frame number: no clip name remains.
    if clip.lower() in _FRAME_WORDS:
        clip = ""
    return clip or sample_id


def _subfolder(root: Path, name: str) -> Path | None:
    exact = root / name
    if exact.is_dir():
        return exact
    return next((p for p in root.iterdir() if p.is_dir() and p.name.lower() == name.lower()), None)


def _index(folder: Path, prefix: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in folder.iterdir():
        if (
            not path.is_file()
            or path.name.startswith(".")
            or path.suffix.lower() not in FRAME_SUFFIXES
        ):
            continue
        stem = path.stem
        if prefix and stem.lower().startswith(prefix):
            stem = stem[len(prefix) :]
        if stem in found:
            raise DatasetError(
                f"{folder}: two files have the id {stem!r}: {found[stem].name}, {path.name}"
            )
        found[stem] = path
    return found


def _listing(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def read_paired_dataset(root: str | os.PathLike) -> PairedDataset:
    """Read an ``IMG/``+``MASK/`` or ``images/``+``masks/`` dataset; raises :class:`DatasetError`."""
    from napari_ribseg.core.io.frame_folder import read_image, read_image_pixels

    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    for layout in LAYOUTS.values():
        image_dir, mask_dir = _subfolder(root, layout[0]), _subfolder(root, layout[1])
        if image_dir is not None and mask_dir is not None:
            image_prefix, mask_prefix = layout[2], layout[3]
            break
    else:
        present = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise DatasetError(
            f"{root}: expected subfolders IMG/ and MASK/ or images/ and masks/; found "
            f"{present or 'no subfolders'}"
        )
    images_by_id, masks_by_id = _index(image_dir, image_prefix), _index(mask_dir, mask_prefix)
    lonely_images = sorted(
        (p.name for k, p in images_by_id.items() if k not in masks_by_id), key=natural_key
    )
    lonely_masks = sorted(
        (p.name for k, p in masks_by_id.items() if k not in images_by_id), key=natural_key
    )
    if lonely_images or lonely_masks:
        parts = []
        if lonely_images:
            parts.append(f"images without a mask in {image_dir.name}/: {_listing(lonely_images)}")
        if lonely_masks:
            parts.append(f"masks without an image in {mask_dir.name}/: {_listing(lonely_masks)}")
        raise DatasetError(f"{root}: unmatched files; " + "; ".join(parts))
    ids = sorted(images_by_id, key=natural_key)
    if not ids:
        raise DatasetError(f"{root}: {image_dir.name}/ and {mask_dir.name}/ contain no image files")
    groups = [clip_id(i) for i in ids]
    images, masks = [], []
    wide: dict[str, list[int]] = {}  # the uint16 images of each clip
    wide_max: dict[str, int] = {}
    depths: dict[str, list] = {}  # each clip's uint16 files: (file, declared depth, maximum)
    inverted: list[int] = []
    for sample_id, clip in zip(ids, groups, strict=True):
        image_path, mask_path = images_by_id[sample_id], masks_by_id[sample_id]
        try:
            pixels, white_is_zero = read_image_pixels(image_path)
            raw, colour = arrange_frames(pixels, image_path, colour=pixels.ndim == 3)
            if raw.shape[0] != 1:
                raise DatasetError(
                    f"{image_path}: expected one 2-D image, got {raw.shape[0]} frames"
                )
            if is_uint16(raw.dtype):
                # Divided once the clip is read, by the bit depth of the clip's largest value.
                image = luma(raw[0]) if colour else raw[0].astype(np.float32)
                wide.setdefault(clip, []).append(len(images))
                top = sample_max(raw, colour)
                wide_max[clip] = max(wide_max.get(clip, 0), top)
                depths.setdefault(clip, []).append((image_path, declared_bits(image_path), top))
            else:
                image = to_unit_frames(raw, image_path, colour=colour)[0][0]
            mask = binarize_mask(read_image(mask_path, mask=True), mask_path)
        except StackReadError as exc:
            raise DatasetError(str(exc)) from exc
        if image.shape != mask.shape:
            raise DatasetError(
                f"{root}: image {image_path.name} is {image.shape[0]}x{image.shape[1]} but mask "
                f"{mask_path.name} is {mask.shape[0]}x{mask.shape[1]} (height x width)"
            )
        if white_is_zero:
            inverted.append(len(images))
        images.append(np.ascontiguousarray(image, dtype=np.float32))
        masks.append(mask)
    if not any(m.any() for m in masks):
        warnings.warn(
            f"{root}: every mask of the {len(ids)} samples in {mask_dir.name}/ is empty (no rib "
            "pixel); check that the masks are 0 and 1 or 255 (a label kept in an unread channel "
            "reads as empty)",
            UserWarning,
            stacklevel=2,
        )
    scaling = _divide_clips(images, wide, wide_max, len(ids), root, depths)
    for i in inverted:
        np.subtract(np.float32(1.0), images[i], out=images[i])
    if inverted:
        scaling["inverted"] = True
        if len(inverted) < len(ids):
            scaling.update(inverted_frames=len(inverted), frames=len(ids))
    return PairedDataset(images, masks, ids, groups, root, scaling)


def _divide_clips(
    images: list[np.ndarray],
    wide: dict[str, list[int]],
    wide_max: dict[str, int],
    total: int,
    root: Path,
    depths: dict[str, list] | None = None,
) -> dict:
    """Divide each clip's uint16 images (in place) by the divisor of the clip's maximum; return the
    dataset's scaling record, warning when clips differ in bit depth."""
    clips: dict[str, dict] = {}
    for clip, members in wide.items():
        declared, note = agreed_bits((depths or {}).get(clip, []))
        divisor, record = uint16_scaling(wide_max[clip], declared, note)
        if record.get("bits_from") == "stack maximum":
            record["bits_from"] = "clip maximum"
        clips[clip] = record
        for i in members:
            np.clip(
                np.divide(images[i], np.float32(divisor), out=images[i]), 0.0, 1.0, out=images[i]
            )
    if not clips:
        return {"method": "divide-by-dtype"}
    n_wide = sum(len(m) for m in wide.values())
    method = "divide-per-clip" if n_wide == total else "divide-by-dtype"
    depths = {record["divisor"] for record in clips.values()}
    if len(depths) > 1:
        warnings.warn(
            f"{root}: the bit depths of the 16-bit clips differ; each clip is divided by its "
            f"own: {describe_scaling({'method': method, 'uint16_clips': clips})}",
            UserWarning,
            stacklevel=3,
        )
    return {"method": method, "uint16_clips": clips}


def _image_for_disk(image: np.ndarray, sample_id: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise DatasetError(f"image {sample_id!r} must be 2-D, got shape {arr.shape}")
    if arr.dtype in (np.uint8, np.uint16):
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * np.uint8(255)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise DatasetError(f"image {sample_id!r}: float images must be finite and in [0, 1]")
        return arr.astype(np.float32)
    raise DatasetError(f"image {sample_id!r}: dtype {arr.dtype} is not uint8, uint16 or float")


def write_paired_dataset(
    root: str | os.PathLike,
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    ids: Sequence[str],
    layout: str = "IMG/MASK",
) -> Path:
    """Write a paired dataset that :func:`read_paired_dataset` reads back exactly; returns ``root``.

    Masks are saved as 0/255, read by the mask-file rules (``core.io.intensity.mask_array``:
    a signed 0/-1 mask is rib, a label map is refused). Raises :class:`DatasetError` for inconsistent input or a
    ``root`` that exists and is not empty.
    """
    import tifffile

    if layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; expected one of {sorted(LAYOUTS)}")
    ids = [str(i) for i in ids]
    if not (len(images) == len(masks) == len(ids)):
        raise DatasetError(f"got {len(images)} images, {len(masks)} masks and {len(ids)} ids")
    if not ids:
        raise DatasetError("nothing to write: no images")
    bad = [i for i in ids if not _SAFE_ID.match(i)]
    if bad:
        raise DatasetError(f"ids must be plain file names (letters, digits, . _ - space): {bad}")
    lowered = [i.lower() for i in ids]
    if len(set(lowered)) != len(ids):
        dupes = sorted({i for i in ids if lowered.count(i.lower()) > 1})
        raise DatasetError(f"ids must be unique (case-insensitively): {dupes}")
    root = Path(root)
    if root.exists() and not root.is_dir():
        # Was "is not an empty folder", for a file (ribseg export-curated --out ribs.tif).
        raise DatasetError(f"{root}: already exists and is a file; expected a new or empty folder")
    if root.exists() and any(root.iterdir()):
        raise DatasetError(f"{root}: already exists and is not an empty folder; not overwriting it")
    image_name, mask_name, image_prefix, mask_prefix = LAYOUTS[layout]
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        (tmp / image_name).mkdir()
        (tmp / mask_name).mkdir()
        for sample_id, image, mask in zip(ids, images, masks, strict=True):
            image = _image_for_disk(image, sample_id)
            mask = np.asarray(mask)
            if mask.shape != image.shape:
                raise DatasetError(
                    f"image {sample_id!r} is {image.shape} but its mask is {mask.shape}"
                )
            # Read by the rules the mask file will be read back with: a 0/-1 int8 mask is rib
            # (> 0 wrote it empty), a label map is refused before anything is written.
            disk_mask = mask_array(mask, f"mask {sample_id!r}") * np.uint8(255)
            tifffile.imwrite(tmp / image_name / f"{image_prefix}{sample_id}.tif", image)
            tifffile.imwrite(
                tmp / mask_name / f"{mask_prefix}{sample_id}.tif", disk_mask, compression="zlib"
            )
        if root.exists():
            root.rmdir()  # empty, checked above; a rename cannot replace a folder on every OS
        os.replace(tmp, root)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    return root
