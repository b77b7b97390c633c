"""Where a new model goes: the one resolver for fine-tune, adaptation and pre-training outputs."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
from collections.abc import Iterator
from pathlib import Path

from napari_ribseg.core.models.paths import model_output_path

__all__ = [
    "model_output_path",
    "release_output",
    "released_if_refused",
    "safe_name",
    "stamped_output",
]


def safe_name(name: str) -> str:
    """A file-name-safe version of a layer, stack or model name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "stack"


def stamped_output(
    base: str,
    stack: str,
    kind: str = "ft",
    now: _dt.datetime | None = None,
    *,
    model_dir: str | Path | None = None,
) -> Path:
    """``<model folder>/<base>-<kind>-<stack>-<YYYYmmdd-HHMMSS>.safetensors`` (widget runs), with
    ``-2``, ``-3``, ... appended when that name is taken; the name returned is reserved.

    Taken means a model, its card or a resume state of that name is in the folder (a run earlier
    in the same second, a clock set back, a second viewer): the training doors refuse an
    existing output, so the name must be free before the run starts, never found taken at its end.
    Checking alone was not enough: two viewers (two processes) starting in the same second both
    found the same name free. So the name is reserved when it is picked, by creating its empty
    ``<stem>.resume/`` folder with :func:`os.mkdir`, which only one process can do; the next
    caller finds it taken and goes on to ``-2``. The doors take a reserved name as free (they
    refuse only an existing model, and an empty resume folder holds no state to resume); the run
    removes the folder when it ends (:func:`release_output`, the fine-tune's resume clean-up).
    """
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    name = f"{safe_name(base)}-{kind}-{safe_name(stack)}-{stamp}"
    target = model_output_path(name, model_dir=model_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    number = 2
    while not _reserve(target):
        target = model_output_path(f"{name}-{number}", model_dir=model_dir)
        number += 1
    return target


def release_output(out: str | Path) -> None:
    """Give back the name :func:`stamped_output` reserved for ``out`` (the path it returned): its
    ``.resume/`` folder is removed when empty (a resume state a run left to be continued stays)."""
    folder = _reservation(Path(out))
    with contextlib.suppress(OSError):  # missing, or holds a state: either way not ours to take
        folder.rmdir()


@contextlib.contextmanager
def released_if_refused(out: str | Path | None) -> Iterator[None]:
    """Give back ``out``'s name (:func:`release_output`) when the block raises: a run refused, or
    whose inputs failed to load, before the door that gives it back when a run ends was entered.

    Each name is given back exactly once, by whoever holds it last: given back twice, the second
    could remove the reservation another caller made in between (same second, same name)."""
    try:
        yield
    except BaseException:
        if out is not None:
            with contextlib.suppress(Exception):  # the refusal, not this, is what to report
                release_output(out)
        raise


def _reservation(weights: Path) -> Path:
    """The ``<stem>.resume/`` folder (``core.training.resume``) that reserves ``weights``' name."""
    # Imported here: it loads torch, which a run is about to use anyway.
    from napari_ribseg.core.training.resume import resume_paths

    return resume_paths(weights)[0].parent


def _reserve(weights: Path) -> bool:
    """Reserve ``weights``' name if it is free; whether it was."""
    from napari_ribseg.core.models.checkpoint import checkpoint_paths

    folder = _reservation(weights)
    try:
        os.mkdir(folder)  # atomic: of two processes, exactly one creates it
    except FileExistsError:  # a resume state, or another caller's reservation (also a link)
        return False
    # The folder is ours now: a model or card of the name (a run whose state is gone, a file
    # put there by hand) still takes it.
    if any(path.exists() or path.is_symlink() for path in checkpoint_paths(weights)):
        folder.rmdir()
        return False
    return True
