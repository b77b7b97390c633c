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

#: ``domain`` is ``standard``'s geometry plus :class:`DomainRandomizer`: what scanners, settings and
#: exports change (see docs/training.md, "Domain randomisation").
AUGMENT_PRESETS: tuple[str, ...] = ("none", "flip", "standard", "domain")


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
            # NEAREST_EXACT samples pixel centres as INTER_LINEAR does; plain INTER_NEAREST is off
            # by half a pixel, which shifts thin rib masks against their image.
            return self._crop_resize(mask, keep, cv2.INTER_NEAREST_EXACT)

        def get_transform_init_args_names(self) -> tuple[str, ...]:
            return ("keep",)

    return DepthCrop


def _geometry(*, scale: float, shift: float, degrees: float, keep: float) -> list:
    """Mirroring, probe tilt/pressure/position (affine, zero fill like outside the sector) and a
    shallower depth: the geometry shared by the ``standard`` and ``domain`` presets."""
    import albumentations as A
    import cv2

    return [
        A.HorizontalFlip(p=0.5),
        A.Affine(
            scale=(1 - scale, 1 + scale),
            translate_percent=(-shift, shift),
            rotate=(-degrees, degrees),
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=0,
            p=0.7,
        ),
        _depth_crop_class()(keep=(keep, 1.0), p=0.3),
    ]


def build_augmentation(preset: str, seed: int | None = None):
    """The albumentations pipeline of a preset (``None`` for ``"none"``)."""
    if preset not in AUGMENT_PRESETS:
        raise TrainingError(
            f"unknown augmentation preset {preset!r}; expected one of {', '.join(AUGMENT_PRESETS)}"
        )
    if preset == "none":
        return None
    import albumentations as A

    if preset == "flip":
        # The study's only augmentation: left/right mirroring keeps anatomy plausible.
        transforms = [A.HorizontalFlip(p=0.5)]
    elif preset == "domain":
        # Geometry only: grey levels, fan, overlays and codecs come from DomainRandomizer after it.
        transforms = _geometry(scale=0.15, shift=0.06, degrees=10, keep=0.6)
    else:
        transforms = [
            # Small probe tilt/pressure/position changes; zero fill like the area outside the sector.
            *_geometry(scale=0.1, shift=0.05, degrees=8, keep=0.75),
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
        self._domain = DomainRandomizer() if preset == "domain" else None

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the augmented float32 image in [0, 1] and uint8 0/1 mask."""
        if self._pipeline is None:
            return image, mask
        self._pipeline.set_random_seed(int(seed) % (2**32))
        out = self._pipeline(image=np.ascontiguousarray(image, dtype=np.float32), mask=mask)
        aug_image = np.clip(out["image"], 0.0, 1.0).astype(np.float32, copy=False)
        aug_mask = (out["mask"] > 0).astype(np.uint8)
        if self._domain is not None:
            aug_image, aug_mask = self._domain(aug_image, aug_mask, np.random.default_rng(seed))
        return aug_image, aug_mask


# --------------------------------------------------------------------------- domain randomisation

_OVERLAY_WORDS = ("LUNG", "C5-1", "12cm", "G 48", "DR 60", "FR 24", "THI", "MI 0.9", "TIS0.4", "R")


class DomainRandomizer:
    """What scanners, presets and exports change, applied to a float32 image and its 0/1 mask.

    Each step fires with its own probability, drawn from the ``rng`` passed per call (so a seed gives
    the same result everywhere). Geometry changes (letterbox rescaling, the fan) move or cut the mask
    with the image; grey-level changes, smoothing, noise, shadow filling, fan edges, overlays and
    compression leave the mask alone: overlays and fan edges are never rib. The steps and their
    ranges (real convex scans: median grey ~22/255 inside the fan, p95 ~135; shadows nearly as
    bright as the lung beside them; wide fans with the apex above the frame) are listed in
    docs/training.md.
    """

    def __init__(
        self,
        *,
        p_letterbox: float = 0.3,
        p_shadow: float = 0.5,
        p_gain: float = 0.9,
        p_smooth: float = 0.4,
        p_noise: float = 0.4,
        p_fan: float = 0.5,
        p_edge: float = 0.5,
        p_overlay: float = 0.5,
        p_resolution: float = 0.3,
        p_jpeg: float = 0.3,
    ) -> None:
        self.p = {
            "letterbox": p_letterbox,
            "shadow": p_shadow,
            "gain": p_gain,
            "smooth": p_smooth,
            "noise": p_noise,
            "fan": p_fan,
            "edge": p_edge,
            "overlay": p_overlay,
            "resolution": p_resolution,
            "jpeg": p_jpeg,
        }

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        img = np.array(image, dtype=np.float32, copy=True)
        msk = np.asarray(mask, dtype=np.uint8)
        # One draw per step, always in the same order, so a step switched off by its probability
        # does not shift the random numbers of the steps after it.
        fire = {name: rng.random() < p for name, p in self.p.items()}
        if fire["letterbox"]:
            img, msk = letterbox_rescale(img, msk, rng)
        if fire["shadow"] and msk.any():
            img = fill_shadows(img, msk, rng)
        if fire["gain"]:
            img = grey_curve(img, rng)
        if fire["smooth"]:
            img = smooth(img, rng)
        if fire["noise"]:
            img = add_noise(img, rng)
        sector = None
        if fire["fan"]:
            sector = random_sector(img.shape, rng)
            img *= sector
            msk = msk * sector.astype(np.uint8)
        if fire["edge"]:
            img = draw_sector_edge(img, sector if sector is not None else img > 0, rng)
        if fire["overlay"]:
            img = draw_overlays(img, rng)
        if fire["resolution"]:
            img = resample(img, rng)
        if fire["jpeg"]:
            img = jpeg(img, rng)
        return np.clip(img, 0.0, 1.0).astype(np.float32, copy=False), (msk > 0).astype(np.uint8)


def letterbox_rescale(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Shrink each axis by its own factor (another resolution and aspect) and pad with black."""
    import cv2

    h, w = image.shape
    sy, sx = rng.uniform(0.55, 1.0, size=2)
    nh, nw = max(8, round(h * sy)), max(8, round(w * sx))
    top, left = int(rng.integers(0, h - nh + 1)), int(rng.integers(0, w - nw + 1))
    out_img = np.zeros_like(image)
    out_msk = np.zeros_like(mask)
    out_img[top : top + nh, left : left + nw] = cv2.resize(
        image, (nw, nh), interpolation=cv2.INTER_AREA
    )
    # NEAREST_EXACT: pixel-centre aligned like INTER_AREA (INTER_NEAREST is half a pixel off).
    out_msk[top : top + nh, left : left + nw] = cv2.resize(
        mask, (nw, nh), interpolation=cv2.INTER_NEAREST_EXACT
    )
    return out_img, out_msk


def fill_shadows(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brighten what lies below each rib toward the lung beside it: shallow acoustic shadows.

    Real shadows are nearly as bright as the aerated lung beside them (shadow/intercostal ~0.84),
    so a dark column under a bright line must not be what the network looks for.
    """
    import cv2

    h, w = mask.shape
    below = np.cumsum(mask, axis=0) > 0
    shadow = (below & (mask == 0)).astype(np.float32)
    shadow = cv2.GaussianBlur(shadow, (0, 0), sigmaX=max(1.0, w / 64))
    lung = image[(shadow < 0.05) & (image > 0.02)]
    level = float(np.median(lung)) if lung.size else float(image.mean())
    texture = rng.rayleigh(level / 1.2533 + 1e-3, size=(h, w)).astype(np.float32)
    amount = float(rng.uniform(0.3, 0.95))
    return image + amount * shadow * (texture - image)


def grey_curve(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Overall gain, gamma (non-log grey maps) and contrast: often much darker than simulated."""
    gamma = float(np.exp(rng.uniform(np.log(0.7), np.log(2.6))))
    gain = float(rng.uniform(0.45, 1.3))
    out = gain * np.power(np.clip(image, 0, 1), gamma)
    if rng.random() < 0.3:  # an S-shaped contrast map around a random midpoint
        mid, slope = float(rng.uniform(0.15, 0.5)), float(rng.uniform(4, 10))
        lo, hi = 1 / (1 + np.exp(slope * mid)), 1 / (1 + np.exp(-slope * (1 - mid)))
        out = (1 / (1 + np.exp(-slope * (out - mid))) - lo) / (hi - lo)
    return out.astype(np.float32)


def smooth(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Speckle reduction (median), compounding/persistence (Gaussian) or a lateral smear."""
    import cv2

    kind = int(rng.integers(0, 3))
    if kind == 0:
        return cv2.medianBlur(image, 3 if rng.random() < 0.6 else 5)
    if kind == 1:
        return cv2.GaussianBlur(image, (0, 0), sigmaX=float(rng.uniform(0.5, 1.6)))
    sx, sy = float(rng.uniform(1.0, 2.5)), float(rng.uniform(0.3, 0.8))
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sx, sigmaY=sy)


def add_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative speckle plus additive electronic noise."""
    speckle = rng.normal(1.0, rng.uniform(0.05, 0.3), size=image.shape).astype(np.float32)
    floor = rng.normal(0.0, rng.uniform(0.0, 0.03), size=image.shape).astype(np.float32)
    return image * speckle + floor


def random_sector(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random convex sector mask: apex at or above the top, half-angle 20-55 degrees."""
    from napari_ribseg.core.region import fan_mask

    h, w = shape
    apex = (float(rng.uniform(-0.8, 0.02) * h), float(w / 2 + rng.uniform(-0.1, 0.1) * w))
    half = float(rng.uniform(20, 55))
    inner = max(0.0, -apex[0]) + float(rng.uniform(0.0, 0.08) * h)
    outer = float(rng.uniform(0.85, 1.3) * h - apex[0])
    return fan_mask(shape, apex, (-half, half), (inner, outer)).astype(np.float32)


def draw_sector_edge(image: np.ndarray, sector: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bright line along the image's border, the edge real fans show and ribs resemble."""
    import cv2

    inside = (np.asarray(sector) > 0).astype(np.uint8)
    if not inside.any():
        return image
    k = int(rng.integers(1, 3)) * 2 + 1
    ring = inside - cv2.erode(inside, np.ones((k, k), np.uint8))
    level = float(rng.uniform(0.25, 0.8))
    return np.where(ring > 0, np.maximum(image, level), image).astype(np.float32)


def draw_overlays(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Vendor text, a depth ruler, a focus marker and a logo, in the margins and over the image."""
    import cv2

    h, w = image.shape
    layer = np.zeros((h, w), np.uint8)  # OpenCV draws text on 8-bit images only
    scale = max(0.3, min(h, w) / 512)
    for _ in range(int(rng.integers(1, 6))):
        text = " ".join(rng.choice(_OVERLAY_WORDS, size=int(rng.integers(1, 3))))
        org = (int(rng.integers(0, max(1, w - 20))), int(rng.integers(8, h)))
        cv2.putText(layer, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, int(rng.integers(120, 256)))
    if rng.random() < 0.6:  # a depth ruler: ticks down one side
        x = int(rng.choice([rng.integers(0, max(1, w // 12)), rng.integers(w - w // 12 - 1, w)]))
        step = max(4, int(h / rng.uniform(5, 14)))
        for y in range(step // 2, h, step):
            cv2.line(layer, (x, y), (min(w - 1, x + max(2, w // 60)), y), 200, 1)
    if rng.random() < 0.5:  # focus marker: a small triangle
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        d = max(2, w // 80)
        pts = np.array([[x, y], [x + 2 * d, y - d], [x + 2 * d, y + d]], np.int32)
        cv2.fillPoly(layer, [pts], 230)
    if rng.random() < 0.5:  # a logo block in a corner
        bw, bh = max(4, w // 12), max(3, h // 20)
        x = 0 if rng.random() < 0.5 else w - bw
        y = 0 if rng.random() < 0.5 else h - bh
        cv2.rectangle(layer, (x, y), (x + bw - 1, y + bh - 1), int(rng.integers(60, 200)), -1)
    return np.maximum(image, layer.astype(np.float32) / 255.0)


def resample(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Down- and up-sample: the detail of a lower-resolution export at the same pixel grid."""
    import cv2

    h, w = image.shape
    f = float(rng.uniform(0.35, 0.8))
    small = cv2.resize(image, (max(4, round(w * f)), max(4, round(h * f))), cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def jpeg(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """JPEG blocks and ringing at quality 15-70 (H.264 exports look much the same)."""
    import cv2

    quality = int(rng.integers(15, 71))
    img8 = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img8, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return image
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
