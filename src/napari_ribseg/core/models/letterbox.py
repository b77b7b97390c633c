"""Letterboxing: fit frames of any size into the square network input, and map outputs back exactly.

The longer side is resized to ``size`` (bilinear, antialiased when shrinking), the frame is centred
and the rest padded with 0. :func:`unletterbox` crops the pad and resizes back to the exact original
frame size. The numpy functions run the torch ones on the CPU in chunks; the torch ones also run on
a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: Frames resized per chunk by the numpy functions (bounds the temporary memory for long cines).
CHUNK = 64


@dataclass(frozen=True)
class Letterbox:
    """Where a frame of ``original`` (H, W) sits inside the ``size`` x ``size`` network input."""

    original: tuple[int, int]
    scaled: tuple[int, int]
    offset: tuple[int, int]
    size: int

    @classmethod
    def fit(cls, height: int, width: int, size: int) -> Letterbox:
        """The letterbox of a (height, width) frame in a square of side ``size``."""
        if height < 1 or width < 1 or size < 1:
            raise ValueError(
                f"letterbox needs positive sizes; got frame {height}x{width}, size {size}"
            )
        scale = size / max(height, width)
        h = min(size, max(1, round(height * scale)))
        w = min(size, max(1, round(width * scale)))
        return cls((int(height), int(width)), (h, w), ((size - h) // 2, (size - w) // 2), int(size))

    @property
    def scale(self) -> float:
        """Network pixels per original pixel."""
        return self.size / max(self.original)


def _resize(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(shape):
        return x
    shrink = shape[0] < x.shape[-2] or shape[1] < x.shape[-1]
    return F.interpolate(x, size=shape, mode="bilinear", align_corners=False, antialias=shrink)


def _as_nchw(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if x.ndim == 3:
        return x.unsqueeze(1), True
    if x.ndim == 4:
        return x, False
    raise ValueError(f"expected (N, H, W) or (N, C, H, W); got shape {tuple(x.shape)}")


def letterbox_tensor(frames: torch.Tensor, size: int) -> tuple[torch.Tensor, Letterbox]:
    """Torch letterbox of (N, H, W) or (N, C, H, W) floating frames; returns (N, C, size, size)."""
    x, _ = _as_nchw(frames)
    lb = Letterbox.fit(int(x.shape[-2]), int(x.shape[-1]), size)
    x = _resize(x, lb.scaled)
    top, left = lb.offset
    pad = (left, size - lb.scaled[1] - left, top, size - lb.scaled[0] - top)
    return F.pad(x, pad, value=0.0), lb


def unletterbox_tensor(maps: torch.Tensor, lb: Letterbox) -> torch.Tensor:
    """Inverse of :func:`letterbox_tensor`: crop the pad, resize to the original (H, W)."""
    x, squeeze = _as_nchw(maps)
    if tuple(x.shape[-2:]) != (lb.size, lb.size):
        raise ValueError(f"expected maps of {lb.size}x{lb.size}; got {tuple(x.shape[-2:])}")
    (top, left), (h, w) = lb.offset, lb.scaled
    x = _resize(x[..., top : top + h, left : left + w], lb.original)
    return x[:, 0] if squeeze else x


def letterbox(frames: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Letterbox (N, H, W) frames into float32 (N, size, size); return the frames and the geometry."""
    if frames.ndim != 3:
        raise ValueError(f"letterbox expects frames (N, H, W); got shape {frames.shape}")
    lb = Letterbox.fit(frames.shape[1], frames.shape[2], size)
    out = np.empty((frames.shape[0], size, size), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, frames.shape[0], CHUNK):
            chunk = torch.from_numpy(
                np.ascontiguousarray(frames[start : start + CHUNK], np.float32)
            )
            out[start : start + CHUNK] = letterbox_tensor(chunk, size)[0][:, 0].numpy()
    return out, lb


def unletterbox(maps: np.ndarray, lb: Letterbox) -> np.ndarray:
    """Map (N, size, size) outputs back to (N, H, W) of the original frames.

    Float maps come back as float32; uint8 maps (e.g. probability x 255) are rounded back to uint8.
    """
    if maps.ndim != 3:
        raise ValueError(f"unletterbox expects maps (N, size, size); got shape {maps.shape}")
    out = np.empty(
        (maps.shape[0], *lb.original), dtype=np.uint8 if maps.dtype == np.uint8 else np.float32
    )
    with torch.no_grad():
        for start in range(0, maps.shape[0], CHUNK):
            chunk = torch.from_numpy(np.ascontiguousarray(maps[start : start + CHUNK], np.float32))
            back = unletterbox_tensor(chunk, lb).numpy()
            if out.dtype == np.uint8:
                back = np.clip(np.rint(back), 0, 255)
            out[start : start + CHUNK] = back
    return out
