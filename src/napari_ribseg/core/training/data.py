"""Training sets for fine-tuning: frames, rib masks and the clip each frame came from.

Splits and cross-validation folds go by group (clip or stack), never by frame: neighbouring cine
frames are near-duplicates, so a random frame split puts almost the same image in training and
validation and reports a Dice that will not hold on a new patient. With a single group the split
falls back to contiguous frame blocks, which keeps near-duplicates together except at one border.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_ribseg.core.atomic import atomic_path
from napari_ribseg.core.errors import DatasetError, TrainingError
from napari_ribseg.core.io.intensity import mask_array, unit_divisor, unit_float
from napari_ribseg.core.stack import FrameStatus, Stack

#: The fewest labelled frames a fine-tune runs on: one to train on, one to check the new model
#: against (:meth:`TrainingSet.split`; the widget's Start stays disabled below it).
MIN_TRAIN_FRAMES = 2

if TYPE_CHECKING:
    from napari_ribseg.core.io import PairedDataset


def _hash_frames(images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> str:
    """sha256 over shapes, image bytes (float32) and mask bytes (uint8), in frame order."""
    digest = hashlib.sha256()
    for image, mask in zip(images, masks, strict=True):
        digest.update(np.asarray(image.shape, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(image, dtype=np.float32).tobytes())
        digest.update(np.ascontiguousarray(mask, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def _rib_value(labels: np.ndarray, source: str) -> int:
    """The label value of rib pixels in curated ``labels``: 1, or 255 for a 0/255 binary mask.

    Raises :class:`TrainingError` when the labels mark something but neither way finds a rib.
    """
    if labels.dtype == np.uint8:
        counts = np.bincount(labels.ravel(), minlength=256)
        values = np.flatnonzero(counts)
        counts = counts[values]
    else:
        values, counts = np.unique(labels, return_counts=True)
    found = {v: int(c) for v, c in zip(values.tolist(), counts.tolist(), strict=True) if v != 0}
    if set(found) == {255}:
        return 255  # 0/255: a binary mask, as the paired readers read it
    if not found or 1 in found:
        return 1
    shown = ", ".join(f"{v:g}: {c} px" for v, c in list(found.items())[:8])
    more = f" and {len(found) - 8} more values" if len(found) > 8 else ""
    raise TrainingError(
        f"stack {source}: the curated frames' labels hold {shown}{more} but no rib label 1; "
        "expected a rib mask: rib 1 (or 255, as an image editor saves a 0/255 mask), all else 0. "
        "Other labels are not ribs: pass e.g. (labels == 2) if label 2 is the rib"
    )


@dataclass
class TrainingSet:
    """Frames (float32 2-D in [0, 1]), rib masks (uint8 2-D, 0/1) and a group (clip) per frame.

    ``hash`` is filled in from the pixels when left empty; ``ids`` defaults to ``<group>_f<index>``.
    """

    images: list[np.ndarray]
    masks: list[np.ndarray]
    groups: list[str]
    source: str = ""
    hash: str = ""
    ids: list[str] = field(default_factory=list)
    #: What a review knows of each label (empty: nothing, e.g. a paired folder): True, the user
    #: changed the model's mask or drew the label; False, they accepted the mask of model
    #: ``labelled_by`` unchanged. The promotion gate does not judge on a frame that is its base
    #: model's own unchanged mask.
    edited: list[bool] = field(default_factory=list)
    labelled_by: str | None = None
    #: How the source's pixels were scaled to [0, 1] (its ``intensity_scaling`` record: a paired
    #: dataset's per-clip divisors, a stack's reader record), ``None`` when unknown.
    intensity_scaling: dict | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if len(self.masks) != n or len(self.groups) != n:
            raise DatasetError(
                f"training set from {self.source or 'memory'}: {n} images, {len(self.masks)} masks "
                f"and {len(self.groups)} groups; expected one mask and one group per image"
            )
        self.images = [np.asarray(im, dtype=np.float32) for im in self.images]
        # The rules a mask file is read with (a 0/-1 int8 mask is rib; > 0 read it as empty).
        where = self.source or "memory"
        self.masks = [
            mask_array(m, f"training set from {where}, mask {i}") for i, m in enumerate(self.masks)
        ]
        self.groups = [str(g) for g in self.groups]
        for i, (image, mask) in enumerate(zip(self.images, self.masks, strict=True)):
            if image.ndim != 2 or image.shape != mask.shape:
                raise DatasetError(
                    f"training set from {self.source or 'memory'}, frame {i}: image {image.shape} "
                    f"and mask {mask.shape}; expected two 2-D arrays of the same shape"
                )
        if not self.ids:
            self.ids = [f"{g}_f{i:04d}" for i, g in enumerate(self.groups)]
        elif len(self.ids) != n:
            raise DatasetError(f"training set: {len(self.ids)} ids for {n} frames")
        self.edited = [bool(e) for e in self.edited]
        if self.edited and len(self.edited) != n:
            raise DatasetError(f"training set: {len(self.edited)} edited flags for {n} frames")
        if not self.hash:
            self.hash = _hash_frames(self.images, self.masks)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def group_names(self) -> list[str]:
        """Distinct groups in order of first appearance."""
        return list(dict.fromkeys(self.groups))

    def subset(self, indices: Sequence[int], source: str | None = None) -> TrainingSet:
        """The frames at ``indices`` (in that order) as a new set with its own hash."""
        idx = [int(i) for i in indices]
        return TrainingSet(
            images=[self.images[i] for i in idx],
            masks=[self.masks[i] for i in idx],
            groups=[self.groups[i] for i in idx],
            source=self.source if source is None else source,
            ids=[self.ids[i] for i in idx],
            edited=[self.edited[i] for i in idx] if self.edited else [],
            labelled_by=self.labelled_by,
            intensity_scaling=self.intensity_scaling,
        )

    def corrected_for(self, model_name: str) -> list[bool | None] | None:
        """Per frame, whether its label is a correction of ``model_name``'s own mask, as far as
        the review knows: True (edited or drawn), False (that model's mask, accepted unchanged),
        None (another model's mask accepted, or no review: the gate compares the masks itself)."""
        if not self.edited:
            return None
        same = self.labelled_by is not None and self.labelled_by == model_name
        return [True if e else (False if same else None) for e in self.edited]

    # ---- constructors -----------------------------------------------------------------------

    @classmethod
    def from_paired(cls, dataset: PairedDataset) -> TrainingSet:
        """From ``core.io.read_paired_dataset``: groups are the clip ids it derived."""
        return cls(
            images=list(dataset.images),
            masks=list(dataset.masks),
            groups=list(dataset.groups),
            source=str(dataset.root),
            ids=list(dataset.ids),
            intensity_scaling=getattr(dataset, "scaling", None),
        )

    @classmethod
    def from_stack(
        cls,
        stack_frames: Stack | np.ndarray,
        labels: np.ndarray,
        statuses: Sequence[int] | np.ndarray,
        *,
        name: str | None = None,
        changed: Sequence[int] | np.ndarray | None = None,
        predicted: Sequence[bool] | np.ndarray | None = None,
        labelled_by: str | None = None,
    ) -> TrainingSet:
        """Curated frames of one stack; the rib mask is ``labels == 1`` (other labels are not ribs).

        A 0/255 mask (an image editor's, as the paired readers and ``ReviewSession.set_labels``
        take it) is binary: its 255 is the rib. Curated labels with non-zero values but neither 1
        nor only 255 raise :class:`TrainingError` naming the values found (they trained a model
        that marks nothing).

        ``changed`` (pixels the user changed per frame), ``predicted`` (whether the model ever
        masked the frame) and ``labelled_by`` (the model of the masks) come from the review and
        fill :attr:`edited`; without them nothing is known of the labels' origin.
        """
        if isinstance(stack_frames, Stack):
            frames = stack_frames.frames
            name = name or stack_frames.name
            source = str(stack_frames.source) if stack_frames.source else stack_frames.name
        else:
            frames = np.asarray(stack_frames)
            name = name or "stack"
            source = name
        labels = np.asarray(labels)
        statuses = np.asarray(statuses)
        if labels.shape != frames.shape or statuses.shape != (frames.shape[0],):
            raise DatasetError(
                f"stack {source}: frames {frames.shape}, labels {labels.shape}, statuses "
                f"{statuses.shape}; expected labels shaped like the frames and one status per frame"
            )
        curated = np.flatnonzero(statuses == int(FrameStatus.CURATED))
        if curated.size == 0:
            raise TrainingError(
                f"stack {source}: no frame is marked curated; mark the corrected frames first"
            )
        edited: list[bool] = []
        if changed is not None:
            changed = np.asarray(changed)
            never = (
                ~np.asarray(predicted, bool)
                if predicted is not None
                else np.zeros(len(changed), bool)
            )
            edited = [bool(changed[i] > 0 or never[i]) for i in curated]
        # Raw integer frames are divided as the readers divide the whole stack (a 12-bit stack
        # by 4095, whichever frames are curated); a Stack's frames are float already.
        divisor = unit_divisor(frames)
        rib = _rib_value(labels[curated], source)
        return cls(
            images=[unit_float(frames[i], divisor) for i in curated],
            masks=[(labels[i] == rib).astype(np.uint8) for i in curated],
            groups=[name] * curated.size,
            source=source,
            ids=[f"{name}_f{i:04d}" for i in curated],
            edited=edited,
            labelled_by=labelled_by if edited else None,
        )

    @classmethod
    def from_cines(
        cls,
        clips: Iterable[tuple[Any, int]],
        frames_per_clip: int,
        *,
        group: str = "sim{seed:04d}",
        source: str = "simulator",
    ) -> TrainingSet:
        """Simulated clips, one group per clip: each ``(SimulationConfig, seed)`` is simulated for
        ``frames_per_clip`` frames; ``group`` names a clip from its seed, frame ids append
        ``_f<frame>``."""
        from napari_ribseg.core.simulate import simulate_cine

        images: list[np.ndarray] = []
        masks: list[np.ndarray] = []
        groups: list[str] = []
        ids: list[str] = []
        for config, seed in clips:
            cine = simulate_cine(frames_per_clip, config, seed)
            name = group.format(seed=seed)
            for f in range(frames_per_clip):
                images.append(np.asarray(cine.frames[f], dtype=np.float32))
                masks.append(np.asarray(cine.rib[f], dtype=np.uint8))
                groups.append(name)
                ids.append(f"{name}_f{f:04d}")
        return cls(images=images, masks=masks, groups=groups, source=source, ids=ids)

    @classmethod
    def from_simulator(
        cls,
        n_clips: int,
        frames_per_clip: int,
        config_or_rng: Any = None,
        seed: int = 0,
        **overrides: Any,
    ) -> TrainingSet:
        """Simulated clips: one group per clip.

        ``config_or_rng`` is a ``SimulationConfig`` used for every clip (with ``overrides``
        applied), or a ``numpy.random.Generator`` / ``None`` from which a random config is drawn
        per clip with ``random_config(rng, **overrides)``; clip ``i`` is simulated with ``seed + i``.
        """
        import dataclasses

        from napari_ribseg.core.simulate import random_config

        rng = config_or_rng
        fixed = None
        if rng is None:
            rng = np.random.default_rng(seed)
        elif not isinstance(rng, np.random.Generator):
            fixed = dataclasses.replace(rng, **overrides) if overrides else rng
        clips = (
            (fixed if fixed is not None else random_config(rng, **overrides), seed + clip)
            for clip in range(n_clips)
        )
        what = json.dumps(overrides, sort_keys=True, default=str) if overrides else "random"
        source = f"simulator:seed={seed},clips={n_clips}x{frames_per_clip},{what}"
        return cls.from_cines(clips, frames_per_clip, source=source)

    # ---- splits -----------------------------------------------------------------------------

    def split(self, val_share: float = 0.2, seed: int = 0) -> tuple[TrainingSet, TrainingSet]:
        """(train, validation) by group; with one group, a contiguous block of frames at one end."""
        if not 0.0 < val_share < 1.0:
            raise TrainingError(f"val_share must be between 0 and 1 (exclusive); got {val_share}")
        n = len(self)
        if n < MIN_TRAIN_FRAMES:
            raise TrainingError(
                f"training set from {self.source or 'memory'} has {n} frame(s); need at least "
                f"{MIN_TRAIN_FRAMES} to keep one for validation"
            )
        rng = np.random.default_rng(seed)
        names = self.group_names
        if len(names) == 1:
            n_val = min(n - 1, max(1, round(val_share * n)))
            # A block at the start or the end: only one border frame neighbours the training frames.
            val_idx = list(range(n_val)) if rng.integers(2) == 0 else list(range(n - n_val, n))
        else:
            order = [names[i] for i in rng.permutation(len(names))]
            n_val_groups = min(len(names) - 1, max(1, round(val_share * len(names))))
            val_groups = set(order[:n_val_groups])
            val_idx = [i for i, g in enumerate(self.groups) if g in val_groups]
        val_set = set(val_idx)
        train_idx = [i for i in range(n) if i not in val_set]
        return self.subset(train_idx), self.subset(val_idx)

    def folds(self, k: int = 5, seed: int = 0) -> Iterator[tuple[TrainingSet, TrainingSet]]:
        """k (train, validation) folds by group; with one group, k contiguous frame blocks."""
        if k < 2:
            raise TrainingError(f"k-fold cross-validation needs k >= 2; got {k}")
        names = self.group_names
        n = len(self)
        if len(names) == 1:
            if n < k:
                raise TrainingError(f"{n} frames cannot make {k} folds")
            blocks = [list(b) for b in np.array_split(np.arange(n), k)]
        else:
            if len(names) < k:
                raise TrainingError(
                    f"training set from {self.source or 'memory'} has {len(names)} clips; "
                    f"{k}-fold cross-validation by clip needs at least {k}"
                )
            rng = np.random.default_rng(seed)
            order = [names[i] for i in rng.permutation(len(names))]
            blocks = []
            for chunk in np.array_split(np.arange(len(order)), k):
                chosen = {order[i] for i in chunk}
                blocks.append([i for i, g in enumerate(self.groups) if g in chosen])
        for block in blocks:
            held = set(block)
            yield self.subset([i for i in range(n) if i not in held]), self.subset(block)

    # ---- files (no pickle) ------------------------------------------------------------------

    def save_npz(self, path: str | Path) -> Path:
        """Write the set atomically as an .npz of plain arrays plus a JSON header."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        for i, (image, mask) in enumerate(zip(self.images, self.masks, strict=True)):
            arrays[f"image_{i:06d}"] = image
            arrays[f"mask_{i:06d}"] = mask
        header = {
            "groups": self.groups,
            "ids": self.ids,
            "source": self.source,
            "hash": self.hash,
            "edited": self.edited,
            "labelled_by": self.labelled_by,
        }
        arrays["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        return path

    @classmethod
    def load_npz(cls, path: str | Path) -> TrainingSet:
        """Read a set written by :meth:`save_npz` (``allow_pickle=False``)."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as npz:
                header = json.loads(npz["header"].tobytes().decode("utf-8"))
                n = len(header["groups"])
                images = [npz[f"image_{i:06d}"] for i in range(n)]
                masks = [npz[f"mask_{i:06d}"] for i in range(n)]
        except (OSError, KeyError, ValueError) as exc:
            raise DatasetError(
                f"{path}: not a training set written by TrainingSet.save_npz ({exc})"
            ) from exc
        data = cls(
            images,
            masks,
            header["groups"],
            header["source"],
            ids=header["ids"],
            edited=header.get("edited", []),
            labelled_by=header.get("labelled_by"),
        )
        if data.hash != header["hash"]:
            raise DatasetError(f"{path}: pixel hash does not match its header; the file is damaged")
        return data
