"""npe2 reader: thin over :func:`napari_ribseg.core.io.read_stack`.

``get_reader`` only asks the registry whether it knows the path(s); it never raises. The returned
function reads the path into one image layer scaled to millimetres when the spacing is known.
napari hands over a list of paths only when asked to stack them (``viewer.open(paths,
stack=True)``, *File > Open Files as Stack...*): they become one layer, the frames of their
folder (:func:`~napari_ribseg.core.io.read_stacked_files`), or a clear error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from napari_ribseg.core.errors import MemoryBudgetError, RibsegError, StackReadError
from napari_ribseg.core.io import find_reader, read_stack, read_stacked_files

LayerData = tuple[Any, dict, str]
PathOrPaths = str | os.PathLike | Sequence[str | os.PathLike]


def get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerData]] | None:
    """Return a reader function if every path can be read as an ultrasound stack, else ``None``."""
    try:
        paths = [path] if isinstance(path, str | os.PathLike) else list(path)
        if not paths or any(find_reader(p) is None for p in paths):
            return None
    except Exception:  # noqa: BLE001 - napari asks every plugin; a reader probe must never raise
        return None
    return read_layers


def read_layers(path: PathOrPaths) -> list[LayerData]:
    """One napari image layer: frames, name, mm scale (if known) and the stack's metadata.

    A list of paths (napari's ``stack=True``) is one stack, read by ``read_stacked_files``: one
    layer per file split a stack of frames into single-frame layers."""
    stacked = not isinstance(path, str | os.PathLike)
    try:
        stack = read_stacked_files(list(path)) if stacked else read_stack(path)
    except RibsegError:
        raise
    except MemoryError as exc:
        raise MemoryBudgetError(f"{path}: out of memory reading this file") from exc
    except Exception as exc:  # noqa: BLE001 - napari shows our errors; never a raw traceback
        raise StackReadError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc
    kwargs: dict[str, Any] = {
        "name": stack.name,
        "contrast_limits": (0.0, 1.0),
        "metadata": {**stack.metadata, **stack.describe()},
    }
    if stack.spacing_mm is not None:
        kwargs["scale"] = (1.0, *stack.spacing_mm)
        kwargs["units"] = ("pixel", "mm", "mm")  # napari warns while layers' units differ
    return [(stack.frames, kwargs, "image")]
