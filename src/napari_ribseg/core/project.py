"""A review project: the labels a user curates for one stack, per-frame statuses, and what changed.

The project lives in a sidecar folder ``<stack stem>.ribseg/`` next to the data (or under a project
folder the user chose, for read-only data). Every file in it is written atomically, the JSON last, so
a crash mid-save leaves the previous consistent project behind. Layout (format version 1):

``labels.npy``
    uint8 (frames, height, width): the labels as the user left them (0 background, 1 rib).
``model_labels.npy``
    uint8, same shape: the model's last mask per frame. The changed-pixel count of a frame is the
    number of pixels where ``labels`` differs from it, so it measures the user's correction effort.
``project.json``
    ``statuses`` (0 unreviewed, 1 curated, 2 rejected), ``confidence`` (null where no prediction),
    ``changed_pixels``, the source path, the frame shape and the model that produced the masks.

No Qt here: the widget calls this, and so can a script.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_ribseg.core.atomic import atomic_path, write_text_atomic
from napari_ribseg.core.errors import DatasetError
from napari_ribseg.core.stack import FrameStatus

PROJECT_SUFFIX = ".ribseg"
FORMAT_NAME = "napari-ribseg review project"
FORMAT_VERSION = 1
LABELS_FILE = "labels.npy"
MODEL_LABELS_FILE = "model_labels.npy"
JSON_FILE = "project.json"


def project_dir_for(
    source: str | Path | None, root: str | Path | None = None, name: str | None = None
) -> Path:
    """Return the sidecar folder of a stack: ``<stem>.ribseg`` next to ``source`` or under ``root``.

    ``name`` replaces the stem when the stack has no file (e.g. simulated data); such a stack needs a
    ``root`` because there is nowhere "next to the data" to put it.
    """
    if source is not None:
        src = Path(source)
        # A frame folder "clip01/" gets "clip01.ribseg/" beside it, a file "clip01.tif" likewise.
        stem = src.name if src.is_dir() else src.stem
        parent = src.parent
    else:
        if name is None or root is None:
            raise DatasetError(
                "This stack has no source file, so its review project needs a project folder: "
                "choose one in the widget's settings."
            )
        stem, parent = name, Path(root)
    if root is not None:
        parent = Path(root)
    return parent / f"{stem}{PROJECT_SUFFIX}"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


@dataclass
class ReviewProject:
    """Labels, statuses and confidences of one stack under review, and where they are saved."""

    folder: Path
    labels: np.ndarray
    model_labels: np.ndarray
    statuses: np.ndarray
    confidence: np.ndarray
    source: str | None = None
    model_name: str | None = None
    _labels_dirty: bool = field(default=True, repr=False)
    _model_dirty: bool = field(default=True, repr=False)
    _saved_json: str = field(default="", repr=False)
    _saved_counts: np.ndarray | None = field(default=None, repr=False)

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def new(
        cls,
        folder: str | Path,
        n_frames: int,
        frame_shape: tuple[int, int],
        source: str | Path | None = None,
    ) -> ReviewProject:
        """An empty project: no labels, every frame unreviewed, no confidence yet."""
        shape = (int(n_frames), int(frame_shape[0]), int(frame_shape[1]))
        return cls(
            folder=Path(folder),
            labels=np.zeros(shape, np.uint8),
            model_labels=np.zeros(shape, np.uint8),
            statuses=np.full(shape[0], FrameStatus.UNREVIEWED, np.uint8),
            confidence=np.full(shape[0], np.nan, np.float32),
            source=str(source) if source is not None else None,
        )

    @classmethod
    def load(cls, folder: str | Path) -> ReviewProject:
        """Read a saved project; raise :class:`DatasetError` naming the file when it is damaged."""
        folder = Path(folder)
        meta_path = folder / JSON_FILE
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise DatasetError(
                f"{meta_path}: no review project here (project.json missing)"
            ) from exc
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{meta_path}: not a readable review project ({exc})") from exc
        if meta.get("format") != FORMAT_NAME or int(meta.get("version", 0)) > FORMAT_VERSION:
            raise DatasetError(
                f"{meta_path}: expected a '{FORMAT_NAME}' of version <= {FORMAT_VERSION}, "
                f"found {meta.get('format')!r} version {meta.get('version')!r}"
            )
        n = int(meta["n_frames"])
        h, w = (int(v) for v in meta["frame_shape"])
        arrays = {}
        for key, fname in (("labels", LABELS_FILE), ("model_labels", MODEL_LABELS_FILE)):
            path = folder / fname
            try:
                arr = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise DatasetError(f"{path}: cannot read saved labels ({exc})") from exc
            if arr.shape != (n, h, w):
                raise DatasetError(
                    f"{path}: expected labels of shape {(n, h, w)} as recorded in project.json, "
                    f"found {arr.shape}"
                )
            arrays[key] = np.ascontiguousarray(arr, dtype=np.uint8)
        statuses = np.asarray(meta["statuses"], np.uint8)
        conf = np.array([np.nan if c is None else float(c) for c in meta["confidence"]], np.float32)
        if statuses.shape != (n,) or conf.shape != (n,):
            raise DatasetError(f"{meta_path}: statuses/confidence do not list {n} frames")
        project = cls(
            folder=folder,
            labels=arrays["labels"],
            model_labels=arrays["model_labels"],
            statuses=statuses,
            confidence=conf,
            source=meta.get("source"),
            model_name=meta.get("model"),
        )
        # What was just read is what is on disk: nothing to write until something changes.
        project._labels_dirty = project._model_dirty = False
        project._saved_json = project._json_text(saved_at=meta.get("saved_at", ""))
        project._saved_counts = project.changed_pixels
        return project

    @classmethod
    def open(
        cls,
        folder: str | Path,
        n_frames: int,
        frame_shape: tuple[int, int],
        source: str | Path | None = None,
    ) -> tuple[ReviewProject, bool]:
        """Restore the project in ``folder`` if one is there, else start a new one.

        Returns ``(project, restored)``. A saved project for a stack of another shape raises
        :class:`DatasetError` rather than silently discarding someone's curation.
        """
        folder = Path(folder)
        if (folder / JSON_FILE).exists():
            project = cls.load(folder)
            expected = (int(n_frames), int(frame_shape[0]), int(frame_shape[1]))
            if project.labels.shape != expected:
                raise DatasetError(
                    f"{folder}: this review project holds {project.labels.shape[0]} frames of "
                    f"{project.labels.shape[1:]} but the stack has {expected[0]} frames of "
                    f"{expected[1:]}; move the folder away or choose another project folder"
                )
            return project, True
        return cls.new(folder, n_frames, frame_shape, source), False

    # -- queries -------------------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return int(self.labels.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        return (int(self.labels.shape[1]), int(self.labels.shape[2]))

    @property
    def changed_pixels(self) -> np.ndarray:
        """Per frame, how many pixels the user changed relative to the model's mask (int64)."""
        return self.changed_pixels_of(None)

    def changed_pixels_of(self, frames: Sequence[int] | np.ndarray | None) -> np.ndarray:
        """Changed-pixel counts of ``frames`` only (all frames for ``None``): cheap for one frame."""
        if frames is None:
            a, b = self.labels, self.model_labels
        else:
            idx = np.asarray(frames, dtype=np.int64)
            a, b = self.labels[idx], self.model_labels[idx]
        return np.count_nonzero(a != b, axis=(1, 2)).astype(np.int64)

    def frames_with(self, status: FrameStatus) -> np.ndarray:
        """Indices of frames whose status is ``status``, ascending."""
        return np.flatnonzero(self.statuses == int(status))

    @property
    def curated_frames(self) -> np.ndarray:
        return self.frames_with(FrameStatus.CURATED)

    @property
    def protected_frames(self) -> np.ndarray:
        """Frames the model must not overwrite: curated ones and unreviewed ones the user edited."""
        edited = (self.changed_pixels > 0) & (self.statuses == int(FrameStatus.UNREVIEWED))
        return np.flatnonzero((self.statuses == int(FrameStatus.CURATED)) | edited)

    def next_unreviewed(self, after: int) -> int | None:
        """The first unreviewed frame after ``after``, wrapping around; ``None`` when all reviewed."""
        todo = self.frames_with(FrameStatus.UNREVIEWED)
        if todo.size == 0:
            return None
        later = todo[todo > after]
        return int(later[0] if later.size else todo[0])

    def least_confident_unreviewed(self, exclude: int | None = None) -> int | None:
        """The unreviewed frame with the lowest confidence (frames never predicted come first)."""
        todo = self.frames_with(FrameStatus.UNREVIEWED)
        if exclude is not None and todo.size > 1:
            todo = todo[todo != exclude]
        if todo.size == 0:
            return None
        conf = np.nan_to_num(self.confidence[todo], nan=-1.0)
        return int(todo[int(np.argmin(conf))])

    # -- changes -------------------------------------------------------------------------------
    def set_status(self, frame: int, status: FrameStatus) -> None:
        """Set one frame's review status."""
        if not 0 <= frame < self.n_frames:
            raise DatasetError(f"frame {frame} is outside this stack of {self.n_frames} frames")
        self.statuses[frame] = int(status)

    def apply_prediction(
        self,
        frames: Sequence[int] | np.ndarray,
        masks: np.ndarray,
        confidence: Sequence[float] | np.ndarray | None = None,
        *,
        protect: Sequence[int] | np.ndarray | None = None,
    ) -> np.ndarray:
        """Store the model's masks for ``frames``; write them into ``labels`` except where protected.

        ``masks`` is uint8 (len(frames), H, W). Curated frames are always protected; ``protect``
        adds more (the widget passes frames the user edited). Rejected frames that receive a new
        mask go back to unreviewed because the new mask has not been looked at. Returns the frame
        indices whose labels were written.
        """
        frames = np.asarray(frames, dtype=np.int64)
        masks = np.asarray(masks)
        if masks.shape != (frames.size, *self.frame_shape):
            raise DatasetError(
                f"expected {frames.size} masks of {self.frame_shape}, got an array of {masks.shape}"
            )
        keep = set(self.curated_frames.tolist())
        if protect is not None:
            keep.update(int(f) for f in np.asarray(protect).ravel())
        written = []
        for i, f in enumerate(frames.tolist()):
            mask = masks[i].astype(np.uint8, copy=False)
            if f in keep:
                # The model's view is still recorded only where nothing was changed by hand, so the
                # changed-pixel count of a protected frame keeps measuring the user's correction.
                continue
            self.model_labels[f] = mask
            self.labels[f] = mask
            if self.statuses[f] == FrameStatus.REJECTED:
                self.statuses[f] = FrameStatus.UNREVIEWED
            if confidence is not None:
                self.confidence[f] = float(np.asarray(confidence)[i])
            written.append(f)
        if written:
            self._labels_dirty = self._model_dirty = True
        return np.asarray(written, dtype=np.int64)

    def mark_labels_changed(self) -> None:
        """Tell the project its ``labels`` array was edited in place (e.g. by a paint tool)."""
        self._labels_dirty = True

    # -- saving --------------------------------------------------------------------------------
    def _json_text(self, saved_at: str, counts: np.ndarray | None = None) -> str:
        counts = self.changed_pixels if counts is None else counts
        conf = [None if math.isnan(float(c)) else round(float(c), 6) for c in self.confidence]
        meta = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "source": self.source,
            "model": self.model_name,
            "n_frames": self.n_frames,
            "frame_shape": list(self.frame_shape),
            "statuses": [int(s) for s in self.statuses],
            "status_names": {s.value: s.name.lower() for s in FrameStatus},
            "confidence": conf,
            "changed_pixels": [int(c) for c in counts],
            "saved_at": saved_at,
        }
        return json.dumps(meta, indent=1)

    @property
    def is_dirty(self) -> bool:
        """Whether anything differs from what was last saved."""
        counts = self.changed_pixels
        if self._saved_counts is None or not np.array_equal(counts, self._saved_counts):
            return True
        return (
            self._labels_dirty
            or self._model_dirty
            or self._json_text(saved_at="", counts=counts) != self._strip_time(self._saved_json)
        )

    @staticmethod
    def _strip_time(text: str) -> str:
        if not text:
            return text
        meta = json.loads(text)
        meta["saved_at"] = ""
        return json.dumps(meta, indent=1)

    def save(self, *, force: bool = False) -> bool:
        """Write what changed since the last save, atomically; return whether anything was written.

        Labels edited in place without :meth:`mark_labels_changed` are still caught because the
        per-frame changed-pixel counts are compared with the saved ones.
        """
        counts = self.changed_pixels
        labels_changed = (
            force
            or self._labels_dirty
            or self._saved_counts is None
            or not np.array_equal(counts, self._saved_counts)
        )
        text_now = self._json_text(saved_at="", counts=counts)
        if not (
            labels_changed or self._model_dirty or text_now != self._strip_time(self._saved_json)
        ):
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        if labels_changed:
            with atomic_path(self.folder / LABELS_FILE) as tmp:
                np.save(tmp, self.labels)
        if self._model_dirty or force or not (self.folder / MODEL_LABELS_FILE).exists():
            with atomic_path(self.folder / MODEL_LABELS_FILE) as tmp:
                np.save(tmp, self.model_labels)
        # JSON last: it is what marks the folder as a complete project.
        text = self._json_text(saved_at=_now(), counts=counts)
        write_text_atomic(self.folder / JSON_FILE, text)
        self._saved_json = text
        self._saved_counts = counts
        self._labels_dirty = self._model_dirty = False
        return True
