"""From stored rib probabilities to a binary rib mask: threshold and connected-component clean-up.

Everything here works on the stored probabilities alone (uint8 ``p*255`` or float in [0, 1]), so the
threshold and clean-up options can change after inference without running the model again. The
threshold is one vectorised comparison over the whole stack (uint8 compared as integers, no float
copy); component clean-up runs frame by frame with 2-D connectivity only, so components never join
across frames, each frame vectorised with ``scipy.ndimage.label`` and ``numpy.bincount``: a few ms
per 512x512 frame, so the visible frame can follow a slider live and a whole stack follows.

Connectivity: the foreground (rib) is 8-connected, the background 4-connected (its dual), so a ring
closed only through a diagonal still counts as enclosing its hole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: 8-connectivity in the image plane.
_PLANE_8 = np.ones((3, 3), dtype=bool)
#: 4-connectivity in the image plane (background connectivity for hole filling); the cross that
#: ``scipy.ndimage.generate_binary_structure(2, 1)`` gives, written out so that importing this
#: module (the CLI parser does, for ``MaskOptions``) does not import scipy.
_PLANE_4 = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)


@dataclass
class MaskOptions:
    """How probabilities become a rib mask (see :func:`probability_to_mask`)."""

    threshold: float = field(
        default=0.5,
        metadata={"range": (0.01, 0.99), "help": "probability at or above which a pixel is rib"},
    )
    min_size: int = field(
        default=0,
        metadata={"range": (0, 100_000), "help": "drop rib pieces smaller than this (px)"},
    )
    fill_holes: bool = field(default=False, metadata={"help": "fill holes inside rib pieces"})
    keep_largest: int = field(
        default=0, metadata={"range": (0, 50), "help": "keep only the K largest pieces (0: all)"}
    )

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``probability_to_mask`` besides the threshold."""
        return {
            "min_size": self.min_size,
            "fill_holes": self.fill_holes,
            "keep_largest": self.keep_largest,
        }

    def check(self) -> MaskOptions:
        """Raise the ``ValueError`` :func:`probability_to_mask` would raise for these options
        (a threshold outside [0, 1], e.g. 50 for 0.5; a negative size); return ``self``."""
        probability_to_mask(np.zeros((1, 1), np.uint8), self.threshold, **self.kwargs())
        return self

    def masks(self, prob: np.ndarray) -> np.ndarray:
        """Rib masks (uint8 0/1) of uint8 or float probabilities."""
        return probability_to_mask(prob, self.threshold, **self.kwargs())


def _stack_structure(plane: np.ndarray) -> np.ndarray:
    """A 3-D structuring element that connects only within a frame, never across frames."""
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = plane
    return structure


def label_components(mask: np.ndarray, *, background: bool = False) -> tuple[np.ndarray, int]:
    """Label connected components of a 2-D mask or, frame by frame, of an (N, H, W) stack.

    Foreground uses 8-connectivity; ``background=True`` selects 4-connectivity (for labelling holes).
    Labels are numbered in raster order, so the labels of frame ``k`` precede those of frame ``k+1``.
    """
    plane = _PLANE_4 if background else _PLANE_8
    structure = plane if mask.ndim == 2 else _stack_structure(plane)
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=structure)
    return labels, int(count)


def threshold_probability(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Boolean mask ``p >= threshold`` of uint8 (``p*255``) or float probabilities.

    For uint8 input the comparison is done on the integers (no float copy of the stack): the
    integer level is the first stored value ``v`` with ``v/255 >= threshold``, which gives the same
    answer as converting to float first.
    """
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1]; got {threshold}")
    prob = np.asarray(prob)
    if prob.dtype == np.uint8:
        level = int(np.count_nonzero(np.arange(256) / 255.0 < float(threshold)))
        if level > 255:
            return np.zeros(prob.shape, dtype=bool)
        return prob >= level
    if prob.dtype.kind not in "fb":
        raise TypeError(f"probabilities must be uint8 (p*255) or float in [0, 1]; got {prob.dtype}")
    if prob.dtype.kind == "f" and prob.size:
        # Float p*255 maps (prob.astype(float)) were compared with 0.5 and came out nearly all rib.
        lo, hi = float(np.nanmin(prob)), float(np.nanmax(prob))
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"float probabilities must be in [0, 1]; got [{lo:g}, {hi:g}] (stored p*255 "
                "values go in as uint8)"
            )
    return prob >= threshold


def _clean_frame(
    mask: np.ndarray, min_size: int, fill_holes: bool, keep_largest: int
) -> np.ndarray:
    """Component clean-up of one 2-D boolean mask (see :func:`probability_to_mask`)."""
    if min_size > 1:
        labels, count = label_components(mask)
        if count:
            sizes = np.bincount(labels.ravel(), minlength=count + 1)
            keep = sizes >= min_size
            keep[0] = False
            mask = keep[labels]
    if fill_holes:
        mask = _fill_holes(mask)
    if keep_largest > 0:
        labels, count = label_components(mask)
        if count > keep_largest:
            sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
            # Stable sort: among equal sizes the component met first in raster order wins.
            largest = np.argsort(-sizes, kind="stable")[:keep_largest] + 1
            keep = np.zeros(count + 1, dtype=bool)
            keep[largest] = True
            mask = keep[labels]
    return mask


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions (4-connected) not connected to the frame's border.

    One labelling pass instead of ``scipy.ndimage.binary_fill_holes``, whose iterated dilation slows
    down on large frames with long winding background regions.
    """
    background = np.pad(~mask, 1, constant_values=True)
    labels, _ = label_components(background, background=True)
    # The padded ring is one connected background region; everything else of the background is a hole.
    outside = labels[0, 0]
    return (labels != outside)[1:-1, 1:-1]


def probability_to_mask(
    prob: np.ndarray,
    threshold: float = 0.5,
    *,
    min_size: int = 0,
    fill_holes: bool = False,
    keep_largest: int = 0,
) -> np.ndarray:
    """Rib mask (uint8 0/1, same shape) from probabilities of one frame (H, W) or a stack (N, H, W).

    Steps, in this order: ``p >= threshold``; drop components smaller than ``min_size`` pixels;
    fill holes (background not connected to the frame border); keep the ``keep_largest`` largest
    components per frame (0 keeps all). ``prob`` is uint8 ``p*255`` (as stored by
    :class:`~napari_ribseg.core.inference.Prediction`) or float in [0, 1].
    """
    prob = np.asarray(prob)
    if prob.ndim not in (2, 3):
        raise ValueError(f"probabilities must be (H, W) or (N, H, W); got shape {prob.shape}")
    if min_size < 0 or keep_largest < 0:
        raise ValueError(
            f"min_size and keep_largest must be >= 0; got {min_size} and {keep_largest}"
        )
    mask = threshold_probability(prob, threshold)
    if min_size > 1 or fill_holes or keep_largest > 0:
        options = (int(min_size), bool(fill_holes), int(keep_largest))
        if mask.ndim == 2:
            mask = _clean_frame(mask, *options)
        else:
            # Frame by frame: per-frame label images stay in cache and memory stays at one frame's
            # labels (a whole 1,000 x 512 x 512 stack would need a 1 GB int32 label volume).
            for i in range(mask.shape[0]):
                mask[i] = _clean_frame(mask[i], *options)
    return mask.view(np.uint8)
