"""Hostile headers of each format and crafted checkpoints: one clear error, never an allocation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from napari_ribseg.cli import main
from napari_ribseg.core.errors import CheckpointError, RibsegError
from napari_ribseg.core.io import read_stack
from napari_ribseg.core.models import build_model, load_checkpoint, save_checkpoint
from napari_ribseg.core.models.card import ModelCard

sys.path.insert(0, str(Path(__file__).parent))
import hostile_files  # noqa: E402


@pytest.fixture(autouse=True)
def _small_budget(monkeypatch):
    monkeypatch.setenv("RIBSEG_MAX_BYTES", str(256 * 1024**2))


@pytest.mark.parametrize(
    ("maker", "args", "match"),
    [
        (hostile_files.tiff_claiming, ("x.tif", 100_000, 100_000), "limit"),
        (hostile_files.tiff_claiming, ("x.tif", 30_000, 30_000), "limit"),
        (hostile_files.npy_claiming, ("x.npy", (10_000_000, 1000, 1000)), "memory limit"),
        (hostile_files.npz_claiming, ("x.npz", (10_000_000, 1000, 1000)), "bomb|limit"),
        (hostile_files.dicom_claiming, ("x.dcm", 65535, 65535, 1000), "limit"),
        (hostile_files.dicom_claiming, ("x.dcm", 8, 8, "ab"), "NumberOfFrames is 'ab'"),
        (hostile_files.png_claiming, ("pngs", 20_000, 20_000), "limit|too large"),
        (hostile_files.mat73_claiming, ("x.mat", (100_000, 10_000, 10_000)), "memory limit"),
    ],
)
def test_hostile_header_is_one_clear_error(tmp_path, maker, args, match):
    path = maker(tmp_path / args[0], *args[1:])
    with pytest.raises(RibsegError, match=match):
        read_stack(path)


def test_zip_bomb_is_refused_before_inflating(tmp_path):
    path = hostile_files.npz_bomb(tmp_path / "bomb.npz", nbytes=300 * 1024**2)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(RibsegError, match="zip bomb"):
        read_stack(path)


def test_cli_prints_one_line_for_a_hostile_file(tmp_path, capsys):
    path = hostile_files.tiff_claiming(tmp_path / "x.tif", 100_000, 100_000)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "x.tif" in err


def test_cli_non_utf8_file_name_is_one_line(tmp_path, capsys):
    name = tmp_path / "clip\udcff.tif"  # an undecodable byte, as os.fsdecode gives it
    assert main(["info", str(name)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\ufffd" in err


def _checkpoint(tmp_path: Path) -> Path:
    model = build_model("unet", "tiny", pretrained=False)
    card = ModelCard(name="m", variant="unet", preset="tiny", widths=[4, 8, 16, 32, 64])
    return save_checkpoint(model, card, tmp_path / "m")


def _rewrite(path: Path, card: dict | str | None = None, cast=None) -> None:
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    with safe_open(str(path), "np") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(path))
    if cast is not None:
        tensors = {k: v.astype(cast) for k, v in tensors.items()}
    if card is not None:
        meta["ribseg_card"] = card if isinstance(card, str) else json.dumps(card)
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"widths": [65536, 8, 16, 32, 64]}, "widths"),
        ({"widths": [4, 8, 16, 32, "1e400"]}, "widths"),
        ({"input_size": 0}, "input_size"),
        ({"input_size": 17}, "input_size"),
        ({"in_channels": True}, "in_channels"),
    ],
)
def test_bad_card_fields_are_refused_before_building(tmp_path, change, match):
    path = _checkpoint(tmp_path)
    card = json.loads((tmp_path / "m.json").read_text())
    card.update(change)
    _rewrite(path, card)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_deep_card_and_infinite_number_are_refused(tmp_path):
    path = _checkpoint(tmp_path)
    deep = '{"name": "m", "x": ' + "[" * 200_000 + "]" * 200_000 + "}"
    _rewrite(path, deep)
    with pytest.raises(CheckpointError, match="nested"):
        load_checkpoint(path)
    card = json.loads((tmp_path / "m.json").read_text())
    text = json.dumps(card).replace('"epochs": 0', '"epochs": 1e400')
    _rewrite(path, text)
    with pytest.raises(CheckpointError, match="infinite|epochs"):
        load_checkpoint(path)


def test_integer_tensors_are_refused(tmp_path):
    import numpy as np

    path = _checkpoint(tmp_path)
    _rewrite(path, cast=np.uint8)
    with pytest.raises(CheckpointError, match="dtype U8"):
        load_checkpoint(path)


def test_metadata_card_wins_and_json_copy_is_regenerated(tmp_path):
    path = _checkpoint(tmp_path)
    (tmp_path / "m.json").write_text('{"stale": true}')
    loaded = load_checkpoint(path)
    assert loaded.card.widths == [4, 8, 16, 32, 64]
    assert json.loads((tmp_path / "m.json").read_text())["widths"] == [4, 8, 16, 32, 64]


def test_never_replaces_without_overwrite(tmp_path):
    path = _checkpoint(tmp_path)
    before = path.read_bytes()
    model = build_model("unet", "tiny", pretrained=False)
    card = ModelCard(name="m", variant="unet", preset="tiny", widths=[4, 8, 16, 32, 64])
    with pytest.raises(CheckpointError, match="exists"):
        save_checkpoint(model, card, path, overwrite=False)
    assert path.read_bytes() == before


def test_bad_or_temporary_checkpoints_never_hide_the_others(tmp_path, monkeypatch, capsys):
    from napari_ribseg.core.models.registry import list_models

    monkeypatch.setenv("RIBSEG_MODEL_DIR", str(tmp_path))
    good = _checkpoint(tmp_path)
    (tmp_path / ".m.safetensors.tmpab12.safetensors").write_bytes(good.read_bytes())
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(good.read_bytes())
    _rewrite(bad, '{"name": "bad", "variant": "unet", "preset": "tiny", "widths": [0]}')
    skipped = []
    names = [e.name for e in list_models(on_skip=lambda p, r: skipped.append(p.name))]
    assert "m" in names and "bad" not in names and not any("tmp" in n for n in names)
    assert skipped == ["bad.safetensors"]
    assert main(["models"]) == 0
    out = capsys.readouterr()
    assert "bad.safetensors" in out.err and out.err.count("\n") == 1
