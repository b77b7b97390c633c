"""Loss values on known inputs."""

from __future__ import annotations

import pytest
import torch

from napari_ribseg.core.errors import TrainingError
from napari_ribseg.core.training.losses import LOSSES, dice_bce_loss, dice_loss, get_loss


def _target() -> torch.Tensor:
    target = torch.zeros(2, 1, 16, 16)
    target[:, :, 4:8, 2:14] = 1
    return target


def test_perfect_prediction_gives_zero_dice_loss():
    target = _target()
    logits = (target * 2 - 1) * 30  # sigmoid -> 0/1 to float precision
    assert dice_loss(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_bce_loss(logits, target).item() == pytest.approx(0.0, abs=1e-6)


def test_inverted_prediction_gives_dice_loss_near_one():
    target = _target()
    logits = (1 - 2 * target) * 30
    # smooth=1 over 48 rib pixels per image: 1 - 1 / (48 + 208 + 1)
    assert dice_loss(logits, target).item() == pytest.approx(1 - 1 / 257, abs=1e-5)


def test_half_probability_everywhere_has_known_dice():
    target = _target()  # 48 of 256 pixels per image
    logits = torch.zeros_like(target)
    # Dice = (2 * 0.5 * 48 + 1) / (0.5 * 256 + 48 + 1) = 49 / 177
    assert dice_loss(logits, target).item() == pytest.approx(1 - 49 / 177, abs=1e-6)
    bce = torch.log(torch.tensor(2.0)).item()
    assert dice_bce_loss(logits, target).item() == pytest.approx(1 - 49 / 177 + bce, abs=1e-6)


def test_empty_frame_predicted_empty_costs_nothing():
    target = torch.zeros(1, 1, 8, 8)
    assert dice_loss(torch.full_like(target, -30.0), target).item() == pytest.approx(0.0, abs=1e-6)


def test_registry():
    assert set(LOSSES) == {"dice", "dice_bce", "dice_focal", "tversky"}
    assert get_loss("dice") is dice_loss
    with pytest.raises(TrainingError, match="unknown loss"):
        get_loss("focal")


def test_focal_and_tversky_on_known_inputs():
    from napari_ribseg.core.training.losses import dice_focal_loss, focal_loss, tversky_loss

    target = _target()
    perfect = (target * 2 - 1) * 30
    assert dice_focal_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    assert tversky_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    # p = 0.5 everywhere: BCE = ln 2 per pixel, focal weight (1 - 0.5)^2 = 0.25.
    half = torch.zeros_like(target)
    assert focal_loss(half, target).item() == pytest.approx(0.25 * 0.693147, abs=1e-5)
    # All background predicted: every rib pixel missed; beta 0.7 -> 1 - 1 / (0.7 * 48 + 1).
    none = torch.full_like(target, -30.0)
    assert tversky_loss(none, target).item() == pytest.approx(1 - 1 / (0.7 * 48 + 1), abs=1e-4)
