"""Atomic writes: nothing a user made is ever half-written or lost.

A write goes to a temporary file in the target's folder, is fsynced, renamed over the target and then
the folder is fsynced, so after the call returns the new content survives a power cut, and before it
returns the old content is intact. Temporary names start with ``.`` and contain ``.tmp`` so listings
(the model registry, review cleanup) can tell them apart from real files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``target``'s folder; on success it replaces ``target`` atomically.

    The temporary file keeps ``target``'s suffix so libraries that dispatch on the extension work.
    """
    target = Path(target)
    if target.is_dir():
        # os.replace would fail only after the work, naming the temporary file
        # ('.x.json.tmpXXXX.json: Is a directory'): name the target, before the work.
        raise IsADirectoryError(errno.EISDIR, "is a folder; expected a file name", str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.tmp", suffix=target.suffix, dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the mode a plain open() would have had
        # (or keep the mode of the file it replaces) so shared model folders stay readable.
        mode = target.stat().st_mode & 0o777 if target.exists() else 0o666 & ~_umask()
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp_path, mode)
        fsync_file(tmp_path)
        os.replace(tmp_path, target)
        fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a file's content to the disk (a rename alone may reach the disk before the data)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename is durable only once its folder is synced)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # Windows cannot open folders; its renames are journalled by NTFS
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems (network, FUSE) do not support fsync on folders
        pass
    finally:
        os.close(fd)


def is_temporary(name: str) -> bool:
    """Whether a file name is one of our temporary files (never a model, never a save)."""
    return name.startswith(".") and ".tmp" in name or name.endswith((".partial", ".tmp"))


def _umask() -> int:
    # os.umask can only be read by setting it; do that once, at import time, on the main thread.
    return _UMASK


def _read_umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


_UMASK = _read_umask()


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(target, text.encode("utf-8"))


def check_writable(target: str | os.PathLike, what: str = "output") -> Path:
    """Check, before any work, that ``target`` can be written atomically; return it as a Path.

    Raises :class:`OutputPathError` when it is a folder, its folder is missing or read-only, or its
    name is longer than the file system allows.
    """
    from napari_ribseg.core.errors import OutputPathError

    target = Path(target)
    if target.is_dir():
        raise OutputPathError(f"{target}: the {what} is a folder; expected a file name")
    # Missing folders are created on write: check the nearest one that exists.
    parent = target.parent.absolute()
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"{target}: {parent} is a file, so the {what} cannot be made there")
    try:
        name_max = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        name_max = 255
    # The temporary file adds ".<name>.tmpXXXXXXXX" around the name.
    if len(os.fsencode(target.name)) + 16 > name_max:
        raise OutputPathError(
            f"{target}: the {what}'s file name is {len(os.fsencode(target.name))} bytes; at most "
            f"{name_max - 16} are allowed here"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{target}: the {what}'s folder {parent} is not writable")
    if target.exists() and not os.access(target, os.W_OK) and not os.access(parent, os.W_OK):
        raise OutputPathError(f"{target}: the {what} exists and is read-only")
    return target
