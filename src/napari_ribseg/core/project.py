"""A review project: the labels a user curates for one stack, per-frame statuses, and what changed.

The project lives in a sidecar folder ``<stack file name>.ribseg/`` next to the data (``clip.dcm`` gets
``clip.dcm.ribseg/``, so ``clip.dcm`` and ``clip.mp4`` in one folder never share a review), or under a
project folder the user chose, for read-only data.

Every save is one commit (format version 3), as git and SQLite do it: the files of the save are
written into a temporary folder, fsynced, listed with their sha256 in ``manifest.json``, and the folder
is renamed to ``v<N>/`` (then the sidecar folder is fsynced). The newest ``v<N>`` whose manifest
verifies is the project; a kill at any moment leaves either the previous save or the new one, never a
mix. Opening removes temporary folders and keeps the last two versions. Each version holds three
arrays, each stored in chunks of :data:`CHUNK_FRAMES` frames, ``<name>.<first frame>.npy``
(``labels.000000.npy``, ``labels.000016.npy``, ...): a chunk no frame of which changed since the last
save is a hard link to the previous save's file, so a save after a one-frame edit writes one chunk,
not the whole stack (format 2 kept each array in one file, ``labels.npy``; it is still read):

``labels``
    uint8 (frames, height, width): the labels as the user left them (0 background, 1 rib).
``model_labels``
    uint8, same shape: the model's last mask per frame. The changed-pixel count of a frame is the
    number of pixels where ``labels`` differs from it, so it measures the user's correction effort.
``probabilities`` (optional)
    uint8, same shape: the model's rib probability x 255.
``project.json``
    ``statuses`` (0 unreviewed, 1 curated, 2 rejected), ``confidence`` (null where no prediction),
    ``changed_pixels``, the source path, its content ``fingerprint`` (frame count, shape, dtype and a
    hash of the first, middle and last frames), the ``source_signature`` of the file on disk (size
    and sha256 of its first, middle and last MiB; see :func:`source_signature`), the frame shape
    and the model of the masks.

A review is bound to its stack: :meth:`ReviewProject.open` refuses to restore a review whose
fingerprint differs from the stack's, unless the source file is unchanged on disk (same
signature, frame count and shape): then only the reader's rules changed, and it is restored. A
``.lock`` file (pid and host) keeps two viewers from interleaving saves; a lock whose process is
gone is taken over. Version 1 projects (the three files directly in the sidecar) are still read
and are written as version 2 on the next save.

No Qt here: the widget calls this, and so can a script.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import re
import shutil
import socket
import weakref
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_ribseg.core.atomic import fsync_dir, fsync_file, write_text_atomic
from napari_ribseg.core.budget import check_allocation
from napari_ribseg.core.errors import DatasetError, ProjectError, RibsegError
from napari_ribseg.core.stack import FrameStatus

log = logging.getLogger(__name__)

PROJECT_SUFFIX = ".ribseg"
FORMAT_NAME = "napari-ribseg review project"
FORMAT_VERSION = 3
#: The saved arrays, by the name their files start with (format 2: ``<name>.npy``, one file).
LABELS, MODEL_LABELS, PROBABILITIES = "labels", "model_labels", "probabilities"
LABELS_FILE = f"{LABELS}.npy"
MODEL_LABELS_FILE = f"{MODEL_LABELS}.npy"
PROB_FILE = f"{PROBABILITIES}.npy"
#: Frames per saved file (format 3). A save after a one-frame edit writes one chunk of labels and
#: links the rest; the chunk size trades that write against the number of files (and links) per
#: save. Measured (``benchmarks/bench_save.py --chunk-frames 4 8 16 32 64``, 400 frames of
#: 820 x 1124, benchmarks/results/save-cost/2026-12-05-chunks.md): 4-16 frames 0.05-0.07 s, 32-64
#: frames 0.07-0.11 s, one file 0.56 s; 16 is as fast as 8 with half the files.
CHUNK_FRAMES = 16
_CHUNK_RE = re.compile(r"^(labels|model_labels|probabilities)\.(\d{6,})\.npy$")
JSON_FILE = "project.json"
MANIFEST_FILE = "manifest.json"
LOCK_FILE = ".lock"
#: Frames compared at a time when counting changed pixels: bounds the temporaries (a bool mask,
#: and copies for a list of frames) to 16 frames, whatever the stack's length.
COUNT_CHUNK_FRAMES = 16
#: Written into a review whose stack's review was taken over by another folder (a renamed stack):
#: names that folder, so the stale review is never taken over again (by a copy) and the stack
#: renamed back gets the newer review.
TAKEN_OVER_FILE = "taken_over_by.json"
#: Versions kept after a save or an open: the current one and the one before it.
KEEP_VERSIONS = 2
_VERSION_RE = re.compile(r"^v(\d{6,})$")
#: Frames hashed for the fingerprint: first, middle, last.
_MAX_FRAMES = 10_000_000
_MAX_SIDE = 1_000_000


def project_dir_for(
    source: str | Path | None, root: str | Path | None = None, name: str | None = None
) -> Path:
    """Return the sidecar folder of a stack: ``<file name>.ribseg`` next to ``source``, or
    ``<file name>-<8 hex>.ribseg`` in ``root``.

    The full file name is kept (``clip.dcm.ribseg``) so two stacks with one stem get two reviews.
    Under a ``root`` the name also carries a hash of the stack's folder, so ``studyA/IM_0001`` and
    ``studyB/IM_0001`` (DICOM exports reuse names in every study) get two reviews, not one slot the
    second is refused. ``name`` replaces the file name when the stack has no file (e.g. simulated
    data); such a stack needs a ``root`` because there is nowhere "next to the data" to put it.
    """
    if source is not None:
        src = Path(source)
        stem, parent = src.name, src.parent
        if root is not None:
            where = os.path.normcase(str(src.resolve().parent))
            stem += "-" + hashlib.sha256(where.encode("utf-8")).hexdigest()[:8]
    else:
        if name is None or root is None:
            raise DatasetError(
                "This stack has no source file, so its review project needs a project folder: "
                "choose one in the widget's settings (in Python: project_folder=, with a name=)."
            )
        stem, parent = name, Path(root)
    if root is not None:
        parent = Path(root)
    return parent / f"{stem}{PROJECT_SUFFIX}"


def _saved_binding(folder: Path) -> tuple[dict | None, str | None, dict | None]:
    """The stack fingerprint, source and source signature in the newest save of ``folder`` (read,
    not verified: a candidate test only; the adopting load verifies)."""
    versions = _versions(folder)
    meta_path = (versions[0][1] if versions else folder) / JSON_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None, None, None
    if not isinstance(meta, dict):
        return None, None, None
    found, source, signature = (meta.get(k) for k in ("fingerprint", "source", "source_signature"))
    return (
        found if isinstance(found, dict) else None,
        source if isinstance(source, str) else None,
        signature if isinstance(signature, dict) else None,
    )


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, RuntimeError):
        return False


def stored_source(source: str | Path | None) -> str | None:
    """``source`` as a review records it: an absolute path when it names a file or folder (a path
    typed relative to the working folder means nothing from another one), else as given."""
    if source is None:
        return None
    text = str(source)
    path = Path(text)
    return os.path.abspath(text) if not path.is_absolute() and path.exists() else text


def _folder_option(folder: Path, source: str) -> str:
    """`` --project-folder DIR`` when ``folder`` is not the review next to ``source``."""
    beside = project_dir_for(source)
    return (
        ""
        if Path(folder).absolute() == beside.absolute()
        else f' --project-folder "{Path(folder).parent}"'
    )


def _records_source(project: ReviewProject, source: str | Path | None) -> bool:
    """Whether ``project`` records ``source`` (the same file or folder) as its stack."""
    if project.source is None or source is None:
        return False
    return any(_same_file(p, source) for p in _stored_paths(project.source, project.folder))


def _stored_paths(stored: str, review: Path) -> list[Path]:
    """Where a review's recorded stack may be: the path itself, and for a relative path (recorded
    before 2026-12-04, as typed) also beside the review folder."""
    path = Path(stored)
    if path.is_absolute():
        return [path]
    return [path, review.parent / path, review.parent / path.name]


def _successor(folder: Path) -> Path | None:
    """The folder that took over the review in ``folder`` (:data:`TAKEN_OVER_FILE`), if any."""
    try:
        record = json.loads((folder / TAKEN_OVER_FILE).read_text(encoding="utf-8"))
        return Path(record["by"]) if isinstance(record, dict) else None
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


def _takeable(
    other: Path,
    fingerprints: Sequence[dict],
    source: str | Path | None,
    signature: dict | None = None,
) -> bool:
    """Whether the review in ``other`` may be taken over for a stack with ``fingerprints`` (the
    current one first) read from ``source`` (whose :func:`source_signature` is ``signature``): the
    same content, or the same file bytes on disk (:func:`_same_on_disk`), and its own stack gone
    (renamed, moved) or ``source``."""
    saved, stored, saved_signature = _saved_binding(other)
    if stored is None:
        return False
    current = fingerprints[0] if fingerprints else None
    if saved not in fingerprints and not _same_on_disk(saved, saved_signature, current, signature):
        return False
    places = _stored_paths(stored, other)
    moved = not any(p.exists() for p in places)
    return moved or (source is not None and any(_same_file(p, source) for p in places))


def same_content_review(
    folder: Path,
    fingerprints: Sequence[dict],
    source: str | Path | None = None,
    signature: dict | None = None,
) -> Path | None:
    """Another review beside ``folder`` whose stack had this very content (any of
    ``fingerprints``, the current one first; or the same file bytes, ``signature``, read now as
    other frames of the same count and shape) and whose file is gone or is ``source``: the review
    of a renamed or moved stack, or one kept under an older project-folder name; newest first.

    A review whose stack still exists elsewhere is not taken: a copy of a stack (a second
    annotator's, a duplicate export) starts its own review instead of pre-filling the first one's.
    Nor is one that another folder already took over (:data:`TAKEN_OVER_FILE`): its state is
    older than the taker's.
    """
    fingerprints = [f for f in fingerprints if f is not None]
    if not fingerprints or not folder.parent.is_dir():
        return None
    found = []
    for other in folder.parent.iterdir():
        if other == folder or not other.name.endswith(PROJECT_SUFFIX) or not other.is_dir():
            continue
        if (other / TAKEN_OVER_FILE).is_file():
            continue
        if _takeable(other, fingerprints, source, signature):
            found.append((other.stat().st_mtime, other.name, other))
    return max(found)[2] if found else None


def review_exists(
    folder: str | Path,
    frames: np.ndarray | None = None,
    source: str | Path | None = None,
    scaling: dict | None = None,
    variable: str | None = None,
) -> bool:
    """Whether opening ``folder`` (for ``frames`` of file ``source``; ``variable``: the array read
    from an .npz/.mat, as :meth:`ReviewProject.open` takes it) restores a review: saved there, or
    adoptable from a review of the same content, or of the same file bytes, beside it."""
    folder = Path(folder)
    if _versions(folder) or (folder / JSON_FILE).is_file():
        return True
    legacy = legacy_project_dir(folder, source)
    if legacy is not None and (_versions(legacy) or (legacy / JSON_FILE).is_file()):
        _, stored, _ = _saved_binding(legacy)
        if stored is not None and Path(stored).name == Path(str(source)).name:
            return True  # a version-1 "<stem>.ribseg" naming this very file (as _restore takes)
    if frames is None:
        return False
    prints = [stack_fingerprint(frames), *legacy_fingerprints(frames, scaling)]
    signature = source_signature(source, variable)
    return same_content_review(folder, prints, source, signature) is not None


def legacy_project_dir(folder: Path, source: str | Path | None) -> Path | None:
    """The version-1 sidecar ``<stem>.ribseg`` that ``folder`` replaces, if the names differ."""
    if source is None:
        return None
    src = Path(source)
    if src.is_dir() or not src.suffix:
        return None
    old = folder.with_name(f"{src.stem}{PROJECT_SUFFIX}")
    return old if old != folder else None


def stack_fingerprint(frames: np.ndarray, transform=None) -> dict[str, Any]:
    """Frame count, frame shape, dtype and sha256 of the first, middle and last frames
    (``transform``: applied to each of the three before hashing; see :func:`legacy_fingerprints`)."""
    frames = np.asarray(frames) if not hasattr(frames, "shape") else frames
    n = int(frames.shape[0])
    digest = hashlib.sha256()
    for index in sorted({0, n // 2, n - 1}) if n else []:
        frame = frames[index] if transform is None else transform(frames[index])
        digest.update(np.ascontiguousarray(frame).tobytes())
    return {
        "n_frames": n,
        "frame_shape": [int(v) for v in frames.shape[1:3]],
        "dtype": str(frames.dtype),
        "sha256": digest.hexdigest(),
    }


def legacy_fingerprints(frames: np.ndarray, scaling: dict | None) -> list[dict[str, Any]]:
    """Fingerprints the same stack had under earlier reading rules, so its review still opens.

    Until 2026-12-03 every uint16 stack was divided by 65535, and until 2026-12-05 only 8, 12 and
    16 bits were candidates (10-bit data divided by 4095, 14-bit by 65535); a stack now read at
    fewer significant bits (``scaling``: its ``intensity_scaling`` record) had other float frames,
    and so another fingerprint. Until 2026-12-05 a depth the file declares (PNG ``sBIT``, TIFF
    ``MaxSampleValue``) was not read: such a stack was divided by the guess from its maximum (the
    record's ``maximum``), and a ``MaxSampleValue`` that is not ``2**n - 1`` (5000) by
    ``2**bits - 1`` of its bits (8191) until it was read as the white point. Its grey samples are
    recovered exactly (``round(v * divisor)``) and divided as before. Nothing for other stacks
    (DICOM's ``BitsStored`` always set the divisor; colour samples are not recovered: no alias).
    """
    from napari_ribseg.core.io.intensity import uint16_bits

    record = scaling if isinstance(scaling, dict) else {}
    bits, divisor = record.get("significant_bits"), record.get("divisor")
    if record.get("method") != "divide" or not bits or not divisor:
        return []
    source = record.get("bits_from")
    if source == "BitsStored":
        return []
    inverted = bool(record.get("inverted"))
    one = np.float32(1.0)
    earlier: list[float] = []
    if source in ("sBIT", "MaxSampleValue"):
        top = record.get("maximum")
        if top is None:  # a record from before it kept the maximum: the frames give it back
            v = np.asarray(frames, np.float32)
            top = round(float(one - v.min() if inverted else v.max()) * float(divisor))
        guessed = uint16_bits(int(top))
        earlier.append(float(2**guessed - 1))  # read by the guess, before declarations counted
        if float(divisor) != float(2 ** int(bits) - 1):
            earlier.append(float(2 ** int(bits) - 1))  # a white point read by its bits
        bits = guessed
    # The 8/12/16 rule's divisor for these bits, then the single /65535 of before.
    earlier += [float(2 ** min(b for b in (8, 12, 16) if b >= int(bits)) - 1), 65535.0]

    def as_before(full: np.float32):
        def transform(frame: np.ndarray) -> np.ndarray:
            v = np.asarray(frame, np.float32)
            if inverted:
                v = one - v
            old = np.round(v.astype(np.float64) * float(divisor)).astype(np.float32) / full
            return one - old if inverted else old

        return transform

    return [
        stack_fingerprint(frames, transform=as_before(np.float32(full)))
        for full in dict.fromkeys(earlier)
        if full != float(divisor)
    ]


#: Bytes hashed from each of the start, middle and end of a file for its :func:`file_signature`.
SIGNATURE_BLOCK = 1 << 20
_SIGNATURE_METHOD = "size + sha256 of the first, middle and last MiB"


def file_signature(path: str | Path) -> dict[str, Any]:
    """A cheap signature of one file as stored on disk: its size and the sha256 of its first,
    middle and last :data:`SIGNATURE_BLOCK` (1 MiB) bytes, or of the whole file up to 3 MiB.

    At most 3 MiB are read whatever the size (a 1 GB cine included). A change confined to bytes
    outside the three blocks that keeps the size is not seen.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size <= 3 * SIGNATURE_BLOCK:
            offsets = [0]
            limit = size
        else:
            offsets = [0, (size - SIGNATURE_BLOCK) // 2, size - SIGNATURE_BLOCK]
            limit = SIGNATURE_BLOCK
        for offset in offsets:
            fh.seek(offset)
            digest.update(fh.read(limit))
    return {"kind": "file", "bytes": int(size), "sha256": digest.hexdigest()}


def _folder_signature(folder: Path) -> dict[str, Any]:
    """A frame or DICOM folder: the sorted names and sizes of the files directly in it (hidden
    files skipped, as the readers skip them) and the :func:`file_signature` of its first, middle
    and last files (at most 9 MiB read)."""
    entries = []
    with os.scandir(folder) as scan:
        for entry in scan:
            if not entry.name.startswith(".") and entry.is_file():
                entries.append((entry.name, entry.stat().st_size))
    entries.sort()
    listing = hashlib.sha256()
    for name, size in entries:
        listing.update(f"{name}\0{size}\n".encode("utf-8", "surrogateescape"))
    digest = hashlib.sha256()
    n = len(entries)
    for index in sorted({0, n // 2, n - 1}) if n else []:
        one = file_signature(folder / entries[index][0])
        digest.update(json.dumps(one, sort_keys=True).encode("ascii"))
    return {
        "kind": "folder",
        "files": n,
        "bytes": int(sum(size for _, size in entries)),
        "listing_sha256": listing.hexdigest(),
        "sha256": digest.hexdigest(),
    }


def source_signature(
    source: str | Path | None, variable: str | None = None
) -> dict[str, Any] | None:
    """The signature of a stack's source as stored on disk (:func:`file_signature`; a folder:
    its listing and sampled files), or ``None`` when there is no readable file or folder.

    A review records it beside the content fingerprint: when the reader's rules change, the same
    unchanged file reads to other frames (another fingerprint) but keeps its signature, so its
    review is still restored (:meth:`ReviewProject.open`). ``variable``: the array read from a
    file that holds several (.npz, .mat; ``Stack.metadata["variable"]``), part of the signature:
    another array of the same file and shape is other data, not the same data read differently.
    """
    if source is None:
        return None
    path = Path(source)
    try:
        if path.is_file():
            found = file_signature(path)
        elif path.is_dir():
            found = _folder_signature(path)
        else:
            return None
    except OSError as exc:
        log.debug("No signature of %s: %s", path, exc)
        return None
    if variable is not None:
        found["variable"] = str(variable)
    return {**found, "method": _SIGNATURE_METHOD}


def _same_on_disk(
    saved: dict | None,
    saved_signature: dict | None,
    fingerprint: dict | None,
    signature: dict | None,
) -> bool:
    """Whether a review bound to the fingerprint ``saved`` of a source with ``saved_signature``
    belongs to a stack read now as ``fingerprint`` from a source with ``signature``: the source's
    bytes are the same (only the reading of them changed) and the frame count and shape too."""
    return (
        isinstance(saved_signature, dict)
        and signature is not None
        and saved_signature == signature
        and isinstance(saved, dict)
        and fingerprint is not None
        and saved.get("n_frames") == fingerprint.get("n_frames")
        and list(saved.get("frame_shape") or ()) == list(fingerprint.get("frame_shape") or ())
    )


def _is_png16_colour_source(source: str | Path) -> bool:
    """Whether ``source`` is a 16-bit colour PNG, or a folder holding one (read differently since
    2026-12-04: at full depth by OpenCV, not as Pillow's high byte)."""
    from napari_ribseg.core.io.frame_folder import is_png16_colour
    from napari_ribseg.core.io.registry import frame_files

    path = Path(source)
    try:
        files = frame_files(path) if path.is_dir() else [path]
        return any(f.suffix.lower() == ".png" and is_png16_colour(f) for f in files[:10_000])
    except OSError:
        return False


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class _HashingWriter:
    """Writes to ``fh`` and hashes what it wrote. Not a real file, so ``np.lib.format.write_array``
    hands it the array in 16 MiB chunks instead of one ``tobytes`` copy."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.fh.write(data)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _versions(folder: Path) -> list[tuple[int, Path]]:
    """``(N, v<N>/)`` of the committed versions in ``folder``, newest first."""
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        match = _VERSION_RE.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found, reverse=True)


def current_version_dir(folder: str | Path) -> Path | None:
    """The newest intact ``v<N>/`` of a project folder (what :meth:`ReviewProject.load` reads)."""
    for _, path in _versions(Path(folder)):
        if _verify(path) is None:
            return path
    return None


def _labels_where(version: Path) -> str:
    """Where a save keeps its labels, and how to read them, for a message."""
    if _chunk_starts(_manifest_files(version), LABELS):
        return (
            f"{version / chunk_name(LABELS, 0)} and the other labels.<first frame>.npy files "
            "there (numpy.load each, concatenated in order of their first frame: uint8 frames x "
            "height x width, 1 = rib; napari_ribseg.core.project.saved_array reads them)"
        )
    return f"{version / LABELS_FILE} (numpy.load: uint8 frames x height x width, 1 = rib)"


def saved_file(folder: str | Path, name: str) -> Path:
    """The path of ``name`` (e.g. ``project.json``) in the current save of a project folder."""
    current = current_version_dir(folder)
    return (current if current is not None else Path(folder)) / name


def _verify(version: Path) -> str | None:
    """``None`` when every file listed in the manifest is there with its size and sha256."""
    try:
        manifest = json.loads((version / MANIFEST_FILE).read_text(encoding="utf-8"))
        files = manifest["files"]
        if not isinstance(files, dict) or JSON_FILE not in files:
            return f"{version / MANIFEST_FILE}: lists no {JSON_FILE}"
        for name, entry in files.items():
            path = version / str(name)
            if path.stat().st_size != int(entry["bytes"]):
                return f"{path}: size differs from the manifest"
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    digest.update(block)
            if digest.hexdigest() != entry["sha256"]:
                return f"{path}: checksum differs from the manifest"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"{version}: damaged save ({type(exc).__name__}: {exc})"
    return None


# ---- the lock ----------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    except OSError:
        return False
    return True


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started, in clock ticks since boot (Linux ``/proc``); ``None`` where
    unknown. With the pid it names one process: a pid reused after a crash or reboot differs."""
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text(encoding="ascii", errors="replace")
        return stat.rpartition(")")[2].split()[19]  # field 22, after the command name
    except (OSError, IndexError, ValueError):
        return None


def _lock_text() -> str:
    """``pid@host`` and, where known, `` start=<ticks>`` of this process."""
    start = _process_start(os.getpid())
    return f"{os.getpid()}@{socket.gethostname()}" + (f" start={start}" if start else "")


def _lock_owner(folder: Path) -> tuple[int, str] | None:
    owner = _lock_record(folder)
    return None if owner is None else owner[:2]


def _lock_record(folder: Path) -> tuple[int, str, str | None] | None:
    """``(pid, host, start)`` written in the lock; ``None`` when there is none or it is unreadable."""
    try:
        text = (folder / LOCK_FILE).read_text(encoding="utf-8")
        who, _, rest = text.strip().partition(" ")
        pid_text, _, host = who.partition("@")
        start = rest.partition("start=")[2].split()[0] if "start=" in rest else None
        return int(pid_text), host, start
    except (OSError, ValueError, IndexError):
        return None


def _lock_is_live(owner: tuple[int, str] | tuple[int, str, str | None] | None) -> bool:
    if owner is None:
        return False
    pid, host = owner[0], owner[1]
    if host and host != socket.gethostname():
        return True  # another machine's process cannot be checked: respect its lock
    if not _pid_alive(pid):
        return False
    recorded = owner[2] if len(owner) > 2 else None
    # The pid is in use; by the process that took the lock only if it started at the same time.
    return recorded is None or _process_start(pid) in (None, recorded)


def _locked_message(folder: Path, owner: tuple) -> str:
    where = owner[1] or "this machine"
    return (
        f"{folder}: this review is open in another viewer (process {owner[0]} on {where}); close "
        f"it there first. If no viewer has it open (a crash on another machine, a copied or synced "
        f"folder), delete {folder / LOCK_FILE}: saves stay safe, a save never writes over a newer "
        "one"
    )


#: Reviews this process holds open (folder -> the open project), so that two viewers in one
#: Python session (a notebook, a script) cannot both save one review either.
_HELD: dict[str, weakref.ref] = {}


def _held_key(folder: Path) -> str:
    return os.path.normcase(str(Path(folder).resolve()))


def _held_here(folder: Path) -> bool:
    """Whether an open project of this process holds ``folder``'s review."""
    ref = _HELD.get(_held_key(folder))
    project = ref() if ref is not None else None
    return project is not None and bool(getattr(project, "_locked", False))


def acquire_lock(folder: Path) -> None:
    """Take the review's lock for this process; raise :class:`ProjectError` if another holds it
    (another process, or another open project of this one)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(folder, exc) from exc
    if _held_here(folder):
        raise ProjectError(
            f"{folder}: this review is already open in this Python session (another viewer, or a "
            "ReviewSession/ReviewProject not closed); close that one first"
        )
    for _ in range(3):
        try:
            _create_lock(folder)
        except FileExistsError:
            owner = _lock_record(folder)
            if owner is not None and owner[0] == os.getpid() and owner[1] == socket.gethostname():
                return  # left by a project of this process that is gone (never closed)
            if _lock_is_live(owner):
                raise ProjectError(_locked_message(folder, owner)) from None
            # The owner is gone (crash, kill, a reused pid): its lock is stale.
            with contextlib.suppress(FileNotFoundError):
                (folder / LOCK_FILE).unlink()
            continue
        except OSError as exc:
            raise _unwritable(folder, exc) from exc
        return
    raise ProjectError(f"{folder}: could not take the review's lock ({folder / LOCK_FILE})")


def _create_lock(folder: Path) -> None:
    """Create ``.lock`` holding this process's record, or raise ``FileExistsError``.

    The record is written to a private file first and hard-linked into place, so no other process
    ever reads an empty lock (and takes it for a stale one) between creation and writing.
    """
    tmp = folder / f".lock.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(_lock_text() + "\n")
    try:
        os.link(tmp, folder / LOCK_FILE)
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system: create-exclusive, then write
        fd = os.open(folder / LOCK_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(_lock_text() + "\n")
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _unwritable(folder: Path, exc: OSError) -> ProjectError:
    return ProjectError(
        f"{folder}: cannot write the review there ({exc.strerror or exc}); keep reviews in a "
        "folder you can write: --project-folder DIR (widget: Preferences, Rib Segmentation, "
        "project folder)"
    )


def release_lock(folder: Path) -> None:
    """Drop this process's lock on ``folder`` (someone else's is left alone)."""
    _HELD.pop(_held_key(folder), None)
    owner = _lock_owner(folder)
    if owner is not None and owner[0] == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            (folder / LOCK_FILE).unlink()


def _check_not_locked_by_other(folder: Path) -> None:
    owner = _lock_record(folder)
    if owner is not None and owner[0] != os.getpid() and _lock_is_live(owner):
        raise ProjectError(
            f"{folder}: another viewer (process {owner[0]}) holds this review; not saving over it"
        )


def clean_folder(folder: Path) -> None:
    """Remove temporary folders/files of interrupted saves and all but the last two versions."""
    if not folder.is_dir():
        return
    for child in folder.iterdir():
        if child.name.startswith(".") and ".tmp" in child.name:
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    child.unlink()
    intact = 0
    for _, path in _versions(folder):
        if intact >= KEEP_VERSIONS:
            shutil.rmtree(path, ignore_errors=True)
        elif _verify(path) is None:
            intact += 1


# ---- validation of project.json ------------------------------------------------------------------


def _int_field(meta: dict, key: str, path: Path, low: int, high: int) -> int:
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProjectError(
            f"{path}: field {key!r} must be a whole number in [{low}, {high}], found {value!r}"
        )
    return value


def _validate_meta(meta: Any, path: Path) -> tuple[int, int, int]:
    if not isinstance(meta, dict):
        raise ProjectError(f"{path}: expected a JSON object, found {type(meta).__name__}")
    version = meta.get("version")
    if (
        meta.get("format") != FORMAT_NAME
        or not isinstance(version, int)
        or version > FORMAT_VERSION
    ):
        raise ProjectError(
            f"{path}: expected a '{FORMAT_NAME}' of version <= {FORMAT_VERSION}, "
            f"found {meta.get('format')!r} version {version!r}"
        )
    n = _int_field(meta, "n_frames", path, 1, _MAX_FRAMES)
    shape = meta.get("frame_shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= _MAX_SIDE for v in shape
        )
    ):
        raise ProjectError(
            f"{path}: field 'frame_shape' must be [height, width] of whole numbers, found {shape!r}"
        )
    statuses = meta.get("statuses")
    valid = {int(s) for s in FrameStatus}
    if not isinstance(statuses, list) or len(statuses) != n:
        raise ProjectError(f"{path}: field 'statuses' must list {n} frames")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s in valid for s in statuses):
        raise ProjectError(f"{path}: field 'statuses' holds values other than {sorted(valid)}")
    conf = meta.get("confidence")
    if not isinstance(conf, list) or len(conf) != n:
        raise ProjectError(f"{path}: field 'confidence' must list {n} frames")
    for c in conf:
        if c is not None and (
            isinstance(c, bool) or not isinstance(c, int | float) or not math.isfinite(c)
        ):
            raise ProjectError(f"{path}: field 'confidence' holds {c!r}; expected null or a number")
    for key in ("source", "model"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise ProjectError(f"{path}: field {key!r} must be a string or null")
    for key in ("fingerprint", "source_signature"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise ProjectError(f"{path}: field {key!r} must be an object or null")
    return n, int(shape[0]), int(shape[1])


def _load_array(path: Path, shape: tuple[int, int, int], what: str) -> np.ndarray:
    _check_header(path, shape, what)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ProjectError(f"{path}: cannot read saved {what} ({exc})") from exc
    return np.ascontiguousarray(array, dtype=np.uint8)


def _check_header(path: Path, shape: tuple[int, int, int], what: str) -> None:
    """Refuse a saved .npy whose header is unreadable or not ``shape`` uint8, or that would not fit
    in memory, before reading its data."""
    from napari_ribseg.core.io.containers import npy_header

    try:
        declared, dtype = npy_header(path)
    except RibsegError as exc:
        raise ProjectError(f"{path}: cannot read saved {what} ({exc})") from exc
    if declared != shape:
        raise ProjectError(
            f"{path}: expected {what} of shape {shape} as recorded in project.json, found {declared}"
        )
    check_allocation(float(np.prod(declared, dtype=np.float64)) * dtype.itemsize, what, path)


def chunk_name(name: str, start: int) -> str:
    """The file of the chunk of array ``name`` that starts at frame ``start`` (format 3)."""
    return f"{name}.{int(start):06d}.npy"


def _chunk_starts(files: Sequence[str], name: str) -> list[int]:
    """First frames of the chunks of array ``name`` among ``files``, ascending."""
    return sorted(
        int(m.group(2)) for f in files if (m := _CHUNK_RE.match(f)) and m.group(1) == name
    )


def _load_saved(
    version: Path, files: Sequence[str], name: str, shape: tuple[int, int, int], what: str
) -> np.ndarray | None:
    """Array ``name`` of a save: from its chunks when ``files`` (the manifest's) lists them, else
    from the one file of formats 1-2; ``None`` when the save holds neither."""
    starts = _chunk_starts(files, name)
    if not starts:
        single = version / f"{name}.npy"
        return _load_array(single, shape, what) if single.is_file() else None
    n, h, w = shape
    check_allocation(float(np.prod(shape, dtype=np.float64)), what, version)
    out = np.empty(shape, np.uint8)
    expected = 0
    for start in starts:
        path = version / chunk_name(name, start)
        if start != expected:
            raise ProjectError(
                f"{path}: saved {what} chunks do not follow on (expected one starting at frame "
                f"{expected})"
            )
        stop = min(start + max(1, _chunk_length(path)), n)
        _check_header(path, (stop - start, h, w), what)
        try:
            out[start:stop] = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise ProjectError(f"{path}: cannot read saved {what} ({exc})") from exc
        expected = stop
    if expected != n:
        raise ProjectError(
            f"{version}: saved {what} chunks hold frames 0-{expected - 1} of {n} recorded in "
            "project.json"
        )
    return out


def _chunk_length(path: Path) -> int:
    """Frames in a saved chunk, from its header (0 when unreadable: the shape check names it)."""
    from napari_ribseg.core.io.containers import npy_header

    try:
        declared, _ = npy_header(path)
    except RibsegError:
        return 0
    return int(declared[0]) if len(declared) == 3 else 0


def saved_array(folder: str | Path, name: str = LABELS) -> np.ndarray | None:
    """Array ``name`` (``"labels"``, ``"model_labels"`` or ``"probabilities"``) of the current save
    of a review folder, as saved (whatever the format version); ``None`` for probabilities never
    saved. Reads the files only: no lock, nothing checked against a stack."""
    folder = Path(folder)
    version = current_version_dir(folder) or folder
    meta_path = version / JSON_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProjectError(f"{meta_path}: not a readable review project ({exc})") from exc
    shape = _validate_meta(meta, meta_path)
    return _load_saved(version, _manifest_files(version), name, shape, name.replace("_", " "))


def _manifest_files(version: Path) -> list[str]:
    """Names of the files a version's manifest lists ([] for a version-1 folder or no manifest)."""
    try:
        files = json.loads((version / MANIFEST_FILE).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [str(f) for f in files] if isinstance(files, dict) else []


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
    #: The model's probabilities x 255, uint8 (frames, H, W), saved with the review when set.
    probabilities: np.ndarray | None = None
    #: Content fingerprint of the stack this review belongs to (see :func:`stack_fingerprint`).
    fingerprint: dict[str, Any] | None = None
    #: The stack's source file (or folder) as stored on disk when it was read to ``fingerprint``
    #: (see :func:`source_signature`): a review whose stack now reads differently is still restored
    #: when the file is unchanged.
    source_signature: dict[str, Any] | None = None
    #: Set when the source file is unchanged on disk but now reads to other frames (the reader's
    #: rules changed): the content hash the review was bound to; the next save binds the new one.
    rebound_from: str | None = None
    #: Set when the newest save was damaged and an older intact one was loaded instead.
    recovered_from: str | None = None
    #: Set when this review was taken over from another folder (a renamed stack's review): which.
    adopted_from: str | None = None
    _labels_dirty: bool = field(default=True, repr=False)
    _model_dirty: bool = field(default=True, repr=False)
    _saved_json: str = field(default="", repr=False)
    _saved_counts: np.ndarray | None = field(default=None, repr=False)
    #: Per frame, CRC-32 of ``labels`` as last read or saved (uint32): an edit in place that nobody
    #: reported (a script) is caught by an exact check even when every changed-pixel count is as
    #: saved, and a quick check recomputes only the frames reported edited.
    _saved_frame_crcs: np.ndarray | None = field(default=None, repr=False)
    #: Frames reported edited (:meth:`mark_labels_changed`) since the last check; ``_reported_all``:
    #: an edit was reported without its frames, so the next check reads every frame.
    _reported: set[int] = field(default_factory=set, repr=False)
    _reported_all: bool = field(default=False, repr=False)
    #: The ``labels``, ``model_labels`` and ``probabilities`` arrays (weak references) the saved
    #: checksums were taken of: a quick check trusts them only while the same arrays are in place.
    _checked_arrays: tuple = field(default=(), repr=False)
    _saved_files: dict[str, dict] = field(default_factory=dict, repr=False)
    #: Per frame, sha256 of ``probabilities`` as last read or saved (``S32``; ``None``: none).
    _saved_prob_digests: np.ndarray | None = field(default=None, repr=False)
    #: Frames whose probabilities were reported changed (:meth:`mark_probabilities_changed`)
    #: since the last check; ``_prob_reported_all``: reported without frames.
    _prob_reported: set[int] = field(default_factory=set, repr=False)
    _prob_reported_all: bool = field(default=False, repr=False)
    #: Frames whose model masks :meth:`apply_prediction` wrote since the last save (their chunks
    #: are written; ``_model_dirty``: all of them).
    _model_frames: set[int] = field(default_factory=set, repr=False)
    _locked: bool = field(default=False, repr=False)
    #: The newest version number on disk when this project was read or last saved (0: none). A save
    #: commits only if it is still the newest, so a second viewer's save is never written over.
    _base_version: int = field(default=0, repr=False)
    #: The intact save read or last written (kept beside the next one; 0: none).
    _intact_version: int = field(default=0, repr=False)
    #: Opened to read only (no lock, nothing cleaned, saving refused): see :meth:`open`.
    read_only: bool = field(default=False, repr=False)

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def new(
        cls,
        folder: str | Path,
        n_frames: int,
        frame_shape: tuple[int, int],
        source: str | Path | None = None,
        *,
        frames: np.ndarray | None = None,
    ) -> ReviewProject:
        """An empty project: no labels, every frame unreviewed, no confidence yet."""
        shape = (int(n_frames), int(frame_shape[0]), int(frame_shape[1]))
        check_allocation(2.0 * np.prod(shape, dtype=np.float64), "review labels", folder)
        return cls(
            folder=Path(folder),
            labels=np.zeros(shape, np.uint8),
            model_labels=np.zeros(shape, np.uint8),
            statuses=np.full(shape[0], FrameStatus.UNREVIEWED, np.uint8),
            confidence=np.full(shape[0], np.nan, np.float32),
            source=stored_source(source),
            fingerprint=stack_fingerprint(frames) if frames is not None else None,
            source_signature=source_signature(source) if frames is not None else None,
        )

    @classmethod
    def load(cls, folder: str | Path) -> ReviewProject:
        """Read a saved project; raise :class:`ProjectError` naming the file when it is damaged.

        The newest version whose checksums verify is read; when the newest is damaged the one
        before it is used and ``recovered_from`` says which was skipped.
        """
        folder = Path(folder)
        problems: list[str] = []
        versions = _versions(folder)
        for _, version in versions:
            problem = _verify(version)
            if problem is None:
                try:
                    project = cls._load_files(folder, version)
                except ProjectError as exc:
                    problems.append(str(exc))
                    continue
                # A damaged newer save is superseded by the next one, not a conflict; the save
                # read is the one the next save keeps beside it.
                project._base_version = versions[0][0]
                project._intact_version = int(version.name[1:])
                if problems:
                    project.recovered_from = problems[0]
                    log.warning(
                        "Review %s: newest save damaged (%s); using %s",
                        folder,
                        problems[0],
                        version.name,
                    )
                return project
            problems.append(problem)
        if (folder / JSON_FILE).is_file():
            project = cls._load_files(folder, folder)  # a version-1 project
            project._base_version = versions[0][0] if versions else 0  # damaged later saves
            return project
        if problems:
            raise ProjectError(f"{folder}: no intact save of this review: {problems[0]}")
        raise ProjectError(f"{folder / JSON_FILE}: no review project here (project.json missing)")

    @classmethod
    def _load_files(cls, folder: Path, version: Path) -> ReviewProject:
        meta_path = version / JSON_FILE
        try:
            text = meta_path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise ProjectError(
                f"{meta_path}: no review project here (project.json missing)"
            ) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ProjectError(f"{meta_path}: not a readable review project ({exc})") from exc
        try:
            meta = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ProjectError(f"{meta_path}: not a readable review project ({exc})") from exc
        n, h, w = _validate_meta(meta, meta_path)
        files = _manifest_files(version) if version != folder else []
        labels = _load_saved(version, files, LABELS, (n, h, w), "labels")
        model_labels = _load_saved(version, files, MODEL_LABELS, (n, h, w), "model labels")
        for array, what in ((labels, LABELS_FILE), (model_labels, MODEL_LABELS_FILE)):
            if array is None:
                raise ProjectError(f"{version / what}: saved {what[:-4]} missing from this save")
        prob = _load_saved(version, files, PROBABILITIES, (n, h, w), "probabilities")
        project = cls(
            folder=folder,
            labels=labels,
            model_labels=model_labels,
            statuses=np.asarray(meta["statuses"], np.uint8),
            confidence=np.array(
                [np.nan if c is None else float(c) for c in meta["confidence"]], np.float32
            ),
            source=meta.get("source"),
            model_name=meta.get("model"),
            probabilities=prob,
            fingerprint=meta.get("fingerprint"),
            source_signature=meta.get("source_signature"),
        )
        # What was just read is what is on disk: nothing to write until something changes.
        project._labels_dirty = project._model_dirty = False
        project._saved_json = project._json_text(saved_at=meta.get("saved_at", ""))
        project._saved_counts = project.changed_pixels
        project._saved_frame_crcs = project._frame_crcs(None)
        if version != folder:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                manifest = json.loads((version / MANIFEST_FILE).read_text(encoding="utf-8"))
                project._saved_files = {
                    name: {**entry, "path": str(version / name)}
                    for name, entry in manifest["files"].items()
                }
        project._saved_prob_digests = project._prob_digests(None)
        project._note_checked()
        return project

    @classmethod
    def open(
        cls,
        folder: str | Path,
        n_frames: int,
        frame_shape: tuple[int, int],
        source: str | Path | None = None,
        *,
        frames: np.ndarray | None = None,
        lock: bool = True,
        read_only: bool = False,
        aliases: Sequence[dict] = (),
        rebind: bool = False,
        variable: str | None = None,
    ) -> tuple[ReviewProject, bool]:
        """Restore the project in ``folder`` if one is there, else start a new one.

        Returns ``(project, restored)``. Raises :class:`ProjectError` rather than restoring a review
        onto another stack: a different frame count or shape, or (given ``frames``) a different
        content fingerprint. With ``lock`` the review is locked against a second viewer.
        ``read_only`` reads the last save without the lock and without writing anything (a review
        on a read-only share, or open in a viewer): :meth:`save` then refuses. ``aliases``: other
        fingerprints the same stack had (:func:`legacy_fingerprints`); a review saved under one is
        restored and bound to the current fingerprint on its next save.

        With ``frames`` and a ``source`` on disk the review also records the source's
        :func:`source_signature`. A review whose fingerprint differs is still restored when its
        recorded signature equals the source's now and the frame count and shape are equal: the
        file is unchanged, only the reader's rules for it changed (a warning names both content
        hashes, ``rebound_from`` the old one); the next save binds the new fingerprint.

        ``rebind`` (the user's word that the file is unchanged, ``ribseg review STACK --rebind``):
        a review whose fingerprint differs is restored all the same when it records this very
        ``source`` and the frame count and shape are equal, for a review saved before signatures
        were recorded (2026-12-04) whose file the reader now reads differently. Not read-only.
        """
        if rebind and read_only:
            raise ProjectError(f"{folder}: rebinding a review writes it; it cannot be read-only")
        folder = Path(folder)
        expected = (int(n_frames), int(frame_shape[0]), int(frame_shape[1]))
        fingerprint = stack_fingerprint(frames) if frames is not None else None
        signature = source_signature(source, variable) if fingerprint is not None else None
        lock = lock and not read_only
        if lock:
            acquire_lock(folder)
        try:
            if not read_only:
                clean_folder(folder)
            project = None
            successor = _successor(folder)
            # The stack renamed back: the review moved on to the folder that took it over.
            if (
                successor is not None
                and fingerprint is not None
                and _takeable(successor, [fingerprint, *aliases], source, signature)
            ):
                project = cls._adopt(folder, successor)
            if project is None:
                project = cls._restore(folder, source)
            if project is None and fingerprint is not None:
                prints = [fingerprint, *aliases]
                found = same_content_review(folder, prints, source, signature)
                project = cls._adopt(folder, found)
            if project is None:
                new = cls.new(folder, *expected[:1], expected[1:], source)
                new.fingerprint, new.source_signature = fingerprint, signature
                new._locked, new.read_only = lock, read_only
                if lock:
                    _HELD[_held_key(folder)] = weakref.ref(new)
                return new, False
            if fingerprint is not None and project.fingerprint in list(aliases):
                project.fingerprint = fingerprint  # read before 2026-12-03: rebound on next save
            elif (
                fingerprint is not None
                and project.fingerprint != fingerprint
                and project.labels.shape == expected
                and _same_on_disk(
                    project.fingerprint, project.source_signature, fingerprint, signature
                )
            ):
                cls._rebind(project, fingerprint, source)
            elif (
                rebind
                and fingerprint is not None
                and project.fingerprint not in (None, fingerprint)
                and project.labels.shape == expected
                and _records_source(project, source)
            ):
                cls._rebind(project, fingerprint, source, asked=True)
            cls._check_binding(project, expected, fingerprint, source, signature)
        except BaseException:
            if lock:
                release_lock(folder)
            raise
        if project.fingerprint is None and fingerprint is not None:
            project.fingerprint = fingerprint  # a version-1 review gains its binding on next save
        if signature is not None:
            # The binding holds for these frames: the file they were read from, as it is now.
            project.source_signature = signature
        if source is not None:
            project.source = stored_source(source)
        project._locked, project.read_only = lock, read_only
        if lock:
            _HELD[_held_key(folder)] = weakref.ref(project)
        return project, True

    @classmethod
    def _restore(cls, folder: Path, source: str | Path | None) -> ReviewProject | None:
        if _versions(folder) or (folder / JSON_FILE).is_file():
            return cls.load(folder)
        legacy = legacy_project_dir(folder, source)
        if legacy is None or not (_versions(legacy) or (legacy / JSON_FILE).is_file()):
            return None
        # A version-1 sidecar "<stem>.ribseg" is adopted only if it names this very file.
        try:
            old = cls.load(legacy)
        except ProjectError as exc:
            log.warning("Ignoring old review %s: %s", legacy, exc)
            return None
        if old.source is None or Path(old.source).name != Path(str(source)).name:
            return None
        old.folder = folder
        old._base_version = old._intact_version = 0  # its saves stay in the old folder
        old._labels_dirty = old._model_dirty = True
        old._saved_json, old._saved_counts, old._saved_files = "", None, {}
        old._saved_frame_crcs = None
        return old

    @classmethod
    def _adopt(cls, folder: Path, other: Path | None) -> ReviewProject | None:
        """The review in ``other`` (same stack content), to be saved in ``folder`` from now on;
        ``other`` is left as it is."""
        if other is None:
            return None
        try:
            project = cls.load(other)
        except ProjectError as exc:
            log.warning("Not adopting review %s: %s", other, exc)
            return None
        log.warning("Review of %s: taken over from %s (same stack content)", folder.name, other)
        project.folder, project.adopted_from = folder, str(other)
        project._labels_dirty = project._model_dirty = True
        project._saved_json, project._saved_counts, project._saved_files = "", None, {}
        project._saved_frame_crcs = None
        # Saves already in ``folder`` (the stack renamed back) are older, not a conflict.
        versions = _versions(folder)
        project._base_version = versions[0][0] if versions else 0
        project._intact_version = 0
        return project

    @staticmethod
    def _rebind(
        project: ReviewProject,
        fingerprint: dict,
        source: str | Path | None,
        *,
        asked: bool = False,
    ) -> None:
        """The source is unchanged on disk but reads to other frames: restore its review, bound to
        the new reading from the next save on (as for :func:`legacy_fingerprints`). ``asked``: the
        user said so (``rebind``); no signature could check it."""
        old = str((project.fingerprint or {}).get("sha256"))[:12]
        new = str(fingerprint.get("sha256"))[:12]
        if asked:
            message = (
                "Review %s: rebound on request to %s as it reads now (content %s, was %s); "
                "its labels are restored and the new binding is saved with them"
            )
        else:
            message = (
                "Review %s: %s is unchanged on disk (same size and sampled bytes) but now reads as "
                "other frames (content %s, was %s): the reader's rules for it changed. Its review "
                "is restored and bound to the new reading at the next save"
            )
        log.warning(message, project.folder, source, new, old)
        project.rebound_from = str((project.fingerprint or {}).get("sha256"))
        project.fingerprint = fingerprint

    @staticmethod
    def _check_binding(
        project: ReviewProject,
        expected: tuple[int, int, int],
        fingerprint: dict | None,
        source: str | Path | None,
        signature: dict | None = None,
    ) -> None:
        folder = project.folder
        stored = project.source or "(a stack without a file)"
        this = str(source) if source is not None else "this stack"
        if project.labels.shape != expected:
            recorded = (project.source_signature or {}).get("variable")
            if recorded is not None and recorded != (signature or {}).get("variable"):
                # The review of one array of a .npz/.mat opened on another (the default one).
                raise ProjectError(
                    f"{folder}: this review is of variable {recorded!r} of {stored} "
                    f"({project.labels.shape[0]} frames of {project.labels.shape[1:]}), but "
                    f"{this} was read as {expected[0]} frames of {expected[1:]} from "
                    f"{'variable ' + repr(signature['variable']) if (signature or {}).get('variable') else 'another array'}; "
                    f"open it with variable {recorded!r} (--variable {recorded})"
                )
            raise ProjectError(
                f"{folder}: this review project holds {project.labels.shape[0]} frames of "
                f"{project.labels.shape[1:]} (from {stored}) but {this} has {expected[0]} frames "
                f"of {expected[1:]}; move the folder away or choose another project folder"
            )
        saved = project.fingerprint
        if fingerprint is not None and saved is not None and saved != fingerprint:
            old, new = str(saved.get("sha256"))[:12], str(fingerprint.get("sha256"))[:12]
            same_path = _records_source(project, source)
            recorded = project.source_signature
            if (
                same_path
                and recorded is not None
                and signature is not None
                and recorded.get("variable") != signature.get("variable")
            ):
                was, now = (
                    f"variable {s['variable']!r}" if "variable" in s else "the array read"
                    for s in (recorded, signature)
                )
                raise ProjectError(
                    f"{folder}: this review belongs to {was} of {stored} (content {old}), not "
                    f"to {now} (content {new}); its labels are not restored onto another array "
                    "of the file. Keep each array's review in its own project folder "
                    "(--project-folder DIR)"
                )
            if same_path and (
                recorded is None or (signature is not None and signature != recorded)
            ):
                raise ProjectError(
                    ReviewProject._same_path_message(project, this, old, new, signature)
                )
            raise ProjectError(
                f"{folder}: this review belongs to {stored} (content {old}), "
                f"not to {this} (content {new}); its labels are not restored "
                "onto another stack. Move the folder away or choose another project folder"
            )

    @staticmethod
    def _same_path_message(
        project: ReviewProject, this: str, old: str, new: str, signature: dict | None
    ) -> str:
        """The refusal of a review whose recorded stack is the file opened, read now as other
        frames: the file changed, or (no signature recorded) perhaps only the reader's rules."""
        folder = project.folder
        what = "folder" if Path(this).is_dir() else "file"
        head = (
            f"{folder}: this review belongs to {this} as it read when the review was saved "
            f"(content {old}), but it now reads as other frames (content {new})"
        )
        if project.source_signature is not None:  # and the file's signature differs from it
            return (
                f"{head}, and the {what} itself changed on disk since (its size or bytes differ "
                "from those recorded); its labels are not restored onto other data. Move the "
                "folder away or choose another project folder"
            )
        rule = (
            " (since 2026-12-04 a 16-bit colour PNG is read at its full 16 bits by OpenCV instead "
            "of as Pillow's high byte)"
            if _is_png16_colour_source(this)
            else ""
        )
        labels = _labels_where(current_version_dir(folder) or folder)
        return (
            f"{head}. The {what} may be unchanged and only the reader's rules for it changed{rule}; "
            f"a review saved before 2026-12-04 records no signature of the {what} on disk to check "
            f"this, so its labels are not restored. They are kept in {labels}. If you did not "
            f"change the {what}, restore the "
            f'review onto it as it reads now: ribseg review "{this}" --rebind'
            f"{_folder_option(folder, this)}. If it did change, move the folder away or choose "
            "another project folder"
        )

    def close(self) -> None:
        """Release the review's lock (saving is the caller's job)."""
        if self._locked:
            release_lock(self.folder)
            self._locked = False

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
        """Changed-pixel counts of ``frames`` only (all frames for ``None``): cheap for one frame.

        Compared :data:`COUNT_CHUNK_FRAMES` frames at a time: a whole-stack ``labels !=
        model_labels`` made a bool stack as large as the labels (369 MB at 400 frames of
        820 x 1124) at every save and overwrite check.
        """
        idx = None if frames is None else np.asarray(frames, dtype=np.int64).reshape(-1)
        n = self.n_frames if idx is None else idx.size
        counts = np.zeros(n, np.int64)
        for start in range(0, n, COUNT_CHUNK_FRAMES):
            stop = min(start + COUNT_CHUNK_FRAMES, n)
            part = slice(start, stop) if idx is None else idx[start:stop]
            diff = self.labels[part] != self.model_labels[part]
            counts[start:stop] = np.count_nonzero(diff, axis=(1, 2))
        return counts

    def frames_with(self, status: FrameStatus) -> np.ndarray:
        """Indices of frames whose status is ``status``, ascending."""
        return np.flatnonzero(self.statuses == int(status))

    @property
    def curated_frames(self) -> np.ndarray:
        return self.frames_with(FrameStatus.CURATED)

    @property
    def protected_frames(self) -> np.ndarray:
        """THE rule of which frames no model may overwrite: curated, rejected, or edited by hand
        (labels differ from the model's mask), whatever their status."""
        keep = (self.statuses == int(FrameStatus.CURATED)) | (
            self.statuses == int(FrameStatus.REJECTED)
        )
        return np.flatnonzero(keep | (self.changed_pixels > 0))

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

        ``masks`` is uint8 (len(frames), H, W). :attr:`protected_frames` (curated, rejected, edited
        by hand) are never written; ``protect`` adds more. Returns the frame indices whose labels
        were written.
        """
        frames = np.asarray(frames, dtype=np.int64)
        masks = np.asarray(masks)
        if masks.shape != (frames.size, *self.frame_shape):
            raise DatasetError(
                f"expected {frames.size} masks of {self.frame_shape}, got an array of {masks.shape}"
            )
        keep = set(self.protected_frames.tolist())
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
            if confidence is not None:
                self.confidence[f] = float(np.asarray(confidence)[i])
            written.append(f)
        if written:
            self._labels_dirty = True
            self._model_frames.update(written)
            self._reported.update(written)
        return np.asarray(written, dtype=np.int64)

    def mark_labels_changed(self, frames: Sequence[int] | np.ndarray | None = None) -> None:
        """Tell the project ``labels`` of ``frames`` were edited in place (e.g. by a paint tool);
        ``None``: frames unknown. A quick save (``save(check_all=False)``) checks only the frames
        reported here; an exact one (the default) checks every frame anyway."""
        if frames is None:
            self._reported_all = True
            return
        n = self.n_frames
        for f in np.asarray(frames, dtype=np.int64).ravel().tolist():
            if not 0 <= f < n:
                raise DatasetError(f"frame {f} is outside this stack of {n} frames")
            self._reported.add(f)

    # -- saving --------------------------------------------------------------------------------
    def mark_probabilities_changed(self, frames: Sequence[int] | np.ndarray | None = None) -> None:
        """Tell the project ``probabilities`` of ``frames`` changed (``None``: frames unknown). A
        quick save re-hashes only the frames reported; an exact one hashes every frame anyway."""
        if frames is None:
            self._prob_reported_all = True
            return
        for f in np.asarray(frames, dtype=np.int64).ravel().tolist():
            if not 0 <= f < self.n_frames:
                raise DatasetError(f"frame {f} is outside this stack of {self.n_frames} frames")
            self._prob_reported.add(f)

    def _frame_crcs(self, frames: Sequence[int] | np.ndarray | None) -> np.ndarray:
        """CRC-32 of each of ``frames`` of ``labels`` (all for ``None``), uint32."""
        labels = self.labels
        index = range(labels.shape[0]) if frames is None else np.asarray(frames, np.int64).tolist()
        out = np.empty(len(index), np.uint32)
        for k, f in enumerate(index):
            out[k] = zlib.crc32(memoryview(np.ascontiguousarray(labels[f])).cast("B"))
        return out

    def _prob_digests(self, frames: Sequence[int] | np.ndarray | None) -> np.ndarray | None:
        """sha256 of each of ``frames`` of ``probabilities`` (all for ``None``), ``S32``; ``None``
        when there are no probabilities."""
        prob = self.probabilities
        if prob is None:
            return None
        index = range(prob.shape[0]) if frames is None else np.asarray(frames, np.int64).tolist()
        out = np.empty(len(index), "S32")
        for k, f in enumerate(index):
            out[k] = hashlib.sha256(memoryview(np.ascontiguousarray(prob[f])).cast("B")).digest()
        return out

    def _arrays(self) -> tuple:
        return (self.labels, self.model_labels, self.probabilities)

    def _note_checked(self) -> None:
        """The labels and probabilities in place now are those the saved checksums describe."""
        self._reported.clear()
        self._reported_all = False
        self._prob_reported.clear()
        self._prob_reported_all = False
        self._checked_arrays = tuple(None if a is None else weakref.ref(a) for a in self._arrays())

    def _same_arrays(self) -> bool:
        """Whether the arrays in place are those last checked (none replaced since)."""
        if len(self._checked_arrays) != 3:
            return False
        return all(
            (ref is None and a is None) or (ref is not None and ref() is a)
            for ref, a in zip(self._checked_arrays, self._arrays(), strict=True)
        )

    def _labels_now(self, check_all: bool) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame CRC-32 of ``labels`` and changed-pixel counts as they are now: of every frame
        when ``check_all``, else (a quick check) those saved with only the frames reported edited
        since recomputed, unless an edit came without its frames or an array was replaced."""
        quick = (
            not check_all
            and not self._reported_all
            and self._saved_frame_crcs is not None
            and self._saved_counts is not None
            and self._saved_frame_crcs.shape == self._saved_counts.shape == (self.n_frames,)
            and self._same_arrays()
        )
        if not quick:
            crcs = self._frame_crcs(None)
            if not self._counts_known():
                return crcs, self.changed_pixels
            # A frame's changed-pixel count moves only with its labels (their checksum) or its
            # model mask (written only by apply_prediction, which reports its frames): the exact
            # check counts those frames, not every frame (~0.2-0.5 s at 400 frames of 820 x 1124).
            moved = crcs != self._saved_frame_crcs
            moved[sorted(self._reported | self._model_frames)] = True
            counts = self._saved_counts.copy()
            frames = np.flatnonzero(moved)
            if frames.size:
                counts[frames] = self.changed_pixels_of(frames)
            return crcs, counts
        frames = np.fromiter(sorted(self._reported), np.int64, len(self._reported))
        crcs, counts = self._saved_frame_crcs.copy(), self._saved_counts.copy()
        if frames.size:
            crcs[frames] = self._frame_crcs(frames)
            counts[frames] = self.changed_pixels_of(frames)
        return crcs, counts

    def _counts_known(self) -> bool:
        """Whether the saved changed-pixel counts describe the arrays in place except for frames
        whose labels checksum moved or that were reported (no model mask replaced wholesale)."""
        return (
            not self._model_dirty
            and self._saved_frame_crcs is not None
            and self._saved_counts is not None
            and self._saved_frame_crcs.shape == self._saved_counts.shape == (self.n_frames,)
            and self._same_arrays()
        )

    def _prob_digests_now(self, check_all: bool) -> np.ndarray | None:
        """Per-frame sha256 of ``probabilities`` as they are now: of every frame when
        ``check_all``, else the saved ones with only the frames reported changed re-hashed, while
        the same array is in place (only the review's own code writes them, and reports it)."""
        saved = self._saved_prob_digests
        quick = (
            not check_all
            and self.probabilities is not None
            and not self._prob_reported_all
            and saved is not None
            and saved.shape == (self.probabilities.shape[0],)
            and self._same_arrays()
        )
        if not quick:
            return self._prob_digests(None)
        frames = np.fromiter(sorted(self._prob_reported), np.int64, len(self._prob_reported))
        digests = saved.copy()
        if frames.size:
            digests[frames] = self._prob_digests(frames)
        return digests

    def _prob_differs(self, digests: np.ndarray | None) -> bool:
        saved = self._saved_prob_digests
        if digests is None or saved is None:
            return (digests is None) != (saved is None)
        return saved.shape != digests.shape or bool((saved != digests).any())

    def _changed_frames(
        self, now: np.ndarray | None, saved: np.ndarray | None, force: bool
    ) -> bool | np.ndarray:
        """Per frame, whether its checksum differs from the save's (``True``: all, when forced or
        nothing is known of the save): the frames whose chunks a save writes."""
        if force or now is None or saved is None or saved.shape != now.shape:
            return True
        return now != saved

    def _json_text(self, saved_at: str, counts: np.ndarray | None = None) -> str:
        counts = self.changed_pixels if counts is None else counts
        conf = [None if math.isnan(float(c)) else round(float(c), 6) for c in self.confidence]
        meta = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "source": self.source,
            "fingerprint": self.fingerprint,
            "source_signature": self.source_signature,
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
        """Whether anything differs from what was last saved (an exact check of every frame)."""
        crcs, counts = self._labels_now(check_all=True)
        return self._labels_differ(crcs, counts) or self._rest_differs(
            self._prob_digests_now(check_all=True), counts
        )

    def _labels_differ(self, crcs: np.ndarray, counts: np.ndarray) -> bool:
        return (
            self._labels_dirty
            or self._saved_counts is None
            or self._saved_frame_crcs is None
            or not np.array_equal(counts, self._saved_counts)
            or not np.array_equal(crcs, self._saved_frame_crcs)
        )

    def _rest_differs(self, prob_digests: np.ndarray | None, counts: np.ndarray) -> bool:
        return (
            self._model_dirty
            or bool(self._model_frames)
            or self._prob_differs(prob_digests)
            or self._json_text(saved_at="", counts=counts) != self._strip_time(self._saved_json)
        )

    @staticmethod
    def _strip_time(text: str) -> str:
        if not text:
            return text
        meta = json.loads(text)
        meta["saved_at"] = ""
        return json.dumps(meta, indent=1)

    def save(self, *, force: bool = False, check_all: bool = True) -> bool:
        """Commit what changed since the last save as one new version; return whether one was made.

        All files of the save become visible together (one folder rename) or not at all.
        ``check_all`` (the default, exact): every frame's labels checksum (CRC-32) and changed-pixel
        count and each frame's probabilities sha256 are compared with the saved ones, so labels edited in
        place without :meth:`mark_labels_changed` are caught (comparing the counts alone missed an
        undo that lands on other pixels with the count last saved). ``check_all=False`` (the
        widget's save on every change of frame): only the frames reported edited since the last
        check are read, so a save with nothing changed costs no pass over the stack; an edit
        nobody reported waits for the next exact check.
        """
        if self.read_only:
            raise ProjectError(f"{self.folder}: this review was opened read-only; not saving")
        crcs, counts = self._labels_now(check_all)
        labels_changed = force or self._labels_differ(crcs, counts)
        prob_digests = self._prob_digests_now(check_all)
        if not (labels_changed or self._rest_differs(prob_digests, counts)):
            self._note_checked()  # the frames reported match the save: nothing left to check
            return False
        if self.probabilities is not None and self.probabilities.shape != self.labels.shape:
            raise ProjectError(
                f"{self.folder}: probabilities of shape {self.probabilities.shape} do not match "
                f"the labels {self.labels.shape}"
            )
        _check_not_locked_by_other(self.folder)
        text = self._json_text(saved_at=_now(), counts=counts)
        # Which frames' chunks to write (the others are linked from the last save): labels and
        # probabilities whose checksums differ from the save's, model masks a prediction wrote.
        model_frames: bool | np.ndarray = force or self._model_dirty or not self._same_arrays()
        if not model_frames and self._model_frames:
            model_frames = np.zeros(self.n_frames, bool)
            model_frames[sorted(self._model_frames)] = True
        files = self._commit(
            {
                LABELS: (
                    self.labels,
                    labels_changed and self._changed_frames(crcs, self._saved_frame_crcs, force),
                ),
                MODEL_LABELS: (self.model_labels, model_frames),
                PROBABILITIES: (
                    self.probabilities,
                    self._changed_frames(prob_digests, self._saved_prob_digests, force),
                ),
            },
            text,
        )
        self._saved_files = files
        self._saved_json = text
        self._saved_counts = counts
        self._saved_frame_crcs = crcs
        self._saved_prob_digests = prob_digests
        self._labels_dirty = self._model_dirty = False
        self._model_frames.clear()
        self._note_checked()
        self._hand_over()
        return True

    def _hand_over(self) -> None:
        """After a save: a review taken over from another folder marks that folder as taken over
        by this one (:data:`TAKEN_OVER_FILE`), and this folder is no longer marked."""
        with contextlib.suppress(OSError):
            (self.folder / TAKEN_OVER_FILE).unlink()
        if self.adopted_from is None:
            return
        old = Path(self.adopted_from)
        if not old.is_dir() or _successor(old) == self.folder:
            return
        try:
            write_text_atomic(old / TAKEN_OVER_FILE, json.dumps({"by": str(self.folder)}) + "\n")
        except OSError as exc:
            log.warning("Could not mark %s as taken over by %s: %s", old, self.folder, exc)

    def _commit(
        self, arrays: dict[str, tuple[np.ndarray | None, bool | np.ndarray]], text: str
    ) -> dict:
        """Write one version folder and make it current by renaming it into place.

        ``arrays``: name -> (array, what changed since the last save: ``True`` all of it, ``False``
        none, or a per-frame bool array). Each array goes in chunks of :data:`CHUNK_FRAMES` frames;
        a chunk with no changed frame is a hard link to the last save's file of the same name.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        versions = _versions(self.folder)
        newest = versions[0][0] if versions else 0
        # Fewer saves than read means the sidecar was removed under us: written again from here.
        if newest > self._base_version:
            raise ProjectError(
                f"{self.folder}: another viewer or process saved this review (save {newest}) after "
                f"this one read it (save {self._base_version}); not writing over its changes. Close "
                "this stack and open it again to see them, then redo your latest edits"
            )
        number = max(newest, self._base_version) + 1
        final = self.folder / f"v{number:06d}"
        tmp = self.folder / f".v{number:06d}.tmp{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        manifest: dict[str, dict] = {}
        written: list[Path] = []
        try:
            for array_name, (array, changed) in arrays.items():
                if array is None:
                    continue
                for start in range(0, array.shape[0], CHUNK_FRAMES):
                    stop = min(start + CHUNK_FRAMES, array.shape[0])
                    name = chunk_name(array_name, start)
                    dirty = (
                        bool(changed) if isinstance(changed, bool) else changed[start:stop].any()
                    )
                    previous = self._saved_files.get(name)
                    if not dirty and previous and self._link(Path(previous["path"]), tmp / name):
                        # Unchanged since the last save: share its file (never modified in place).
                        manifest[name] = {k: previous[k] for k in ("sha256", "bytes")}
                        continue
                    manifest[name] = self._write_array(tmp / name, array[start:stop])
                    written.append(tmp / name)
            # Flushed together, after all are written: one fsync per chunk as it was written made
            # the file system commit its journal once per chunk.
            for path in written:
                fsync_file(path)
            data = text.encode("utf-8")
            self._write(tmp / JSON_FILE, data)
            manifest[JSON_FILE] = {"sha256": _sha256(data), "bytes": len(data)}
            self._write(
                tmp / MANIFEST_FILE,
                json.dumps(
                    {"format": FORMAT_NAME, "version": number, "files": manifest}, indent=1
                ).encode(),
            )
            fsync_dir(tmp)
            try:
                # The commit: the whole version appears at once. A rename onto an existing v<N>
                # fails, so two saves racing for one number cannot both win.
                os.rename(tmp, final)
            except OSError as exc:
                if not final.exists():
                    raise
                raise ProjectError(
                    f"{self.folder}: another process committed save {number} at the same moment; "
                    "not writing over it. Close this stack and open it again"
                ) from exc
            fsync_dir(self.folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        # Keep the new save and the intact one it follows (after a recovery the newest older one
        # is the damaged save: keeping it would leave one intact save).
        keep = {number, self._intact_version or (versions[0][0] if versions else 0)}
        for n, old in versions:
            if n not in keep:
                shutil.rmtree(old, ignore_errors=True)
        self._base_version = self._intact_version = number
        return {name: {**entry, "path": str(final / name)} for name, entry in manifest.items()}

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        with open(path, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    @staticmethod
    def _write_array(path: Path, array: np.ndarray) -> dict[str, Any]:
        """Write ``array`` as .npy (as ``np.save``); its manifest entry (the caller fsyncs it). The
        bytes are hashed as they are written, 16 MiB at a time: no copy of the whole file in memory
        (two were made until 2026-12-05, ~0.2 s and 2 x 184 MB for 200 frames of 820 x 1124)."""
        with open(path, "wb") as fh:
            out = _HashingWriter(fh)
            np.lib.format.write_array(out, np.ascontiguousarray(array), allow_pickle=False)
        return {"sha256": out.digest.hexdigest(), "bytes": out.size}

    @staticmethod
    def _link(source: Path, target: Path) -> bool:
        try:
            os.link(source, target)
        except OSError:
            return False
        # Its data was flushed by the save that wrote it; the new name is flushed with the folder.
        return True
