"""An image file (png, jpg, bmp, gif, webp, ...) as a stack: one frame, or every frame of an animation.

Scanners export single frames as ordinary images; they open like any stack so that one frame can be
segmented and reviewed. Teaching files and point-of-care apps share cines as animated GIF, APNG or
WebP: every frame is read (Pillow's frame sequence, each frame composited as the format shows it), and
the frame rate comes from the frames' display durations (their median, in ms). Colour becomes BT.601
luma; integers are scaled by their dtype's range. The size in the image header is checked against
:data:`MAX_PIXELS` (per frame) and the memory budget (all frames) before any pixels are decoded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from napari_ribseg.core.errors import StackReadError
from napari_ribseg.core.stack import Stack

#: Largest frame accepted: 40 megapixels is 160 MB as float32 and above any ultrasound frame.
MAX_PIXELS = 40_000_000


def read_single_image(path: str | Path) -> Stack:
    """Read an image file as a float32 (frames, H, W) stack in [0, 1]: 1 frame, or an animation's."""
    from napari_ribseg.core.io.frame_folder import open_pil, pil_array, stack_images

    path = Path(path)
    durations: list[float] = []

    def each_frame(img) -> Iterator[tuple[np.ndarray, bool, Path]]:
        for i in range(n):
            img.seek(i)
            yield pil_array(img, path), False, path
            duration = img.info.get("duration")
            if isinstance(duration, int | float) and duration > 0:
                durations.append(float(duration))

    with open_pil(path) as img:
        width, height = img.size
        if width * height > MAX_PIXELS:
            raise StackReadError(
                f"{path}: image of {width}x{height} pixels is larger than the {MAX_PIXELS:,}-pixel "
                "limit for one frame; expected an ultrasound frame"
            )
        n = int(getattr(img, "n_frames", 1) or 1)
        frames, original_dtype, scaling = stack_images(each_frame(img), n, path, "frame 0")
    # A still image has no frame rate, even when its format stores a display time.
    rate = 1000.0 / float(np.median(durations)) if n > 1 and len(durations) == n else None
    return Stack(
        frames=frames,
        source=path,
        frame_rate=rate,
        original_dtype=original_dtype,
        metadata={"intensity_scaling": scaling, "frames_in_file": n},
    )
