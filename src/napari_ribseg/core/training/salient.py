"""Salient-object pre-training of the X-Unet: data sets, a synthetic substitute, and the job.

Cheng & Lam (2021) pre-trained their plain U-Net (X-Unet) on the grayscale salient-object set XPIE
before fine-tuning it on lung ultrasound. This module reads the public salient-object sets in their
usual download layouts (DUTS, ECSSD, XPIE, MSRA10K, or a plain ``images/``+``masks/`` folder), turns
the photographs to grayscale as the study did, and pre-trains the plain U-Net from scratch through
the one fine-tuning loop of :mod:`napari_ribseg.core.training` (strategy ``all``).

Where no real set can be downloaded (offline CI, a headless server), :func:`compose_salient_set`
builds a deterministic substitute: object silhouettes filled with one photograph's texture pasted on
another photograph's background, from the photographs scikit-image ships in its wheel. Its model
card says so plainly; it must never be mistaken for an XPIE pre-training.

torch is imported only inside :func:`pretrain_salient`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_ribseg.core.errors import DatasetError

if TYPE_CHECKING:
    from napari_ribseg.core.jobs import Job, StopFlag

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")

#: Known two-folder layouts: (data set name, image folder names, mask folder names). Names are
#: compared case-insensitively; the first layout whose folders both exist wins.
FOLDER_LAYOUTS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("DUTS", ("DUTS-TR-Image", "DUTS-TE-Image"), ("DUTS-TR-Mask", "DUTS-TE-Mask")),
    ("ECSSD", ("images",), ("ground_truth_mask",)),
    ("XPIE", ("img", "imgs"), ("gt", "gts")),
    ("folder", ("images",), ("masks",)),
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


@dataclass
class SalientSet:
    """Grayscale photographs with binary salient-object masks.

    ``images`` are float32 (H, W) in [0, 1]; ``masks`` uint8 (H, W) 0/1; ``name`` is the data set
    (``"DUTS"``, ``"ECSSD"``, ``"XPIE"``, ``"MSRA10K"``, ``"folder"`` or ``"synthetic"``) and
    ``source`` says where it came from (a folder, or the synthetic recipe and seed).
    """

    images: list[np.ndarray]
    masks: list[np.ndarray]
    ids: list[str]
    name: str
    source: str
    root: Path | None = None
    statement: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    def mask_fractions(self) -> np.ndarray:
        """Share of object pixels per mask."""
        return np.array([float(m.mean()) for m in self.masks], dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# Reading the real data sets
# --------------------------------------------------------------------------------------------------


def _to_gray(image: np.ndarray) -> np.ndarray:
    """Photograph (H, W[, 1|2|3|4]) of any integer or float type -> float32 gray in [0, 1].

    Colour goes through the project's one luma conversion (ITU-R BT.601, as PIL and OpenCV use).
    """
    from napari_ribseg.core.io.intensity import luma

    arr = np.asarray(image)
    if np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    elif arr.dtype == bool:
        arr = arr.astype(np.float32)
    arr = arr.astype(np.float32, copy=False)
    if arr.ndim == 3:
        arr = luma(arr)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D gray or colour image; got shape {arr.shape}")
    return np.clip(arr, 0.0, 1.0)


def _to_mask(mask: np.ndarray) -> np.ndarray:
    """Saliency ground truth (0/255, often anti-aliased, sometimes RGB) -> uint8 0/1 at half range."""
    arr = np.asarray(mask)
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=-1)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    top = float(np.iinfo(arr.dtype).max) if np.issubdtype(arr.dtype, np.integer) else 1.0
    # Some sets store 0/1 in 8-bit files; a half-range threshold would erase them.
    if np.issubdtype(arr.dtype, np.integer) and arr.max() <= 1:
        top = 1.0
    return (arr.astype(np.float32) >= 0.5 * top).astype(np.uint8)


def _resize(image: np.ndarray, size: int | None, *, order: int) -> np.ndarray:
    """Squash to ``size`` x ``size`` as the study did (it resized every frame to 256x256)."""
    if size is None or image.shape == (size, size):
        return image
    from skimage.transform import resize

    out = resize(
        image,
        (size, size),
        order=order,
        mode="edge",
        anti_aliasing=order > 0,
        preserve_range=True,
    )
    return out.astype(image.dtype)


def _read_image(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    try:
        return iio.imread(path)
    except Exception as exc:  # noqa: BLE001 - any decoder failure becomes one DatasetError
        raise DatasetError(f"cannot read salient-object file {path}: {exc}") from exc


def _files(folder: Path, suffixes: Sequence[str]) -> dict[str, Path]:
    """Stem -> file for the files in ``folder`` with one of ``suffixes`` (first suffix wins)."""
    out: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes and not path.name.startswith("."):
            out.setdefault(path.stem, path)
    return out


def _child(folder: Path, names: Sequence[str]) -> Path | None:
    lowered = {n.lower() for n in names}
    for child in sorted(folder.iterdir()):
        if child.is_dir() and child.name.lower() in lowered:
            return child
    return None


def _find_layout(root: Path) -> tuple[str, list[tuple[Path, Path]]] | None:
    """(data set name, [(image folder, mask folder), ...]) at ``root`` or up to two levels below.

    DUTS unpacks as ``DUTS-TR/DUTS-TR-Image``, MSRA10K as ``MSRA10K_Imgs_GT/Imgs`` and ECSSD/XPIE
    often inside a folder of their own name, so the downloads' nesting is searched as well.
    """
    children = sorted(p for p in root.iterdir() if p.is_dir())
    grandchildren = sorted(q for p in children for q in p.iterdir() if q.is_dir())
    candidates = [root, *children, *grandchildren]
    for name, image_names, mask_names in FOLDER_LAYOUTS:
        pairs: list[tuple[Path, Path]] = []
        for folder in candidates:
            for image_name, mask_name in zip(image_names, mask_names, strict=True):
                img_dir = _child(folder, (image_name,))
                mask_dir = _child(folder, (mask_name,))
                if img_dir is not None and mask_dir is not None:
                    pairs.append((img_dir, mask_dir))
        if pairs:
            return name, sorted(set(pairs))
    # MSRA10K: "Imgs/" (or the root) holding <stem>.jpg photographs and <stem>.png masks together.
    for folder in candidates:
        jpgs = _files(folder, (".jpg", ".jpeg"))
        pngs = _files(folder, (".png",))
        if jpgs and set(jpgs) & set(pngs):
            return "MSRA10K", [(folder, folder)]
    return None


def detect_salient_layout(root: str | Path) -> str | None:
    """Name of the salient-object layout at ``root`` (``"DUTS"``, ``"ECSSD"``, ...) or ``None``."""
    root = Path(root)
    if not root.is_dir():
        return None
    found = _find_layout(root)
    return found[0] if found else None


def read_salient_dataset(
    root: str | Path, *, size: int | None = 256, limit: int | None = None
) -> SalientSet:
    """Read a salient-object set in its download layout; photographs become grayscale.

    Layouts: DUTS (``DUTS-TR-Image``/``DUTS-TR-Mask``, also ``DUTS-TE-*``), ECSSD
    (``images``/``ground_truth_mask``), XPIE (``img``/``gt``), MSRA10K (``<stem>.jpg`` and
    ``<stem>.png`` in one folder) and a plain ``images``/``masks`` folder, each at ``root`` or up
    to two levels below. Images and masks pair by file stem; ``size`` squashes both to ``size`` x ``size``
    (``None`` keeps the native sizes). ``limit`` keeps the first ``limit`` pairs in sorted order.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"salient-object data folder {root} does not exist")
    found = _find_layout(root)
    if found is None:
        raise DatasetError(
            f"no salient-object layout found in {root}: expected DUTS-TR-Image/DUTS-TR-Mask, "
            "images/ground_truth_mask (ECSSD), img/gt (XPIE), <stem>.jpg+<stem>.png (MSRA10K) or "
            "images/masks"
        )
    name, pairs = found
    images: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    ids: list[str] = []
    for img_dir, mask_dir in pairs:
        if img_dir == mask_dir:  # MSRA10K: photographs are .jpg, masks .png in the same folder
            img_files = _files(img_dir, (".jpg", ".jpeg"))
            mask_files = _files(mask_dir, (".png",))
        else:
            img_files = _files(img_dir, IMAGE_SUFFIXES)
            mask_files = _files(mask_dir, MASK_SUFFIXES)
        for stem in sorted(set(img_files) & set(mask_files)):
            if limit is not None and len(ids) >= limit:
                break
            image = _to_gray(_read_image(img_files[stem]))
            mask = _to_mask(_read_image(mask_files[stem]))
            if image.shape != mask.shape:
                raise DatasetError(
                    f"{name} pair {stem!r}: image {img_files[stem]} is {image.shape[:2]} but mask "
                    f"{mask_files[stem]} is {mask.shape[:2]}; expected the same height and width"
                )
            images.append(_resize(image, size, order=1))
            masks.append(_resize(mask, size, order=0))
            prefix = img_dir.parent.name if len(pairs) > 1 else ""
            ids.append(f"{prefix}/{stem}" if prefix else stem)
    if not ids:
        raise DatasetError(
            f"{name} layout in {root} has no image/mask pairs with matching file names "
            f"(folders: {', '.join(f'{a.name}+{b.name}' for a, b in pairs)})"
        )
    return SalientSet(
        images=images,
        masks=masks,
        ids=ids,
        name=name,
        source=str(root),
        root=root,
        statement=f"pre-trained on the {name} salient-object set ({len(ids)} images, grayscale)",
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


# --------------------------------------------------------------------------------------------------
# Pre-training
# --------------------------------------------------------------------------------------------------


@dataclass
class PretrainResult:
    """A finished (or stopped) salient pre-training: the checkpoint, its card and the data set."""

    checkpoint: Path | None
    card: Any
    statement: str
    dataset: str
    n_images: int
    best_val_dice: float
    stopped: bool
    history: list[dict[str, float]] = field(default_factory=list)
    model: Any = None


def salient_training_set(data: SalientSet) -> Any:
    """A :class:`~napari_ribseg.core.training.TrainingSet` with one group per photograph.

    Salient-object photographs are independent, so every image is its own group and the
    validation split of the fine-tuning loop takes whole images.
    """
    from napari_ribseg.core.training.data import TrainingSet

    return TrainingSet(
        images=list(data.images),
        masks=list(data.masks),
        groups=list(data.ids),
        source=data.source,
        ids=list(data.ids),
    )


def _resolve_out(out: str | Path | None, name: str) -> Path:
    """The output of a pre-training (see :func:`~napari_ribseg.core.models.paths.model_output_path`)."""
    from napari_ribseg.core.models.paths import model_output_path

    return model_output_path(name if out is None else out)


def pretrain_salient(
    data: SalientSet | str | Path | None = None,
    *,
    synthetic: int = 0,
    variant: str = "x-unet",
    preset: str = "compact",
    widths: Sequence[int] | None = None,
    size: int = 256,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 8,
    val_share: float = 0.1,
    augment: str = "flip",
    loss: str = "dice_bce",
    seed: int = 0,
    device: str = "auto",
    out: str | Path | None = None,
    stop: StopFlag | None = None,
    limit: int | None = None,
) -> Job[PretrainResult]:
    """Pre-train the plain U-Net from scratch on salient objects; a job returning PretrainResult.

    ``data`` is a :class:`SalientSet`, a folder in one of the layouts of
    :func:`read_salient_dataset`, or ``None`` with ``synthetic=N`` for the composed substitute.
    Training is the fine-tuning loop of ``core.training`` with strategy ``all`` started from a freshly
    built (random) model, Adam and horizontal flips. The loss is Dice + BCE, not the study's pure
    negative Dice: without batch norm, Dice alone drove the logits to +-3000 in our runs, the sigmoid
    saturated and fine-tuning on ultrasound could no longer move the model (loss flat at 0.993). ``out`` is a
    registry name (saved in ``user_model_dir()``) or a path; its card states what the model was
    pre-trained on, and names the substitute plainly when it is synthetic.
    """
    import torch

    from napari_ribseg.core.jobs import Progress
    from napari_ribseg.core.models import (
        LoadedModel,
        ModelCard,
        TrainingDataSummary,
        build_model,
        save_checkpoint,
    )
    from napari_ribseg.core.training.loop import FinetuneConfig, finetune

    if variant not in ("x-unet", "unet"):
        raise DatasetError(
            f"salient pre-training trains the plain U-Net architecture (x-unet or unet); got "
            f"{variant!r}"
        )
    if isinstance(data, SalientSet):
        salient = data
    elif data is not None:
        yield Progress("message", message=f"reading salient-object set {data}")
        salient = read_salient_dataset(data, size=size, limit=limit)
    elif synthetic > 0:
        yield Progress("message", message=f"composing {synthetic} synthetic salient images")
        salient = compose_salient_set(synthetic, size=size, seed=seed)
    else:
        raise DatasetError(
            "salient pre-training needs a data folder (DUTS, ECSSD, XPIE, MSRA10K, images/masks) "
            "or synthetic=N"
        )
    if len(salient) < 2:
        raise DatasetError(
            f"salient set {salient.source} has {len(salient)} image(s); need at least 2"
        )
    yield Progress(
        "message",
        message=f"{salient.name}: {len(salient)} images, mean object area "
        f"{salient.mask_fractions().mean():.1%}",
    )

    preset_name = preset if widths is None else "custom"
    name = f"{variant}-{preset_name}-salient"
    target = _resolve_out(out, name)
    torch.manual_seed(seed)
    model = build_model(variant, preset, input_size=size, pretrained=False, widths=widths)
    scratch_card = ModelCard(
        name=f"{variant}-{preset_name}-scratch",
        variant=model.variant,
        preset=model.preset,
        widths=list(model.widths),
        input_size=size,
        description="random (He) initialisation before salient-object pre-training",
    )
    base = LoadedModel(model=model, card=scratch_card, path=Path(f"<{scratch_card.name}>"))
    config = FinetuneConfig(
        strategy="all",
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        loss=loss,
        augment=augment,
        val_share=val_share,
        # The set is large and training starts from scratch: the validation Dice climbs slowly
        # and noisily, so early stopping would end runs that are still improving.
        early_stop_patience=0,
        schedule="cosine",
        seed=seed,
        device=device,
        base_is_candidate=False,
    )
    result = yield from finetune(base, salient_training_set(salient), config, out=target, stop=stop)

    # The loop's card describes a fine-tune of a scratch model; the truth is a pre-training, and
    # whether it was on a real set or the synthetic substitute must be impossible to miss.
    description = (
        f"{salient.statement}. Plain U-Net ({variant}) trained from scratch for "
        f"{len(result.history)} epochs at {size}x{size} on {len(salient)} grayscale images "
        f"({loss} loss, Adam lr {lr}, {augment} augmentation); validation Dice "
        f"{result.best_val_dice:.3f}."
    )
    card = ModelCard(
        **{
            **{k: getattr(result.card, k) for k in ("metrics", "epochs", "loss", "augmentation")},
            "name": target.stem,
            "variant": model.variant,
            "preset": model.preset,
            "widths": list(model.widths),
            "input_size": size,
            "parent": None,
            "freeze_strategy": "all",
            "training_data": TrainingDataSummary(
                frames=len(salient), source=salient.source, hash=salient_training_set(salient).hash
            ),
            "description": description,
            "weights_source": salient.statement,
            "extra": {
                "salient_pretraining": {
                    "dataset": salient.name,
                    "statement": salient.statement,
                    "synthetic": salient.name == "synthetic",
                    "info": salient.info,
                    "config": config.to_dict(),
                    "val_ids": result.val_ids,
                    "history": result.history,
                    "stopped": result.stopped,
                }
            },
        }
    )
    save_checkpoint(result.model, card, target)
    yield Progress(
        "message",
        message=f"saved {target} ({'stopped early' if result.stopped else 'finished'}; "
        f"validation Dice {result.best_val_dice:.3f})",
    )
    return PretrainResult(
        checkpoint=target,
        card=card,
        statement=salient.statement,
        dataset=salient.name,
        n_images=len(salient),
        best_val_dice=result.best_val_dice,
        stopped=result.stopped,
        history=result.history,
        model=result.model,
    )
