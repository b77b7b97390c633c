"""The JSON model card that travels with every checkpoint (no torch needed to read it).

:func:`read_weights_card` is the one reader of a checkpoint's card and tensor header: the model
registry lists with it and ``load_checkpoint`` loads with it, so both apply the same checks (header
length and nesting, tensor dtypes and shapes, card size, nesting, UTF-8, finite numbers, field
types and bounds).
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from napari_ribseg.core.errors import CheckpointError

CARD_FORMAT = 1
#: Bounds a card must respect before a model is built from it (a width of 65536 would allocate
#: 154 GB before any shape check could fail).
MAX_WIDTH = 4096
MAX_INPUT_SIZE = 4096
MAX_IN_CHANNELS = 4
#: Deepest JSON nesting a card may have (real cards are 3 deep); checked before json.loads recurses.
MAX_DEPTH = 32
MAX_CARD_BYTES = 1_000_000
#: Longest safetensors header read: a 1 MB card plus ~100k tensor entries (real ones are < 100 KB).
MAX_HEADER_BYTES = 16_000_000
#: safetensors dtypes a checkpoint may hold, with their bytes per element; integer or boolean
#: tensors would load as garbage.
ALLOWED_DTYPES = {"F16": 2, "F32": 4, "BF16": 2}


def json_depth_ok(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether ``text``'s bracket nesting (outside strings) stays within ``limit``."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _json_ready(value: Any) -> Any:
    """``value`` with NaN and infinities as None: JSON has no such numbers, and a card must load."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


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
        return _json_ready({**extra, **data})

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
        if not _finite(data):
            raise CheckpointError(f"Model card {source} holds an infinite or NaN number")
        try:
            known["training_data"] = TrainingDataSummary(**(known.get("training_data") or {}))
            known["metrics"] = [Metric(**m) for m in known.get("metrics") or []]
            card = cls(**known, extra=extra)
        except (TypeError, ValueError, OverflowError) as exc:
            raise CheckpointError(f"Model card {source} is malformed: {exc}") from exc
        card.validate(source)
        return card

    def validate(self, source: str | Path = "<card>") -> None:
        """Raise CheckpointError unless the architecture fields are of sane types and bounds."""

        def whole(value: Any, low: int, high: int) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high

        for key in ("name", "variant", "preset", "kind"):
            if not isinstance(getattr(self, key), str):
                raise CheckpointError(f"Model card {source}: {key!r} must be a string")
        widths = self.widths
        if (
            not isinstance(widths, list)
            or not 1 <= len(widths) <= 8
            or not all(whole(w, 1, MAX_WIDTH) for w in widths)
        ):
            raise CheckpointError(
                f"Model card {source}: 'widths' must be up to 8 whole numbers in [1, {MAX_WIDTH}], "
                f"found {str(widths)[:80]}"
            )
        if not whole(self.in_channels, 1, MAX_IN_CHANNELS):
            raise CheckpointError(
                f"Model card {source}: 'in_channels' must be in [1, {MAX_IN_CHANNELS}], "
                f"found {self.in_channels!r}"
            )
        if not whole(self.input_size, 16, MAX_INPUT_SIZE) or self.input_size % 16:
            raise CheckpointError(
                f"Model card {source}: 'input_size' must be a multiple of 16 in [16, "
                f"{MAX_INPUT_SIZE}], found {self.input_size!r}"
            )
        for key in ("epochs", "n_params"):
            if not whole(getattr(self, key), 0, 10**12):
                raise CheckpointError(f"Model card {source}: {key!r} must be a whole number >= 0")
        for m in self.metrics:
            if isinstance(m.value, bool) or not isinstance(m.value, int | float):
                raise CheckpointError(f"Model card {source}: metric {m.name!r} is not a number")

    @classmethod
    def from_json(cls, text: str, *, source: str | Path = "<json>") -> ModelCard:
        return cls.from_dict(card_data(text, source), source=source)

    @classmethod
    def read(cls, path: str | Path) -> ModelCard:
        """Read a card from a ``.json`` file."""
        return cls.from_json(_read_card_text(Path(path)), source=path)

    def metric(self, name: str) -> float | None:
        """Value of the first metric called ``name``, or None."""
        return next((m.value for m in self.metrics if m.name == name), None)


def card_data(text: str, source: str | Path = "<json>") -> dict[str, Any]:
    """The JSON object of a card's text, after the size and nesting checks (no field checks)."""
    if len(text) > MAX_CARD_BYTES:
        raise CheckpointError(f"Model card {source} is {len(text)} bytes; at most {MAX_CARD_BYTES}")
    if not json_depth_ok(text):
        raise CheckpointError(f"Model card {source} is nested deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise CheckpointError(f"Model card {source} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"Model card {source} must be a JSON object")
    return data


def _read_card_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"Model card {path} is not valid UTF-8: {exc}") from exc
    except OSError as exc:
        raise CheckpointError(f"Cannot read model card {path}: {exc}") from exc


def safetensors_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (tensor dtypes, shapes and ``__metadata__``)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > MAX_HEADER_BYTES:
                raise ValueError(f"header length {length} is above {MAX_HEADER_BYTES}")
            raw = f.read(length)
        if len(raw) != length:
            raise ValueError(f"header declares {length} bytes, the file holds {len(raw)}")
        header = json.loads(raw.decode("utf-8"))
    except RecursionError as exc:
        raise CheckpointError(
            f"{path} is not a readable safetensors file: nested too deeply"
        ) from exc
    except (OSError, struct.error, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc
    if not isinstance(header, dict):
        raise CheckpointError(
            f"{path} is not a readable safetensors file: header is no JSON object"
        )
    return header


def numel(shape: list[int]) -> int:
    """Number of elements of a tensor of ``shape``."""
    n = 1
    for s in shape:
        n *= int(s)
    return n


def tensor_entries(header: dict[str, Any], path: str | Path) -> tuple[dict[str, dict], int]:
    """The header's tensor entries and their total bytes; CheckpointError names the first tensor
    of a dtype outside :data:`ALLOWED_DTYPES` or with a malformed shape."""
    tensors, total = {}, 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info.get("dtype") if isinstance(info, dict) else info
        if dtype not in ALLOWED_DTYPES:
            raise CheckpointError(
                f"{path}: tensor {name!r} has dtype {dtype}; expected one of "
                f"{', '.join(sorted(ALLOWED_DTYPES))}"
            )
        shape = info.get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
        ):
            raise CheckpointError(
                f"{path}: tensor {name!r} has shape {str(shape)[:80]}; expected a list of whole "
                "numbers >= 0"
            )
        tensors[name] = info
        total += numel(shape) * ALLOWED_DTYPES[dtype]
    return tensors, total


@dataclass(frozen=True)
class WeightsCard:
    """What a checkpoint's weights file declares, read and checked without torch or tensor data."""

    path: Path
    #: Tensor name -> its header entry (``dtype``, ``shape``, ``data_offsets``), dtypes checked.
    tensors: dict[str, dict]
    #: Bytes the tensors take as stored.
    nbytes: int
    #: The card's kind (``"model"``, or a component such as ``"pretrained-encoder"``); ``None``
    #: when the file carries no card and no ``.json`` lies beside it.
    kind: str | None
    #: The validated card when ``kind == "model"``, else ``None``.
    card: ModelCard | None
    #: The card's JSON as stored, and whether it came from the weights' metadata (the source) or
    #: from the ``.json`` beside them (older checkpoints).
    card_text: str | None
    embedded: bool
    card_path: Path

    @property
    def n_params(self) -> int:
        """Parameters counted from the header (the fixed ``pad_response`` buffers excluded)."""
        return sum(
            numel(v["shape"]) for k, v in self.tensors.items() if not k.endswith("pad_response")
        )

    def model_card(self) -> ModelCard:
        """The card of a whole model; CheckpointError when there is none or it is a component's."""
        if self.kind is None:
            raise CheckpointError(
                f"{self.path} has no model card: expected {self.card_path.name} next to it"
            )
        if self.card is None:
            raise CheckpointError(f"{self.path} holds a {self.kind!r}, not a whole model")
        return self.card


def read_weights_card(path: str | Path, card_path: str | Path | None = None) -> WeightsCard:
    """Read and check a checkpoint's tensor header and card (the one card reader; no torch).

    The card in the safetensors metadata (key ``ribseg_card``) is the source; ``card_path``
    (default: the ``.json`` beside the weights) serves older checkpoints without one. Raises
    CheckpointError for an unreadable header, a tensor of a refused dtype or shape, and a card that
    is too large, too deep, not UTF-8, not JSON, or whose fields are of wrong types or bounds.
    """
    path = Path(path)
    card_path = Path(card_path) if card_path is not None else path.with_suffix(".json")
    header = safetensors_header(path)
    tensors, nbytes = tensor_entries(header, path)
    meta = header.get("__metadata__")
    text = meta.get("ribseg_card") if isinstance(meta, dict) else None
    embedded = isinstance(text, str)
    if embedded:
        origin = path
    elif card_path.is_file():
        origin, text = card_path, _read_card_text(card_path)
    else:
        return WeightsCard(path, tensors, nbytes, None, None, None, False, card_path)
    data = card_data(text, origin)
    kind = data.get("kind", "model")
    if not isinstance(kind, str):
        raise CheckpointError(f"Model card {origin}: 'kind' must be a string")
    # Component files (the VGG16 encoder) carry another kind of card and are no models.
    card = ModelCard.from_dict(data, source=origin) if kind == "model" else None
    return WeightsCard(path, tensors, nbytes, kind, card, text, embedded, card_path)


#: ``extra`` entries that describe how one model was made (its own fine-tune or adaptation); a
#: model made from it records its own, and its parent's stay on the parent's card.
STEP_KEYS = ("finetune", "adapt")


def own_extra(parent: ModelCard) -> dict[str, Any]:
    """The parent's ``extra`` a child card keeps: everything but the parent's own step
    (:data:`STEP_KEYS`). A child that copied them was judged by its parent's verdict: an
    adaptation of a bundled model (trained ``--select last``) read as a lost gate and was never
    the default; a fine-tune of an adapted model read as label-free."""
    return {k: v for k, v in parent.extra.items() if k not in STEP_KEYS}


def own_step(card: ModelCard) -> tuple[str, dict] | None:
    """``("finetune" | "adapt", record)`` of how this model was made, or ``None``. Cards written
    before 2026-12-03 may carry their parent's record too; ``weights_source`` tells which is
    their own."""
    steps = {k: card.extra[k] for k in STEP_KEYS if isinstance(card.extra.get(k), dict)}
    if len(steps) > 1:
        key = "adapt" if card.weights_source.startswith("label-free adaptation") else "finetune"
        return key, steps[key]
    return next(iter(steps.items()), None)
