"""Letterbox: aspect kept, exact shapes for odd sizes, masks survive the round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_ribseg.core.models import Letterbox, letterbox, letterbox_tensor, unletterbox


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("shape", [(37, 91), (91, 37), (64, 64), (15, 33), (200, 131)])
def test_shapes_are_exact_for_odd_sizes(shape):
    frames = np.random.default_rng(0).random((3, *shape), dtype=np.float32)
    boxed, lb = letterbox(frames, 64)
    assert boxed.shape == (3, 64, 64) and boxed.dtype == np.float32
    assert max(lb.scaled) == 64 and lb.original == shape
    assert (
        abs(lb.scaled[0] / lb.scaled[1] - shape[0] / shape[1]) < 0.05 * shape[0] / shape[1] + 0.05
    )
    back = unletterbox(boxed, lb)
    assert back.shape == (3, *shape) and back.dtype == np.float32


def test_padding_is_zero_and_frame_is_centred():
    frames = np.ones((1, 30, 60), np.float32)
    boxed, lb = letterbox(frames, 64)
    assert lb == Letterbox((30, 60), (32, 64), (16, 0), 64)
    assert boxed[0, :16].max() == 0 and boxed[0, 48:].max() == 0
    np.testing.assert_allclose(boxed[0, 16:48], 1.0, atol=1e-6)


@pytest.mark.parametrize("shape", [(77, 133), (301, 157)])
def test_mask_round_trip_dice_above_0_95(shape):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    mask = ((yy - shape[0] * 0.4) / (shape[0] * 0.2)) ** 2 + (
        (xx - shape[1] * 0.5) / (shape[1] * 0.3)
    ) ** 2 < 1
    mask |= (yy > shape[0] * 0.7) & (yy < shape[0] * 0.8) & (xx > shape[1] * 0.1)
    boxed, lb = letterbox(mask[None].astype(np.float32), 64)
    back = unletterbox(boxed, lb)[0] > 0.5
    assert _dice(back, mask) > 0.95


def test_uint8_maps_stay_uint8():
    lb = Letterbox.fit(50, 70, 32)
    maps = np.full((2, 32, 32), 200, np.uint8)
    back = unletterbox(maps, lb)
    assert back.dtype == np.uint8 and back.shape == (2, 50, 70)
    assert (back == 200).all()


def test_torch_letterbox_matches_numpy():
    frames = np.random.default_rng(1).random((2, 41, 87), dtype=np.float32)
    boxed, lb = letterbox(frames, 64)
    tboxed, tlb = letterbox_tensor(torch.from_numpy(frames), 64)
    assert tlb == lb and tboxed.shape == (2, 1, 64, 64)
    np.testing.assert_allclose(tboxed[:, 0].numpy(), boxed, atol=1e-6)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        letterbox(np.zeros((8, 8), np.float32), 16)
    with pytest.raises(ValueError, match="32x32"):
        unletterbox(np.zeros((1, 16, 16), np.float32), Letterbox.fit(10, 10, 32))
