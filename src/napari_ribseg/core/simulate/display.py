"""What a scanner does to the image after detection: vendor overlays and lossy compression.

The log compression, speckle reduction, persistence and grey map run in the renderer on the beam
grid (:mod:`.cine`); this module holds the parts that act on the displayed frame: the overlays a
real export carries (text, depth ruler, focus marker, logo), drawn once per cine, and JPEG-like
8x8-block DCT quantisation. Overlay pixels are returned as a mask so the labels can leave them out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

# The IJG standard luminance quantisation table (JPEG Annex K), quality 50.
_JPEG_LUMA = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float32,
)


def jpeg_table(quality: int) -> np.ndarray:
    """The IJG luminance table scaled to ``quality`` (1-100), as libjpeg scales it."""
    quality = int(np.clip(quality, 1, 100))
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((_JPEG_LUMA * scale + 50) / 100), 1, 255).astype(np.float32)


def jpeg_compress(image: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip a [0, 1] grey image through baseline-JPEG quantisation (8x8 DCT blocks).

    The orthonormal 8-point DCT-II is exactly JPEG's transform, so blocking and ringing come out
    as a JPEG encoder at this quality makes them (no chroma: the frames are grey).
    """
    height, width = image.shape
    ph, pw = -height % 8, -width % 8
    x = np.pad(image * np.float32(255.0) - np.float32(128.0), ((0, ph), (0, pw)), mode="edge")
    hb, wb = x.shape[0] // 8, x.shape[1] // 8
    blocks = x.reshape(hb, 8, wb, 8).transpose(0, 2, 1, 3)
    table = jpeg_table(quality)
    coef = scipy.fft.dctn(blocks, type=2, axes=(2, 3), norm="ortho", workers=1)
    coef = np.rint(coef / table) * table
    back = scipy.fft.idctn(coef, type=2, axes=(2, 3), norm="ortho", workers=1)
    out = back.transpose(0, 2, 1, 3).reshape(x.shape)[:height, :width]
    return np.clip((out + np.float32(128.0)) / np.float32(255.0), 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class Overlay:
    """Pixels a scanner paints over the frame: ``mask`` (bool) and their grey ``values``."""

    mask: np.ndarray
    values: np.ndarray

    def apply(self, image: np.ndarray) -> np.ndarray:
        out = image.copy()
        out[self.mask] = self.values[self.mask]
        return out


def _glyphs(rng: np.random.Generator, n: int = 24) -> np.ndarray:
    """A made-up 5x7 bitmap font: blocky characters with the stroke density of real ones."""
    font = rng.random((n, 7, 5)) < 0.45
    font[:, :, 0] |= rng.random((n, 7)) < 0.5  # a vertical stem makes them look like letters
    return font


def _text(rng, font, canvas, values, row, col, n_chars, scale, grey) -> None:
    height, width = canvas.shape
    for k in range(n_chars):
        c = col + k * 6 * scale
        if rng.random() < 0.15:  # a space
            continue
        glyph = np.kron(font[int(rng.integers(len(font)))], np.ones((scale, scale), dtype=bool))
        r1, c1 = min(row + glyph.shape[0], height), min(c + glyph.shape[1], width)
        if row < 0 or c < 0 or r1 <= row or c1 <= c:
            continue
        sub = glyph[: r1 - row, : c1 - c]
        canvas[row:r1, c:c1] |= sub
        values[row:r1, c:c1][sub] = grey


def draw_overlay(
    shape: tuple[int, int],
    fan: np.ndarray,
    spacing_mm: tuple[float, float],
    focus_row: int,
    rng: np.random.Generator,
) -> Overlay:
    """Vendor overlays for one cine: text blocks, a depth ruler with ticks every centimetre beside
    the image, a focus marker at ``focus_row`` and a grey-rendered colour logo."""
    height, width = shape
    mask = np.zeros(shape, dtype=bool)
    values = np.zeros(shape, dtype=np.float32)
    font = _glyphs(rng)
    scale = max(1, int(round(min(height, width) / 300)))
    grey = float(rng.uniform(0.6, 1.0))
    # Text: a header at the top left, settings at the top right, a line at the bottom.
    line = 9 * scale
    for i in range(int(rng.integers(1, 4))):
        _text(
            rng, font, mask, values, 2 + i * line, 2 + scale, int(rng.integers(6, 14)), scale, grey
        )
    for i in range(int(rng.integers(2, 6))):
        n = int(rng.integers(4, 9))
        _text(rng, font, mask, values, 2 + i * line, width - n * 6 * scale - 2, n, scale, grey)
    if rng.random() < 0.6:
        n = int(rng.integers(8, 20))
        _text(rng, font, mask, values, height - line, 2 + scale, n, scale, grey)

    # Depth ruler: just right of the image's right edge, ticks every 10 mm, longer every 50 mm.
    cols = np.flatnonzero(fan.any(axis=0))
    rows = np.flatnonzero(fan.any(axis=1))
    if cols.size and rows.size:
        right = int(cols.max())
        col = min(right + 2 + scale, width - 4 * scale - 1)
        step = 10.0 / spacing_mm[0]
        ruler_grey = float(rng.uniform(0.5, 0.9))
        for k in range(int((rows.max() - rows.min()) / step) + 1):
            r = int(rows.min() + k * step)
            length = (4 if k % 5 == 0 else 2) * scale
            mask[r : r + scale, col : col + length] = True
            values[r : r + scale, col : col + length] = ruler_grey
        # Focus marker: a small triangle pointing at the image at the focal depth.
        r = int(np.clip(focus_row, 3 * scale, height - 3 * scale - 1))
        c = max(col - 3 * scale, 0)
        for i in range(-2 * scale, 2 * scale + 1):
            span = 2 * scale - abs(i)
            mask[r + i, c : c + span + 1] = True
            values[r + i, c : c + span + 1] = ruler_grey
    # A colour logo in a corner, seen as its luminance: a filled disc with a ring.
    radius = max(3, int(min(height, width) * float(rng.uniform(0.02, 0.04))))
    cy = height - radius - 3 if rng.random() < 0.5 else radius + 3 + 4 * line
    cx = width - radius - 3 if rng.random() < 0.5 else radius + 3
    yy, xx = np.ogrid[:height, :width]
    dist = np.hypot(yy - cy, xx - cx)
    logo = dist <= radius
    lum = float(0.299 * rng.uniform(0, 1) + 0.587 * rng.uniform(0, 1) + 0.114 * rng.uniform(0, 1))
    mask |= logo
    values[logo] = np.where(dist[logo] > 0.7 * radius, 0.9, max(lum, 0.15))
    return Overlay(mask=mask, values=values)
