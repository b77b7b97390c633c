"""A deterministic synthetic substitute for a salient-object set, from scikit-image's photographs.

Object silhouettes filled with one photograph's texture are pasted on another photograph's
background; the photographs ship inside the scikit-image wheel, so nothing is downloaded. Every
card of a model pre-trained on it carries :data:`SYNTHETIC_STATEMENT`: it must never be mistaken for
an XPIE pre-training.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_ribseg.core.errors import DatasetError
from napari_ribseg.core.io.salient_datasets import (
    SalientSet,
    _read_image,
    _resize,
    _to_gray,
    _to_mask,
)

#: The statement every card of a synthetic pre-training carries (tests look for it verbatim).
SYNTHETIC_STATEMENT = (
    "pre-trained on synthetic salient objects composed from scikit-image sample photographs, "
    "NOT on XPIE"
)

#: Photographs bundled inside the scikit-image wheel (read from its data folder, never downloaded:
#: the ``skimage.data`` loaders of the other samples fetch them over the network through pooch).
BUNDLED_PHOTOS = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "cell.png",
    "chelsea.png",
    "clock_motion.png",
    "coffee.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "moon.png",
    "motorcycle_left.png",
    "page.png",
    "retina.jpg",
    "rocket.jpg",
    "text.png",
)


# --------------------------------------------------------------------------------------------------
# The synthetic substitute
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def bundled_photographs() -> tuple[tuple[str, np.ndarray], ...]:
    """The scikit-image sample photographs that ship in the wheel, as float32 gray in [0, 1]."""
    import skimage.data

    data_dir = Path(skimage.data.__file__).parent
    photos = []
    for filename in BUNDLED_PHOTOS:
        path = data_dir / filename
        if not path.is_file():  # another scikit-image release may not bundle every file
            continue
        gray = _to_gray(_read_image(path))
        if min(gray.shape) >= 64:
            photos.append((path.stem, gray))
    if len(photos) < 2:
        raise DatasetError(
            f"scikit-image in {data_dir} bundles fewer than two sample photographs; the synthetic "
            "salient set needs a background and an object texture"
        )
    return tuple(photos)


@functools.lru_cache(maxsize=1)
def _horse_silhouette() -> np.ndarray | None:
    """The horse silhouette scikit-image bundles (object = True), or None where it is absent."""
    import skimage.data

    path = Path(skimage.data.__file__).parent / "horse.png"
    if not path.is_file():
        return None
    # horse.png is a black horse on white.
    return _to_mask(_read_image(path)) == 0


def _crop(photo: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Random square crop (a random share of the short side) resized to ``size``, maybe mirrored."""
    h, w = photo.shape
    side = int(min(h, w) * rng.uniform(0.45, 1.0))
    r0 = int(rng.integers(0, h - side + 1))
    c0 = int(rng.integers(0, w - side + 1))
    patch = photo[r0 : r0 + side, c0 : c0 + side]
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    return _resize(np.ascontiguousarray(patch), size, order=1)


def _polar_shape(size: int, rng: np.random.Generator, *, star: bool) -> np.ndarray:
    """A smooth blob (a few low harmonics of the radius) or a star (one strong harmonic)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cy, cx = rng.uniform(0.3, 0.7, size=2) * size
    r0 = rng.uniform(0.15, 0.32) * size
    theta = np.arctan2(yy - cy, xx - cx)
    radius = np.full_like(theta, r0)
    if star:
        k = int(rng.integers(4, 8))
        radius *= 1.0 + rng.uniform(0.25, 0.45) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    else:
        for k in range(2, 6):
            amp = rng.uniform(0.0, 0.25) / (k - 1)
            radius *= 1.0 + amp * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.hypot(yy - cy, xx - cx) <= radius


def _ellipse_shape(size: int, rng: np.random.Generator) -> np.ndarray:
    from skimage.draw import ellipse

    mask = np.zeros((size, size), dtype=bool)
    rr, cc = ellipse(
        rng.uniform(0.3, 0.7) * size,
        rng.uniform(0.3, 0.7) * size,
        rng.uniform(0.12, 0.35) * size,
        rng.uniform(0.12, 0.35) * size,
        shape=mask.shape,
        rotation=rng.uniform(-np.pi, np.pi),
    )
    mask[rr, cc] = True
    return mask


def _field_shape(size: int, rng: np.random.Generator) -> np.ndarray:
    """The largest component of a thresholded smooth random field inside a central window."""
    from scipy import ndimage

    noise = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma=size / 10)
    yy, xx = np.mgrid[0:size, 0:size]
    # A centred Gaussian bump makes one central object likelier than scattered specks.
    bump = np.exp(-(((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * (0.25 * size) ** 2)))
    field_ = noise / (noise.std() + 1e-8) + 2.0 * bump
    mask = field_ > np.quantile(field_, rng.uniform(0.65, 0.88))
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
    return ndimage.binary_fill_holes(labels == (int(np.argmax(sizes)) + 1))


def _horse_shape(size: int, rng: np.random.Generator) -> np.ndarray | None:
    from skimage.transform import rotate

    horse = _horse_silhouette()
    if horse is None:
        return None
    scale = rng.uniform(0.45, 0.85)
    side = max(8, int(size * scale))
    small = _resize(horse.astype(np.float32), side, order=1)
    if rng.random() < 0.5:
        small = small[:, ::-1]
    small = rotate(small, rng.uniform(-25, 25), order=1, mode="constant", cval=0.0)
    canvas = np.zeros((size, size), dtype=np.float32)
    r0 = int(rng.integers(0, size - side + 1))
    c0 = int(rng.integers(0, size - side + 1))
    canvas[r0 : r0 + side, c0 : c0 + side] = small
    return canvas > 0.5


def _silhouette(size: int, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    kind = str(
        rng.choice(["blob", "star", "ellipse", "field", "horse"], p=[0.3, 0.2, 0.2, 0.2, 0.1])
    )
    if kind == "horse":
        shape = _horse_shape(size, rng)
        if shape is not None:
            return kind, shape
        kind = "blob"
    if kind in ("blob", "star"):
        return kind, _polar_shape(size, rng, star=kind == "star")
    if kind == "ellipse":
        return kind, _ellipse_shape(size, rng)
    return kind, _field_shape(size, rng)


def compose_salient_sample(
    size: int, rng: np.random.Generator, photos: Sequence[tuple[str, np.ndarray]] | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One synthetic salient-object image (float32 [0, 1]) and its mask (uint8 0/1).

    A silhouette (blob, star, ellipse, random-field region or the horse) is cut from one
    photograph and pasted on another; the object gets its own gain/offset so it stands out by
    contrast as well as by texture (salient objects do), then the edge is feathered by a blurred
    alpha, and the whole image gets a random blur and Gaussian noise. The mask is the silhouette.
    """
    from scipy import ndimage

    photos = photos if photos is not None else bundled_photographs()
    i_bg, i_fg = rng.choice(len(photos), size=2, replace=False)
    background = _crop(photos[int(i_bg)][1], size, rng)
    texture = _crop(photos[int(i_fg)][1], size, rng)
    kind, shape = _silhouette(size, rng)
    for _ in range(4):  # keep objects between ~3 % and ~60 % of the frame
        if 0.03 <= shape.mean() <= 0.6:
            break
        kind, shape = _silhouette(size, rng)

    # Contrast: shift the object's mean away from the background's around the object.
    bg_mean = float(background[shape].mean()) if shape.any() else float(background.mean())
    gain = rng.uniform(0.5, 1.3)
    texture = (texture - texture.mean()) * gain
    direction = 1.0 if bg_mean < 0.5 else -1.0
    if rng.random() < 0.25:  # sometimes the "wrong" way, so polarity alone never gives it away
        direction = -direction
    target = np.clip(bg_mean + direction * rng.uniform(0.12, 0.4), 0.1, 0.9)
    texture = texture + target

    alpha = ndimage.gaussian_filter(shape.astype(np.float32), sigma=rng.uniform(0.3, 1.5))
    image = alpha * texture + (1.0 - alpha) * background
    sigma = rng.uniform(0.0, 1.2)
    if sigma > 0.2:
        image = ndimage.gaussian_filter(image, sigma=sigma)
    image = image + rng.normal(0.0, rng.uniform(0.0, 0.06), size=image.shape)
    image = np.clip(image, 0.0, 1.0).astype(np.float32)
    info = {
        "background": photos[int(i_bg)][0],
        "texture": photos[int(i_fg)][0],
        "shape": kind,
        "blur_sigma": float(sigma),
    }
    return image, shape.astype(np.uint8), info


def compose_salient_set(n: int, *, size: int = 256, seed: int = 0) -> SalientSet:
    """``n`` synthetic salient-object images, deterministic by ``seed``.

    Sample ``i`` draws from its own generator seeded by ``(seed, i)``, so the first ``k`` samples
    are the same whatever ``n`` is (a larger set extends a smaller one).
    """
    if n < 1:
        raise DatasetError(f"a synthetic salient set needs at least one image; got n={n}")
    photos = bundled_photographs()
    images, masks, ids, shapes = [], [], [], []
    for i in range(n):
        rng = np.random.default_rng([int(seed), i])
        image, mask, info = compose_salient_sample(size, rng, photos)
        images.append(image)
        masks.append(mask)
        ids.append(f"syn{seed}_{i:05d}")
        shapes.append(info["shape"])
    return SalientSet(
        images=images,
        masks=masks,
        ids=ids,
        name="synthetic",
        source=f"synthetic:skimage-photos:n={n}:size={size}:seed={seed}",
        statement=SYNTHETIC_STATEMENT,
        info={
            "photographs": [name for name, _ in photos],
            "shapes": {k: shapes.count(k) for k in sorted(set(shapes))},
        },
    )
