"""The ``domain`` augmentation: binary, aligned, deterministic masks; overlays never in the mask."""

from __future__ import annotations

import numpy as np

from napari_ribseg.core.training.augment import (
    AUGMENT_PRESETS,
    Augmenter,
    DomainRandomizer,
    build_augmentation,
)

STEPS = ("letterbox", "shadow", "gain", "smooth", "noise", "fan", "edge", "overlay")
STEPS += ("resolution", "jpeg")


def _pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.zeros((64, 64), np.uint8)
    mask[14:18, 8:28] = 1  # two rib lines near the top, as on real scans
    mask[16:20, 38:58] = 1
    image = (0.25 + 0.1 * rng.standard_normal((64, 64))).clip(0, 1).astype(np.float32)
    image[mask > 0] = 0.9
    image[20:, 8:28] *= 0.2  # the shadows
    image[22:, 38:58] *= 0.2
    return image, mask


def _only(*names: str) -> DomainRandomizer:
    return DomainRandomizer(**{f"p_{s}": (1.0 if s in names else 0.0) for s in STEPS})


def test_domain_is_a_preset_and_masks_stay_binary() -> None:
    assert "domain" in AUGMENT_PRESETS
    aug = Augmenter("domain")
    image, mask = _pair()
    for seed in range(20):
        out_img, out_mask = aug(image, mask, seed)
        assert out_img.shape == (64, 64) and out_img.dtype == np.float32
        assert out_img.min() >= 0.0 and out_img.max() <= 1.0
        assert out_mask.dtype == np.uint8 and set(np.unique(out_mask)) <= {0, 1}


def test_domain_is_deterministic_under_a_seed() -> None:
    aug = Augmenter("domain")
    image, mask = _pair()
    a, b = aug(image, mask, 7), aug(image, mask, 7)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = aug(image, mask, 8)
    assert not np.array_equal(a[0], c[0])


def test_geometry_moves_mask_and_image_together() -> None:
    # An image that *is* its mask: after flips, affine, letterbox and the fan, thresholding the
    # image must give back the augmented mask (up to interpolation at the edges).
    mask = np.zeros((64, 64), np.uint8)
    mask[10:22, 6:30] = 1  # blocks thick enough that interpolation only touches their edges
    mask[30:44, 36:50] = 1
    image = mask.astype(np.float32)
    geometry = build_augmentation("domain")
    fan = _only("letterbox", "fan")
    for seed in range(10):
        geometry.set_random_seed(seed)
        out = geometry(image=image, mask=mask)
        img, msk = fan(out["image"], out["mask"], np.random.default_rng(seed))
        agree = np.count_nonzero((img > 0.5) & (msk > 0))
        union = np.count_nonzero((img > 0.5) | (msk > 0))
        assert union == 0 or agree / union >= 0.85, seed


def test_overlays_edges_and_grey_changes_leave_the_mask_alone() -> None:
    image, mask = _pair()
    steps = ("shadow", "gain", "smooth", "noise", "edge", "overlay", "resolution", "jpeg")
    chain = _only(*steps)
    for seed in range(10):
        _, out_mask = chain(image, mask, np.random.default_rng(seed))
        np.testing.assert_array_equal(out_mask, mask)


def test_fan_cuts_the_mask_and_blackens_outside() -> None:
    image, mask = _pair()
    for seed in range(10):
        img, msk = _only("fan")(image, mask, np.random.default_rng(seed))
        assert np.all(msk <= mask)
        outside = img == 0
        assert not np.any(msk[outside])


def test_shadow_filling_brightens_below_ribs() -> None:
    image, mask = _pair()
    img, _ = _only("shadow")(image, mask, np.random.default_rng(0))
    assert img[30:, 10:26].mean() > 1.5 * image[30:, 10:26].mean()


def test_grey_curve_reaches_dark_scans() -> None:
    image, mask = _pair()
    medians = [
        np.median(_only("gain")(image, mask, np.random.default_rng(s))[0]) for s in range(40)
    ]
    # Real convex scans have a median grey of ~22/255 inside the fan; the curves must reach it.
    assert min(medians) < 22 / 255 < max(medians)
