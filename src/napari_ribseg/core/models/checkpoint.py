"""Checkpoints: ``<stem>.safetensors`` (weights) + ``<stem>.json`` (:class:`ModelCard`), never pickle.

The card inside the safetensors metadata (key ``ribseg_card``) is the single source: weights and
card are committed together by one atomic rename. The ``.json`` next to it is a derived, readable
copy; it is regenerated when missing or stale, and when the two differ the metadata wins (a kill
between the two writes can leave a stale JSON, never a stale card). Files without a metadata card
(older checkpoints) fall back to the ``.json``.

Before any tensor is read the header is checked: dtypes (float16, float32, bfloat16 only), shapes
against the card's architecture, the card's widths and the total size against the memory budget.
The card and header are read by :func:`~napari_ribseg.core.models.card.read_weights_card`, the same
reader the model registry lists with.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from napari_ribseg.core.atomic import atomic_path, write_text_atomic
from napari_ribseg.core.budget import check_allocation
from napari_ribseg.core.errors import CheckpointError
from napari_ribseg.core.models.architectures import RibSegNet, count_parameters
from napari_ribseg.core.models.card import (
    ALLOWED_DTYPES,  # noqa: F401  (re-exported: it was defined here)
    ModelCard,
    WeightsCard,
    read_weights_card,
)

WEIGHTS_SUFFIX = ".safetensors"
CARD_SUFFIX = ".json"
#: Formats that can only be read by unpickling, which can run arbitrary code.
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin")
#: Tensors kept float32 by ``half=True``: the input conv of v-unet carries a x255 fold and the mean.
KEEP_FLOAT32_PREFIX = "encoder.0.convs.0."


@dataclass
class LoadedModel:
    """A model ready for inference (eval mode, on its device) with its card and file."""

    model: RibSegNet
    card: ModelCard
    path: Path

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """``(weights, card)`` paths of a checkpoint given its stem, weights file or card file."""
    path = Path(path)
    if path.suffix in (WEIGHTS_SUFFIX, CARD_SUFFIX):
        path = path.with_suffix("")
    return path.with_name(path.name + WEIGHTS_SUFFIX), path.with_name(path.name + CARD_SUFFIX)


def refuse_pickle(path: Path) -> None:
    """Raise CheckpointError for pickle-based formats, saying how to convert them."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: {path.suffix} checkpoints are pickle files and are never loaded (unpickling can "
            "run arbitrary code). Convert a plain state dict you trust once: load it with "
            "torch.load(path, weights_only=True), load_state_dict it into build_model(...), then "
            "save_checkpoint(model, card, 'name.safetensors')."
        )


def estimated_parameters(card: ModelCard) -> int:
    """An upper estimate of the parameters a card's widths make (3x3 convs, 3 per level, 2 paths)."""
    widths = [card.in_channels, *card.widths]
    return sum(2 * 3 * 9 * max(a, b) * b + 4 * b for a, b in zip(widths, widths[1:], strict=False))


def model_from_card(card: ModelCard) -> RibSegNet:
    """An untrained model with the card's architecture."""
    try:
        model = RibSegNet(
            card.variant,
            card.widths,
            preset=card.preset,
            in_channels=card.in_channels,
            input_size=card.input_size,
        )
    except ValueError as exc:
        raise CheckpointError(f"Model card {card.name!r} describes no valid model: {exc}") from exc
    model.pretrained_source = card.weights_source or None
    return model


def save_checkpoint(
    model: RibSegNet,
    card: ModelCard,
    path: str | Path,
    *,
    half: bool = False,
    overwrite: bool = True,
) -> Path:
    """Write ``<stem>.safetensors`` (card in its metadata) atomically, then the JSON copy.

    The card's architecture fields (variant, preset, widths, in_channels, input_size, n_params) are
    taken from ``model``; an empty card name becomes the file stem. ``half`` stores floating tensors
    as fp16 (the v-unet input conv stays float32). With ``overwrite=False`` an existing checkpoint is
    never replaced (CheckpointError).
    """
    from safetensors.torch import save_file

    weights_path, card_path = checkpoint_paths(path)
    if not overwrite and weights_path.exists():
        raise CheckpointError(
            f"{weights_path} exists; choose another name or allow overwriting (--overwrite)"
        )
    card = dataclasses.replace(
        card,
        name=card.name or weights_path.stem.removesuffix(WEIGHTS_SUFFIX),
        variant=model.variant,
        preset=model.preset,
        widths=list(model.widths),
        in_channels=model.in_channels,
        input_size=model.input_size,
        n_params=count_parameters(model),
    )
    tensors = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        if half and tensor.is_floating_point() and not name.startswith(KEEP_FLOAT32_PREFIX):
            tensor = tensor.half()
        tensors[name] = tensor
    card_json = card.to_json()
    # The commit: weights and card appear together in one rename.
    with atomic_path(weights_path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "napari-ribseg", "ribseg_card": card_json})
    write_text_atomic(card_path, card_json)  # derived copy for people and tools
    return weights_path


def read_weights(path: str | Path) -> WeightsCard:
    """The checked header and card of a checkpoint (stem, weights or card path); regenerates the
    JSON copy of an embedded card when it is missing or stale."""
    weights_path, card_path = checkpoint_paths(path)
    weights = read_weights_card(weights_path, card_path)
    if weights.embedded and weights.card_text is not None:
        sync_card_copy(card_path, weights.card_text)
    return weights


def sync_card_copy(card_path: Path, text: str) -> None:
    """Regenerate the JSON copy of a card when it is missing or differs (best effort)."""
    try:
        if card_path.is_file() and card_path.read_text(encoding="utf-8") == text:
            return
        write_text_atomic(card_path, text)
    except (OSError, UnicodeDecodeError):
        pass  # a read-only model folder keeps its stale copy; the metadata is what is used


def check_header(weights: WeightsCard, model: nn.Module) -> None:
    """Check the header's shapes against ``model`` and its size against the memory budget (dtypes
    and shapes' form were checked when the header was read)."""
    path = weights.path
    for name, ref in model.state_dict().items():  # in the model's order: the first misfit is named
        shape = weights.tensors.get(name, {}).get("shape")
        if shape is not None and list(shape) != list(ref.shape):
            raise CheckpointError(
                f"{path}: tensor {name!r} does not match the card's architecture: expected shape "
                f"{tuple(ref.shape)}, got {tuple(shape)}"
            )
    check_allocation(weights.nbytes, "checkpoint tensors", path)


def check_state(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Raise CheckpointError naming the first tensor that does not fit ``model``."""
    expected = model.state_dict()
    for name, ref in expected.items():
        if name not in tensors:
            raise CheckpointError(
                f"{path}: tensor {name!r} missing; expected shape {tuple(ref.shape)}, got nothing"
            )
        if tuple(tensors[name].shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{path}: tensor {name!r} does not match the card's architecture: expected shape "
                f"{tuple(ref.shape)}, got {tuple(tensors[name].shape)}"
            )
    extra = [k for k in tensors if k not in expected]
    if extra:
        raise CheckpointError(
            f"{path}: tensor {extra[0]!r} (shape {tuple(tensors[extra[0]].shape)}) is not part of "
            "the card's architecture"
        )


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a safetensors checkpoint into a float32 model in eval mode on ``device``.

    Pickle formats (``.pt``, ``.pth``, ...) are refused; fp16 tensors are widened to float32.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    refuse_pickle(path)
    weights_path, _ = checkpoint_paths(path)
    if not weights_path.is_file():
        raise CheckpointError(f"Checkpoint weights not found: {weights_path}")
    weights = read_weights(weights_path)
    card = weights.model_card()
    # Widths are bounded by the card's validation; budget the float32 model before building it.
    check_allocation(4.0 * estimated_parameters(card), f"model {card.name!r}", weights_path)
    model = model_from_card(card)
    check_header(weights, model)
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights_path} is not a readable safetensors file: {exc}") from exc
    check_state(model, tensors, weights_path)
    state = model.state_dict()
    model.load_state_dict({k: v.to(state[k].dtype) for k, v in tensors.items()})
    model.to(device).eval()
    return LoadedModel(model=model, card=card, path=weights_path)


def read_card(path: str | Path) -> ModelCard:
    """The card of a whole-model checkpoint (its safetensors metadata, else the ``.json`` beside)."""
    return read_weights(path).model_card()
