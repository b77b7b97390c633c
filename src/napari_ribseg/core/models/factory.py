"""Build a network and initialise it from a named weight source: the one place that does both.

``architectures`` only defines the modules (no file I/O); this module loads what a variant starts
from. Weight sources:

- ``"vgg16-hed"``: the bundled VGG16 (HED/BSDS500) encoder, channel-pruned to the widths (v-unet);
- ``"salient"``: the bundled salient-object pre-training ``x-unet-<preset>-salient`` (x-unet, unet);
- ``"random"``: He initialisation, nothing loaded;
- a path to a ``.safetensors`` checkpoint of the same architecture;
- ``"default"``: what the variant is defined by (v-unet: vgg16-hed, x-unet: salient, unet: random).

An x-unet without its salient start is no x-unet: asking for ``"salient"`` raises
:class:`CheckpointError`; the ``"default"`` of a preset with no bundled start warns with
:class:`StartWeightsWarning` (never an info log) and says so in ``model.pretrained_source``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from napari_ribseg.core.errors import CheckpointError
from napari_ribseg.core.models.architectures import RibSegNet
from napari_ribseg.core.models.variants import preset_widths

WEIGHT_SOURCES = ("default", "vgg16-hed", "salient", "random")
#: Bundled checkpoint an x-unet starts from.
XUNET_PRETRAINING_NAME = "x-unet-{preset}-salient"
#: What each variant starts from under ``weights="default"``.
DEFAULT_WEIGHTS = {"unet": "random", "v-unet": "vgg16-hed", "x-unet": "salient"}


class StartWeightsWarning(UserWarning):
    """A network starts from other weights than its variant is defined by (shown to the user)."""


def salient_start_path(preset: str) -> Path:
    """The bundled salient pre-training checkpoint of ``preset`` (it may not exist)."""
    from napari_ribseg.core.models.registry import bundled_model_dir

    return bundled_model_dir() / f"{XUNET_PRETRAINING_NAME.format(preset=preset)}.safetensors"


def _load_checkpoint_into(model: RibSegNet, path: Path, what: str) -> str:
    """Copy the weights of checkpoint ``path`` into ``model``; returns the source description."""
    from napari_ribseg.core.models.checkpoint import load_checkpoint

    loaded = load_checkpoint(path)
    if tuple(loaded.model.widths) != tuple(model.widths):
        raise CheckpointError(
            f"{path}: widths {list(loaded.model.widths)} do not match the {model.variant} "
            f"{model.preset} widths {list(model.widths)}; expected {what} of the same widths"
        )
    if loaded.model.in_channels != model.in_channels:
        raise CheckpointError(
            f"{path}: {loaded.model.in_channels} input channel(s); expected {model.in_channels}"
        )
    model.load_state_dict(loaded.model.state_dict())
    return f"{path.stem} ({loaded.card.weights_source or what})"


def load_salient_pretraining(model: RibSegNet) -> bool:
    """Load the bundled ``x-unet-<preset>-salient`` weights into ``model`` when they exist.

    Returns whether weights were loaded; the caller decides whether their absence is an error.
    """
    path = salient_start_path(model.preset)
    if not path.is_file():
        return False
    model.pretrained_source = _load_checkpoint_into(model, path, "salient-object pretraining")
    return True


def build_model(
    variant: str,
    preset: str = "compact",
    *,
    weights: str | os.PathLike = "default",
    in_channels: int = 1,
    input_size: int = 256,
    widths: Sequence[int] | None = None,
    pretrained: bool | None = None,
) -> RibSegNet:
    """Build a :class:`RibSegNet` and initialise it from ``weights`` (see the module docstring).

    ``widths`` overrides the preset's widths (the preset becomes ``"custom"``). ``pretrained`` is
    the older spelling: ``False`` means ``weights="random"``, ``True`` ``weights="default"``.
    ``model.pretrained_source`` says where the weights came from (``None``: random).
    """
    if pretrained is not None:
        weights = "default" if pretrained else "random"
    if widths is None:
        widths = preset_widths(variant, preset)
    else:
        preset_widths(variant, "compact")  # validates the variant
        preset = "custom"
    model = RibSegNet(
        variant, widths, preset=preset, in_channels=in_channels, input_size=input_size
    )
    source = os.fspath(weights)
    if source not in WEIGHT_SOURCES:
        model.pretrained_source = _load_checkpoint_into(model, Path(source), "a start checkpoint")
        return model
    explicit = source != "default"
    if source == "default":
        source = DEFAULT_WEIGHTS[variant]
    if source == "vgg16-hed":
        from napari_ribseg.core.models.vgg import load_vgg16_encoder

        load_vgg16_encoder(model)
    elif source == "salient":
        if variant == "v-unet":
            raise ValueError(
                "the salient pre-training fits unet and x-unet; v-unet starts from VGG16"
            )
        if not load_salient_pretraining(model):
            path = salient_start_path(preset)
            message = (
                f"{variant} {preset}: no salient pre-training at {path}; run `ribseg "
                "pretrain-salient` or pass weights=PATH"
            )
            if explicit:
                raise CheckpointError(message)
            warnings.warn(
                f"{message}. It starts from random weights, which makes it a plain U-Net",
                StartWeightsWarning,
                stacklevel=2,
            )
    return model


def architecture_of(name_or_path: str | os.PathLike, *, model_dir=None) -> RibSegNet:
    """The network a checkpoint describes, built from its card alone, with weightless parameters.

    Its parameters live on torch's ``meta`` device: shapes and counts without memory or file reads
    beyond the card, so a GUI can show parameter counts at once (loading weights can take seconds).
    """
    import torch

    from napari_ribseg.core.models.checkpoint import model_from_card, read_card
    from napari_ribseg.core.models.registry import resolve_model

    card = read_card(resolve_model(name_or_path, model_dir=model_dir))
    with torch.device("meta"):
        return model_from_card(card)


__all__ = [
    "architecture_of",
    "DEFAULT_WEIGHTS",
    "WEIGHT_SOURCES",
    "XUNET_PRETRAINING_NAME",
    "StartWeightsWarning",
    "build_model",
    "load_salient_pretraining",
    "salient_start_path",
]
