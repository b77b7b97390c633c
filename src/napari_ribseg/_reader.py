"""npe2 reader: thin over :func:`napari_ribseg.core.io.read_stack`.

``get_reader`` only asks the registry whether it knows the path(s); it never raises. The returned
function reads each path into one image layer scaled to millimetres when the spacing is known.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from napari_ribseg.core.errors import MemoryBudgetError, RibsegError, StackReadError
from napari_ribseg.core.io import find_reader, read_stack

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
    """One napari image layer per path: frames, name, mm scale (if known) and the stack's metadata."""
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    layers: list[LayerData] = []
    for p in paths:
        try:
            stack = read_stack(p)
        except RibsegError:
            raise
        except MemoryError as exc:
            raise MemoryBudgetError(f"{p}: out of memory reading this file") from exc
        except Exception as exc:  # noqa: BLE001 - napari shows our errors; never a raw traceback
            raise StackReadError(f"{p}: cannot read ({type(exc).__name__}: {exc})") from exc
        kwargs: dict[str, Any] = {
            "name": stack.name,
            "contrast_limits": (0.0, 1.0),
            "metadata": {**stack.metadata, **stack.describe()},
        }
        if stack.spacing_mm is not None:
            kwargs["scale"] = (1.0, *stack.spacing_mm)
            kwargs["units"] = ("pixel", "mm", "mm")  # napari warns while layers' units differ
        layers.append((stack.frames, kwargs, "image"))
    return layers
