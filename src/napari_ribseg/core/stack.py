"""The data every part of the product passes around: an ultrasound stack and per-frame review status."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class FrameStatus(enum.IntEnum):
    """Review state of one frame; stored as uint8 in project files."""

    UNREVIEWED = 0
    CURATED = 1
    REJECTED = 2


#: Millimetres per length unit a napari layer's ``units`` may name (pint's names and symbols).
_MM_PER_UNIT = {
    "millimeter": 1.0, "mm": 1.0, "micrometer": 1e-3, "um": 1e-3, "µm": 1e-3, "micron": 1e-3,
    "nanometer": 1e-6, "nm": 1e-6, "centimeter": 10.0, "cm": 10.0, "meter": 1000.0, "m": 1000.0,
}  # fmt: skip


def spacing_from_scale(scale, units=None) -> tuple[float, float] | None:
    """The mm spacing (row, col) a napari layer's ``scale`` gives, ``None`` for the unit scale
    of a layer in pixels (layers of a stack with a known spacing are scaled by it).

    ``units`` (the layer's, e.g. ``("pixel", "micrometer", "micrometer")``): a scale in another
    length unit is converted to mm (a layer scaled 200 in micrometres was saved as 200 mm pixels);
    ``pixel`` or an unknown unit leaves the scale read as mm.
    """
    last = tuple(float(v) for v in tuple(scale)[-2:])
    if len(last) != 2 or last == (1.0, 1.0):
        return None
    factors = [_MM_PER_UNIT.get(str(u)) for u in tuple(units or ())[-2:]]
    if len(factors) == 2 and None not in factors:
        last = (last[0] * factors[0], last[1] * factors[1])
    return last


@dataclass
class Stack:
    """Frames x height x width of float32 in [0, 1], with what is known about the acquisition.

    ``frames`` may be a read-only ``np.memmap`` view for large files; callers that modify frames make a
    copy. ``spacing_mm`` is (row, column) physical pixel size in millimetres, ``None`` when unknown.
    """

    frames: np.ndarray
    source: Path | None = None
    spacing_mm: tuple[float, float] | None = None
    frame_rate: float | None = None
    original_dtype: str = "float32"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.frames.ndim != 3:
            raise ValueError(
                f"Stack frames must be 3-D (frames, height, width); got shape {self.frames.shape}"
            )

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        return (int(self.frames.shape[1]), int(self.frames.shape[2]))

    @property
    def name(self) -> str:
        return self.source.stem if self.source is not None else "stack"

    def describe(self) -> dict:
        """Plain-dict summary for ``ribseg info`` and the widget."""
        return {
            "source": str(self.source) if self.source else None,
            "frames": self.n_frames,
            "height": self.frame_shape[0],
            "width": self.frame_shape[1],
            "original_dtype": self.original_dtype,
            "spacing_mm": list(self.spacing_mm) if self.spacing_mm else None,
            "frame_rate": self.frame_rate,
        }
