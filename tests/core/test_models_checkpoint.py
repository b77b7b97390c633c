"""Checkpoint format: safetensors + JSON card, bit-identical round trip, no pickle, named mismatches."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from napari_ribseg.core.errors import CheckpointError
from napari_ribseg.core.models import (
    Metric,
    ModelCard,
    TrainingDataSummary,
    build_model,
    load_checkpoint,
    save_checkpoint,
)


def _card(name: str = "") -> ModelCard:
    return ModelCard(
        name=name,
        variant="unet",
        preset="tiny",
        widths=[4, 8, 16, 32, 64],
        parent="v-unet-compact",
        training_data=TrainingDataSummary(frames=12, source="curated cine01", hash="abc123"),
        freeze_strategy="decoder",
        augmentation="light",
        loss="dice_bce",
        epochs=3,
        metrics=[Metric("dice", 0.875, "val clips c01-c02")],
        description="test model",
    )


@pytest.mark.parametrize("variant", ["unet", "v-unet"])
def test_float32_round_trip_is_bit_identical(tmp_path, variant):
    torch.manual_seed(0)
    model = build_model(variant, "tiny", input_size=64)
    path = save_checkpoint(model, _card(), tmp_path / "m.safetensors")
    assert path == tmp_path / "m.safetensors" and (tmp_path / "m.json").is_file()
    loaded = load_checkpoint(path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name
    assert loaded.card.variant == variant and loaded.card.name == "m"
    assert loaded.card.n_params == sum(p.numel() for p in model.parameters())
    assert not loaded.model.training
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model.eval()(x))


def test_half_checkpoint_loads_as_float32_within_tolerance(tmp_path):
    torch.manual_seed(0)
    model = build_model("v-unet", "tiny", input_size=64).eval()
    full = save_checkpoint(model, _card(), tmp_path / "full")
    half = save_checkpoint(model, _card(), tmp_path / "half", half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_checkpoint(half)
    assert all(t.dtype == torch.float32 for t in loaded.model.state_dict().values())
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, out = model(x), loaded.model(x)
    assert ((out - ref).abs().max() / ref.abs().max()).item() < 1e-2


def test_card_json_round_trip_keeps_unknown_keys(tmp_path):
    card = _card("c")
    data = card.to_dict()
    data["future_field"] = {"a": 1}
    back = ModelCard.from_json(json.dumps(data))
    assert back.extra == {"future_field": {"a": 1}}
    assert dataclasses.replace(back, extra={}) == card
    assert back.metric("dice") == 0.875
    assert back.training_data.hash == "abc123"
    with pytest.raises(CheckpointError, match="lacks required keys"):
        ModelCard.from_dict({"name": "x"})


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_pickle_checkpoints_are_refused(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    torch.save(build_model("unet", "tiny", pretrained=False).state_dict(), path)
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(path)


def test_mismatching_tensor_is_named_with_both_shapes(tmp_path):
    model = build_model("unet", "tiny", pretrained=False)
    path = save_checkpoint(model, _card(), tmp_path / "m")
    card = json.loads((tmp_path / "m.json").read_text())
    card["widths"] = [4, 8, 16, 32, 48]
    # The card inside the weights is the one that counts (the JSON is a copy).
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(path))
    save_file(tensors, str(path), metadata={"ribseg_card": json.dumps(card)})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "'bottleneck.convs.0.weight'" in msg
    assert "(48, 32, 3, 3)" in msg and "(64, 32, 3, 3)" in msg


def test_lone_weights_file_uses_the_card_in_its_metadata(tmp_path):
    model = build_model("unet", "tiny", pretrained=False)
    path = save_checkpoint(model, _card("meta"), tmp_path / "meta")
    (tmp_path / "meta.json").unlink()
    assert load_checkpoint(path).card.name == "meta"


def test_corrupt_or_missing_files_raise_checkpoint_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00notjson!")
    (tmp_path / "bad.json").write_text(_card("bad").to_json())
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
