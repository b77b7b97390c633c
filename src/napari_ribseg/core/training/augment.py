"""Augmentation presets for fine-tuning, applied identically to an image and its rib mask.

albumentations is used because its geometric transforms are well kept and tested, warp the mask with
the same parameters as the image (nearest-neighbour, so masks stay 0/1), and run on the CPU inside
DataLoader workers, overlapping with the GPU step. kornia would be the choice for augmenting on the
GPU; with tens to hundreds of curated frames the CPU is not the bottleneck.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_ribseg.core.errors import TrainingError

AUGMENT_PRESETS: tuple[str, ...] = ("none", "flip", "standard")


def _depth_crop_class():
    """Build the DepthCrop transform class lazily so importing this module stays cheap."""
    import albumentations as A
    import cv2

    class DepthCrop(A.DualTransform):
        """Cut off the deep (bottom) part of the frame and resize back: a shallower depth setting.

        Anchored at the top because the probe face is there: the pleura and ribs stay near the top
        and only the imaging depth changes, as when a user lowers the depth on the scanner.
        """

        def __init__(self, keep: tuple[float, float] = (0.75, 1.0), p: float = 0.3) -> None:
            super().__init__(p=p)
            self.keep = keep

        def get_params(self) -> dict[str, Any]:
            return {"keep": self.py_random.uniform(*self.keep)}

        @staticmethod
        def _crop_resize(arr: np.ndarray, keep: float, interpolation: int) -> np.ndarray:
            height, width = arr.shape[:2]
            rows = max(1, round(height * keep))
            cropped = np.ascontiguousarray(arr[:rows])
            return cv2.resize(cropped, (width, height), interpolation=interpolation)

        def apply(self, img: np.ndarray, keep: float = 1.0, **params: Any) -> np.ndarray:
            return self._crop_resize(img, keep, cv2.INTER_LINEAR)

        def apply_to_mask(self, mask: np.ndarray, keep: float = 1.0, **params: Any) -> np.ndarray:
            return self._crop_resize(mask, keep, cv2.INTER_NEAREST)

        def get_transform_init_args_names(self) -> tuple[str, ...]:
            return ("keep",)

    return DepthCrop


def build_augmentation(preset: str, seed: int | None = None):
    """The albumentations pipeline of a preset (``None`` for ``"none"``)."""
    if preset not in AUGMENT_PRESETS:
        raise TrainingError(
            f"unknown augmentation preset {preset!r}; expected one of {', '.join(AUGMENT_PRESETS)}"
        )
    if preset == "none":
        return None
    import albumentations as A
    import cv2

    if preset == "flip":
        # The study's only augmentation: left/right mirroring keeps anatomy plausible.
        transforms = [A.HorizontalFlip(p=0.5)]
    else:
        transforms = [
            A.HorizontalFlip(p=0.5),
            # Small probe tilt/pressure/position changes; zero fill like the area outside the sector.
            A.Affine(
                scale=(0.9, 1.1),
                translate_percent=(-0.05, 0.05),
                rotate=(-8, 8),
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=0,
                p=0.7,
            ),
            _depth_crop_class()(keep=(0.75, 1.0), p=0.3),
            # Gain and dynamic-range changes of the scanner.
            A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.2, p=0.5),
            A.RandomGamma(gamma_limit=(75, 133), p=0.3),
            # Speckle is multiplicative: scale each pixel by a random factor.
            A.MultiplicativeNoise(multiplier=(0.8, 1.2), elementwise=True, p=0.3),
            A.GaussianBlur(blur_limit=(3, 5), p=0.2),
        ]
    return A.Compose(transforms, seed=seed)


class Augmenter:
    """Applies a preset to (image, mask) pairs reproducibly: the same seed gives the same result.

    Seeding per sample (rather than once per worker) keeps results independent of the number of
    DataLoader workers and of where a resumed run restarts.
    """

    def __init__(self, preset: str) -> None:
        self.preset = preset
        self._pipeline = build_augmentation(preset)

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the augmented float32 image in [0, 1] and uint8 0/1 mask."""
        if self._pipeline is None:
            return image, mask
        self._pipeline.set_random_seed(int(seed) % (2**32))
        out = self._pipeline(image=np.ascontiguousarray(image, dtype=np.float32), mask=mask)
        aug_image = np.clip(out["image"], 0.0, 1.0).astype(np.float32, copy=False)
        return aug_image, (out["mask"] > 0).astype(np.uint8)
