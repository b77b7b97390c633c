"""Segmentation losses on logits: soft Dice (the study's negative Dice) and Dice + BCE (default)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from napari_ribseg.core.errors import TrainingError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss ``1 - Dice``, per image then averaged over the batch.

    Cheng & Lam minimise the negative Dice; ``1 - Dice`` has the same gradient and reads 0 for a
    perfect prediction. ``smooth`` keeps frames without ribs from giving 0/0.
    """
    # Computed in float32 whatever autocast chose for the network: sums over many pixels in fp16
    # lose precision.
    probs = torch.sigmoid(logits.float()).flatten(1)
    target = target.float().flatten(1)
    inter = (probs * target).sum(1)
    denom = probs.sum(1) + target.sum(1)
    return (1.0 - (2.0 * inter + smooth) / (denom + smooth)).mean()


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Dice + binary cross-entropy: BCE adds per-pixel gradients where ribs are small."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
    return dice_loss(logits, target) + bce


LOSSES: dict[str, LossFn] = {"dice": dice_loss, "dice_bce": dice_bce_loss}


def get_loss(name: str) -> LossFn:
    """The loss function registered under ``name``."""
    try:
        return LOSSES[name]
    except KeyError:
        raise TrainingError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}") from None
