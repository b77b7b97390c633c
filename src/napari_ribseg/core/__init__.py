"""The Qt-free core of napari-ribseg: importable on a headless server.

Nothing under ``core`` imports qtpy, napari or magicgui, and torch is imported lazily inside the
functions that need it, so ``import napari_ribseg.core`` stays cheap.
"""

from napari_ribseg.core.errors import (
    CheckpointError,
    DatasetError,
    DeviceError,
    RibsegError,
    StackReadError,
    UnsupportedFormatError,
)
from napari_ribseg.core.stack import FrameStatus, Stack

__all__ = [
    "CheckpointError",
    "DatasetError",
    "DeviceError",
    "FrameStatus",
    "RibsegError",
    "Stack",
    "StackReadError",
    "UnsupportedFormatError",
]
