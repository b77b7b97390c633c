"""Segmentation losses on logits, for thin, rare structures (ribs cover ~0.2% of a convex frame).

``dice``: soft Dice (the study's negative Dice). ``dice_bce``: Dice + BCE. ``dice_focal``:
Dice + focal BCE (gamma 2), which down-weights the many easy background pixels so the few rib
pixels drive the gradient. ``tversky`` (the default, ``FinetuneConfig.loss``): Tversky loss
(alpha 0.3, beta 0.7) that charges a missed rib pixel more than a false one. torch is imported on call, so the names are readable without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari_ribseg.core.errors import TrainingError

LossFn = Callable[[Any, Any], Any]


def dice_loss(logits, target, smooth: float = 1.0):
    """Soft Dice loss ``1 - Dice``, per image then averaged over the batch.

    Cheng & Lam minimise the negative Dice; ``1 - Dice`` has the same gradient and reads 0 for a
    perfect prediction. ``smooth`` keeps frames without ribs from giving 0/0.
    """
    import torch

    # Computed in float32 whatever autocast chose for the network: sums over many pixels in fp16
    # lose precision.
    probs = torch.sigmoid(logits.float()).flatten(1)
    target = target.float().flatten(1)
    inter = (probs * target).sum(1)
    denom = probs.sum(1) + target.sum(1)
    return (1.0 - (2.0 * inter + smooth) / (denom + smooth)).mean()


def dice_bce_loss(logits, target):
    """Soft Dice + binary cross-entropy: BCE adds per-pixel gradients where ribs are small."""
    import torch.nn.functional as F

    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
    return dice_loss(logits, target) + bce


def focal_loss(logits, target, gamma: float = 2.0):
    """Focal binary cross-entropy (Lin et al. 2017): ``(1 - p_t)^gamma * BCE``, averaged."""
    import torch
    import torch.nn.functional as F

    logits, target = logits.float(), target.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = torch.exp(-bce)
    return ((1.0 - p_t) ** gamma * bce).mean()


def dice_focal_loss(logits, target):
    """Soft Dice + focal BCE; the focal term is scaled up (x10) as it is small once p_t ~ 1."""
    return dice_loss(logits, target) + 10.0 * focal_loss(logits, target)


def tversky_loss(logits, target, alpha: float = 0.3, beta: float = 0.7, smooth: float = 1.0):
    """``1 - TP / (TP + alpha FP + beta FN)`` per image: misses cost more than false alarms."""
    import torch

    probs = torch.sigmoid(logits.float()).flatten(1)
    target = target.float().flatten(1)
    tp = (probs * target).sum(1)
    fp = (probs * (1 - target)).sum(1)
    fn = ((1 - probs) * target).sum(1)
    return (1.0 - (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)).mean()


LOSSES: dict[str, LossFn] = {
    "dice": dice_loss,
    "dice_bce": dice_bce_loss,
    "dice_focal": dice_focal_loss,
    "tversky": tversky_loss,
}


def get_loss(name: str) -> LossFn:
    """The loss function registered under ``name``."""
    try:
        return LOSSES[name]
    except KeyError:
        raise TrainingError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}") from None
