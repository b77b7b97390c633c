"""A single image file (png, jpg, bmp, gif, webp, ...) as a one-frame stack.

Scanners export single frames as ordinary images; they open like any stack so that one frame can be
segmented and reviewed. Colour becomes BT.601 luma; integers are scaled by their dtype's range. The
size in the image header is checked against :data:`MAX_PIXELS` before any pixels are decoded.
"""

from __future__ import annotations

from pathlib import Path

from napari_ribseg.core.errors import StackReadError
from napari_ribseg.core.io.intensity import arrange_frames, to_unit_frames
from napari_ribseg.core.stack import Stack

#: Extensions read as one image through Pillow (TIFF goes through the TIFF reader).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
#: Largest image accepted: 40 megapixels is 160 MB as float32 and above any ultrasound frame.
MAX_PIXELS = 40_000_000


def _header_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:  # lazy: reads the header only
            return int(img.width), int(img.height)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise StackReadError(f"{path}: cannot read image (truncated or corrupt?): {exc}") from exc


def read_single_image(path: str | Path) -> Stack:
    """Read one image file as a float32 (1, H, W) stack in [0, 1]."""
    from napari_ribseg.core.io.frame_folder import read_image

    path = Path(path)
    width, height = _header_size(path)
    if width * height > MAX_PIXELS:
        raise StackReadError(
            f"{path}: image of {width}x{height} pixels is larger than the {MAX_PIXELS:,}-pixel "
            "limit for one frame; expected an ultrasound frame"
        )
    image = read_image(path)
    raw, colour = arrange_frames(image, path, colour=image.ndim == 3)
    if raw.shape[0] != 1:
        raise StackReadError(f"{path}: expected one image, got {raw.shape[0]} frames")
    frames, scaling = to_unit_frames(raw, path, colour=colour)
    return Stack(
        frames=frames,
        source=path,
        original_dtype=str(image.dtype),
        metadata={"intensity_scaling": scaling, "colour": bool(colour)},
    )
