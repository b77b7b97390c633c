"""The review loop without a viewer: one stack, its review, its saved prediction and the one rule.

:class:`ReviewSession` owns what a user works on when curating rib masks: the stack's frames, its
:class:`~napari_ribseg.core.project.ReviewProject` (labels, statuses, saved next to the stack), the
model's probabilities (uint8, saved with the review so the threshold still works after reopening),
the mask options, and :meth:`ReviewSession.overwritable_frames`, the one rule of which frames a model
may write: never a curated, a rejected or a hand-edited frame. The dock widget binds napari layers
and buttons to a session and listens to its psygnal signals; the CLI and notebooks call it directly::

    session = ReviewSession.open("clip01.tif")
    session.predict_sync("unet")               # masks into every frame the rule allows
    session.set_labels(3, corrected_mask)      # a hand correction
    session.set_status([0, 1, 2, 3], FrameStatus.CURATED)
    session.save()
    data = session.training_set()              # what fine-tuning trains on

No Qt and no napari here; torch is imported only when a model runs.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import Signal

from napari_ribseg.core.errors import DatasetError, ProjectError
from napari_ribseg.core.io.intensity import mask_array
from napari_ribseg.core.jobs import Job, Progress, StopFlag, run_job
from napari_ribseg.core.postprocess import MaskOptions
from napari_ribseg.core.project import (
    ReviewProject,
    legacy_fingerprints,
    project_dir_for,
    review_exists,
)
from napari_ribseg.core.stack import FrameStatus, Stack
from napari_ribseg.core.uncertainty import frame_uncertainty

if TYPE_CHECKING:
    from napari_ribseg.core.models.checkpoint import LoadedModel
    from napari_ribseg.core.training.data import TrainingSet
    from napari_ribseg.core.training.loop import FinetuneConfig, FinetuneResult

#: Where a run may go: the frame shown, every frame, or the frames nobody has reviewed yet.
SCOPES = ("current", "all", "unreviewed")
#: A quick save (``save(check_all=False)``, the widget's on every change of frame) still checks
#: every frame when the last such exact check is older than this, so labels written in place
#: without :meth:`ReviewSession.mark_edited` (a script) are saved within this long. About 2 s a
#: check for 400 frames of 820 x 1124 (benchmarks/results/save-cost/2026-12-05.md).
EXACT_CHECK_EVERY_S = 120.0
#: The widget asks :meth:`ReviewSession.save_if_due` after this long without a step, a stroke or a
#: change of status, and again as often while nothing happens, so an unreported edit is saved
#: within :data:`EXACT_CHECK_EVERY_S` plus this even when nobody steps. A tick costs nothing
#: until an exact check is due.
IDLE_TICK_S = 10.0


@dataclass
class PredictionBatch:
    """Probabilities of some frames, computed off the review (e.g. in a worker thread)."""

    frames: np.ndarray
    prob: np.ndarray
    model_name: str
    stopped: bool = False
    requested: int = 0
    loaded: Any = None


def parse_frames(text: str, n_frames: int) -> np.ndarray:
    """Frame indices from ``"0-3,7"`` (ranges inclusive, 0-based); raise naming a bad part."""
    frames: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if match is None:
            raise DatasetError(f"frames {text!r}: cannot read {part!r}; expected e.g. 0-3,7")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise DatasetError(
                f"frames {text!r}: {part!r} runs backwards; write the lower frame first ({hi}-{lo})"
            )
        if hi >= n_frames:
            raise DatasetError(
                f"frames {text!r}: {part!r} is outside this stack of {n_frames} frames "
                f"(0-{n_frames - 1})"
            )
        frames.extend(range(lo, hi + 1))
    return np.unique(np.asarray(frames, dtype=np.int64))


def training_set_from_review(
    frames: np.ndarray | Stack, project: ReviewProject, name: str | None = None
) -> TrainingSet:
    """The curated frames of a review as a :class:`TrainingSet` (one group: the stack).

    The one way a review becomes training data: the widget, ``ribseg finetune STACK``,
    ``ribseg export-curated`` and the study runner all call this.
    """
    from napari_ribseg.core.training.data import TrainingSet

    if name is None:
        name = Path(project.source).stem if project.source else project.folder.stem
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "stack"
    return TrainingSet.from_stack(
        frames,
        project.labels,
        project.statuses,
        name=name,
        changed=project.changed_pixels,
        predicted=np.isfinite(project.confidence),
        labelled_by=project.model_name,
    )


#: The training jobs a review can start, by the name :func:`start_blocker` takes.
JOB_NAMES = {"finetune": "Fine-tuning", "adapt": "Adaptation"}


def start_blocker(
    session: ReviewSession | None, job: str, *, base: str | None, running: str | None = None
) -> str:
    """Why ``job`` (``"finetune"`` or ``"adapt"``) cannot start now, or ``""`` when it can.

    The one rule of when a training job may start, for every front end: one job at a time
    (``running`` is the kind of the job in progress, if any), a stack and a base model, and for a
    fine-tune enough curated frames to train on one and check the result on another.
    """
    if job not in JOB_NAMES:
        raise ValueError(f"unknown training job {job!r}; expected one of {sorted(JOB_NAMES)}")
    if running:
        return f"{JOB_NAMES.get(running, running)} is running (one run at a time; Cancel stops it)."
    if session is None:
        return (
            "Load a stack and segment it first."
            if job == "finetune"
            else "Load a stack to adapt to."
        )
    if not base:
        return "No base model: add a checkpoint to the model folder."
    if job == "finetune":
        from napari_ribseg.core.training.data import MIN_TRAIN_FRAMES
        from napari_ribseg.core.training.gate import GATE_FRAMES

        project = session.project
        n = int(len(project.curated_frames))
        if n < MIN_TRAIN_FRAMES:
            return (
                f"Mark at least {MIN_TRAIN_FRAMES} frames curated to fine-tune ({n} so far): one "
                "to train on, one to check the new model against; a new model is kept only when "
                f"it beats the base on {GATE_FRAMES} held-out frames you corrected, so curate and "
                f"correct at least {GATE_FRAMES + 1}."
            )
        if not any(bool((project.labels[i] == 1).any()) for i in project.curated_frames):
            return (
                f"None of the {n} curated frames marks a rib: a model trained on them learns to "
                "mark nothing. Draw the ribs on the curated frames first."
            )
    else:
        from napari_ribseg.core.training.adapt import adapt_split, too_short

        if problem := too_short(session.n_frames):
            return f"This stack is too short to adapt to: {problem}."
        # Curated frames judge an adaptation and are never learned from or checked on.
        if problem := adapt_split(session.n_frames, session.project.curated_frames)[2]:
            return f"Cannot adapt to this stack: {problem}."
    return ""


def finetune_note(session: ReviewSession, *, base: str | None) -> str:
    """What a fine-tune that may start can bring, for the line under Start.

    With the gate (the widget's runs) a new model is kept only when it wins on at least
    ``GATE_FRAMES`` held-out corrected frames that show ribs, and one frame more is trained on:
    fewer such curated frames (rib-free ones and ``base``'s own masks accepted unchanged do not
    count) can only end without a new model, and the user is told before training.
    """
    from napari_ribseg.core.training.gate import GATE_FRAMES

    project = session.project
    curated = [int(i) for i in project.curated_frames]
    own_masks = bool(base) and project.model_name == base
    usable = 0
    # Frame by frame, stopping once enough count: this runs on every label edit.
    for i in curated:
        if usable > GATE_FRAMES:
            break
        if own_masks and i in unedited_frames(project, base, frames=[i]):
            continue
        usable += bool((project.labels[i] == 1).any())
    text = f"{len(curated)} curated frames ready."
    if usable < GATE_FRAMES + 1:
        text += (
            f" A new model is kept only when it beats the base on at least {GATE_FRAMES} "
            f"held-out frames you corrected that show ribs, besides the frames it trains on: "
            f"{usable} of the curated frames can count (at least {GATE_FRAMES + 1} needed), so "
            "this run cannot make a new model; curate and correct more frames."
        )
    return text


def _project_of(review: ReviewSession | ReviewProject, function: str) -> ReviewProject:
    """The review's storage, whether a script holds the session or its project."""
    if isinstance(review, ReviewSession):
        return review.project
    if isinstance(review, ReviewProject):
        return review
    raise TypeError(
        f"{function} takes a ReviewSession or its ReviewProject (session.project); got "
        f"{type(review).__name__}"
    )


def curated_masks(review: ReviewSession | ReviewProject) -> dict[int, np.ndarray]:
    """Rib masks (``labels == 1``) of the review's curated frames, by frame index: what judges a
    label-free adaptation of the stack (``core.training.adapt``, ``labelled=``). ``review`` is a
    :class:`ReviewSession` or its :class:`ReviewProject`."""
    project = _project_of(review, "curated_masks")
    return {int(i): (project.labels[i] == 1).astype(np.uint8) for i in project.curated_frames}


def unedited_frames(
    review: ReviewSession | ReviewProject, model_name: str, frames: Iterable[int] | None = None
) -> list[int]:
    """Curated frames (of ``frames``, default all) whose label is ``model_name``'s own mask,
    accepted unchanged: no correction of that model a gate could judge it on (the fine-tune reads
    the same from :meth:`TrainingSet.corrected_for`). Only those frames' pixels are compared.
    ``review`` is a :class:`ReviewSession` or its :class:`ReviewProject`."""
    project = _project_of(review, "unedited_frames")
    if project.model_name != model_name:
        return []
    curated = np.asarray(project.curated_frames, dtype=np.int64)
    if frames is not None:
        curated = np.intersect1d(curated, np.asarray(list(frames), dtype=np.int64))
    if curated.size == 0:
        return []
    changed = project.changed_pixels_of(curated)
    predicted = np.isfinite(project.confidence[curated])
    return [int(i) for i, c, p in zip(curated, changed, predicted, strict=True) if c == 0 and p]


class ReviewSession:
    """A stack under review: frames, review project, saved probabilities, mask options, the rule."""

    #: Labels of these frames changed (list of int; an empty list means all frames).
    labels_changed = Signal(object)
    #: Frame statuses changed.
    statuses_changed = Signal()
    #: New probabilities arrived (the uncertainty ranking changed).
    prediction_changed = Signal()
    #: The mask options changed; argument: the new :class:`MaskOptions`.
    options_changed = Signal(object)
    #: The review was saved; argument: a short message.
    saved = Signal(str)

    #: Seconds on a clock that never goes back, by which the periodic exact check is timed
    #: (tests set another on the class or the instance).
    clock: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(
        self,
        frames: np.ndarray,
        project: ReviewProject,
        *,
        name: str = "stack",
        options: MaskOptions | None = None,
        restored: bool = False,
        scaling: dict | None = None,
    ) -> None:
        frames = np.asarray(frames)
        #: The frames' ``intensity_scaling`` record (how the reader scaled them), when known.
        self.intensity_scaling = scaling
        if frames.ndim != 3 or frames.shape != project.labels.shape:
            raise DatasetError(
                f"{project.folder}: frames {frames.shape} do not match the review's labels "
                f"{project.labels.shape}"
            )
        self.frames = frames
        self.project = project
        self.name = name
        self.options = (options or MaskOptions()).check()
        self.restored = restored
        n = frames.shape[0]
        saved = project.probabilities
        if saved is not None and np.shape(saved) == frames.shape:
            self.prob: np.ndarray | None = np.asarray(saved, dtype=np.uint8)
            # A frame has probabilities when the model scored it (confidence) or left any trace.
            self.has_prob = np.isfinite(project.confidence) | self.prob.reshape(n, -1).any(axis=1)
        else:
            self.prob = None
            self.has_prob = np.zeros(n, bool)
        self.uncertainty = np.full(n, np.nan, np.float32)
        self._update_uncertainty(np.flatnonzero(self.has_prob))
        #: When the labels were last checked frame by frame (opening read and checksummed them).
        self._last_exact_check = self.clock()

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        stack: Stack | str | os.PathLike,
        *,
        project_folder: str | os.PathLike | None = None,
        name: str | None = None,
        options: MaskOptions | None = None,
        existing: bool = False,
        read_only: bool = False,
        rebind: bool = False,
        variable: str | None = None,
    ) -> ReviewSession:
        """Open a stack (a :class:`Stack` or any readable path) and restore or start its review.

        The review lives in ``<file name>.ribseg`` next to the stack, or under ``project_folder``.
        ``existing``: only restore; a stack without a review raises :class:`ProjectError` (naming
        where it looked) instead of starting one, so reading never leaves an empty review behind.
        ``read_only`` (implies ``existing``): read the last save without taking the lock or writing
        anything, for commands that only read a review (show, export, train on it); it works on a
        read-only share and while a viewer has the stack open. Saving it raises. ``rebind``: the
        review of this very file is restored although the file reads to other frames than when
        it was saved (see :meth:`ReviewProject.open`); save to keep the new binding.
        ``variable``: the array of a .mat/.npz path to read (``read_stack``'s).
        """
        existing = existing or read_only
        if not isinstance(stack, Stack | str | os.PathLike):
            # An array failed in pathlib: "expected str, bytes or os.PathLike object, not ndarray".
            raise TypeError(
                f"stack must be a Stack or a path; got {type(stack).__name__} (in-memory frames: "
                "ReviewSession.for_frames(frames, folder) or ReviewSession.open(Stack(frames), "
                "project_folder=..., name=...))"
            )
        if not isinstance(stack, Stack):
            from napari_ribseg.core.io import read_stack

            stack = read_stack(stack, variable=variable)
        folder = project_dir_for(stack.source, root=project_folder, name=name or stack.name)
        scaling = stack.metadata.get("intensity_scaling")
        variable = stack.metadata.get("variable")
        if existing and not review_exists(folder, stack.frames, stack.source, scaling, variable):
            hint = "" if project_folder else " (pass --project-folder if it is kept elsewhere)"
            raise ProjectError(
                f"{stack.source or stack.name}: no review at {folder}{hint}; segment it with "
                "ribseg predict STACK --review (or in the widget) and curate frames first"
            )
        return cls.for_frames(stack.frames, folder, source=stack.source, name=name or stack.name,
                              options=options, read_only=read_only, scaling=scaling,
                              rebind=rebind, variable=variable)  # fmt: skip

    @classmethod
    def for_frames(
        cls,
        frames: np.ndarray,
        folder: str | os.PathLike,
        *,
        source: str | os.PathLike | None = None,
        name: str = "stack",
        options: MaskOptions | None = None,
        lock: bool = True,
        read_only: bool = False,
        scaling: dict | None = None,
        aliases: Sequence[dict] = (),
        rebind: bool = False,
        variable: str | None = None,
    ) -> ReviewSession:
        """A session over in-memory frames whose review is saved in ``folder``.

        The review is bound to the frames by a content fingerprint and locked against a second
        viewer until :meth:`close` (``read_only``: neither locked nor saved). ``scaling``: the
        frames' ``intensity_scaling`` record, so a review saved under an earlier reading rule of
        the same file still opens (:func:`~napari_ribseg.core.project.legacy_fingerprints`);
        ``aliases``: more such fingerprints, known to the caller (the widget's earlier scaling of
        another plugin's layer); ``rebind`` as for :meth:`open`; ``variable``: the array read
        from a file holding several (.npz, .mat), part of the file's signature.
        """
        frames = np.asarray(frames)
        if frames.ndim != 3:  # failed in the project with "IndexError: tuple index out of range"
            raise DatasetError(f"{folder}: frames must be (N, H, W); got shape {frames.shape}")
        project, restored = ReviewProject.open(
            folder, frames.shape[0], frames.shape[1:], source=source, frames=frames, lock=lock,
            read_only=read_only, aliases=[*legacy_fingerprints(frames, scaling), *aliases],
            rebind=rebind, variable=variable,
        )  # fmt: skip
        return cls(frames, project, name=name, options=options, restored=restored, scaling=scaling)

    # -- queries -------------------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def labels(self) -> np.ndarray:
        """The review's labels (uint8 0/1, edited in place by napari's paint tools)."""
        return self.project.labels

    @property
    def statuses(self) -> np.ndarray:
        return self.project.statuses

    def edited_frames(self) -> np.ndarray:
        """Frames whose labels differ from the model's mask (hand corrections)."""
        return np.flatnonzero(self.project.changed_pixels > 0)

    def protected_frames(self) -> np.ndarray:
        """Frames no model may overwrite: curated, rejected or edited by hand (the project's rule,
        :attr:`ReviewProject.protected_frames`)."""
        return self.project.protected_frames

    def overwritable_frames(self, frames: Iterable[int] | np.ndarray | None = None) -> np.ndarray:
        """THE overwrite rule: of ``frames`` (default all), those a model may write a mask into.

        ``frames``: frame indices 0..N-1 or, as for ``predict_stack``'s ``frame_indices``, a bool
        mask with one entry per frame; anything else raises :class:`DatasetError`.
        """
        candidates = np.arange(self.n_frames) if frames is None else self._frame_selection(frames)
        return np.setdiff1d(candidates, self.protected_frames())

    def writable_of(self, frames: Iterable[int]) -> np.ndarray:
        """Of ``frames``, those a run on ``unreviewed`` writes (:meth:`frames_for`), with only
        their own pixels compared: cheap for the frame being painted."""
        idx = np.asarray(list(frames), dtype=np.int64)
        if idx.size == 0:
            return idx
        todo = self.project.statuses[idx] == int(FrameStatus.UNREVIEWED)
        return idx[todo & (self.project.changed_pixels_of(idx) == 0)]

    def _frame_selection(self, frames: Iterable[int] | np.ndarray) -> np.ndarray:
        """``frames`` as int64 indices of this stack. A bool mask was taken as the indices 0 and 1
        (``session.statuses == UNREVIEWED`` ran the model on frames 0 and 1 only), fractions were
        truncated and indices outside the stack passed on."""
        n = self.n_frames
        if not isinstance(frames, np.ndarray) and isinstance(frames, Iterable):
            frames = list(frames)  # a generator, a range, a list
        arr = np.atleast_1d(np.asarray(frames))
        if arr.dtype == bool:
            if arr.shape != (n,):
                raise DatasetError(
                    f"frames as a mask must have one entry per frame ({n}); got shape {arr.shape}"
                )
            return np.flatnonzero(arr)
        if arr.size == 0:
            return np.zeros(0, np.int64)
        if arr.ndim != 1 or arr.dtype.kind not in "iuf" or not np.array_equal(arr, np.round(arr)):
            raise DatasetError(f"frames must be frame indices 0..{n - 1}; got {arr.tolist()}")
        arr = arr.astype(np.int64)
        bad = arr[(arr < 0) | (arr >= n)]
        if bad.size:
            raise DatasetError(f"frames {bad.tolist()} are outside this stack of {n} frames")
        return arr

    def frames_for(self, scope: str, current: int = 0) -> np.ndarray:
        """The frames a run on ``scope`` (``current``, ``all``, ``unreviewed``) may write."""
        if scope == "current":
            frames = np.array([int(current)])
        elif scope == "unreviewed":
            frames = self.project.frames_with(FrameStatus.UNREVIEWED)
        elif scope == "all":
            frames = np.arange(self.n_frames)
        else:
            raise ValueError(f"unknown scope {scope!r}; expected one of {', '.join(SCOPES)}")
        return self.overwritable_frames(frames)

    def nothing_to_run(self, scope: str, current: int = 0) -> str:
        """Why a run on ``scope`` writes no frame (:meth:`frames_for` is empty), in the user's
        words: which frames the overwrite rule keeps, e.g. ``"no unreviewed frame (6 curated)"``."""
        statuses = self.project.statuses
        edited = (statuses == int(FrameStatus.UNREVIEWED)) & (self.project.changed_pixels > 0)

        kinds = (
            (statuses == int(FrameStatus.CURATED), "curated"),
            (statuses == int(FrameStatus.REJECTED), "rejected"),
            (edited, "edited by hand"),
        )

        def tally(frames: np.ndarray) -> str:
            counts = ((int(mask[frames].sum()), what) for mask, what in kinds)
            return ", ".join(f"{n} {what}" for n, what in counts if n)

        everything = np.arange(self.n_frames)
        if scope == "current":
            current = int(current)
            what = next((what for mask, what in kinds if mask[current]), "kept")
            return f"frame {current} is {what} (kept)"
        if scope == "unreviewed":
            todo = self.project.frames_with(FrameStatus.UNREVIEWED)
            if todo.size == 0:
                return f"no unreviewed frame ({tally(everything)})"
            which = (
                "the unreviewed frame is"
                if todo.size == 1
                else f"the {todo.size} unreviewed frames are"
            )
            return f"{which} edited by hand (kept; Revert edits gives a frame back to the model)"
        return f"every frame is curated, rejected or edited by hand ({tally(everything)})"

    def counts(self) -> dict[str, int]:
        """How many frames are curated, rejected, unreviewed, edited and predicted."""
        statuses = self.project.statuses
        return {
            "curated": int((statuses == FrameStatus.CURATED).sum()),
            "rejected": int((statuses == FrameStatus.REJECTED).sum()),
            "unreviewed": int((statuses == FrameStatus.UNREVIEWED).sum()),
            "edited": int(self.edited_frames().size),
            "predicted": int(self.has_prob.sum()),
            "frames": self.n_frames,
        }

    def next_unreviewed(self, after: int) -> int | None:
        """The first unreviewed frame after ``after`` (wrapping); ``None`` when all are reviewed."""
        return self.project.next_unreviewed(after)

    def least_confident(self, exclude: int | None = None) -> int | None:
        """The unreviewed frame with the highest uncertainty (never-predicted frames first)."""
        todo = self.project.frames_with(FrameStatus.UNREVIEWED)
        if exclude is not None and todo.size > 1:
            todo = todo[todo != exclude]
        if todo.size == 0:
            return None
        score = np.nan_to_num(self.uncertainty[todo], nan=np.inf)
        return int(todo[int(np.argmax(score))])

    # -- predictions ---------------------------------------------------------------------------
    def compute_prediction(
        self,
        model: str | os.PathLike | LoadedModel,
        frames: Iterable[int] | np.ndarray | None = None,
        *,
        device: str = "auto",
        batch_size: int | None = None,
        stop: StopFlag | None = None,
        region: Any = None,
        flip_average: bool | None = None,
        crop_to_region: bool | None = None,
    ) -> Job[PredictionBatch]:
        """Job: probabilities of the overwritable ``frames`` (default all); changes nothing.

        ``region`` (an ``ImagedRegion``) is where the model runs; ``None`` detects it automatically.
        ``flip_average`` and ``crop_to_region`` are ``predict_stack``'s (``None``: its default;
        ``crop_to_region=False`` with no ``region``: whole frames, nothing detected).

        Safe to run in a worker thread; hand its result to :meth:`apply_prediction`.
        """
        from napari_ribseg.core.inference import predict_stack
        from napari_ribseg.core.models import load_model

        indices = self.overwritable_frames(frames)
        loaded = model
        if isinstance(model, str | os.PathLike):
            yield Progress("message", message=f"Loading model {Path(model).stem}")
            loaded = load_model(model, device="cpu")
        name = getattr(getattr(loaded, "card", None), "name", None) or str(model)
        if indices.size == 0:
            return PredictionBatch(np.zeros(0, np.int64), np.zeros((0, *self.frames.shape[1:]), np.uint8), name, loaded=loaded)  # fmt: skip
        prediction = yield from predict_stack(
            loaded, self.frames, device=device, batch_size=batch_size, frame_indices=indices,
            stop=stop, region=region, flip_average=flip_average, crop_to_region=crop_to_region,
        )  # fmt: skip
        done = np.flatnonzero(prediction.done)
        return PredictionBatch(
            frames=done,
            prob=prediction.prob[done],
            model_name=name,
            stopped=prediction.stopped,
            requested=int(indices.size),
            loaded=loaded,
        )

    def apply_prediction(self, batch: PredictionBatch) -> np.ndarray:
        """Keep the probabilities and write masks into the frames the rule allows; return those."""
        frames = np.asarray(batch.frames, dtype=np.int64)
        if frames.size == 0:
            return frames
        if self.prob is None:
            self.prob = np.zeros(self.frames.shape, np.uint8)
        self.prob[frames] = batch.prob
        self.has_prob[frames] = True
        self._update_uncertainty(frames)
        self.project.probabilities = self.prob
        self.project.mark_probabilities_changed(frames)
        from napari_ribseg.core.inference import frame_confidence

        allowed = np.isin(frames, self.overwritable_frames(frames))
        target = frames[allowed]
        written = self.project.apply_prediction(
            target,
            self.options.masks(self.prob[target]),
            frame_confidence(self.prob[target]),
            protect=self.protected_frames(),
        )
        self.project.model_name = batch.model_name
        self.prediction_changed.emit()
        self.labels_changed.emit([])
        return written

    def predict_sync(
        self,
        model: str | os.PathLike | LoadedModel,
        frames: Iterable[int] | np.ndarray | None = None,
        *,
        device: str = "auto",
        batch_size: int | None = None,
        on_progress: Any = None,
    ) -> np.ndarray:
        """Predict and apply in one call (scripts, the CLI); return the frames written."""
        batch = run_job(
            self.compute_prediction(model, frames, device=device, batch_size=batch_size),
            on_progress,
        )
        return self.apply_prediction(batch)

    def set_options(self, options: MaskOptions | None = None, **changes: Any) -> np.ndarray:
        """Change the mask options and re-derive the masks the rule allows (no model run).

        Options :func:`probability_to_mask` refuses (``threshold=50``) raise ``ValueError`` here
        and leave the session's options as they were.
        """
        new = dataclasses.replace(options or self.options, **changes).check()
        self.options = new
        self.options_changed.emit(new)
        return self.rederive_masks()

    def rederive_masks(self) -> np.ndarray:
        """Masks from the stored probabilities with the current options; return frames written."""
        if self.prob is None:
            return np.zeros(0, np.int64)
        frames = self.overwritable_frames(np.flatnonzero(self.has_prob))
        if frames.size == 0:
            return frames
        written = self.project.apply_prediction(
            frames, self.options.masks(self.prob[frames]), None, protect=self.protected_frames()
        )
        self.labels_changed.emit(written.tolist())
        return written

    def _update_uncertainty(self, frames: np.ndarray) -> None:
        if self.prob is not None and frames.size:
            self.uncertainty[frames] = frame_uncertainty(self.prob[frames])

    # -- the user's decisions ------------------------------------------------------------------
    def set_status(self, frames: int | Sequence[int] | np.ndarray, status: FrameStatus) -> None:
        """Set the status of one frame or several (indices, or a bool mask with one entry per
        frame: it was read as the indices 0 and 1)."""
        for frame in self._frame_selection(frames).tolist():
            self.project.set_status(int(frame), FrameStatus(status))
        self.statuses_changed.emit()

    def _frame_index(self, frame: int) -> int:
        """``frame`` as an index of this stack; :class:`DatasetError` outside 0..N-1 (as for
        :meth:`set_status`; a negative index would edit a frame counted from the end)."""
        if not 0 <= int(frame) < self.n_frames:
            raise DatasetError(f"frame {frame} is outside this stack of {self.n_frames} frames")
        return int(frame)

    def set_labels(self, frame: int, mask: np.ndarray) -> None:
        """Replace one frame's labels with a corrected mask (0 background, 1 rib), read by the
        mask-file rules (``core.io.intensity.mask_array``): a signed 0/-1 mask is rib, a 0/255
        mask is cut at 127, a float mask at 0.5, and a label map (1 rib, 2 pleura) is refused."""
        frame = self._frame_index(frame)
        mask = np.asarray(mask)
        if mask.shape != self.project.frame_shape:
            raise DatasetError(
                f"frame {frame}: expected a mask of {self.project.frame_shape}, got {mask.shape}"
            )
        # The rules a mask file is read with: a 0/-1 int8 mask is rib (> 0 read it as empty).
        self.project.labels[int(frame)] = mask_array(mask, f"frame {frame}")
        self.mark_edited([int(frame)])

    def mark_edited(self, frames: Sequence[int] = ()) -> None:
        """Tell the session labels of ``frames`` were edited in place (e.g. by a paint tool; no
        frames: any frame): the widget's quick saves check only the frames reported here."""
        frames = [int(f) for f in frames]
        self.project.mark_labels_changed(frames or None)
        self.labels_changed.emit(frames)

    def revert(self, frame: int) -> None:
        """Undo every hand edit of ``frame`` (back to the model's mask)."""
        frame = self._frame_index(frame)
        self.project.labels[int(frame)] = self.project.model_labels[int(frame)]
        self.mark_edited([int(frame)])

    # -- training ------------------------------------------------------------------------------
    def training_set(self) -> TrainingSet:
        """The curated frames as training data (see :func:`training_set_from_review`)."""
        data = training_set_from_review(self.frames, self.project, self.name)
        data.intensity_scaling = self.intensity_scaling
        return data

    def finetune(
        self,
        base: str | os.PathLike | LoadedModel,
        config: FinetuneConfig | None = None,
        *,
        out: str | os.PathLike | None = None,
        stop: StopFlag | None = None,
        overwrite: bool = False,
    ) -> Job[FinetuneResult]:
        """Job: fine-tune ``base`` on the curated frames, in this process. ``out``: a bare name is
        a model in the user model folder (as ``ribseg finetune --out NAME``), a path is taken as
        given; a model already there is refused unless ``overwrite`` (``--overwrite``)."""
        from napari_ribseg.core.models import load_model, model_output_path
        from napari_ribseg.core.training.loop import finetune, refuse_existing_out

        # Before the model is loaded and the training set built.
        out = model_output_path(out) if out is not None else None
        refuse_existing_out(out, overwrite=overwrite)
        loaded = load_model(base) if isinstance(base, str | os.PathLike) else base
        data = self.training_set()
        return finetune(loaded, data, config, out=out, stop=stop, resume=False, overwrite=overwrite)

    def finetune_sync(self, base: Any, config: Any = None, *, out: Any = None, overwrite: bool = False, on_progress: Any = None) -> FinetuneResult:  # fmt: skip
        """Fine-tune to the end and return the result (scripts, notebooks, tests)."""
        return run_job(self.finetune(base, config, out=out, overwrite=overwrite), on_progress)

    # -- saving --------------------------------------------------------------------------------
    def save(self, *, check_all: bool = True) -> bool:
        """Save the review if anything changed; return whether anything was written.

        ``check_all`` (the default): every frame is checked, so labels edited in place without
        :meth:`mark_edited` are saved too. ``check_all=False`` (the widget's save on every change of
        frame or status): only the frames reported edited are read, so its cost follows the edits,
        not the stack's length; every :data:`EXACT_CHECK_EVERY_S` it checks every frame anyway.
        """
        if self.prob is not None:
            self.project.probabilities = self.prob
        now = self.clock()
        check_all = check_all or self.exact_check_due()
        written = self.project.save(check_all=check_all)
        if check_all:
            self._last_exact_check = now
        if written:
            stamp = _dt.datetime.now().strftime("%H:%M:%S")
            self.saved.emit(f"Review saved at {stamp} in {self.project.folder.name}")
        return written

    def exact_check_due(self) -> bool:
        """Whether the last check of every frame is :data:`EXACT_CHECK_EVERY_S` old."""
        return self.clock() - self._last_exact_check >= EXACT_CHECK_EVERY_S

    def save_if_due(self) -> bool:
        """Save with a check of every frame when one is due (:meth:`exact_check_due`); nothing
        otherwise, and nothing for a read-only review. Return whether anything was written.

        The widget calls it while the user does nothing (every :data:`IDLE_TICK_S`): the quick saves
        on a step are the only other way to reach the periodic exact check, so labels a script
        wrote in place without :meth:`mark_edited` stayed unsaved until the review was closed
        while nobody stepped.
        """
        if self.project.read_only or not self.exact_check_due():
            return False
        return self.save()

    def close(self, save: bool = True) -> None:
        """Save (unless told not to) and release the review's lock."""
        try:
            if save and not self.project.read_only:
                self.save()
        finally:
            self.project.close()

    def __enter__(self) -> ReviewSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(save=exc[0] is None)

    def export_curated(self, out: str | os.PathLike) -> Path:
        """Write the curated frames as a paired IMG/+MASK/ folder (``core.io.paired`` layout)."""
        from napari_ribseg.core.io import write_paired_dataset

        data = self.training_set()
        return write_paired_dataset(out, data.images, data.masks, data.ids, layout="IMG/MASK")
