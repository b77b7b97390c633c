"""Find the ultrasound image inside an exported frame, crop to it and map masks back.

Real exports carry black margins, text, a depth ruler, focus markers and logos around (and over) a
fan or a rectangle. :func:`detect_imaged_region` finds the imaged region the way ``sonocrop`` and
Kitware's ``itk-pocus`` do, in two steps:

1. Which pixels are image? On a cine, the pixels that change over time (speckle moves, overlays are
   static): the share of frame-to-frame differences above a small tolerance, as sonocrop counts
   changing values per pixel; and the pixels whose time-averaged grey is lifted above the
   margin's black (scanners lift the weakest echo inside the image, so static deep lung and
   frames smoothed by persistence count). Thin static strokes on black (text, ruler, markers) and
   their codec ringing are dropped. On a single frame (or a frozen cine) the lifted pixels alone.
2. What shape is it? The largest connected component, holes filled, convex hull; then, as itk-pocus
   fits the curvilinear sector, the two straight side edges are fitted with lines whose crossing is
   the apex (often above the frame), and the fan is rebuilt from apex, angles, radii and a column
   scale (exports stretched to another aspect ratio); detected pixels it leaves out are kept. A
   region whose sides are parallel is a rectangle (linear probe); one that fits neither stays a hull.

The fitted shape, not the raw pixel mask, is what inference uses: overlays drawn over the fan's edge
or black shadows reaching its border then do not bite holes in it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from dataclasses import replace as replace_fields
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_ribseg.core.errors import RibsegError
from napari_ribseg.core.io.intensity import full_scale, unit_divisor, unit_float

if TYPE_CHECKING:
    from napari_ribseg.core.stack import Stack

#: Kinds of imaged region: a convex/phased ``fan``, a linear ``rect``, a convex ``hull`` that fits
#: neither, or the ``full`` frame (nothing to crop).
REGION_KINDS = ("fan", "rect", "hull", "full")
#: Frames sampled (evenly) from a cine for temporal detection: enough to see every pixel change.
MAX_SAMPLED_FRAMES = 32
#: A pixel is "changing" when at least this share of its frame-to-frame steps exceeds the tolerance.
CHANGING_SHARE = 0.25
#: Grey-level step (of 1.0) that counts as a change; above 8-bit rounding and codec flicker.
CHANGE_TOLERANCE = 2.5 / 255.0
#: Grey level (of 1.0) above the margin's black at which a time-averaged, median-filtered pixel
#: counts as image: scanners lift the weakest echo inside the image (5-30 of 255 measured on
#: simulated and real exports) while margins stay black, so static deep lung and shadows count.
CONTENT_LEVEL = 2.5 / 255.0
#: A pixel that is exactly static over the cine (range within this) and at least OVERLAY_LEVEL
#: bright is an overlay (text, ruler, marker, logo): no echo stays bright and bit-identical.
STATIC_RANGE = 1.5 / 255.0
OVERLAY_LEVEL = 0.25
#: The margin's black is measured on the frame's static border, but no darker-than-image margin is
#: brighter than this: a border above it is image (a frame-filling linear scan), not margin...
MARGIN_BLACK_MAX = 8.0 / 255.0
#: ...unless the border is one flat grey (10th to 90th percentile within this): a dark-grey screen
#: background (12-20 of 255 on some exports) is margin at any level, while an image's border,
#: even time-averaged and median-filtered, keeps its speckle's spread.
MARGIN_FLAT_SPREAD = 1.0 / 255.0
#: The fitted fan (or rectangle) replaces the hull when their IoU is at least this.
FIT_IOU = 0.9
#: Column widths (in rows) tried for a fan: exports resized to another aspect ratio stretch it.
COL_SCALES = tuple(round(0.6 + 0.05 * i, 2) for i in range(23))
#: The column scale is searched on the component subsampled to at most this many pixels a side.
FIT_GRID = 192


class RegionError(RibsegError):
    """An imaged region could not be found or does not fit the frames it is applied to."""


@dataclass
class ImagedRegion:
    """Where the ultrasound image is inside frames of ``shape`` (height, width).

    ``mask`` is boolean (H, W); ``bbox`` is ``(top, left, bottom, right)`` with bottom/right exclusive.
    Fans also carry ``apex`` (row, col; may lie above the frame), ``angles_deg`` (left, right edge,
    measured from straight down, left negative) and ``radii`` (inner, outer) in pixels. ``source``
    says how it was found: ``variance``, ``intensity``, ``user`` or ``full``.
    """

    mask: np.ndarray
    bbox: tuple[int, int, int, int]
    kind: str = "hull"
    source: str = "intensity"
    apex: tuple[float, float] | None = None
    angles_deg: tuple[float, float] | None = None
    radii: tuple[float, float] | None = None
    extra: dict = field(default_factory=dict)

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def full(cls, shape: tuple[int, int]) -> ImagedRegion:
        """The whole frame: nothing is cropped or masked."""
        h, w = int(shape[0]), int(shape[1])
        return cls(np.ones((h, w), bool), (0, 0, h, w), kind="full", source="full")

    @classmethod
    def from_mask(
        cls, mask: np.ndarray, *, kind: str = "hull", source: str = "user"
    ) -> ImagedRegion:
        """A region from a boolean mask; raises :class:`RegionError` when it is empty."""
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 2:
            raise RegionError(f"a region mask must be 2-D (height, width); got shape {mask.shape}")
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if rows.size == 0:
            raise RegionError(
                f"the imaged region of a {mask.shape[0]}x{mask.shape[1]} frame is empty; "
                "expected at least one pixel inside it"
            )
        bbox = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
        return cls(mask, bbox, kind=kind, source=source)

    @classmethod
    def from_outline(cls, mask: np.ndarray) -> ImagedRegion:
        """The region a user's outline covers (source ``user``); an empty outline is no region.

        A user who deletes every shape of the outline removed the region: the model runs on whole
        frames (kind ``full``), not inside a region detected again behind their back.
        """
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim == 2 and not mask.any():
            return cls(np.ones(mask.shape, bool), (0, 0, *mask.shape), kind="full", source="user")
        return cls.from_mask(mask, kind="hull", source="user")

    @classmethod
    def from_polygon(
        cls, polygon: np.ndarray, shape: tuple[int, int], *, source: str = "user"
    ) -> ImagedRegion:
        """A region from a polygon of (row, col) vertices (a napari Shapes polygon) in a frame."""
        return cls.from_mask(polygon_to_mask(polygon, shape), kind="hull", source=source)

    # -- geometry ------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.mask.shape[0]), int(self.mask.shape[1]))

    @property
    def crop_shape(self) -> tuple[int, int]:
        top, left, bottom, right = self.bbox
        return (bottom - top, right - left)

    @property
    def area_fraction(self) -> float:
        """Share of the frame inside the region."""
        return float(self.mask.mean())

    @property
    def depth_px(self) -> float:
        """Imaging depth in pixels: the fan's radial extent, else the region's centre column.

        A scanner's depth runs from the probe face straight down the middle of the image. For a
        hull (a fan the user redrew, so without fitted radii) the middle column spans inner to
        outer arc; its bounding box would add the sag of the inner arc (~5% on a 70 degree fan).
        """
        if self.radii is not None:
            return float(self.radii[1] - self.radii[0])
        top, left, bottom, right = self.bbox
        rows = np.flatnonzero(self.mask[top:bottom, (left + right - 1) // 2])
        return float(rows[-1] - rows[0] + 1) if rows.size else float(bottom - top)

    def polygon(self, tolerance_px: float = 1.0) -> np.ndarray:
        """Outline of the region as (K, 2) float (row, col) vertices, for a napari Shapes layer."""
        import cv2

        contours, _ = cv2.findContours(
            self.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        contour = max(contours, key=cv2.contourArea)
        approx = cv2.approxPolyDP(contour, tolerance_px, True)[:, 0, :]
        return approx[:, ::-1].astype(np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (for ``ribseg info --json`` and metadata)."""
        return {
            "kind": self.kind,
            "source": self.source,
            "bbox": list(self.bbox),
            "area_fraction": round(self.area_fraction, 4),
            "apex": [round(v, 2) for v in self.apex] if self.apex else None,
            "angles_deg": [round(v, 2) for v in self.angles_deg] if self.angles_deg else None,
            "radii": [round(v, 2) for v in self.radii] if self.radii else None,
            # A fan fitted on a frame stretched to another aspect ratio: column width in rows.
            "col_scale": round(float(self.extra["col_scale"]), 4)
            if "col_scale" in self.extra
            else None,
        }

    def describe(self) -> str:
        """One line for people: kind, box and fan parameters."""
        top, left, bottom, right = self.bbox
        text = (
            f"{self.kind} ({self.source}), rows {top}-{bottom}, cols {left}-{right}, "
            f"{100 * self.area_fraction:.1f}% of the frame"
        )
        if self.apex and self.angles_deg and self.radii:
            text += (
                f"; apex ({self.apex[0]:.1f}, {self.apex[1]:.1f}), "
                f"angles {self.angles_deg[0]:.1f}..{self.angles_deg[1]:.1f} deg, "
                f"radii {self.radii[0]:.1f}..{self.radii[1]:.1f} px"
            )
            if abs(self.extra.get("col_scale", 1.0) - 1.0) > 0.01:
                text += f", columns stretched x{1 / self.extra['col_scale']:.2f}"
        return text

    # -- crop and map back ---------------------------------------------------------------------
    def _check(self, array: np.ndarray, what: str) -> None:
        if tuple(array.shape[-2:]) != self.shape:
            raise RegionError(
                f"{what} of shape {array.shape} do not match the imaged region's frame size "
                f"{self.shape[0]}x{self.shape[1]}; detect the region on these frames"
            )

    def crop(self, frames: np.ndarray) -> np.ndarray:
        """The region's bounding box of frames (..., H, W): a view, pixels outside are kept."""
        frames = np.asarray(frames) if not isinstance(frames, np.ndarray) else frames
        self._check(frames, "frames")
        top, left, bottom, right = self.bbox
        return frames[..., top:bottom, left:right]

    def uncrop(self, cropped: np.ndarray, fill: float = 0) -> np.ndarray:
        """Paste crops (..., h, w) back into full frames; outside the region is ``fill``."""
        cropped = np.asarray(cropped)
        if tuple(cropped.shape[-2:]) != self.crop_shape:
            raise RegionError(
                f"crops of shape {cropped.shape} do not match the region's box "
                f"{self.crop_shape[0]}x{self.crop_shape[1]}"
            )
        out = np.full((*cropped.shape[:-2], *self.shape), fill, dtype=cropped.dtype)
        top, left, bottom, right = self.bbox
        out[..., top:bottom, left:right] = cropped
        out[..., ~self.mask] = fill
        return out

    def apply(self, masks: np.ndarray, fill: float = 0) -> np.ndarray:
        """Full-size arrays (..., H, W) with everything outside the region set to ``fill``."""
        self._check(masks, "masks")
        out = np.array(masks, copy=True)
        out[..., ~self.mask] = fill
        return out


# --------------------------------------------------------------------------- polygons


def polygon_to_mask(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) mask of a (K, 2) (row, col) polygon; vertices may lie outside the frame."""
    import cv2

    poly = np.asarray(polygon, dtype=np.float64)
    if poly.ndim != 2 or poly.shape[1] < 2 or poly.shape[0] < 3:
        raise RegionError(
            f"a region polygon needs >= 3 (row, col) vertices; got shape {poly.shape}"
        )
    poly = poly[:, -2:]  # napari may add leading (frame) coordinates
    out = np.zeros((int(shape[0]), int(shape[1])), np.uint8)
    # Sub-pixel vertices (shift=4: 1/16 px) so a redrawn outline lands where it was drawn.
    pts = np.round(poly[:, ::-1] * 16).astype(np.int32)
    cv2.fillPoly(out, [pts], 1, lineType=cv2.LINE_8, shift=4)
    return out.astype(bool)


# --------------------------------------------------------------------------- detection


def _sample(frames: np.ndarray, divisor: float | None = None) -> np.ndarray:
    """Up to MAX_SAMPLED_FRAMES evenly spaced frames as float32 in [0, 1]: integers divided as the
    readers divide the whole stack (``divisor``, else ``core.io.intensity.unit_divisor(frames)``:
    raw 12-bit frames by 4095, not 65535, or the fan reads near black and is not found); other
    integers (int16, int32) min-max scaled over the whole stack, as the readers scale them."""
    n = frames.shape[0]
    picks = slice(None) if n <= MAX_SAMPLED_FRAMES else np.linspace(0, n - 1, MAX_SAMPLED_FRAMES)
    if not isinstance(picks, slice):
        picks = picks.round().astype(int)
    sample = np.asarray(frames[picks])
    if sample.dtype.kind != "f" and divisor is None:
        if full_scale(sample.dtype) is None:
            # Signed or 32-bit integers: the readers' whole-stack min-max rule (no divisor). Asked
            # by dtype, not by catching unit_divisor's ValueError, which hid any other ValueError
            # raised while finding the divisor and min-max scaled the frames instead.
            whole = frames if isinstance(frames, np.ndarray) else sample
            lo, hi = float(np.min(whole)), float(np.max(whole))
            out = sample.astype(np.float32) - np.float32(lo)
            return out / np.float32(hi - lo) if hi > lo else np.zeros_like(out)
        divisor = unit_divisor(frames)
    return unit_float(sample, divisor)


def _odd(value: float) -> int:
    k = max(3, int(round(value)))
    return k if k % 2 else k + 1


def changing_pixels(frames: np.ndarray) -> np.ndarray:
    """Pixels that change over a cine (sonocrop's idea): share of steps above the tolerance."""
    sample = _sample(frames)
    if sample.shape[0] < 2:
        return np.zeros(sample.shape[1:], bool)
    steps = np.abs(np.diff(sample, axis=0)) > CHANGE_TOLERANCE
    return steps.mean(axis=0) >= CHANGING_SHARE


def _level(frame: np.ndarray) -> np.ndarray:
    """A frame (or a cine's mean) median-filtered as 8-bit: speckle holes fill, strokes vanish."""
    import cv2

    img = np.clip(np.asarray(frame, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.medianBlur(img, _odd(min(img.shape) / 100)).astype(np.float32) / 255.0


def _margin_black(level: np.ndarray, static: np.ndarray | None = None) -> float:
    """The margin's grey: median of the frame's (static) 2-pixel border.

    At most :data:`MARGIN_BLACK_MAX`, unless the border is flat (:data:`MARGIN_FLAT_SPREAD`): a
    uniform grey screen background is the margin's black whatever its level.
    """
    ring = np.zeros(level.shape, bool)
    ring[:2], ring[-2:], ring[:, :2], ring[:, -2:] = True, True, True, True
    if static is not None and (ring & static).any():
        ring &= static
    low, black, high = (float(v) for v in np.percentile(level[ring], (10, 50, 90)))
    # The screen background lies above the probe face: a flat grey counts as margin only when
    # the top edge is mostly static too. A linear scan filling the frame moves there, while its
    # static deep lung, averaged over the cine, can be as flat as a background (31 of 255 in a
    # simulated cine). Levels are multiples of 1/255 (8-bit median), hence the rounding margin.
    top_static = static is None or np.count_nonzero(static[:2]) >= static[:2].size // 2
    if top_static and high - low <= MARGIN_FLAT_SPREAD + 1e-6:
        return black
    return min(black, MARGIN_BLACK_MAX)


def content_pixels(frame: np.ndarray, static: np.ndarray | None = None) -> np.ndarray:
    """Pixels of one frame (or a cine's mean) lifted above the margin's black, median-filtered.

    ``static`` (optional, bool (H, W)) marks pixels that do not change over the cine: the margin's
    black is measured on the static part of the frame's border.
    """
    level = _level(frame)
    return level > _margin_black(level, static) + CONTENT_LEVEL


def _blocks(mask: np.ndarray, size: int = 8) -> np.ndarray:
    """Pixels of the aligned ``size`` x ``size`` blocks (a codec's) that hold any ``mask`` pixel."""
    h, w = mask.shape
    ph, pw = -h % size, -w % size
    padded = np.pad(mask, ((0, ph), (0, pw)))
    hit = padded.reshape((h + ph) // size, size, (w + pw) // size, size).any(axis=(1, 3))
    return np.repeat(np.repeat(hit, size, axis=0), size, axis=1)[:h, :w]


def overlay_pixels(
    frames: np.ndarray, mean: np.ndarray | None = None, black: float | None = None
) -> np.ndarray:
    """Static overlays drawn on black (margin text, ruler, marker) and their codec ringing.

    An overlay pixel is bit-identical in every frame, bright, and has the margin's black within
    a few pixels (strokes on a black background). A frozen bright echo (an H.264 block skipped
    until the next keyframe) is static and bright too, but sits among image greys, above black:
    it is not taken. The codec's ringing is dim and static within the overlay's 8x8 blocks and
    goes with it. A frozen cine (nothing moves) has no overlays to tell apart: none.
    """
    import cv2

    sample = _sample(frames)
    still = (sample.max(axis=0) - sample.min(axis=0)) <= STATIC_RANGE
    if sample.shape[0] < 2 or still.all():
        return np.zeros(sample.shape[1:], bool)
    mean = sample.mean(axis=0) if mean is None else mean
    if black is None:
        black = _margin_black(_level(mean), still)
    bright = still & (mean >= OVERLAY_LEVEL)
    if not bright.any():
        return bright
    # Overlay strokes are drawn ~min(H, W) / 300 px wide (as scanners scale their fonts): thin
    # enough for an opening twice as wide to remove them, with black beside them. A frozen
    # band of bright echo is wider, and its thin bright specks have image greys around them.
    stroke = max(1, round(min(mean.shape) / 300))
    window = np.ones((4 * stroke + 1, 4 * stroke + 1), np.uint8)
    thick = cv2.morphologyEx(bright.astype(np.uint8), cv2.MORPH_OPEN, window).astype(bool)
    darkest = cv2.erode(mean.astype(np.float32), window)
    overlay = bright & ~thick & (darkest <= black + CONTENT_LEVEL)
    ringing = still & (mean < OVERLAY_LEVEL) & _blocks(overlay)
    return overlay | ringing


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """Close holes, open away thin strokes, keep the largest connected component."""
    import cv2

    h, w = mask.shape
    m = mask.astype(np.uint8)
    close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (_odd(min(h, w) / 40),) * 2)
    closed = cv2.morphologyEx(m, cv2.MORPH_CLOSE, close)
    # Text strokes, ruler ticks and marker lines are a few pixels wide: an opening a little wider
    # removes them (or cuts them off the image).
    opening = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (max(5, _odd(min(h, w) / 30)),) * 2)
    m = cv2.morphologyEx(closed, cv2.MORPH_OPEN, opening)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return np.zeros_like(mask, bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    # The opening also shaved the image's own edges and a phased fan's narrow tip, where ribs
    # can lie: give back the pixels it took within its reach of the kept component.
    kept = (labels == largest).astype(np.uint8)
    return (cv2.dilate(kept, opening) & closed).astype(bool)


def _hull(mask: np.ndarray) -> np.ndarray:
    import cv2

    m = mask.astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.convexHull(np.concatenate(contours))
    out = np.zeros_like(m)
    cv2.fillPoly(out, [hull], 1)
    return out.astype(bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def _sector(
    rows: np.ndarray,
    cols: np.ndarray,
    apex: tuple[float, float],
    angles_deg: tuple[float, float],
    radii: tuple[float, float],
    col_scale: float = 1.0,
) -> np.ndarray:
    """Which of the (broadcast) pixel coordinates lie inside the sector (see :func:`fan_mask`)."""
    dr, dc = rows - apex[0], (cols - apex[1]) * col_scale
    dist = np.hypot(dr, dc)
    theta = np.degrees(np.arctan2(dc, dr))
    return (
        (dist >= radii[0])
        & (dist <= radii[1])
        & (theta >= angles_deg[0])
        & (theta <= angles_deg[1])
        & (dr > 0)
    )


def fan_mask(
    shape: tuple[int, int],
    apex: tuple[float, float],
    angles_deg: tuple[float, float],
    radii: tuple[float, float],
    *,
    col_scale: float = 1.0,
) -> np.ndarray:
    """Boolean (H, W) mask of a sector: apex (row, col), angles from straight down, radii in px.

    ``col_scale`` is the width of a column in rows (a frame stretched to another aspect ratio):
    angles and radii are then measured with columns scaled by it, and the arcs are ellipses.
    """
    rows = np.arange(shape[0], dtype=np.float32)[:, None]
    cols = np.arange(shape[1], dtype=np.float32)[None, :]
    return _sector(rows, cols, apex, angles_deg, radii, col_scale)


def _edge_line(rows: np.ndarray, cols: np.ndarray) -> tuple[float, float] | None:
    """Least-squares line col = a * row + b through edge points, trimmed of its worst 20%."""
    if rows.size < 8:
        return None
    a, b = np.polyfit(rows, cols, 1)
    resid = np.abs(cols - (a * rows + b))
    keep = resid <= np.quantile(resid, 0.8)
    if keep.sum() >= 4:
        a, b = np.polyfit(rows[keep], cols[keep], 1)
    return float(a), float(b)


def _robust_box(component: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box of the rows/columns at least half as full as the fullest (drops attachments)."""
    rows, cols = component.sum(axis=1), component.sum(axis=0)
    r = np.flatnonzero(rows >= 0.5 * rows.max())
    c = np.flatnonzero(cols >= 0.5 * cols.max())
    return int(r[0]), int(c[0]), int(r[-1]) + 1, int(c[-1]) + 1


def _sector_radii(
    rr: np.ndarray, cc: np.ndarray, apex: tuple[float, float], slopes: tuple[float, float], k: float
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Angles and (inner, outer) radii of the sector through pixels (rr, cc), columns scaled by k."""
    angles = (math.degrees(math.atan(k * slopes[0])), math.degrees(math.atan(k * slopes[1])))
    dr, dc = rr - apex[0], (cc - apex[1]) * k
    dist = np.hypot(dr, dc)
    theta = np.degrees(np.arctan2(dc, dr))
    # Radii per angle bin, each the median over the bins of their nearest and deepest pixels: an
    # overlay stuck to an arc in a few bins, or a slightly misplaced apex, does not stretch the
    # whole fan (the detected pixels outside the sector are kept by the caller).
    bins = np.clip(((theta - angles[0]) / (angles[1] - angles[0]) * 24).astype(int), 0, 23)
    outer = np.full(24, -np.inf)
    inner = np.full(24, np.inf)
    np.maximum.at(outer, bins, dist)
    np.minimum.at(inner, bins, dist)
    seen = np.isfinite(outer)
    return angles, (float(np.median(inner[seen])), float(np.median(outer[seen])))


def _fit_fan(component: np.ndarray) -> tuple[tuple, tuple, tuple, float] | None:
    """Apex, angles, radii and column scale of a sector fitted to a component, or ``None``.

    The side edges give the apex (lines stay lines on a stretched frame); the column scale (see
    :func:`fan_mask`) is the one, of :data:`COL_SCALES`, whose sector overlaps the component best.
    """
    h, w = component.shape
    rows = np.flatnonzero(component.any(axis=1))
    if rows.size < 16:
        return None
    sub = component[rows]
    lefts = np.argmax(sub, axis=1).astype(np.float64)
    rights = (w - 1 - np.argmax(sub[:, ::-1], axis=1)).astype(np.float64)
    # The straight side edges run from the top of the fan down to its widest row; below that the
    # outline follows the bottom arc. Rows where the frame's side cuts the fan are not edges.
    span = max(1, int(0.05 * rows.size))
    sel_l = np.arange(span, max(span + 1, int(np.argmin(lefts)) - span))
    sel_r = np.arange(span, max(span + 1, int(np.argmax(rights)) - span))
    sel_l = sel_l[sel_l < rows.size]
    sel_r = sel_r[sel_r < rows.size]
    sel_l = sel_l[lefts[sel_l] > 0]
    sel_r = sel_r[rights[sel_r] < w - 1]
    line_l = _edge_line(rows[sel_l].astype(np.float64), lefts[sel_l])
    line_r = _edge_line(rows[sel_r].astype(np.float64), rights[sel_r])
    if line_l is None or line_r is None or line_r[0] - line_l[0] < 0.05:
        return None
    (a1, b1), (a2, b2) = line_l, line_r
    apex_row = (b1 - b2) / (a2 - a1)
    apex = (apex_row, a1 * apex_row + b1)
    # Search the column scale on a subsampled grid (<= FIT_GRID px a side): the same answer, fast.
    step = max(1, math.ceil(max(h, w) / FIT_GRID))
    small = component[::step, ::step]
    grid_r = np.arange(0, h, step, dtype=np.float32)[:, None]
    grid_c = np.arange(0, w, step, dtype=np.float32)[None, :]
    rr, cc = np.nonzero(small)
    rr, cc = rr.astype(np.float64) * step, cc.astype(np.float64) * step
    best, best_iou = 1.0, -1.0
    for k in COL_SCALES:
        angles, radii = _sector_radii(rr, cc, apex, (a1, a2), float(k))
        iou = _iou(_sector(grid_r, grid_c, apex, angles, radii, float(k)), small)
        # A stretched fan must beat the square-pixel one clearly: noise does not stretch it.
        if iou > best_iou + (0.005 if k != 1.0 else 0.0) or (k == 1.0 and iou >= best_iou - 0.005):
            best, best_iou = float(k), iou
    rr, cc = np.nonzero(component)
    angles, radii = _sector_radii(
        rr.astype(np.float64), cc.astype(np.float64), apex, (a1, a2), best
    )
    return apex, angles, radii, best


def _fit_shape(component: np.ndarray, source: str) -> ImagedRegion:
    """Fit a rectangle or a fan to the image's component; fall back to its convex hull."""
    top, left, bottom, right = _robust_box(component)
    box = np.zeros_like(component)
    box[top:bottom, left:right] = True
    if _iou(box, component) >= FIT_IOU:
        # As for a fan: the box straightens the outline, the pixels it leaves out stay in (a wide
        # fan touching both sides fits a box but its near field, where ribs lie, rises above it).
        return ImagedRegion.from_mask(box | component, kind="rect", source=source)
    fit = _fit_fan(component)
    if fit is not None:
        apex, angles, radii, col_scale = fit
        fan = fan_mask(component.shape, apex, angles, radii, col_scale=col_scale)
        if fan.any() and _iou(fan, component) >= FIT_IOU:
            # The fitted sector smooths the outline; image pixels it leaves out (a rib at the
            # fan's top corner, an arc that is not quite circular) stay in: never cut the image.
            fitted = ImagedRegion.from_mask(fan | component, kind="fan", source=source)
            fitted.apex, fitted.angles_deg, fitted.radii = apex, angles, radii
            fitted.extra["col_scale"] = col_scale
            return fitted
    return ImagedRegion.from_mask(_hull(component), kind="hull", source=source)


def detect_imaged_region(
    frames: Any, *, min_fraction: float = 0.05, divisor: float | None = None
) -> ImagedRegion:
    """The imaged region (fan, rectangle or hull) of a cine (N, H, W) or one frame (H, W).

    Uses temporal change when the cine moves and intensity structure otherwise (see the module
    docstring). Returns the full frame (kind ``full``) when nothing covering at least
    ``min_fraction`` of the frame is found, so callers never lose the image to a failed detection.
    Integer frames are scaled as the readers scale them (``divisor``: the caller's, when it has
    found the stack's already; else :func:`~napari_ribseg.core.io.intensity.unit_divisor`).
    """
    frames = getattr(frames, "frames", frames)
    if not hasattr(frames, "shape"):
        frames = np.asarray(frames)
    if len(frames.shape) == 2:
        frames = np.asarray(frames)[None]
    if len(frames.shape) != 3:
        raise RegionError(f"expected frames (N, H, W) or one frame (H, W); got {frames.shape}")
    shape = (int(frames.shape[1]), int(frames.shape[2]))
    if min(shape) < 16:  # too small to hold margins worth cropping
        return ImagedRegion.full(shape)
    sample = _sample(frames, divisor)
    moving = changing_pixels(sample)
    # Image = what moves, or what is lifted above the margin's black over the cine: the deep
    # lung of a dark scan, a shadow or a frame under strong persistence is image that barely
    # changes, yet the scanner shows it a few grey levels above the black margin.
    mean = sample.mean(axis=0)
    content = content_pixels(mean, ~moving)
    source = "variance" if moving.mean() >= min_fraction else "intensity"
    mask = content | moving if source == "variance" else content
    if sample.shape[0] > 1:
        mask &= ~overlay_pixels(sample, mean)
    component = _largest_component(mask)
    if component.mean() < min_fraction:
        return ImagedRegion.full(shape)
    return _fit_shape(component, source)


# --------------------------------------------------------------------------- physical size

#: Imaging depths of lung scans in mm, 2 cm (linear probe) to 40 cm. Outside them the number is
#: almost surely in another unit (16 for 16 cm), which would silently scale every mm by 10.
DEPTH_RANGE_MM = (20.0, 400.0)
#: Clips of one data set whose depth-derived spacings differ by more than this share were not
#: taken at one depth setting (or the region was missed in one), so one depth cannot serve them.
DEPTH_AGREEMENT = 0.05


@dataclass(frozen=True)
class DepthSpacing:
    """A pixel spacing derived from the scanner's imaging depth and the imaged region's height.

    ``spacing_mm`` is square: the depth fixes the row spacing, and exported frames have square
    pixels. ``depth_px`` is how many pixels the depth spans; ``region`` the region's kind.
    """

    spacing_mm: tuple[float, float]
    depth_mm: float
    depth_px: float
    region: str

    def describe(self) -> str:
        """One line for people: the spacing and where it came from."""
        return (
            f"{self.spacing_mm[0]:.4g} x {self.spacing_mm[1]:.4g} mm/pixel from "
            f"{self.depth_mm:g} mm imaging depth over {self.depth_px:.1f} px ({self.region})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "spacing_mm": [round(v, 6) for v in self.spacing_mm],
            "depth_mm": float(self.depth_mm),
            "depth_px": round(self.depth_px, 2),
            "region": self.region,
        }


def check_depth(depth_mm: float) -> float:
    """``depth_mm`` as a float; :class:`RegionError` naming the problem when no scanner shows it."""
    depth = float(depth_mm)
    low, high = DEPTH_RANGE_MM
    if not math.isfinite(depth) or depth <= 0:
        raise RegionError(
            f"imaging depth must be a positive number of millimetres (the depth the scanner "
            f"shows, e.g. 160 for 16 cm); got {depth_mm}"
        )
    if not low <= depth <= high:
        hint = f" (in cm? {depth:g} cm is {10 * depth:g} mm)" if depth < low else ""
        raise RegionError(
            f"imaging depth {depth:g} mm is outside the {low:g}-{high:g} mm scanners use{hint}"
        )
    return depth


def _keep_recorded(existing: tuple[float, float] | None, replace: bool, what: str) -> None:
    """Refuse to replace a spacing the file records unless the user asked for it."""
    if existing and not replace:
        raise RegionError(
            f"{what} already records a pixel spacing of {float(existing[0]):.4g} x "
            f"{float(existing[1]):.4g} mm; the imaging depth would replace it, so ask for that "
            "explicitly (replace=True, --replace-spacing, or the widget's 'Replace the file's "
            "spacing' box)"
        )


def depth_spacing(
    region: ImagedRegion | None,
    depth_mm: float,
    *,
    existing: tuple[float, float] | None = None,
    replace: bool = False,
    what: str = "the stack",
) -> DepthSpacing:
    """The pixel spacing that makes ``region``'s depth in pixels span ``depth_mm`` of tissue.

    ``existing`` is the spacing the file already records: it wins unless ``replace`` is given,
    and asking for a depth-derived one without ``replace`` raises :class:`RegionError` saying so.
    """
    depth = check_depth(depth_mm)
    _keep_recorded(existing, replace, what)
    if region is None:
        raise RegionError(
            f"no imaged region in {what}: the depth needs the image's height in pixels; detect "
            "the region (detect_imaged_region) or draw it (the widget's 'imaged region' layer)"
        )
    if region.kind == "full":
        why = (
            "its imaged-region outline is empty (Segment then runs on whole frames)"
            if region.source == "user"
            else "its imaged region is the whole frame (none was found)"
        )
        raise RegionError(
            f"{what}: {why}; the imaging depth needs the image's height in pixels: draw the "
            "outline around the ultrasound image"
        )
    pixels = region.depth_px
    if not pixels > 0:
        raise RegionError(
            f"the imaged region of {what} ({region.describe()}) has no depth in pixels"
        )
    mm = depth / pixels
    return DepthSpacing((mm, mm), depth, pixels, region.kind)


def spacing_from_depth(region: ImagedRegion, depth_mm: float) -> tuple[float, float]:
    """Square pixel spacing (mm) when the region's depth in pixels spans ``depth_mm`` of tissue."""
    return depth_spacing(region, depth_mm).spacing_mm


def _found_region(frames: Any, what: str) -> ImagedRegion:
    region = detect_imaged_region(frames)
    if region.kind == "full":
        raise RegionError(
            f"no imaged region was found in {what} (blank frames, or under 16 pixels); the "
            "imaging depth needs the image's height in pixels: draw the region in the widget"
        )
    return region


def stack_with_depth(
    stack: Stack,
    depth_mm: float,
    region: ImagedRegion | None = None,
    *,
    replace: bool = False,
) -> tuple[Stack, DepthSpacing]:
    """``stack`` with the spacing its imaging depth gives over ``region`` (detected when ``None``).

    The stack's own spacing (from the file) is kept and :class:`RegionError` raised unless
    ``replace``; the new stack's metadata records ``spacing_source`` and ``imaging_depth_mm``.
    """
    what = f"'{stack.source}'" if stack.source is not None else f"stack '{stack.name}'"
    check_depth(depth_mm)
    _keep_recorded(stack.spacing_mm, replace, what)  # before the detection, which takes a while
    if region is None:
        region = _found_region(stack.frames, f"the frames of {what}")
    elif region.shape != stack.frame_shape:
        raise RegionError(
            f"the imaged region is for {region.shape[0]}x{region.shape[1]} frames but {what} has "
            f"{stack.frame_shape[0]}x{stack.frame_shape[1]} frames"
        )
    derived = depth_spacing(region, depth_mm, what=what)
    metadata = {
        **stack.metadata,
        "spacing_source": f"imaging depth: {derived.describe()}",
        "imaging_depth_mm": derived.depth_mm,
    }
    return replace_fields(stack, spacing_mm=derived.spacing_mm, metadata=metadata), derived


def frames_spacing_from_depth(
    images: Sequence[np.ndarray],
    groups: Sequence[str],
    depth_mm: float,
    *,
    what: str = "the data set",
) -> DepthSpacing:
    """One spacing for 2-D ``images`` of clips (``groups``: each image's clip) at one depth setting.

    Each clip's region is detected on (up to :data:`MAX_SAMPLED_FRAMES` of) its own frames; clips
    whose spacings differ by more than :data:`DEPTH_AGREEMENT` raise :class:`RegionError` naming
    them, since one depth cannot serve both.
    """
    check_depth(depth_mm)
    if len(images) != len(groups):
        raise RegionError(f"{len(images)} images but {len(groups)} clip ids in {what}")
    if not len(images):
        raise RegionError(f"{what} has no frames to find the imaged region in")
    members: dict[str, list[int]] = {}
    for index, clip in enumerate(groups):
        members.setdefault(str(clip), []).append(index)
    derived = {}
    for clip, indices in members.items():
        picks = np.unique(np.linspace(0, len(indices) - 1, MAX_SAMPLED_FRAMES).round().astype(int))
        frames = [np.asarray(images[indices[i]]) for i in picks]
        if len({f.shape for f in frames}) > 1:
            raise RegionError(
                f"clip {clip} of {what} mixes frame sizes {sorted({f.shape for f in frames})}; "
                "expected one size per clip"
            )
        region = _found_region(np.stack(frames), f"clip {clip} of {what}")
        derived[clip] = depth_spacing(region, depth_mm, what=f"clip {clip} of {what}")
    ordered = sorted(derived.items(), key=lambda item: item[1].spacing_mm[0])
    (low_clip, low), (high_clip, high) = ordered[0], ordered[-1]
    if high.spacing_mm[0] > (1.0 + DEPTH_AGREEMENT) * low.spacing_mm[0]:
        raise RegionError(
            f"one imaging depth gives different spacings in {what}: clip {low_clip} "
            f"{low.spacing_mm[0]:.4g} mm/pixel ({low.depth_px:.0f} px deep), clip {high_clip} "
            f"{high.spacing_mm[0]:.4g} mm/pixel ({high.depth_px:.0f} px deep); expected clips "
            "of one depth setting: score them separately, or give the spacing itself"
        )
    return ordered[len(ordered) // 2][1]


__all__ = [
    "DEPTH_AGREEMENT",
    "DEPTH_RANGE_MM",
    "REGION_KINDS",
    "DepthSpacing",
    "ImagedRegion",
    "RegionError",
    "changing_pixels",
    "check_depth",
    "content_pixels",
    "overlay_pixels",
    "depth_spacing",
    "detect_imaged_region",
    "fan_mask",
    "frames_spacing_from_depth",
    "polygon_to_mask",
    "spacing_from_depth",
    "stack_with_depth",
]
