"""Per-frame uncertainty of a rib prediction, to rank frames for review ("least confident" first).

The mean probability inside the mask (``inference.frame_confidence``) sits at 0.94-0.95 on almost
every frame and ranks nothing. What a reviewer wants first are frames where the mask itself is
doubtful. :func:`frame_uncertainty` is the share of the frame's rib-like pixels (p >= ``low``) whose
probability lies in the ambiguous band ``[low, high)``: a crisp mask scores near 0, a frame where the
model hedged over much of the rib-like area scores high. It uses only the stored uint8 probabilities,
so it is recomputed for free after a review is reopened and does not change with the display
threshold. benchmarks/bench_uncertainty.py measures its rank correlation with per-frame Dice.
"""

from __future__ import annotations

import numpy as np

#: Ambiguous band of probabilities (uint8 levels of p = 0.1 and p = 0.9).
LOW_LEVEL = 26
HIGH_LEVEL = 230


def frame_uncertainty(prob: np.ndarray, low: int = LOW_LEVEL, high: int = HIGH_LEVEL) -> np.ndarray:
    """Per-frame uncertainty in [0, 1] of uint8 probabilities (N, H, W); 0 for a frame with no rib."""
    prob = np.asarray(prob)
    if prob.dtype != np.uint8 or prob.ndim != 3:
        raise ValueError(f"expected uint8 (N, H, W) probabilities; got {prob.dtype} {prob.shape}")
    flat = prob.reshape(prob.shape[0], -1)
    rib_like = np.count_nonzero(flat >= low, axis=1)
    ambiguous = rib_like - np.count_nonzero(flat >= high, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = ambiguous / rib_like
    return np.where(rib_like > 0, share, 0.0).astype(np.float32)


def mean_entropy(prob: np.ndarray, low: int = LOW_LEVEL) -> np.ndarray:
    """Mean binary entropy (bits) over the rib-like pixels (p >= ``low``) of each frame."""
    prob = np.asarray(prob)
    p = prob.reshape(prob.shape[0], -1).astype(np.float32) / 255.0
    eps = 1e-6
    h = -(p * np.log2(p + eps) + (1 - p) * np.log2(1 - p + eps))
    sel = prob.reshape(prob.shape[0], -1) >= low
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(sel, h, 0).sum(axis=1) / sel.sum(axis=1)
    return np.nan_to_num(out, nan=0.0).astype(np.float32)


def flip_disagreement(prob: np.ndarray, prob_flipped: np.ndarray, level: int = 128) -> np.ndarray:
    """1 - Dice between the mask and the mask of the horizontally flipped frame (flipped back).

    ``prob_flipped`` is the prediction of ``frames[..., ::-1]``; costs a second model run.
    """
    a = np.asarray(prob) >= level
    b = np.asarray(prob_flipped)[..., ::-1] >= level
    inter = np.count_nonzero(a & b, axis=(1, 2))
    total = np.count_nonzero(a, axis=(1, 2)) + np.count_nonzero(b, axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(total > 0, 2 * inter / total, 1.0)
    return (1.0 - dice).astype(np.float32)
