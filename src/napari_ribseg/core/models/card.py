"""The JSON model card that travels with every checkpoint (no torch needed to read it)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from napari_ribseg.core.errors import CheckpointError

CARD_FORMAT = 1


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _version() -> str:
    from napari_ribseg import __version__

    return __version__


@dataclass
class TrainingDataSummary:
    """What a checkpoint was trained on: frame count, a human-readable source and a content hash."""

    frames: int = 0
    source: str = ""
    hash: str = ""


@dataclass
class Metric:
    """One evaluation number, e.g. ``Metric("dice", 0.87, "held-out clips c010-c012")``."""

    name: str
    value: float
    data: str = ""


@dataclass
class ModelCard:
    """Everything needed to rebuild a checkpoint's architecture and to judge its weights."""

    name: str
    variant: str
    preset: str
    widths: list[int]
    in_channels: int = 1
    input_size: int = 256
    preprocessing: str = (
        "frames float32 in [0, 1], letterboxed to input_size (aspect kept, zero pad); "
        "normalisation inside the network"
    )
    parent: str | None = None
    training_data: TrainingDataSummary = field(default_factory=TrainingDataSummary)
    freeze_strategy: str | None = None
    augmentation: str | None = None
    loss: str | None = None
    epochs: int = 0
    metrics: list[Metric] = field(default_factory=list)
    created: str = field(default_factory=_now)
    package_version: str = field(default_factory=_version)
    description: str = ""
    weights_source: str = ""
    licence: str = ""
    n_params: int = 0
    kind: str = "model"
    format: int = CARD_FORMAT
    #: Keys of a newer card this version does not know; kept so a round trip loses nothing.
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (``extra`` merged at the top level)."""
        data = dataclasses.asdict(self)
        extra = data.pop("extra")
        data["widths"] = [int(w) for w in data["widths"]]
        return {**extra, **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str | Path = "<dict>") -> ModelCard:
        """Card from a dict; unknown keys go to ``extra``; missing required keys raise CheckpointError."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        missing = [k for k in ("name", "variant", "preset", "widths") if k not in data]
        if missing:
            raise CheckpointError(f"Model card {source} lacks required keys {missing}")
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names}
        try:
            known["training_data"] = TrainingDataSummary(**(known.get("training_data") or {}))
            known["metrics"] = [Metric(**m) for m in known.get("metrics") or []]
            known["widths"] = [int(w) for w in known["widths"]]
            return cls(**known, extra=extra)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"Model card {source} is malformed: {exc}") from exc

    @classmethod
    def from_json(cls, text: str, *, source: str | Path = "<json>") -> ModelCard:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"Model card {source} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise CheckpointError(f"Model card {source} must be a JSON object")
        return cls.from_dict(data, source=source)

    @classmethod
    def read(cls, path: str | Path) -> ModelCard:
        """Read a card from a ``.json`` file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CheckpointError(f"Cannot read model card {path}: {exc}") from exc
        return cls.from_json(text, source=path)

    def metric(self, name: str) -> float | None:
        """Value of the first metric called ``name``, or None."""
        return next((m.value for m in self.metrics if m.name == name), None)
