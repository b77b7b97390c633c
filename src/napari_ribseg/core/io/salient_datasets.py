"""Salient-object data sets (DUTS, ECSSD, XPIE, MSRA10K, a plain folder) read as grayscale pairs.

Cheng & Lam (2021) pre-trained their X-Unet on the grayscale salient-object set XPIE; this module
reads the public sets in their usual download layouts and turns the photographs to grayscale as the
study did. The pre-training job is :mod:`napari_ribseg.core.training.salient`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_ribseg.core.errors import DatasetError

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
