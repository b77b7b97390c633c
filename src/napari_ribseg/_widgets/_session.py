"""The stack under review and its layers, shared by the dock sections.

The sections never talk to each other; they talk to one :class:`ReviewSession` and listen to its
signals. This class only binds napari layers to the Qt-free
:class:`napari_ribseg.core.session.ReviewSession` (``self.core``), which owns the stack, the review,
the saved probabilities, the mask options and the overwrite rule. The Labels layer shows the review's
``labels`` array itself, so napari's paint tools edit it in place and nothing has to be copied back.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal

from napari_ribseg._widgets._settings import WidgetSettings, config_dir, save_settings
from napari_ribseg.core.errors import RibsegError
from napari_ribseg.core.project import ReviewProject, project_dir_for
from napari_ribseg.core.session import IDLE_TICK_S, PredictionBatch
from napari_ribseg.core.session import ReviewSession as CoreSession
from napari_ribseg.core.stack import FrameStatus

if TYPE_CHECKING:
    from collections.abc import Callable

    import napari
    from napari.layers import Image, Labels

    from napari_ribseg.core.postprocess import MaskOptions

#: Where the review projects of stacks that have no file (simulated samples) go by default.
SOURCELESS_FOLDER = "projects"
#: Colour of the rib label in the Labels layer (label value 1).
RIB_COLOUR = "#ff9f1c"
#: Metadata key marking a stack's probability-map layer (never offered as a stack to review); its
#: value is the image layer's :func:`layer_key` (``True`` on maps made before it was).
PROBABILITY_KEY = "ribseg_probability"
#: Metadata key marking a stack's ribs layer; its value is the image layer's :func:`layer_key`.
#: A layer's name is no key: the user renames layers, and napari renames a new one "<name> [1]"
#: when the name is taken (a deleted stack's ribs layer, another image of the same name).
RIBS_OF_KEY = "ribseg_ribs_of"
#: Metadata key holding a ribs layer's own :func:`layer_key`. napari's "Duplicate layer" copies the
#: metadata, so a layer whose value is not its own key is a copy: the user's, never taken over.
RIBS_LAYER_KEY = "ribseg_ribs_layer"
#: Key in the metadata of an image layer with no file: the name its review folder is named after
#: (its layer name when first reviewed), so renaming the layer keeps its review.
REVIEW_NAME_KEY = "ribseg_review_name"


_log = logging.getLogger(__name__)

#: What a start path (a load, a bind, a run, a listing) shows the user as a message rather than a
#: traceback: the core's own errors, and what the system and the core's validation raise for a
#: bad path, a full disk or a value out of range. Anything else is a bug and propagates.
USER_ERRORS: tuple[type[BaseException], ...] = (RibsegError, OSError, ValueError)


def user_error(action: str, exc: BaseException, path: str | Path | None = None) -> str:
    """The message that tells the user why ``action`` failed (:func:`friendly_error`).

    An ``OSError`` or ``ValueError`` is also logged with its traceback: it may be a bug rather
    than the user's file or disk, and the one line shown must not be all that is left of it.
    """
    message = friendly_error(action, exc, path)
    if not isinstance(exc, RibsegError):
        _log.warning("%s", message, exc_info=exc)
    return message


def notify_user_error(action: str, exc: BaseException, path: str | Path | None = None) -> str:
    """Show why ``action`` failed in napari's notification area (:func:`user_error`); the message."""
    message = user_error(action, exc, path)
    notify_error(message)
    return message


def notify_error(message: str) -> None:
    """Show an error in napari's notification area (never a modal dialog)."""
    from napari.utils.notifications import show_error

    show_error(message)


def short_path(path: str | Path, keep: int = 2) -> str:
    """The last ``keep`` parts of a path (``.../data/clip01.tif``), for messages that must fit."""
    parts = Path(path).parts
    return str(path) if len(parts) <= keep else str(Path("…", *parts[-keep:]))


def friendly_error(action: str, exc: BaseException, path: str | Path | None = None) -> str:
    """``"<action>: <reason> (<short path>)"``: the reason first, the path shortened at the end.

    Core errors start with the full path ("/a/b/clip.png: unsupported format"); in a toast that
    path pushes the reason out of sight.
    """
    reason = str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        # "No space left on device: /data/x" rather than "[Errno 28] No space left ...: '/data/x'".
        reason = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    if path is not None:
        for prefix in (str(path), str(Path(path).resolve())):
            if reason.startswith(prefix):
                reason = reason[len(prefix) :].lstrip(" :")
        reason = reason.replace(str(path), Path(path).name)
    reason = reason[:1].upper() + reason[1:] if reason else type(exc).__name__
    where = f" ({short_path(path)})" if path is not None else ""
    return f"{action}: {reason}{where}"


def notify_info(message: str) -> None:
    from napari.utils.notifications import show_info

    show_info(message)


def frames_of(layer: Image) -> np.ndarray:
    """The layer's pixels as the float32 (N, H, W) in [0, 1] the core expects.

    Layers from our reader and sample data are already float32 in [0, 1] and carry the reader's
    ``intensity_scaling``; a layer someone added from another plugin (napari's own TIFF reader,
    ``viewer.add_image``) is scaled by the readers' one rule (``core.io.intensity.to_unit_frames``):
    uint8 / 255, uint16 by the bit depth of its maximum, other integers and floats outside [0, 1]
    stretched from the stack's minimum to its maximum, floats in [0, 1] as they are.
    """
    return frames_and_scaling(layer)[0]


def layer_array(layer: Image) -> np.ndarray:
    """The layer's pixels as an (N, H, W) numeric array (a 2-D layer as one frame), unscaled."""
    if getattr(layer, "rgb", False):
        raise RibsegError(
            f"layer '{layer.name}' is an RGB image; rib segmentation needs grey frames (open the "
            "file with this plugin's reader, which turns colour into grey)"
        )
    data = np.asarray(layer.data)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise RibsegError(
            f"layer '{layer.name}' has {data.ndim} dimensions; rib segmentation needs a 2-D frame "
            "or a (frames, height, width) stack (RGB cines: open the file with this plugin's reader)"
        )
    if data.dtype.kind not in "biuf":
        raise RibsegError(
            f"layer '{layer.name}' holds {data.dtype} pixels; rib segmentation needs numbers "
            "(integers or real floats)"
        )
    return data


def frames_and_scaling(
    layer: Image, data: np.ndarray | None = None
) -> tuple[np.ndarray, dict | None]:
    """:func:`frames_of` and how the pixels were scaled (the reader's ``intensity_scaling`` for
    our layers, the record of the rule applied here for any other layer). ``data``: the layer's
    array as :func:`layer_array` gives it, when the caller already has it."""
    from napari_ribseg.core.io.intensity import to_unit_frames

    data = layer_array(layer) if data is None else data
    scaling = _reader_scaling(layer, data)
    if scaling is not None:
        return data, scaling  # our reader's frames, scaled when read
    try:
        return to_unit_frames(data, layer.name)
    except RibsegError as exc:
        raise RibsegError(f"layer '{layer.name}': {exc}") from exc


def _reader_scaling(layer: Image, data: np.ndarray) -> dict | None:
    """The reader's ``intensity_scaling`` when ``layer`` holds our reader's frames (float32,
    scaled when read), else ``None``."""
    scaling = (getattr(layer, "metadata", None) or {}).get("intensity_scaling")
    return scaling if data.dtype == np.float32 and isinstance(scaling, dict) else None


class _AsReadBefore:
    """A layer's frames as the widget scaled them until 2026-12-04, one frame at a time (for a
    review fingerprint; nothing is copied): integers other than uint16 divided by their type's
    maximum and clipped, floats as they were."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype = data, data.shape, np.dtype(np.float32)

    def __getitem__(self, index: int) -> np.ndarray:
        frame = self.data[index]
        if self.data.dtype.kind in "iu":
            top = float(np.iinfo(self.data.dtype).max)
            return (frame.astype(np.float32) / top).clip(0, 1)
        return np.asarray(frame, dtype=np.float32)


def former_fingerprints(layer: Image, data: np.ndarray, scaling: dict | None) -> list[dict]:
    """The fingerprints a layer's frames had under the widget's earlier scaling, so a review saved
    then still opens (rebound on its next save): integer layers other than uint8, uint16 and bool
    (divided by their type's maximum until 2026-12-04, now stretched like the readers' frames)
    and float layers outside [0, 1] (taken unscaled; ``scaling``, from :func:`frames_and_scaling`
    on ``data``, says whether they were stretched). Nothing for layers read the same as before."""
    from napari_ribseg.core.project import stack_fingerprint

    if _reader_scaling(layer, data) is not None:
        return []  # our reader's frames, used as they are, then and now
    kind, itemsize = data.dtype.kind, data.dtype.itemsize
    if kind == "b" or (kind == "u" and itemsize <= 2):
        return []
    if kind == "f" and (scaling or {}).get("method") != "minmax":
        return []  # in [0, 1]: as it was
    return [stack_fingerprint(_AsReadBefore(data))]


def on_image_axes(stack: np.ndarray, image: Image) -> np.ndarray:
    """A review's (N, H, W) array on the image layer's axes: for a 2-D image (one frame) the view
    of its one frame, so painting on it still writes into the review."""
    return stack[0] if getattr(image, "ndim", 3) == 2 and stack.shape[0] == 1 else stack


def _same_folder(a: str | Path, b: str | Path) -> bool:
    """Whether two review folders are one (by their resolved paths)."""
    return Path(a).resolve() == Path(b).resolve()


def same_layer(a: Any, b: Any) -> bool:
    """Whether two references name the same layer.

    A plugin's viewer is a napari ``PublicOnlyProxy`` that hands out a fresh proxy object for every
    layer it returns, so ``is`` can be false for the same layer; its ``unique_id`` is stable.
    """
    if a is None or b is None:
        return a is b
    return a is b or getattr(a, "unique_id", object()) == getattr(b, "unique_id", None)


def layer_key(layer: Any) -> str:
    """A layer's identity for as long as the program runs, as text (kept in other layers' metadata)."""
    return str(layer.unique_id)


def _meta(layer: Any, key: str) -> Any:
    meta = getattr(layer, "metadata", None)
    return meta.get(key) if isinstance(meta, dict) else None


def _is_duplicate(layer: Any) -> bool:
    """Whether ``layer`` is a napari duplicate of a ribs layer (its copied mark names another
    layer): the user's copy, left as it is."""
    own = _meta(layer, RIBS_LAYER_KEY)
    return own is not None and own != layer_key(layer)


def source_of(layer: Image) -> Path | None:
    """The file or folder a layer was read from, when napari or our loader recorded it."""
    # Our reader and loader put Stack.describe() into the metadata: {"source": ..., ...}.
    meta = layer.metadata if isinstance(layer.metadata, dict) else {}
    for candidate in (meta.get("source"), layer.source.path):
        if candidate:
            return Path(candidate)
    return None


#: How many strokes napari's Labels layer can undo (``Labels._history_limit``; a test checks it):
#: older ones are dropped here as there.
UNDO_DEPTH = 100


class _Stroke(NamedTuple):
    """One stroke as pixels: where it wrote (flat indices into the labels, sorted, unique), what
    they held before it and what it wrote, and the frames its paint event named."""

    pixels: np.ndarray
    before: np.ndarray
    after: np.ndarray
    frames: frozenset[int]


def _read_stroke(item: Any, shape: tuple[int, ...], frames: frozenset[int]) -> _Stroke | None:
    """A napari undo item (its atoms) as the pixels it wrote; ``None`` for an atom of a layout
    this does not know (napari's undo data is not public API)."""
    flats, befores, afters = [], [], []
    try:
        for atom in item:
            key = getattr(atom, "slice_key", None)
            if key is not None:  # a masked edit: box, mask of changed pixels, old values, label
                if len(key) != len(shape) or not all(isinstance(s, slice) for s in key):
                    return None
                ranges = [range(*s.indices(n)) for s, n in zip(key, shape, strict=True)]
                old = np.asarray(atom.old_values)
                if atom.mask is None:  # every pixel of the box changed; old is the box
                    local = np.indices([len(r) for r in ranges]).reshape(len(shape), -1)
                    old = old.reshape(-1)
                else:
                    local = np.nonzero(np.asarray(atom.mask))
                index = tuple(np.asarray(i) + r.start for i, r in zip(local, ranges, strict=True))
                new = np.asarray(atom.new_value)
            elif isinstance(atom, tuple) and len(atom) == 3:  # (indices, before, after)
                if not isinstance(atom[0], tuple) or len(atom[0]) != len(shape):
                    return None
                index = tuple(np.broadcast_arrays(*(np.asarray(i) for i in atom[0])))
                old, new = np.asarray(atom[1]), np.asarray(atom[2])
            else:
                return None
            if not all(np.issubdtype(i.dtype, np.integer) for i in index):
                return None
            flat = np.ravel_multi_index(index, shape, mode="wrap").ravel()
            flats.append(flat)
            befores.append(np.broadcast_to(old, index[0].shape).ravel())
            afters.append(np.broadcast_to(new, index[0].shape).ravel())
    except (TypeError, ValueError, AttributeError):
        return None
    if not flats:
        return _Stroke(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), frames)
    flat, before, after = (np.concatenate(x) for x in (flats, befores, afters))
    # A pixel written twice in one stroke held, before it, what the first write replaced.
    pixels, first = np.unique(flat, return_index=True)
    _, last = np.unique(flat[::-1], return_index=True)
    return _Stroke(pixels, before[first], after[len(flat) - 1 - last], frames)


class StrokeHistory:
    """The ribs layer's strokes as its paint events told them, in napari's undo order, and how
    many of them are in effect. napari's undo and redo tell nobody which strokes they replayed
    (and nobody at all while the layer is hidden); :meth:`settle` reads that from the pixels.

    Each stroke recorded the pixels it wrote, what they held before and what it wrote; napari's
    undo writes the first back, its redo the second. So from the labels last seen (on every pixel
    a stroke wrote), replaying undos and redos gives the labels for every number of strokes in
    effect, and the number in effect now is one whose labels equal the layer's (see
    :meth:`_follow` when several do). Any number of undos and redos between two calls, strokes
    that lie inside others, and strokes whose paint event came before or after their pixels were
    written are all followed, and the frames reported are those whose labels changed. Pixels no
    stroke wrote are never read: an edit there by other means is not seen here.
    """

    def __init__(self) -> None:
        self._items: list[tuple[Any, frozenset[int]]] = []
        #: How many of the strokes are in effect (the rest were undone, the last one first).
        self.in_effect = 0
        self._shape: tuple[int, ...] | None = None
        self._strokes: list[_Stroke] | None = None
        #: Each stroke read as pixels of the labels' shape (by ``id`` of its undo item).
        self._reads: dict[int, _Stroke | None] = {}
        self._reads_shape: tuple[int, ...] | None = None
        self._pixels = np.zeros(0, np.int64)  # every pixel a stroke wrote, sorted
        self._where: list[np.ndarray] = []  # each stroke's pixels as positions in _pixels
        self._expected = np.zeros(0)  # the labels on _pixels with in_effect strokes in effect
        #: The last number in effect and labels that the strokes explained exactly; differs from
        #: (in_effect, _expected) after labels no number explained were taken as they were.
        self._known: tuple[int, np.ndarray] = (0, self._expected)
        self._guessed = False

    def painted(self, item: Any, frames: set[int], data: Any = None) -> set[int] | None:
        """A stroke was painted: napari forgets what was undone (no redo after a new stroke).

        With ``data`` (the labels, the stroke written or about to be) the undos and redos since
        the last :meth:`settle` are read first, from the labels as they were before the stroke;
        returns the frames they changed (``None``: unknown, as for :meth:`settle`)."""
        if not isinstance(item, list | tuple) or not item:
            return set()  # nothing napari can undo
        moved: set[int] | None = set()
        frames = frozenset(frames)
        new = None if data is None else _read_stroke(item, tuple(np.shape(data)), frames)
        # A single paint() sends its paint event before it writes: the stroke is then in effect
        # from the next call on, which sees it written and names its frames (counted again).
        unwritten = (
            new is not None
            and len(new.pixels) > 0
            and not np.array_equal(
                np.asarray(data[np.unravel_index(new.pixels, np.shape(data))]), new.after
            )
        )
        if data is not None and self._items:
            moved = None
            if new is not None and self._ready(data):
                # The labels before the stroke (napari sends the paint event of a mouse stroke
                # after it wrote).
                actual = self._read(data)
                at = np.searchsorted(self._pixels, new.pixels)
                known = at < len(self._pixels)
                known[known] = self._pixels[at[known]] == new.pixels[known]
                actual[at[known]] = new.before[known]
                moved = self._follow_before_stroke(actual)
        del self._items[self.in_effect :]
        self._items.append((item, frames))
        del self._items[:-UNDO_DEPTH]
        self.in_effect = len(self._items) - int(unwritten)
        self._strokes = None
        kept = {id(i) for i, _ in self._items}  # the items hold their ids while kept
        self._reads = {key: read for key, read in self._reads.items() if key in kept}
        if data is not None:
            if new is not None and self._reads_shape == tuple(np.shape(data)):
                self._reads[id(item)] = new
            # Now, not at the next redraw: undos before it would look like the labels it expects.
            self._ready(data, now=True)
        return moved

    def settle(self, data: Any) -> set[int] | None:
        """The frames whose labels the undos and redos since the last call changed; ``None`` when
        no number of strokes in effect gives the labels (a stroke's pixels were written by other
        means, a stroke napari recorded in a layout this does not read): which changed is
        unknown. The next call compares with the labels seen by this one."""
        if not self._items:
            return set()
        if not self._ready(data):
            return None
        return self._follow(self._read(data))

    # -- the pixels ----------------------------------------------------------------------------
    def _ready(self, data: Any, now: bool = False) -> bool:
        """Read the strokes as pixels of ``data``'s shape (once per shape and set of strokes);
        ``now``: ``data`` holds the labels with ``in_effect`` strokes in effect."""
        shape = tuple(np.shape(data))
        if self._strokes is not None and shape == self._shape and not now:
            return True
        if shape != self._reads_shape:
            self._reads, self._reads_shape = {}, shape
        for item, frames in self._items:  # each stroke is read once (a long one takes ~2 ms)
            if id(item) not in self._reads:
                self._reads[id(item)] = _read_stroke(item, shape, frames)
        strokes = [self._reads[id(item)] for item, _ in self._items]
        if any(s is None for s in strokes):
            self._strokes = None
            return False
        self._shape, self._strokes = shape, strokes  # type: ignore[assignment]
        # Sorted, then duplicates dropped: np.unique hashes, ~20 times slower on 300k pixels.
        pixels = np.sort(np.concatenate([s.pixels for s in strokes]))
        self._pixels = pixels[np.r_[True, pixels[1:] != pixels[:-1]]] if len(pixels) else pixels
        self._where = [np.searchsorted(self._pixels, s.pixels) for s in strokes]
        dtype = np.result_type(*(s.before for s in strokes), *(s.after for s in strokes))
        if now:
            self._expected = self._read(data).astype(dtype, copy=False)
            self._known, self._guessed = (self.in_effect, self._expected), False
            return True
        # The labels with in_effect strokes in effect, from the strokes alone (no labels seen yet).
        expected = np.zeros(len(self._pixels), dtype)
        for stroke, where in zip(strokes[::-1], self._where[::-1], strict=True):
            expected[where] = stroke.before  # the first stroke on a pixel tells what it held
        for stroke, where in zip(strokes[: self.in_effect], self._where, strict=False):
            expected[where] = stroke.after
        self._expected = expected
        self._known, self._guessed = (self.in_effect, expected), False
        return True

    def _read(self, data: Any) -> np.ndarray:
        index = np.unravel_index(self._pixels, self._shape)
        return np.array(np.asarray(data[index]) if len(self._pixels) else [], copy=True)

    def _follow_before_stroke(self, actual: np.ndarray) -> set[int] | None:
        """:meth:`_follow` for the labels before a new stroke: from the last labels the strokes
        explained first. A redraw while a mouse stroke is under way (its pixels partly written,
        no paint event yet) sees labels no number of strokes explains, or a wrong one explains
        by chance; taken as they were, they would misplace the stroke once it is told."""
        if not self._guessed:
            return self._follow(actual)
        guess = (self.in_effect, self._expected)
        (self.in_effect, self._expected), self._guessed = self._known, False
        moved = self._follow(actual)
        if moved is None:  # written by other means since: from the labels as last seen
            (self.in_effect, self._expected), self._guessed = guess, True
            moved = self._follow(actual)
        return moved

    def _follow(self, actual: np.ndarray) -> set[int] | None:
        """Move ``in_effect`` to the number of strokes that gives ``actual``; the frames changed."""
        expected, strokes, start = self._expected, self._strokes or [], self.in_effect
        differ = expected != actual
        if not differ.any():
            return set()
        # Several numbers of strokes in effect can give the same labels (a stroke, then an erase
        # of all of it). Any of them names the frames that changed, but the next stroke drops
        # those above it, as napari drops its redo list: the highest keeps every stroke napari
        # may still undo (one it no longer has is only never matched).
        best: tuple[int, np.ndarray] | None = None
        off = int(np.count_nonzero(differ))
        closest = (off, start)  # the fewest pixels unexplained, and where
        for step in (1, -1):  # redos first, as far as they go; then the nearest undo
            labels, wrong = expected.copy(), differ.copy()
            count, k = off, start
            while best is None or step > 0:
                if not ((k > 0) if step < 0 else (k < len(strokes))):
                    break
                # Undoing stroke k-1 writes back what it replaced; redoing stroke k, what it wrote.
                i = k - 1 if step < 0 else k
                where = self._where[i]
                labels[where] = strokes[i].before if step < 0 else strokes[i].after
                count -= int(np.count_nonzero(wrong[where]))
                wrong[where] = labels[where] != actual[where]
                count += int(np.count_nonzero(wrong[where]))
                k += step
                if count == 0:
                    best = (k, labels.copy() if step > 0 else labels)
                if count < closest[0] or (count == closest[0] and k > closest[1]):
                    closest = (count, k)
            if best is not None:
                break
        if best is None:
            # Written by other means (and maybe undone or redone too). napari's undo and redo
            # write the strokes' values over whatever is there, so they are followed from these
            # labels on, with the number in effect that leaves the fewest pixels unexplained;
            # which frames changed is unknown.
            self.in_effect, self._expected, self._guessed = closest[1], actual, True
            return None
        self.in_effect, self._expected = best
        self._known, self._guessed = best, False
        if len(self._shape or ()) == 3:  # (frames, rows, columns): the frames of the pixels
            return {
                int(f) for f in np.unique(np.unravel_index(self._pixels[differ], self._shape)[0])
            }
        lo, hi = sorted((start, self.in_effect))
        return {f for _, fs in self._items[lo:hi] for f in fs}


class ReviewSession(QObject):
    """The image layer being segmented, its Labels/probability layers, and the core session."""

    #: A (new) image was bound and its review opened; argument: whether it was restored.
    image_bound = Signal(bool)
    #: Labels of these frames changed (list of int; empty list means "all").
    labels_updated = Signal(object)
    #: Statuses changed.
    statuses_changed = Signal()
    #: The review was saved; argument: a short message for the status line.
    saved = Signal(str)
    #: The list of models changed (e.g. a fine-tuned model arrived); argument: model to select.
    models_changed = Signal(str)
    #: The Segment section re-read the registry; argument: the list of ``ModelEntry``.
    models_listed = Signal(object)
    #: The model chosen for segmentation; argument: its name (the default fine-tuning base).
    model_selected = Signal(str)
    #: The image under review was renamed in napari; arguments: the old and the new name.
    image_renamed = Signal(str, str)

    def __init__(self, viewer: napari.viewer.Viewer, settings: WidgetSettings) -> None:
        super().__init__()
        self.viewer = viewer
        self.settings = settings
        self.image_layer: Image | None = None
        self.labels_layer: Labels | None = None
        self.prob_layer: Image | None = None
        #: The Qt-free session of the bound stack; ``None`` until an image is bound.
        self.core: CoreSession | None = None
        #: The mask options the Segment section shows; a newly bound stack starts with them.
        self.mask_options: Callable[[], MaskOptions] | None = None
        self._last_frame: int | None = None
        self._save_error_shown = False
        #: The bound image's name as its layers were named after it (to follow a rename).
        self._image_name = ""
        #: The strokes on the bound ribs layer and the frames each wrote into: napari's undo and
        #: redo change a stroke's frames, whichever frame is on screen, and tell only that the
        #: layer was refreshed.
        self._strokes = StrokeHistory()
        #: Copies of ribs layers whose first stroke was answered (by :func:`layer_key`).
        self._copies_told: set[str] = set()
        #: Ticks once the user has done nothing for IDLE_TICK_S (a step, a stroke or a status
        #: restarts it) and then as often: the core saves with a check of every frame when one is
        #: due, so an edit nobody reported is saved while nobody steps too.
        self._idle_timer = QTimer(self)
        self._idle_timer.setInterval(int(IDLE_TICK_S * 1000))
        self._idle_timer.timeout.connect(self.save_if_due)
        viewer.dims.events.current_step.connect(self._on_step)
        viewer.layers.events.inserted.connect(self._on_layer_inserted)
        for layer in viewer.layers:
            self._watch_copy(layer)

    # -- the core's state, for the sections ----------------------------------------------------
    @property
    def project(self) -> ReviewProject | None:
        return None if self.core is None else self.core.project

    @property
    def prob(self) -> np.ndarray | None:
        """The stored probabilities, uint8 (N, H, W) p*255 (saved with the review)."""
        return None if self.core is None else self.core.prob

    @property
    def has_prob(self) -> np.ndarray | None:
        return None if self.core is None else self.core.has_prob

    @property
    def frames(self) -> np.ndarray:
        if self.core is None:
            raise RibsegError("no image is selected: load a stack or pick an image layer first")
        return self.core.frames

    @property
    def n_frames(self) -> int:
        return 0 if self.core is None else self.core.n_frames

    # -- binding -------------------------------------------------------------------------------
    def project_folder_for(self, layer: Image) -> Path:
        root = Path(self.settings.project_folder) if self.settings.project_folder else None
        source = source_of(layer)
        if source is None and root is None:
            root = config_dir() / SOURCELESS_FOLDER
        return project_dir_for(source, root=root, name=_meta(layer, REVIEW_NAME_KEY) or layer.name)

    def bind_image(self, layer: Image) -> bool:
        """Make ``layer`` the stack under review: open (or restore) its review, add its Labels.

        Returns whether a saved review was restored. Raises :class:`RibsegError` (or another of
        :data:`USER_ERRORS`) with a message for the user when the layer cannot be reviewed; the
        stack under review then stays under review, unless the new review is kept in its folder
        (one folder, one lock: that one is let go before the new one opens).
        """
        if same_layer(layer, self.image_layer) and self.core is not None:
            # The same stack again: only a ribs layer the user deleted comes back.
            self.ensure_labels_layer()
            return False
        data = layer_array(layer)
        frames, scaling = frames_and_scaling(layer, data)
        former = former_fingerprints(layer, data, scaling)
        folder = self.project_folder_for(layer)
        if self.core is not None and _same_folder(self.core.project.folder, folder):
            self._let_go_of_review()  # one folder, one lock
        elif self.core is not None:
            # Saved first: the new review may take this one over (same content) from its disk.
            self.autosave()
        options = self.mask_options() if self.mask_options is not None else None
        try:
            core = CoreSession.for_frames(
                frames, folder, source=source_of(layer), name=layer.name, options=options,
                scaling=scaling, aliases=former,
                variable=(getattr(layer, "metadata", None) or {}).get("variable"),
            )  # fmt: skip
        except BaseException:
            if self.core is None:
                # Nothing is under review (or the previous review, in the same folder, is already
                # let go): say so everywhere rather than keep showing what nothing records.
                self._let_go_of_review()
                self.image_bound.emit(False)
            raise
        # Only now that the new review is open is the previous one saved and let go: a stack that
        # cannot be reviewed leaves the one under review as it was.
        self._let_go_of_review()
        core.labels_changed.connect(self._on_core_labels)
        core.statuses_changed.connect(self.statuses_changed.emit)
        core.saved.connect(self.saved.emit)
        self.core = core
        if source_of(layer) is None and isinstance(layer.metadata, dict):
            # Its review is named after the layer: a rename must not start another, empty one.
            layer.metadata.setdefault(REVIEW_NAME_KEY, layer.name)
        self._follow_name(layer)
        self.prob_layer = None
        self._save_error_shown = False
        self.labels_layer = self._labels_layer_for(layer, core.project)
        self._last_frame = self.current_frame()
        self._idle_timer.start()
        self.image_bound.emit(core.restored)
        return core.restored

    def _let_go_of_review(self) -> None:
        """Save and unlock the review under review; its ribs layer stays on screen but no longer
        feeds it, and no stack is under review."""
        self._release()
        self._let_go_of_labels(self.labels_layer)
        self.labels_layer = None
        self._follow_name(None)
        self.prob_layer = None

    def close(self) -> None:
        """The widget is going away: save and unlock the review, let go of the viewer."""
        self._release()
        # Strokes on it would be saved nowhere from now on: not paintable until a dock picks its
        # stack again (as a ribs layer whose stack another pick let go).
        self._let_go_of_labels(self.labels_layer)
        self._follow_name(None)
        self.labels_layer = self.prob_layer = None
        with contextlib.suppress(Exception):  # the viewer may already be gone
            self.viewer.dims.events.current_step.disconnect(self._on_step)
        with contextlib.suppress(Exception):
            self.viewer.layers.events.inserted.disconnect(self._on_layer_inserted)
            for layer in self.viewer.layers:
                if _is_duplicate(layer):
                    layer.events.paint.disconnect(self._on_copy_painted)

    def _release(self) -> None:
        """Save and unlock the current review (before binding another or when its layer goes)."""
        if self.core is None:
            return
        with contextlib.suppress(RuntimeError):  # the timer may already be deleted (quitting)
            self._idle_timer.stop()
        if not self.autosave():
            self._say_unsaved_changes_dropped()
        with contextlib.suppress(RibsegError, OSError):
            self.core.project.close()
        self.core = None

    def _say_unsaved_changes_dropped(self) -> None:
        """The review is let go while its last changes could not be saved: say so, every time
        (the earlier notification promised the labels stay in the viewer; from here they do not)."""
        core = self.core
        if core is None or core.project.read_only:
            return
        with contextlib.suppress(Exception):
            if not core.project.is_dirty:
                return
            notify_error(
                f"The review of '{core.name}' could not be saved ({core.project.folder}): its "
                "changes since the last save (statuses and edits) are not kept. Choose a writable "
                "project folder in Preferences, Rib Segmentation, before reviewing it again."
            )

    def _follow_name(self, image: Image | None) -> None:
        """Make ``image`` the image under review (``None``: none) and follow its renames."""
        old = self.image_layer
        if old is not None and not same_layer(old, image):
            with contextlib.suppress(Exception):  # the layer may be going with the viewer
                old.events.name.disconnect(self._on_image_renamed)
        if image is not None and not same_layer(old, image):
            image.events.name.connect(self._on_image_renamed)
        self.image_layer = image
        self._image_name = image.name if image is not None else ""

    def _on_image_renamed(self, event: Any = None) -> None:
        """The image under review was renamed in napari: its ribs and probability layers, still
        named after it, follow, and so does everything that names the stack."""
        image = self.image_layer
        if image is None or not same_layer(getattr(event, "source", image), image):
            return
        old, new = self._image_name, image.name
        if old == new:
            return
        self._image_name = new
        for layer, suffix in ((self.labels_layer, " ribs"), (self.prob_layer, " rib probability")):
            if layer is not None and layer.name == f"{old}{suffix}":  # not one the user renamed
                layer.name = f"{new}{suffix}"
        if self.core is not None:
            self.core.name = new
        self.image_renamed.emit(old, new)

    def _ribs_layer_of(self, image: Image, ndim: int) -> Labels | None:
        """The ribs layer ``image`` had (marked with its key), or else a ribs layer named after it
        that no image in the viewer owns (a deleted stack's, or one made before layers were
        marked), of the right dimensions; ``None`` when there is neither."""
        from napari.layers import Labels

        key, name = layer_key(image), f"{image.name} ribs"
        candidates = [
            x
            for x in self.viewer.layers
            if isinstance(x, Labels) and x.ndim == ndim and not _is_duplicate(x)
        ]
        # Layers marked before duplicates were told apart: the one still named after the image.
        marked = sorted(
            (x for x in candidates if _meta(x, RIBS_OF_KEY) == key), key=lambda x: x.name != name
        )
        if marked:
            return marked[0]
        present = {layer_key(x) for x in self.viewer.layers}
        return next(
            (x for x in candidates if x.name == name and _meta(x, RIBS_OF_KEY) not in present),
            None,
        )

    def _labels_layer_for(self, image: Image, project: ReviewProject) -> Labels:
        name = f"{image.name} ribs"
        units = getattr(image, "units", None)
        extra = {"units": tuple(str(u) for u in units)} if units is not None else {}
        data = on_image_axes(project.labels, image)
        mark = {RIBS_OF_KEY: layer_key(image)}

        old = self._ribs_layer_of(image, data.ndim)
        if old is not None:
            layer = old
            self._unhook_labels(layer)  # hooked again below, once
            # The layer may be a deleted stack's of the same name: it takes this image's place
            # (scale, offset, units), and strokes on other frames can no longer be undone into it.
            if layer.data.shape != data.shape:
                layer.editable = False  # napari drops the undo history of a non-editable layer
                layer.editable = True
            layer.scale = image.scale
            layer.translate = image.translate
            if units is not None:
                layer.units = extra["units"]
            layer.data = data
            layer.metadata = {**dict(layer.metadata), **mark, RIBS_LAYER_KEY: layer_key(layer)}
            layer.visible = True
            layer.editable = True  # made read-only when its review was let go
        else:
            layer = self.viewer.add_labels(
                data,
                name=name,
                scale=image.scale,
                translate=image.translate,
                opacity=0.45,
                metadata=mark,
                **extra,
            )
            layer.metadata = {**dict(layer.metadata), RIBS_LAYER_KEY: layer_key(layer)}
        with contextlib.suppress(Exception):  # colour is cosmetic; never block a review over it
            from napari.utils.colormaps import DirectLabelColormap

            layer.colormap = DirectLabelColormap(color_dict={None: "transparent", 1: RIB_COLOUR})
        # Strokes on a layer taken over (or on this one before it was let go) are not this
        # review's: napari dropped their undo history when the layer was made read-only.
        self._strokes = StrokeHistory()
        layer.events.paint.connect(self._on_paint)
        layer.events.selected_label.connect(self._on_selected_label)
        self._on_selected_label(layer=layer)
        layer.events.data.connect(self._on_labels_data)
        layer.events.set_data.connect(self._on_labels_refreshed)
        return layer

    def _let_go_of_labels(self, layer: Labels | None) -> None:
        """A ribs layer whose review was let go: no longer wired, and no longer paintable (strokes
        on it would be saved nowhere, and lost when its stack is picked again)."""
        self._unhook_labels(layer)
        self._strokes = StrokeHistory()  # napari drops their undo history with editable False
        if layer is not None:
            with contextlib.suppress(Exception):  # the layer may be going with the viewer
                layer.editable = False

    def _unhook_labels(self, layer: Labels | None) -> None:
        if layer is None:
            return
        for emitter, callback in (
            (layer.events.paint, self._on_paint),
            (layer.events.data, self._on_labels_data),
            (layer.events.set_data, self._on_labels_refreshed),
            (layer.events.selected_label, self._on_selected_label),
        ):
            with contextlib.suppress(Exception):  # not connected: nothing to undo
                emitter.disconnect(callback)

    def _on_layer_inserted(self, event: Any = None) -> None:
        self._watch_copy(getattr(event, "value", None))

    def _watch_copy(self, layer: Any) -> None:
        """Follow the strokes on a copy of a ribs layer (napari's *Duplicate Layer*): the user's,
        never part of a review, which its first stroke is told rather than silently ignored."""
        if layer is not None and _is_duplicate(layer):
            layer.events.paint.connect(self._on_copy_painted)

    def _on_copy_painted(self, event: Any = None) -> None:
        layer = getattr(event, "source", None)
        if layer is None or layer_key(layer) in self._copies_told:
            return
        self._copies_told.add(layer_key(layer))  # once per copy: a stroke is not an error
        ribs, image = self.labels_layer, self.image_layer
        where = (
            f"corrections of '{image.name}' go on '{ribs.name}'"
            if ribs is not None and image is not None
            else "corrections go on the ribs layer of the stack picked in Segment -> Image"
        )
        notify_info(
            f"Strokes on '{layer.name}' are not part of the review: it is a copy of a ribs layer "
            f"(napari's Duplicate Layer), yours to keep; {where}."
        )

    def ensure_labels_layer(self) -> Labels | None:
        """The ribs layer of the stack under review, made again if the user deleted it."""
        if self.core is None or self.image_layer is None:
            return None
        if not any(same_layer(layer, self.labels_layer) for layer in self.viewer.layers):
            self.labels_layer = self._labels_layer_for(self.image_layer, self.core.project)
        return self.labels_layer

    def forget_layer(self, layer: Any) -> None:
        """Drop references to a layer the user deleted (saving first when it was the image)."""
        if same_layer(layer, self.image_layer):
            self._let_go_of_review()
            self.image_bound.emit(False)
        elif same_layer(layer, self.labels_layer):
            # The review keeps the masks; the layer comes back when the stack is segmented or
            # picked again (ensure_labels_layer).
            self.autosave()
            self._unhook_labels(layer)
            self.labels_layer = None
        elif same_layer(layer, self.prob_layer):
            self.prob_layer = None

    # -- frames --------------------------------------------------------------------------------
    def current_frame(self) -> int:
        step = self.viewer.dims.current_step
        if self.core is None or not step:
            return 0
        # The stack's frame axis is the first of the image's own (last three) axes.
        axis = max(0, len(step) - 3) if len(step) > 3 else 0
        return int(min(max(step[axis], 0), self.n_frames - 1))

    def frame_on_screen(self) -> int | None:
        """The stack's frame the viewer shows, or ``None`` when its slider is past the stack's end
        (a longer stack, hidden, keeps the slider's range): then no frame of it is on screen."""
        if self.core is None:
            return None
        if self.image_layer is not None and self.image_layer.ndim == 2:
            return 0  # one frame, shown at every step
        step = self.viewer.dims.current_step
        if not step:
            return 0
        axis = max(0, len(step) - 3) if len(step) > 3 else 0
        frame = int(step[axis])
        return frame if 0 <= frame < self.n_frames else None

    def not_on_screen(self) -> str:
        """Why no frame of the stack can be acted on (the slider is past its end)."""
        step = self.viewer.dims.current_step
        axis = max(0, len(step) - 3) if len(step) > 3 else 0
        name = self.image_layer.name if self.image_layer is not None else "the stack"
        return (
            f"Frame {int(step[axis]) if step else 0} is not part of '{name}' ({self.n_frames} "
            "frames): move the slider onto one of its frames."
        )

    def go_to(self, frame: int) -> None:
        """Show ``frame`` in the viewer."""
        if self.core is None:
            return
        frame = int(min(max(frame, 0), self.n_frames - 1))
        self.viewer.dims.set_current_step(0, frame)

    def _on_step(self, event: Any = None) -> None:
        frame = self.current_frame()
        if frame != self._last_frame:
            self._last_frame = frame
            self._idle_timer_restart()
            # Autosave on every change of frame: that is when a user has finished with one. A
            # quick save: only the frames reported edited are read, not the whole stack.
            self.autosave(check_all=False)

    def _on_selected_label(self, event: Any = None, layer: Labels | None = None) -> None:
        # The review has one label, 1 = rib. napari's "new label" (M) and label spin box pick 2,
        # 3, ...: drawn transparent by the rib colour map and not ribs for training, a stroke with
        # them only erased, unseen. The brush keeps painting ribs.
        layer = layer if layer is not None else getattr(event, "source", None)
        if layer is not None and getattr(layer, "selected_label", 1) > 1:
            layer.selected_label = 1

    def _on_paint(self, event: Any = None) -> None:
        if self.core is not None:
            item = getattr(event, "value", None)
            frames = self._frames_of_stroke(item)
            data = self.labels_layer.data if self.labels_layer is not None else None
            # Undos and redos since the last redraw (done while the layer was hidden) first.
            self._report_moved(self._strokes.painted(item, frames, data))
            self.core.mark_edited(sorted(frames))
            self._idle_timer_restart()

    def _frames_of_stroke(self, item: Any) -> set[int]:
        """The stack's frames a stroke (napari's paint event value: its undo item) wrote into.

        A brush with ``n_edit_dimensions`` 3, or one used in the 3-D view, paints a ball through
        several frames, not only the one on screen; each is a hand edit. The frame on screen when
        the stroke carries no indices we can read.
        """
        frames: set[int] = set()
        if self.labels_layer is not None and self.labels_layer.ndim == 3:
            for atom in item if isinstance(item, list | tuple) else ():
                key = getattr(atom, "slice_key", None)  # a masked edit: its bounding box
                if key is not None and isinstance(key[0], slice):
                    start, stop, _ = key[0].indices(self.n_frames)
                    frames.update(range(start, stop))
                elif isinstance(atom, tuple) and len(atom) == 3:  # (indices, before, after)
                    frames.update(int(f) for f in np.unique(np.asarray(atom[0][0])))
        frames = {f for f in frames if 0 <= f < self.n_frames}
        return frames or {self.current_frame()}

    def _on_labels_refreshed(self, event: Any = None) -> None:
        # napari's undo/redo (and a script's edit followed by refresh()) write into the array and
        # refresh the layer without a paint event: recount the frame on screen and the frames of
        # the strokes undone or redone since the last refresh (Ctrl-Z undoes the last stroke
        # wherever it was), so the review table's "Changed px" follows. Only those frames: the
        # listeners keep the other frames' counts. Slicing lands here too (no stroke moved).
        if self.core is None or self.labels_layer is None:
            return
        if not same_layer(getattr(event, "source", self.labels_layer), self.labels_layer):
            return
        moved = self._strokes.settle(self.labels_layer.data)
        self._report_moved(moved if moved is None else moved | {self.current_frame()})

    def _report_moved(self, moved: set[int] | None) -> None:
        """Tell the review the frames undos and redos changed (``None``: unknown)."""
        if self.core is None:
            return
        project = self.core.project
        if moved is None:
            # A stroke's pixels were written since by other means (a script, Revert edits, a
            # model run): how far napari's undo went is unknown, so every frame is recounted
            # (and checked by the next save).
            project.mark_labels_changed(None)
            self.labels_updated.emit([])
            return
        frames = sorted(f for f in moved if 0 <= f < self.n_frames)
        if not frames:
            return
        # Reported to the review too (without its labels_changed, which would redraw the layer
        # again): napari's undo and redo write no paint event, and a quick save reads only the
        # frames reported edited.
        project.mark_labels_changed(frames)
        self.labels_updated.emit(frames)

    def _on_core_labels(self, frames: list) -> None:
        self.ensure_labels_layer()
        self.refresh_layers()
        self.labels_updated.emit(list(frames))

    def _on_labels_data(self, event: Any = None) -> None:
        # Someone replaced the whole array (e.g. a plugin, or undo across a data swap): adopt it so
        # the review keeps saving what the user sees.
        if self.core is None or self.labels_layer is None:
            return
        if not same_layer(getattr(event, "source", self.labels_layer), self.labels_layer):
            return  # another stack's ribs layer: never this review's
        project = self.core.project
        data = self.labels_layer.data
        if np.ndim(data) == 2 and project.n_frames == 1:  # a 2-D image's one frame
            if np.shares_memory(data, project.labels):
                return
            data = np.asarray(data)[None]
        if data is not project.labels and np.shape(data) == project.labels.shape:
            project.labels = np.asarray(data, dtype=np.uint8)
            self.core.mark_edited([])

    # -- changes -------------------------------------------------------------------------------
    def set_status(self, frame: int, status: FrameStatus) -> None:
        if self.core is None:
            return
        self.core.set_status(frame, status)
        self._idle_timer_restart()
        self.autosave(check_all=False)

    def apply_prediction(self, batch: PredictionBatch) -> np.ndarray:
        """Hand a finished run to the core (which applies the overwrite rule); save soon after."""
        if self.core is None:
            return np.zeros(0, np.int64)
        written = self.core.apply_prediction(batch)
        # Saved on the next turn of the event loop, so napari redraws the new masks first.
        QTimer.singleShot(0, self.autosave)
        return written

    def refresh_layers(self) -> None:
        if self.labels_layer is not None:
            self.labels_layer.refresh()
        if self.prob_layer is not None:
            self.prob_layer.refresh()

    def show_probability(self, show: bool) -> None:
        """Add (or remove) the stored probability map as an Image layer."""
        if not show:
            if self.prob_layer is not None and self.prob_layer in self.viewer.layers:
                self.viewer.layers.remove(self.prob_layer)
            self.prob_layer = None
            return
        if self.prob is None or self.image_layer is None or self.prob_layer is not None:
            return
        name = f"{self.image_layer.name} rib probability"
        key = layer_key(self.image_layer)
        maps = [x for x in self.viewer.layers if _meta(x, PROBABILITY_KEY)]
        kept = next((x for x in maps if _meta(x, PROBABILITY_KEY) == key), None) or next(
            (x for x in maps if x.name == name and _meta(x, PROBABILITY_KEY) is True), None
        )
        if kept is not None:
            # This stack's map, left (hidden) when another stack was shown: shown again with the
            # review's probabilities, not a second copy beside it.
            kept.data = on_image_axes(self.prob, self.image_layer)
            kept.scale = self.image_layer.scale
            kept.translate = self.image_layer.translate
            kept.visible = True
            self.prob_layer = kept
            return
        units = getattr(self.image_layer, "units", None)
        self.prob_layer = self.viewer.add_image(
            on_image_axes(self.prob, self.image_layer),
            name=name,
            scale=self.image_layer.scale,
            translate=self.image_layer.translate,
            colormap="magma",
            contrast_limits=(0, 255),
            blending="additive",
            opacity=0.5,
            visible=True,
            metadata={PROBABILITY_KEY: key},
            **({"units": tuple(str(u) for u in units)} if units is not None else {}),
        )

    # -- saving --------------------------------------------------------------------------------
    def autosave(self, check_all: bool = True) -> bool:
        """Save the review if anything changed; report failures once as a notification.

        ``check_all=False``: a quick save (on a change of frame or status), which reads only the
        frames reported edited (``ReviewSession.save``); undos and redos napari did while the ribs
        layer was hidden (no redraw, so not yet reported) are read from the strokes first.
        """
        if self.core is None:
            return False
        core = self.core
        return self._saving(lambda: core.save(check_all=check_all), quick=not check_all)

    def save_if_due(self) -> bool:
        """The idle timer's tick: the core's save with a check of every frame when one is due
        (``ReviewSession.save_if_due``; nothing otherwise). Failures are reported as autosave's."""
        if self.core is None:
            return False
        return self._saving(self.core.save_if_due, quick=False)

    def _idle_timer_restart(self) -> None:
        if self.core is not None:
            self._idle_timer.start()  # restarts a running timer: idle again from now

    def _saving(self, save: Callable[[], bool], quick: bool) -> bool:
        try:
            if quick:
                self._on_labels_refreshed()
            return save()
        except (OSError, RibsegError) as exc:
            # The status line must not keep saying "Review saved at ..." while edits are unsaved.
            self.saved.emit("Review NOT saved (see the notification); changes are only on screen")
            if not self._save_error_shown:
                self._save_error_shown = True
                hint = (
                    ""
                    if isinstance(exc, RibsegError)  # says what to do itself
                    else " Choose a writable project folder in Preferences, Rib Segmentation."
                )
                notify_error(
                    f"Could not save the review: {exc}.{hint} Your labels stay in the viewer."
                )
            return False

    def remember_folder(self, folder: str | Path) -> None:
        self.settings.last_folder = str(folder)
        save_settings(self.settings)
