"""Dice of a model on letterboxed frames: per frame, as the training loop and the gate use it."""

from __future__ import annotations

import numpy as np
import torch

from napari_ribseg.core.models import letterbox
from napari_ribseg.core.training.data import TrainingSet
from napari_ribseg.core.training.losses import get_loss


def letterbox_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A (H, W) mask (any value > 0 is rib) letterboxed to bool (S, S), as the frames are."""
    return letterbox((np.asarray(mask) > 0).astype(np.float32)[None], size)[0][0] > 0.5


def letterbox_set(data: TrainingSet, size: int) -> tuple[np.ndarray, np.ndarray]:
    """All frames and masks of ``data`` letterboxed: float32 (N, 1, S, S) and uint8 (N, 1, S, S)."""
    images = np.empty((len(data), 1, size, size), np.float32)
    masks = np.empty((len(data), 1, size, size), np.uint8)
    for i, (image, mask) in enumerate(zip(data.images, data.masks, strict=True)):
        images[i, 0] = letterbox(image[None], size)[0][0]
        masks[i, 0] = letterbox_mask(mask, size)
    return images, masks


@torch.no_grad()
def frame_dices(
    model, images: np.ndarray, masks: np.ndarray, device, batch_size: int, loss_fn
) -> tuple[list[float], float]:
    """(Dice of each frame at probability 0.5, mean loss) on letterboxed frames."""
    was_training = model.training
    model.eval()
    dices: list[float] = []
    loss_sum = 0.0
    try:
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(images[start : start + batch_size]).to(device)
            y = torch.from_numpy(masks[start : start + batch_size]).to(device).float()
            logits = model(x).float()
            loss_sum += float(loss_fn(logits, y)) * len(x)
            pred = (logits > 0).float().flatten(1)
            truth = y.flatten(1)
            inter = (pred * truth).sum(1)
            total = pred.sum(1) + truth.sum(1)
            # Both empty: a correct "no rib here" counts as a perfect frame.
            dice = torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))
            dices.extend(dice.cpu().tolist())
    finally:
        model.train(was_training)
    return dices, loss_sum / max(1, len(images))


def mean_dice(dices: list[float]) -> float:
    return float(np.mean(dices)) if dices else float("nan")


def evaluate_dice(model, data: TrainingSet, *, device="cpu", batch_size: int = 8) -> float:
    """Mean per-frame Dice (probability >= 0.5) of ``model`` on ``data`` letterboxed to its input."""
    images, masks = letterbox_set(data, int(model.input_size))
    dices, _ = frame_dices(model, images, masks, torch.device(device), batch_size, get_loss("dice"))
    return mean_dice(dices)
