"""A folder of single-image frames (png, jpg, bmp, tif) in natural sort order.

``frame2.png`` comes before ``frame10.png``. Every frame must have the height and width of the first;
grey and colour frames may be mixed (colour becomes BT.601 luma). 8-bit frames are divided by 255;
16-bit frames by ``2**bits - 1`` for the bit depth (8, 10, 12, 14 or 16) that holds the folder's
largest 16-bit value; float frames follow the stack-wide float rule. WhiteIsZero TIFF frames are
inverted after scaling, `1 - v`, and the scaling record says `inverted`. Files napari was asked to
open as one stack are read here too (:func:`read_stacked_files`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from napari_ribseg.core.budget import MAX_FRAME_PIXELS, check_allocation, check_frame, check_shape
from napari_ribseg.core.errors import MemoryBudgetError, StackReadError
from napari_ribseg.core.io.bit_depth import agreed_bits, declared_bits
from napari_ribseg.core.io.intensity import (
    arrange_frames,
    full_scale,
    is_uint16,
    luma,
    sample_max,
    to_unit_frames,
    uint16_bits,
    uint16_scaling,
)
from napari_ribseg.core.io.registry import FRAME_SUFFIXES, frame_files
from napari_ribseg.core.stack import Stack


def read_image(path: Path, *, mask: bool = False) -> np.ndarray:
    """One 2-D image file as (H, W) or (H, W, samples) in its stored dtype, a WhiteIsZero TIFF
    inverted within its own dtype (for masks: what is marked stays marked).

    ``mask=True`` reads a palette image as its indices (the labels a labelling tool saved), not
    as the colours its palette shows (a palette of greys only: as the grey levels it shows, a grey
    mask stored indexed); mask readers pass it, frames never do.
    """
    data, white_is_zero = read_image_pixels(path, mask=mask)
    return _white_to_black(data) if white_is_zero else data


def read_image_pixels(path: Path, *, mask: bool = False) -> tuple[np.ndarray, bool]:
    """One 2-D image file as stored, (H, W) or (H, W, samples), and whether its low values are
    white (a WhiteIsZero TIFF): frames are inverted after scaling, ``1 - v``, as a stack is.
    ``mask`` as for :func:`read_image`."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        from napari_ribseg.core.io.tiff import page_white_is_zero

        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                check_shape(series.shape, np.dtype(series.dtype).itemsize, "TIFF image", path)
                if "Y" in series.axes and "X" in series.axes:
                    ax = series.axes
                    check_frame(series.shape[ax.index("Y")], series.shape[ax.index("X")], path)
                data = series.asarray()
                axes = series.axes
                # ImageJ writes an image shown with an inverting LUT as WhiteIsZero, its values
                # unchanged: a binary mask drawn without "Black background" (Fiji's default)
                # keeps its objects at 255. Inverted, its background would be the rib.
                white_is_zero = page_white_is_zero(series.keyframe) and not (mask and tif.is_imagej)
                if mask and data.ndim == 2:
                    data = _grey_palette_tiff(series.keyframe, data)
        except (tifffile.TiffFileError, OSError, ValueError, IndexError, RuntimeError) as exc:
            raise StackReadError(
                f"{path}: cannot read TIFF image (truncated or corrupt?): {exc}"
            ) from exc
        if "S" in axes and not axes.endswith("S"):
            data = np.moveaxis(data, axes.index("S"), -1)
        data = np.squeeze(data) if data.ndim > 2 and 1 in data.shape[:-2] else data
        if data.ndim == 2 or (data.ndim == 3 and data.shape[-1] in (2, 3, 4)):
            return data, white_is_zero
        if data.ndim == 3:  # as an animation: a folder holding one cine TIFF said only its shape
            raise StackReadError(
                f"{path}: holds {data.shape[0]} frames (a stack); a frame folder takes one image "
                "per file: open the file itself to read all its frames"
            )
        raise StackReadError(f"{path}: expected a single 2-D image, got shape {data.shape}")
    with open_pil(path) as img:
        frames = int(getattr(img, "n_frames", 1) or 1)
        if frames > 1:
            raise StackReadError(
                f"{path}: holds {frames} frames (an animation); a frame folder takes one image per "
                "file: open the file itself to read all its frames"
            )
        return pil_array(img, path, indices=mask), False


@contextlib.contextmanager
def open_pil(path: Path) -> Iterator:
    """``PIL.Image.open(path)`` with the frame limit as PIL's bomb check and errors naming ``path``."""
    from PIL import Image, UnidentifiedImageError

    # PIL's own bomb check follows our frame limit (it raises above twice MAX_IMAGE_PIXELS).
    Image.MAX_IMAGE_PIXELS = MAX_FRAME_PIXELS
    try:
        img = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise MemoryBudgetError(f"{path}: image is too large to decode safely: {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise StackReadError(f"{path}: cannot read image (truncated or corrupt?): {exc}") from exc
    try:
        with img:
            yield img
    except Image.DecompressionBombError as exc:
        raise MemoryBudgetError(f"{path}: image is too large to decode safely: {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise StackReadError(f"{path}: cannot read image (truncated or corrupt?): {exc}") from exc


def pil_array(img, path: Path, *, indices: bool = False) -> np.ndarray:
    """The current frame of an open PIL image as (H, W) or (H, W, samples) in its stored dtype.

    Palette images become RGB(A) (with ``indices=True``, their palette indices: a mask's labels),
    other colour spaces RGB; 16-bit greyscale that Pillow opens as 32-bit "I" comes back as uint16.
    A 16-bit colour PNG (RGB, RGBA or grey + alpha at 16 bits), which Pillow cuts to its high
    byte, is decoded by OpenCV at its full depth (:func:`png16_colour`).
    """
    width, height = img.size
    check_frame(height, width, path)
    check_shape((height, width, len(img.getbands())), 4, "image", path)
    if img.mode in ("P", "PA") and indices:
        # Converted to RGB, labels 1 and 2 of a labelme or VOC palette became colours whose
        # maximum over R, G, B is the same: two labels read as one rib.
        index = np.asarray(img.getchannel(0) if img.mode == "PA" else img)
        if not _grey_palette(img, index):
            return index
        # A grey palette is a grey mask stored indexed (Pillow's quantize, ImageMagick, pngquant
        # order it freely: white rib at index 0 read as indices swapped rib and background).
        img = img.convert("LA" if img.mode == "PA" or "transparency" in img.info else "L")
    if img.format == "PNG" and is_png16_colour(path):
        frames = int(getattr(img, "n_frames", 1) or 1)
        if frames > 1:
            raise StackReadError(
                f"{path}: a 16-bit colour animation (APNG, {frames} frames) cannot be decoded "
                "at its full depth (Pillow keeps 8 of the 16 bits, OpenCV reads one frame); save "
                "the cine as a 16-bit grey APNG, a TIFF stack or a folder of 16-bit PNG frames"
            )
        return png16_colour(path)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    data = np.asarray(img)
    if data.dtype == np.int32 and data.size and data.min() >= 0 and data.max() <= 65535:
        # Pillow opens some 16-bit greyscale files as 32-bit "I"; they are uint16 on disk.
        data = data.astype(np.uint16)
    return data


def _grey_palette_tiff(page, index: np.ndarray) -> np.ndarray:
    """A palette TIFF mask whose used entries are all grey, as the grey levels it shows (uint8), as
    for a PNG (:func:`_grey_palette`): white at index 0 read as indices made the background the
    rib. Other masks, and palettes with colours (labels), are returned as they are."""
    colormap = getattr(page, "colormap", None)
    if int(getattr(page, "photometric", -1)) != 3 or colormap is None or index.dtype.kind != "u":
        return index
    colormap = np.asarray(colormap)
    if colormap.ndim != 2 or colormap.shape[0] != 3 or int(index.max()) >= colormap.shape[1]:
        return index
    if not _used_entries_grey(colormap.T, index):
        return index
    grey = colormap[0] // 257 if int(colormap.max()) > 255 else colormap[0]
    return grey.astype(np.uint8)[index]


def _grey_palette(img, index: np.ndarray) -> bool:
    """Whether every palette entry that ``index`` (a palette image's indices) uses is a grey
    (R = G = B): a grey image stored indexed, whose shown grey levels are its values, not labels."""
    palette = img.getpalette("RGB")
    if not palette:
        return False
    return _used_entries_grey(np.asarray(palette, dtype=np.uint8).reshape(-1, 3), index)


def _used_entries_grey(table: np.ndarray, index: np.ndarray) -> bool:
    """Whether the entries of the (N, 3) colour ``table`` that ``index`` uses (those within the
    table) are all grey, R = G = B, and there is at least one."""
    used = np.unique(index)
    colours = table[used[used < len(table)]]
    return bool(len(colours)) and bool(
        ((colours[:, 0] == colours[:, 1]) & (colours[:, 1] == colours[:, 2])).all()
    )


#: PNG colour types with colour or alpha samples: grey + alpha (4), RGB (2), RGBA (6).
_PNG_COLOUR_TYPES = (2, 4, 6)


def is_png16_colour(path: Path) -> bool:
    """True for a PNG whose header (IHDR) declares 16-bit samples of a colour type with colour or
    alpha: the PNGs that Pillow decodes to 8 bits."""
    with open(path, "rb") as f:
        head = f.read(26)
    return (
        len(head) == 26
        and head[:8] == b"\x89PNG\r\n\x1a\n"
        and head[12:16] == b"IHDR"
        and head[24] == 16
        and head[25] in _PNG_COLOUR_TYPES
    )


def png16_colour(path: Path) -> np.ndarray:
    """A single-frame 16-bit colour PNG as (H, W, 3 or 4) uint16, R G B (A) order, exactly as stored
    (OpenCV decodes it BGR(A); grey + alpha comes back as four samples, grey thrice)."""
    import cv2

    try:
        data = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise StackReadError(f"{path}: cannot decode 16-bit colour PNG: {exc}") from exc
    if data is None or data.dtype != np.uint16 or data.ndim != 3 or data.shape[-1] not in (3, 4):
        got = "nothing" if data is None else f"{data.dtype} {data.shape}"
        raise StackReadError(
            f"{path}: cannot decode 16-bit colour PNG (truncated or corrupt?): OpenCV gave {got}, "
            "expected uint16 (H, W, 3 or 4)"
        )
    order = [2, 1, 0] if data.shape[-1] == 3 else [2, 1, 0, 3]
    return np.ascontiguousarray(data[..., order])


def _white_to_black(data: np.ndarray) -> np.ndarray:
    """A WhiteIsZero TIFF image (low values white) inverted in its own dtype: bright is echo.

    uint16 is inverted within the bit depth of its own maximum (``uint16_bits``), so 12-bit
    samples stay 12-bit (``65535 - v`` made every pixel of a 12-bit image read near white)."""
    if data.dtype == bool:
        return ~data
    if is_uint16(data.dtype):
        top = np.uint16(2 ** uint16_bits(int(data.max()) if data.size else 0) - 1)
        return top - data
    if data.dtype.kind == "u":
        return np.iinfo(data.dtype).max - data
    data = data.astype(np.float32)
    # Floats in [0, 1] stay in [0, 1]; anything else is left to the stack-wide float rule.
    return 1.0 - data if data.size and data.min() >= 0.0 and data.max() <= 1.0 else -data


def read_frame_folder(folder: Path) -> Stack:
    """Read every image in ``folder`` as one frame, in natural sort order."""
    files = frame_files(folder)
    if not files:
        raise StackReadError(f"{folder}: folder contains no image frames (png, jpg, bmp, tif)")
    images = ((*read_image_pixels(file), file) for file in files)
    frames, original_dtype, scaling = stack_images(images, len(files), folder, files[0].name)
    return Stack(
        frames=frames,
        source=folder,
        original_dtype=original_dtype,
        metadata={"files": [f.name for f in files], "intensity_scaling": scaling},
    )


def read_stacked_files(paths: Sequence[str | os.PathLike]) -> Stack:
    """Files given to be read as one stack (napari's ``stack=True``, *File > Open Files as
    Stack...*): one file is read as itself; several must be the image frames of one frame folder,
    all of them, and are read as that folder (its natural order, whatever order they came in, and
    its review).

    Raises :class:`StackReadError` naming the file and what was expected for anything else: a
    cine among them (a stack is not stacked again), files from several folders, or only some of a
    folder's frames (a review is bound to the whole folder).
    """
    from napari_ribseg.core.io.registry import read_stack

    files = [Path(p) for p in paths]
    if not files:
        raise StackReadError("no files were given to read as a stack")
    if len(files) == 1:
        return read_stack(files[0])
    given = f"{len(files)} files given as one stack"
    for file in files:
        if not file.is_file():
            raise StackReadError(f"{file}: no such file ({given})")
        if file.suffix.lower() not in FRAME_SUFFIXES:
            raise StackReadError(
                f"{file}: {given}, and this one is not a single-image frame (expected "
                f"{', '.join(FRAME_SUFFIXES)}); open each cine on its own, not as a stack"
            )
    folders = sorted({str(file.absolute().parent) for file in files})
    if len(folders) > 1:
        raise StackReadError(
            f"{files[0]}: {given} lie in {len(folders)} folders ({', '.join(folders[:3])}); the "
            "frames of a stack are read from one folder: put them in a folder of their own and "
            "open that folder"
        )
    folder = files[0].absolute().parent
    whole = frame_files(folder)
    names = {file.name for file in files}
    if names != {file.name for file in whole}:
        raise StackReadError(
            f"{folder}: {given} are {len(names)} of the {len(whole)} frames in this folder; a "
            "stack of frames is a whole frame folder (its review is bound to the folder): open "
            "the folder itself, or move these frames into a folder of their own and open that"
        )
    return read_stack(folder)  # through the registry, as the folder opened itself is


def stack_images(
    images: Iterable[tuple[np.ndarray, bool, Path]], count: int, source: Path, first: str
) -> tuple[np.ndarray, str, dict]:
    """``count`` 2-D images, given one at a time with whether their low values are white and the
    file each came from, as float32 frames.

    Returns the (count, H, W) frames in [0, 1], the original dtype (``"mixed:uint8,uint16"`` when
    the images differ) and the scaling record. Every image must have the size of the first (named ``first`` in the error).
    8-bit images are scaled by 255 as they come; 16-bit images are divided together at the end by
    the bit depth of their largest value (:func:`~napari_ribseg.core.io.intensity.uint16_bits`), and
    float images min-max scaled together (the stack-wide float rule), so the relative brightness of
    frames is kept. Images whose low values are white are inverted after that, ``1 - v`` (inverted
    in their own bit depth, a nearly white 12-bit frame of maximum 40 read 255 - 40 over the
    folder's 4095: near black); the record says ``inverted`` (with ``inverted_frames`` and
    ``frames`` when only some were).
    """
    frames: np.ndarray | None = None
    dtypes: list[str] = []
    float_rule = False
    wide: list[int] = []  # the 16-bit frames
    wide_max = 0
    depths: dict[Path, tuple] = {}  # each 16-bit file: (the depth it declares, its maximum)
    inverted: list[int] = []
    for i, (image, white_is_zero, file) in enumerate(images):
        if white_is_zero:
            inverted.append(i)
        raw, colour = arrange_frames(image, file, colour=image.ndim == 3)
        if raw.shape[0] != 1:
            raise StackReadError(f"{file}: expected one frame per file, got {raw.shape[0]}")
        if frames is None:
            check_allocation(
                4.0 * count * raw.shape[1] * raw.shape[2],
                f"{count} frames of {raw.shape[1]}x{raw.shape[2]} float32",
                source,
            )
            frames = np.empty((count, *raw.shape[1:3]), dtype=np.float32)
        elif raw.shape[1:3] != frames.shape[1:]:
            raise StackReadError(
                f"{file}: frame {i} is {raw.shape[1]}x{raw.shape[2]} (height x width) but "
                f"{first} is {frames.shape[1]}x{frames.shape[2]}; all frames must match"
            )
        if str(image.dtype) not in dtypes:
            dtypes.append(str(image.dtype))
        if full_scale(image.dtype) is None:
            float_rule = True
            grey = luma(raw[0]) if colour else raw[0].astype(np.float32)
            if not np.isfinite(grey).all():
                raise StackReadError(f"{file}: frame {i} contains NaN or infinite values")
            frames[i] = grey
        elif is_uint16(image.dtype):
            # Kept raw until the stack's maximum gives the bit depth of all 16-bit frames.
            frames[i] = luma(raw[0]) if colour else raw[0]
            wide.append(i)
            top = sample_max(raw, colour)
            wide_max = max(wide_max, top)
            # An animation's frames are one file: one declaration, its frames' maximum.
            declared, file_max = depths.get(file, (None, 0))
            if file not in depths:
                declared = declared_bits(file)
            depths[file] = (declared, max(file_max, top))
        else:
            frames[i] = to_unit_frames(raw, file, colour=colour)[0][0]
    assert frames is not None
    scaling: dict = {"method": "divide-by-dtype"}
    if wide:
        declared, note = agreed_bits((f, d, top) for f, (d, top) in depths.items())
        divisor, scaling = uint16_scaling(wide_max, declared, note)
        for i in wide:  # in place, one frame at a time: no second copy of the stack
            np.clip(
                np.divide(frames[i], np.float32(divisor), out=frames[i]), 0.0, 1.0, out=frames[i]
            )
        if len(wide) < count:
            scaling = {"method": "divide-by-dtype", "uint16": scaling}
    if float_rule:
        frames, scaling = to_unit_frames(frames, source)
    if inverted:
        for i in inverted:
            np.subtract(np.float32(1.0), frames[i], out=frames[i])
        scaling = {**scaling, "inverted": True}
        if len(inverted) < count:
            scaling.update(inverted_frames=len(inverted), frames=count)
    return frames, dtypes[0] if len(dtypes) == 1 else "mixed:" + ",".join(dtypes), scaling
