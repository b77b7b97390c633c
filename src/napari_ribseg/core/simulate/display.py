"""What a scanner does to the image after detection: vendor overlays and lossy compression.

The log compression, speckle reduction, persistence and grey map run in the renderer on the beam
grid (:mod:`.cine`); this module holds the parts that act on the displayed frame: the overlays a
real export carries (text, depth ruler, focus marker, logo), drawn once per cine, JPEG-like
8x8-block DCT quantisation, and an H.264-like video codec (:class:`VideoCodec`) for cines exported
as mp4. Overlay pixels are returned as a mask so the labels can leave them out.
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


# The orthonormal 4-point DCT-II, as a 16x16 matrix acting on a flattened 4x4 block (row-major).
# H.264's integer core transform with its scaling is this transform up to rounding.
_DCT4 = np.cos(np.pi * (2 * np.arange(4)[None, :] + 1) * np.arange(4)[:, None] / 8) * np.sqrt(0.5)
_DCT4[0] *= np.sqrt(0.5)
_DCT4x4 = np.kron(_DCT4, _DCT4).astype(np.float32)
# H.264 in-loop filter tables (ITU-T H.264 Tables 8-16 and 8-17) for indexA/indexB 16..51; below
# 16 they are 0 and nothing is filtered. tc0 for bS 2 (coded inter blocks) and 3 (intra blocks).
_H264_ALPHA = np.array(
    [4, 4, 5, 6, 7, 8, 9, 10, 12, 13, 15, 17, 20, 22, 25, 28, 32, 36]
    + [40, 45, 50, 56, 63, 71, 80, 90, 101, 113, 127, 144, 162, 182, 203, 226, 255, 255]
)
_H264_BETA = np.array(
    [2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 6, 6] + [v for v in range(7, 19) for _ in range(2)]
)
_H264_TC0 = {
    2: np.array(
        [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2]
        + [2, 3, 3, 3, 4, 4, 5, 5, 6, 7, 8, 8, 10, 11, 12, 13, 15, 17]
    ),
    3: np.array(
        [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3]
        + [4, 4, 4, 5, 6, 6, 7, 8, 9, 10, 11, 13, 14, 16, 18, 20, 23, 25]
    ),
}
# x264's default ipratio 1.4: keyframes are coded 3 QP finer than P-frames.
KEYFRAME_QP_OFFSET = 3
# Rounding offsets of the reference encoder (JM): a dead zone that zeroes small coefficients.
_INTRA_ROUNDING, _INTER_ROUNDING = 1.0 / 3.0, 1.0 / 6.0


def h264_qstep(qp: float) -> float:
    """H.264's quantiser step on 0-255 grey levels: 0.625 at QP 0, doubling every 6 QP."""
    return 0.625 * 2.0 ** (qp / 6.0)


def _to_blocks(x: np.ndarray) -> np.ndarray:
    """(H, W) with H, W multiples of 16 -> (H/16, W/16, 16 blocks, 16 pixels): macroblocks of
    4x4 blocks in raster order, each block flattened row-major."""
    h, w = x.shape
    b = x.reshape(h // 16, 4, 4, w // 16, 4, 4).transpose(0, 3, 1, 4, 2, 5)
    return b.reshape(h // 16, w // 16, 16, 16)


def _from_blocks(b: np.ndarray) -> np.ndarray:
    mh, mw = b.shape[:2]
    return b.reshape(mh, mw, 4, 4, 4, 4).transpose(0, 2, 4, 1, 3, 5).reshape(mh * 16, mw * 16)


def _quantise(coef: np.ndarray, step: float, rounding: float) -> np.ndarray:
    """Dead-zone uniform quantisation to integer levels (as float32)."""
    return np.sign(coef) * np.floor(np.abs(coef) * np.float32(1.0 / step) + np.float32(rounding))


def _deblock_vertical_edges(x: np.ndarray, coded: np.ndarray, qp: int, bs: int) -> None:
    """H.264's normal (bS < 4) luma filter across every vertical 4x4 block edge, in place.

    ``x`` int16 (H, W); ``coded`` bool (H/4, W/4): an edge is filtered when a block on either side
    has coded coefficients (bS 0 otherwise, as between two skipped blocks). All edges are filtered
    at once, so an edge reads its neighbours' unfiltered samples (H.264 goes left to right).
    """
    i = qp - 16
    if i < 0:
        return
    alpha, beta, tc0 = int(_H264_ALPHA[i]), int(_H264_BETA[i]), int(_H264_TC0[bs][i])
    h, w = x.shape
    b = x.reshape(h, w // 4, 4)
    p2, p1, p0 = b[:, :-1, 1], b[:, :-1, 2], b[:, :-1, 3]
    q0, q1, q2 = b[:, 1:, 0], b[:, 1:, 1], b[:, 1:, 2]
    edge = np.repeat(coded[:, :-1] | coded[:, 1:], 4, axis=0)
    on = edge & (np.abs(p0 - q0) < alpha) & (np.abs(p1 - p0) < beta) & (np.abs(q1 - q0) < beta)
    ap = np.abs(p2 - p0) < beta
    aq = np.abs(q2 - q0) < beta
    tc = ap.astype(x.dtype) + aq + tc0
    delta = np.clip(((q0 - p0) * 4 + (p1 - q1) + 4) >> 3, -tc, tc) * on
    avg = (p0 + q0 + 1) >> 1
    dp1 = np.clip((p2 + avg - 2 * p1) >> 1, -tc0, tc0) * (ap & on)
    dq1 = np.clip((q2 + avg - 2 * q1) >> 1, -tc0, tc0) * (aq & on)
    new_p0, new_q0 = np.clip(p0 + delta, 0, 255), np.clip(q0 - delta, 0, 255)
    new_p1, new_q1 = p1 + dp1, q1 + dq1
    b[:, :-1, 3], b[:, 1:, 0], b[:, :-1, 2], b[:, 1:, 1] = new_p0, new_q0, new_p1, new_q1


class VideoCodec:
    """An H.264-like codec for the frames of one cine, as an mp4 export compresses them.

    Keyframes (every ``gop`` frames, from the first) code each 4x4 block's orthonormal DCT with
    uniform dead-zone quantisation (step :func:`h264_qstep`, ``qp`` - 3 as x264 sets keyframes).
    P-frames code the residual against the previous *reconstructed* frame (zero motion): a 16x16
    macroblock is skipped, a copy of the previous reconstruction, when a rate-distortion test at
    the reference encoder's lambda finds its quantised residual not worth its bits, so static or
    slowly changing regions freeze between keyframes; others code the residual with the same 4x4
    quantisation. An in-loop deblocking filter (H.264's alpha/beta/tc0 tables, normal filter)
    smooths 4x4 edges with small steps. No intra prediction, motion search or entropy coding:
    what matters here is what the decoded pictures look like. State runs across calls of
    :meth:`compress`; :meth:`reset` starts a new stream.
    """

    def __init__(self, qp: int, gop: int = 30, *, deblock: bool = True) -> None:
        if not 0 <= qp <= 51:
            raise ValueError(f"VideoCodec: qp must be in [0, 51] (H.264's range); got {qp}")
        if gop < 1:
            raise ValueError(f"VideoCodec: gop (keyframe interval) must be >= 1; got {gop}")
        self.qp, self.gop, self.deblock = int(qp), int(gop), bool(deblock)
        self.reset()

    def reset(self) -> None:
        """Forget the reference: the next frame is a keyframe."""
        self._reference: np.ndarray | None = None
        self.frame_index = 0
        self.frame_type: str | None = None  # "I" or "P": the type of the last frame
        self.skipped: np.ndarray | None = None  # bool (H/16, W/16) for the last frame

    def compress(self, image: np.ndarray) -> np.ndarray:
        """Encode and decode the next [0, 1] grey frame; returns the decoded frame (8-bit levels)."""
        height, width = image.shape
        ph, pw = -height % 16, -width % 16
        x = np.pad(image.astype(np.float32) * np.float32(255.0), ((0, ph), (0, pw)), mode="edge")
        ref = self._reference
        if ref is not None and ref.shape != x.shape:
            raise ValueError(
                f"VideoCodec: frame {self.frame_index} is {height}x{width}, the stream's frames "
                f"are {ref.shape[0]}x{ref.shape[1]} (padded); call reset() for a new stream"
            )
        keyframe = ref is None or self.frame_index % self.gop == 0
        if keyframe:
            qp = max(self.qp - KEYFRAME_QP_OFFSET, 0)
            pred = np.float32(128.0)
            step = h264_qstep(qp)
            coef = _to_blocks(x - pred) @ _DCT4x4.T
            levels = _quantise(coef, step, _INTRA_ROUNDING)
            skipped = np.zeros(coef.shape[:2], dtype=bool)
        else:
            qp = self.qp
            pred = ref
            step = h264_qstep(qp)
            coef = _to_blocks(x - ref) @ _DCT4x4.T
            levels = _quantise(coef, step, _INTER_ROUNDING)
            # Skip when coding the macroblock costs more than it gains: D_skip <= D + lambda * R,
            # the distortions summed in the transform domain (orthonormal, so equal to pixel SSD)
            # and the rate a rough CAVLC count: a header plus bits growing with each level.
            d_skip = np.einsum("ijkl,ijkl->ij", coef, coef)
            err = coef - levels * np.float32(step)
            d_code = np.einsum("ijkl,ijkl->ij", err, err)
            mag = np.abs(levels)
            bits = 6.0 + ((mag > 0) * (4.0 + 2.0 * np.log2(np.maximum(mag, 1.0)))).sum(axis=(2, 3))
            lam = 0.85 * 2.0 ** ((qp - 12) / 3.0)
            skipped = d_skip <= d_code + lam * bits
            levels[skipped] = 0.0
        residual = _from_blocks((levels * np.float32(step)) @ _DCT4x4)
        recon = np.clip(np.rint(pred + residual), 0, 255)
        if self.deblock:
            coded = keyframe | (levels != 0).any(axis=3)  # (H/16, W/16, 16) per 4x4 block
            coded = coded.reshape(*coded.shape[:2], 4, 4).transpose(0, 2, 1, 3)
            coded = coded.reshape(coded.shape[0] * 4, coded.shape[2] * 4)
            bs = 3 if keyframe else 2
            pixels = recon.astype(np.int16)
            _deblock_vertical_edges(pixels, coded, qp, bs)
            across = np.ascontiguousarray(pixels.T)
            _deblock_vertical_edges(across, np.ascontiguousarray(coded.T), qp, bs)
            recon = across.T.astype(np.float32)
        self._reference = np.ascontiguousarray(recon, dtype=np.float32)
        self.frame_type = "I" if keyframe else "P"
        self.skipped = skipped
        self.frame_index += 1
        return self._reference[:height, :width] * np.float32(1.0 / 255.0)


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
