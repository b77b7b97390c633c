"""One card reader: the registry's listing and checkpoint loading agree on every file."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from napari_ribseg.core.errors import CheckpointError
from napari_ribseg.core.models import build_model, list_models, load_checkpoint, save_checkpoint
from napari_ribseg.core.models.card import MAX_CARD_BYTES, ModelCard, read_weights_card
from napari_ribseg.core.models.checkpoint import read_card

WIDTHS = [4, 8, 16, 32, 64]


@pytest.fixture
def model_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("RIBSEG_MODEL_DIR", str(tmp_path))
    return tmp_path


def _checkpoint(folder: Path, name: str = "m") -> Path:
    model = build_model("unet", "tiny", pretrained=False)
    card = ModelCard(name=name, variant="unet", preset="tiny", widths=WIDTHS, description="d")
    return save_checkpoint(model, card, folder / name)


def _rewrite(path: Path, card: str | None, cast=None, *, embed: bool = True) -> None:
    """Re-save ``path``'s tensors with ``card`` in the metadata (or with no card when not embed)."""
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(path))
    if cast is not None:
        tensors = {k: v.astype(cast) for k, v in tensors.items()}
    meta = {"format": "napari-ribseg"}
    if embed and card is not None:
        meta["ribseg_card"] = card
    save_file(tensors, str(path), metadata=meta)


def _listed(model_dir: Path) -> tuple[dict[str, ModelCard], dict[str, str]]:
    skipped: dict[str, str] = {}
    entries = list_models(on_skip=lambda p, why: skipped.__setitem__(p.name, why))
    cards = {e.name: e.card for e in entries if e.path.parent == model_dir}
    return cards, skipped


def test_listing_and_loading_read_the_same_card(model_dir):
    path = _checkpoint(model_dir)
    legacy = _checkpoint(model_dir, "legacy")
    # An older checkpoint: the card only in the JSON beside the weights.
    _rewrite(legacy, None, embed=False)
    cards, skipped = _listed(model_dir)
    assert skipped == {}
    for name, weights in (("m", path), ("legacy", legacy)):
        loaded = load_checkpoint(weights).card.to_dict()
        assert cards[name].to_dict() == loaded == read_card(weights).to_dict()
        assert loaded["widths"] == WIDTHS and loaded["name"] == name
    reader = read_weights_card(path)
    assert reader.embedded and reader.kind == "model"
    assert reader.n_params == cards["m"].n_params > 0
    assert reader.nbytes == 4 * reader.n_params  # float32, no buffers in the tiny U-Net


def _card_text(**change) -> str:
    data = ModelCard(name="c", variant="unet", preset="tiny", widths=WIDTHS).to_dict()
    data.update(change)
    return json.dumps(data)


def _deep_header(path: Path) -> None:
    header = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    path.write_bytes(struct.pack("<Q", len(header)) + header)


CRAFTED = {
    "integer tensors": lambda p: _rewrite(p, _card_text(), cast=np.uint8),
    "huge width": lambda p: _rewrite(p, _card_text(widths=[65536, 8, 16, 32, 64])),
    "deep card": lambda p: _rewrite(p, '{"name": "c", "x": ' + "[" * 5000 + "]" * 5000 + "}"),
    "oversized card": lambda p: _rewrite(p, _card_text(description="x" * MAX_CARD_BYTES)),
    "NaN epochs": lambda p: _rewrite(p, _card_text().replace('"epochs": 0', '"epochs": NaN')),
    "bool in_channels": lambda p: _rewrite(p, _card_text(in_channels=True)),
    "non-UTF-8 JSON card": lambda p: (
        _rewrite(p, None, embed=False),
        p.with_suffix(".json").write_bytes(b'{"name": "\xff"}'),
    ),
    "truncated header": lambda p: p.write_bytes(p.read_bytes()[:20]),
    "deep header": _deep_header,
}


@pytest.mark.parametrize("craft", sorted(CRAFTED))
def test_both_paths_refuse_a_crafted_file_with_the_same_error(model_dir, craft):
    path = _checkpoint(model_dir, "c")
    _checkpoint(model_dir, "good")
    CRAFTED[craft](path)
    with pytest.raises(CheckpointError) as loading:
        load_checkpoint(path)
    with pytest.raises(CheckpointError) as reading:
        read_weights_card(path)
    cards, skipped = _listed(model_dir)
    # The listing skips exactly that file, for exactly the reason loading gives.
    assert set(cards) == {"good"}
    assert skipped == {"c.safetensors": str(loading.value)} == {"c.safetensors": str(reading.value)}
    assert "c." in str(loading.value)  # names the file


def test_a_component_file_is_no_model_on_either_path(model_dir):
    path = _checkpoint(model_dir, "enc")
    _rewrite(path, json.dumps({"kind": "pretrained-encoder", "name": "enc"}))
    cards, skipped = _listed(model_dir)
    assert "enc" not in cards and skipped == {}  # skipped silently, as the bundled VGG16 encoder
    with pytest.raises(CheckpointError, match="'pretrained-encoder', not a whole model"):
        load_checkpoint(path)
