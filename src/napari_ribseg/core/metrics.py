"""Segmentation metrics for rib masks: Dice, IoU, HD95, component counts, and a per-frame evaluation.

Conventions (stated once, used everywhere):

- Masks are 2-D arrays; any non-zero value is foreground.
- ``dice`` and ``iou`` of two empty masks are 1.0: the model correctly found no rib.
- ``hd95`` is the larger of the two *directed* 95th percentiles of surface-to-surface distances:
  the 95th percentile of A's surface distances to B, that of B's to A, and the maximum of the two.
  This is MONAI's ``compute_hausdorff_distance(percentile=95)`` (tests/core/test_metrics.py checks
  it against MONAI); MedPy's ``hd95`` differs: it pools both directions' distances into one list
  and takes a single percentile, which gives a value <= this one. Surface pixels are foreground
  pixels with a 4-connected background neighbour (pixels on the image edge count as surface). Distances are Euclidean, in millimetres when
  ``spacing`` (row, column) is given and in pixels otherwise. Both masks empty gives ``nan`` (no
  surface in either, nothing to measure; MONAI returns nan too), exactly one empty gives ``inf``
  (no surface to measure to). Means over frames skip both: the ``inf`` frames are counted in
  ``hd95_undefined`` (so one missed frame does not turn the mean into ``inf``), the both-empty
  ones in ``hd95_both_empty`` (until 2026-12-05 they scored 0.0 and pulled the mean down: a stack
  of rib-free frames the model rightly left empty made its HD95 look better). Dice and IoU of a
  both-empty frame stay 1.0 and count in their means.
- Components are 8-connected. A predicted component is *spurious* when it shares no pixel with the
  truth mask.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from napari_ribseg.core.atomic import write_text_atomic
from napari_ribseg.core.errors import DatasetError
from napari_ribseg.core.postprocess import label_components

#: Columns of one per-frame row, in CSV order.
FRAME_COLUMNS = (
    "id",
    "dice",
    "iou",
    "hd95",
    "pred_components",
    "true_components",
    "spurious_components",
    "pred_pixels",
    "true_pixels",
)
#: Columns averaged into ``Evaluation.mean`` / ``Evaluation.std``.
SUMMARY_COLUMNS = FRAME_COLUMNS[1:]


def _binary(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name} must be a 2-D mask; got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient 2|A∩B| / (|A|+|B|); 1.0 when both masks are empty."""
    a, b = _binary(a, "a"), _binary(b, "b")
    _same_shape(a, b)
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(a & b)) / total


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union |A∩B| / |A∪B|; 1.0 when both masks are empty."""
    a, b = _binary(a, "a"), _binary(b, "b")
    _same_shape(a, b)
    union = int(np.count_nonzero(a | b))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(a & b)) / union


def _surface(mask: np.ndarray) -> np.ndarray:
    # border_value=0 makes pixels on the image edge part of the surface, as in MedPy.
    return mask & ~ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(2, 1))


def hd95(
    a: np.ndarray, b: np.ndarray, spacing: tuple[float, float] | Sequence[float] | None = None
) -> float:
    """95th-percentile Hausdorff distance: the larger directed 95th percentile (MONAI's convention).

    In millimetres when ``spacing`` = (row, column) pixel size in mm is given, in pixels otherwise.
    Both empty: ``nan`` (undefined: no surface in either); exactly one empty: ``inf``.
    """
    a, b = _binary(a, "a"), _binary(b, "b")
    _same_shape(a, b)
    sampling = _spacing(spacing)
    has_a, has_b = bool(a.any()), bool(b.any())
    if not has_a and not has_b:
        return math.nan
    if has_a != has_b:
        return math.inf
    surf_a, surf_b = _surface(a), _surface(b)
    # Distance of every pixel to the nearest surface pixel of the other mask.
    to_b = ndimage.distance_transform_edt(~surf_b, sampling=sampling)
    to_a = ndimage.distance_transform_edt(~surf_a, sampling=sampling)
    d_ab = to_b[surf_a]
    d_ba = to_a[surf_b]
    return float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)))


def _spacing(spacing: Sequence[float] | None) -> tuple[float, float] | None:
    """``spacing`` as (row, column) positive floats; checked before any mask is looked at (a
    scalar ``0.2`` raised a bare TypeError, and any value passed unchecked while masks were empty)."""
    if spacing is None:
        return None
    try:
        sampling = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        sampling = ()
    if len(sampling) != 2 or not all(math.isfinite(s) and s > 0 for s in sampling):
        raise ValueError(f"spacing must be two positive numbers (row, column) in mm; got {spacing}")
    return sampling  # type: ignore[return-value]


def component_count(mask: np.ndarray) -> int:
    """Number of 8-connected foreground components of a 2-D mask."""
    return label_components(_binary(mask))[1]


def spurious_components(pred: np.ndarray, truth: np.ndarray) -> int:
    """Predicted 8-connected components that share no pixel with the truth mask."""
    pred, truth = _binary(pred, "pred"), _binary(truth, "truth")
    _same_shape(pred, truth)
    labels, count = label_components(pred)
    if count == 0:
        return 0
    hit = np.zeros(count + 1, dtype=bool)
    hit[labels[truth]] = True
    return int(count - np.count_nonzero(hit[1:]))


def _json_number(value: float | int | str | None) -> float | int | str | None:
    """JSON has no inf/nan: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def csv_number(value: object) -> object:
    """A value as every CSV of this package writes it (``ribseg evaluate --csv``, a study's
    ``results.csv``): a float as the shortest text that reads back to the same number, ``nan`` as
    ``nan`` and infinities as ``inf``/``-inf`` (``float()`` and pandas read all three back as
    numbers); ints and text as they are. An empty cell is left for no value at all (a column a
    row does not have), never for a number."""
    if isinstance(value, float | np.floating):
        return repr(float(value))
    return value


def hd95_empty(row: dict) -> str | None:
    """Why a frame's HD95 is not a number: which mask is empty (``"prediction"``: ribs missed,
    ``"truth"``: ribs marked where there are none, ``"both"``); ``None`` when it is measured.

    JSON writes HD95 ``inf`` (one mask empty) and ``nan`` (both) alike as ``null``; this field,
    written beside it, tells them apart.
    """
    if math.isfinite(row["hd95"]):
        return None
    pred, truth = row["pred_pixels"] == 0, row["true_pixels"] == 0
    return "both" if pred and truth else ("prediction" if pred else "truth")


def _json_frame(row: dict) -> dict:
    """One frame's row for JSON: numbers as :func:`_json_number` writes them, and after
    ``hd95`` its ``hd95_empty``."""
    out: dict = {}
    for key, value in row.items():
        out[key] = _json_number(value)
        if key == "hd95":
            out["hd95_empty"] = hd95_empty(row)
    return out


@dataclass
class Evaluation:
    """Per-frame metric rows plus their mean and standard deviation over frames.

    ``rows`` are dicts with :data:`FRAME_COLUMNS`; ``unit`` is ``"mm"`` when a spacing was given
    (HD95 in millimetres) and ``"px"`` otherwise. ``mean``/``std`` hold every column of
    :data:`SUMMARY_COLUMNS`; HD95's are over the frames where it is finite: ``hd95_undefined``
    counts the frames where exactly one of prediction and truth is empty (HD95 ``inf``),
    ``hd95_both_empty`` those where both are (HD95 ``nan``; Dice 1). ``extra`` holds
    caller context (model, threshold, device) that :meth:`to_dict` writes alongside.
    """

    rows: list[dict]
    mean: dict[str, float]
    std: dict[str, float]
    unit: str = "px"
    spacing_mm: tuple[float, float] | None = None
    hd95_undefined: int = 0
    hd95_both_empty: int = 0
    extra: dict = field(default_factory=dict)
    #: The predicted masks scored, when the caller kept them (``evaluate_model`` does).
    masks: list | None = field(default=None, repr=False, compare=False)

    @property
    def n_frames(self) -> int:
        return len(self.rows)

    def to_dict(self) -> dict:
        """A JSON-ready dict (``inf``/``nan`` become ``None``; each frame's ``hd95_empty`` says
        which mask is empty where its ``hd95`` is ``None``: :func:`hd95_empty`)."""
        return {
            "n_frames": self.n_frames,
            "unit": self.unit,
            "spacing_mm": list(self.spacing_mm) if self.spacing_mm else None,
            "hd95_undefined": self.hd95_undefined,
            "hd95_both_empty": self.hd95_both_empty,
            "mean": {k: _json_number(v) for k, v in self.mean.items()},
            "std": {k: _json_number(v) for k, v in self.std.items()},
            **self.extra,
            "frames": [_json_frame(row) for row in self.rows],
        }

    def to_json(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` as JSON, atomically."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        write_text_atomic(path, text + "\n")

    def to_csv(self, path: str | os.PathLike, *, summary: bool = False) -> None:
        """Write one row per frame (numbers as :func:`csv_number` writes them: HD95 ``inf`` and
        ``nan`` as ``inf`` and ``nan``), atomically.

        The file stays tidy (one row = one frame) unless ``summary=True`` appends rows with id
        ``mean`` and ``std``.
        """
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(FRAME_COLUMNS), lineterminator="\n")
        writer.writeheader()
        rows = [*self.rows]
        if summary:
            rows += [{"id": "mean", **self.mean}, {"id": "std", **self.std}]
        writer.writerows({k: csv_number(v) for k, v in row.items()} for row in rows)
        write_text_atomic(path, buffer.getvalue())


def _as_frames(masks: np.ndarray | Sequence[np.ndarray], name: str) -> list[np.ndarray]:
    if isinstance(masks, np.ndarray):
        if masks.ndim == 2:
            return [masks]
        if masks.ndim != 3:
            raise ValueError(f"{name} must be (N, H, W) or a list of 2-D masks; got {masks.shape}")
        return list(masks)
    return [np.asarray(m) for m in masks]


def evaluate_masks(
    preds: np.ndarray | Sequence[np.ndarray],
    truths: np.ndarray | Sequence[np.ndarray],
    spacing: tuple[float, float] | None = None,
    ids: Sequence[str] | None = None,
) -> Evaluation:
    """Compare predicted and true masks frame by frame; frames may differ in size between pairs.

    Raises :class:`DatasetError` naming the frame when a pair differs in shape or the counts differ.
    """
    spacing = _spacing(spacing)
    pred_frames, true_frames = _as_frames(preds, "preds"), _as_frames(truths, "truths")
    if len(pred_frames) != len(true_frames):
        raise DatasetError(
            f"{len(pred_frames)} predicted masks but {len(true_frames)} true masks; expected one each"
        )
    if ids is None:
        ids = [str(i) for i in range(len(pred_frames))]
    elif len(ids) != len(pred_frames):
        raise DatasetError(f"{len(ids)} ids for {len(pred_frames)} frames")
    rows = []
    for frame_id, pred, truth in zip(ids, pred_frames, true_frames, strict=True):
        if pred.shape != truth.shape:
            raise DatasetError(
                f"frame {frame_id}: predicted mask is {pred.shape} but the true mask is "
                f"{truth.shape}; expected the same size"
            )
        pred_b, truth_b = _binary(pred, f"frame {frame_id}"), _binary(truth, f"frame {frame_id}")
        rows.append(
            {
                "id": str(frame_id),
                "dice": dice(pred_b, truth_b),
                "iou": iou(pred_b, truth_b),
                "hd95": hd95(pred_b, truth_b, spacing),
                "pred_components": component_count(pred_b),
                "true_components": component_count(truth_b),
                "spurious_components": spurious_components(pred_b, truth_b),
                "pred_pixels": int(np.count_nonzero(pred_b)),
                "true_pixels": int(np.count_nonzero(truth_b)),
            }
        )
    mean: dict[str, float] = {}
    std: dict[str, float] = {}
    for column in SUMMARY_COLUMNS:
        values = np.array([row[column] for row in rows], dtype=np.float64)
        finite = values[np.isfinite(values)]
        mean[column] = float(finite.mean()) if finite.size else math.nan
        std[column] = float(finite.std()) if finite.size else math.nan
    return Evaluation(
        rows=rows,
        mean=mean,
        std=std,
        unit="mm" if spacing is not None else "px",
        spacing_mm=spacing,
        hd95_undefined=sum(math.isinf(row["hd95"]) for row in rows),
        hd95_both_empty=sum(math.isnan(row["hd95"]) for row in rows),
    )
