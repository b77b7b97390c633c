"""Architectures: exact paper parameter counts, shapes, parameter groups, FLOPs."""

from __future__ import annotations

import pytest
import torch

from napari_ribseg.core.models import (
    PRESETS,
    VARIANTS,
    build_model,
    count_parameters,
    macs_per_frame,
)


def _paper(variant: str, **kwargs):
    # Shapes only: the meta device skips allocating and initialising ~30 M parameters.
    with torch.device("meta"):
        return build_model(variant, "paper", pretrained=False, **kwargs)


def test_paper_unet_has_31_030_593_parameters():
    assert count_parameters(_paper("unet")) == 31_030_593


def test_paper_x_unet_is_the_unet_architecture():
    unet, xunet = _paper("unet").state_dict(), _paper("x-unet").state_dict()
    assert {k: v.shape for k, v in unet.items()} == {k: v.shape for k, v in xunet.items()}


def test_paper_v_unet_with_rgb_input_has_the_authors_28_804_545_parameters():
    assert count_parameters(_paper("v-unet", in_channels=3)) == 28_804_545


def test_paper_v_unet_gray_fold_removes_2x9x64_parameters():
    model = _paper("v-unet")
    assert count_parameters(model) == 28_804_545 - 2 * 9 * 64 == 28_803_393
    convs = [c for stage in [*model.encoder, model.bottleneck] for c in stage.convs]
    assert len(convs) == 13
    assert [len(stage.convs) for stage in model.decoder] == [3, 3, 2, 2]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("preset", PRESETS)
def test_forward_shape(variant, preset):
    torch.manual_seed(0)
    model = build_model(variant, preset, input_size=64).eval()
    batch = 1 if preset == "paper" else 2
    x = torch.rand(batch, 1, 64, 64)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (batch, 1, 64, 64)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    assert (model.variant, model.preset, model.input_size) == (variant, preset, 64)
    assert len(model.widths) == 5 and len(model.encoder) == 4 and len(model.decoder) == 4


def test_parameter_groups_partition_all_parameters():
    model = build_model("v-unet", "tiny", pretrained=False)
    groups = model.parameter_groups()
    assert list(groups) == ["encoder", "bottleneck", "decoder", "head"]
    names = [n for group in groups.values() for n, _ in group]
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    assert sum(p.numel() for g in groups.values() for _, p in g) == count_parameters(model)
    assert groups["head"][0][0] == "head.weight"


def test_channels_last_matches_contiguous():
    torch.manual_seed(0)
    model = build_model("v-unet", "tiny", input_size=64).eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_size_not_multiple_of_16_is_refused_with_a_reason():
    model = build_model("unet", "tiny", pretrained=False)
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.rand(1, 1, 60, 64))


def test_custom_widths_and_bad_names():
    model = build_model("unet", widths=(2, 4, 6, 8, 10), pretrained=False)
    assert model.preset == "custom" and model.widths == (2, 4, 6, 8, 10)
    with pytest.raises(ValueError, match="variant"):
        build_model("w-unet")
    with pytest.raises(ValueError, match="preset"):
        build_model("unet", "huge")


def test_macs_count_matches_hand_computation():
    # unet widths (1, 1, 1, 1, 1) on 32x32: every 3x3 conv 1->1 costs 9 MACs per output pixel, the
    # first decoder convs (2->1) 18; transposed convs 4 per input pixel; head 1 per pixel.
    model = build_model("unet", widths=(1, 1, 1, 1, 1), pretrained=False)
    s = [32 * 32, 16 * 16, 8 * 8, 4 * 4, 2 * 2]
    encoder = sum(2 * 9 * n for n in s)
    decoder = sum(4 * s[i + 1] + (18 + 9) * s[i] for i in range(4))
    assert macs_per_frame(model, 32) == encoder + decoder + s[0]


def test_flops_are_twice_the_macs():
    from napari_ribseg.core.models import flops_per_frame

    model = build_model("unet", "tiny", pretrained=False)
    assert flops_per_frame(model, 64) == 2 * macs_per_frame(model, 64)


def test_v_unet_under_bfloat16_autocast_stays_close():
    # The folded input conv runs in float32 whatever the autocast dtype (x255 weights, mean in bias).
    torch.manual_seed(0)
    model = build_model("v-unet", "tiny", input_size=64).eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
    assert out.dtype == torch.bfloat16
    assert ((out.float() - ref).abs().max() / ref.abs().max()).item() < 0.05
