"""Video (mp4, avi, mov) through imageio's ffmpeg plugin (the bundled imageio-ffmpeg binary).

Frames are decoded one at a time and converted to BT.601 luma straight away, so the RGB video is never
held in memory. The frame rate is the container's ``fps``. Video is usually lossy: expect compression
noise of a few grey levels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_ribseg.core.budget import check_allocation, check_frame
from napari_ribseg.core.errors import MemoryBudgetError, StackReadError
from napari_ribseg.core.io.intensity import arrange_frames, full_scale, luma
from napari_ribseg.core.stack import Stack


def read_video(path: Path) -> Stack:
    """Read every frame of a video file as grey float32 in [0, 1]."""
    import imageio.v3 as iio

    grey: list[np.ndarray] = []
    dtype = None
    try:
        meta = iio.immeta(path, plugin="FFMPEG")
        for frame in iio.imiter(path, plugin="FFMPEG"):
            dtype = frame.dtype
            scale = full_scale(frame.dtype) or 1.0
            plane = luma(frame) if frame.ndim == 3 else frame.astype(np.float32)
            plane /= np.float32(scale)
            if not grey:
                check_frame(*plane.shape[:2], path)
            # Frames are budgeted as they come: the container's frame count is often wrong.
            check_allocation(
                4.0 * (len(grey) + 1) * plane.size * 2,
                f"{len(grey) + 1} frames of {plane.shape[0]}x{plane.shape[1]} float32",
                path,
            )
            if grey and plane.shape != grey[0].shape:
                raise StackReadError(
                    f"{path}: frame {len(grey)} is {plane.shape} but frame 0 is {grey[0].shape}"
                )
            grey.append(plane)
    except (StackReadError, MemoryBudgetError):
        raise
    except (OSError, RuntimeError, ValueError, IndexError, StopIteration) as exc:
        # ffmpeg appends its whole stderr; the first line says what went wrong.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StackReadError(
            f"{path}: cannot decode video (truncated, corrupt or unsupported codec?): {reason}"
        ) from exc
    if not grey:
        raise StackReadError(f"{path}: video contains zero frames")
    frames, _ = arrange_frames(np.stack(grey), path, colour=False)
    fps = meta.get("fps")
    rate = float(fps) if fps and np.isfinite(fps) and fps > 0 else None
    return Stack(
        frames=np.clip(frames, 0.0, 1.0, out=frames),
        source=path,
        frame_rate=rate,
        original_dtype=str(dtype),
        metadata={
            "codec": meta.get("codec"),
            "intensity_scaling": {"method": "divide", "divisor": 255.0},
        },
    )
