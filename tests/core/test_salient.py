"""Salient-object pre-training: the data-set readers, the synthetic substitute, the job and its CLI."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from napari_ribseg.core.errors import DatasetError
from napari_ribseg.core.training import salient
from napari_ribseg.core.training.salient import (
    SYNTHETIC_STATEMENT,
    compose_salient_set,
    detect_salient_layout,
    read_salient_dataset,
)


def _pair(rng: np.random.Generator, h: int = 20, w: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """An RGB photograph and a 0/255 mask with a bright square object (rows 5-14, cols 6-17)."""
    image = (rng.random((h, w, 3)) * 80).astype(np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[5:15, 6:18] = 255
    image[mask > 0] = 220
    return image, mask


def _write(folder: Path, name: str, array: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    iio.imwrite(folder / name, array)


LAYOUTS = {
    # name: (image folder, mask folder, image suffix) relative to the data root
    "DUTS": ("DUTS-TR/DUTS-TR-Image", "DUTS-TR/DUTS-TR-Mask", ".jpg"),
    "ECSSD": ("ECSSD/images", "ECSSD/ground_truth_mask", ".jpg"),
    "XPIE": ("img", "gt", ".png"),
    "MSRA10K": ("MSRA10K_Imgs_GT/Imgs", "MSRA10K_Imgs_GT/Imgs", ".jpg"),
    "folder": ("images", "masks", ".png"),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_reader_for_each_layout(tmp_path, rng, layout):
    image_dir, mask_dir, suffix = LAYOUTS[layout]
    for i in range(3):
        image, mask = _pair(rng)
        _write(tmp_path / image_dir, f"s{i:03d}{suffix}", image)
        _write(tmp_path / mask_dir, f"s{i:03d}.png", mask)
    # A photograph without a mask is left out, not an error.
    _write(tmp_path / image_dir, f"lonely{suffix}", _pair(rng)[0])

    assert detect_salient_layout(tmp_path) == layout
    data = read_salient_dataset(tmp_path, size=None)
    assert data.name == layout
    assert len(data) == 3
    assert [i.split("/")[-1] for i in data.ids] == ["s000", "s001", "s002"]
    image, mask = data.images[0], data.masks[0]
    assert image.dtype == np.float32 and image.shape == (20, 24)  # grayscale, native size
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert mask.sum() == 10 * 12
    # The object is brighter than the background after the grayscale conversion (JPEG or not).
    assert image[mask == 1].mean() > image[mask == 0].mean() + 0.4
    assert layout in data.statement

    resized = read_salient_dataset(tmp_path, size=16, limit=2)
    assert len(resized) == 2
    assert resized.images[0].shape == (16, 16) and resized.masks[0].shape == (16, 16)
    assert set(np.unique(resized.masks[0])) == {0, 1}


def test_reader_errors_name_the_problem(tmp_path, rng):
    with pytest.raises(DatasetError, match="does not exist"):
        read_salient_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert detect_salient_layout(tmp_path / "empty") is None
    with pytest.raises(DatasetError, match="no salient-object layout"):
        read_salient_dataset(tmp_path / "empty")
    image, _ = _pair(rng)
    _write(tmp_path / "bad" / "img", "a.png", image)
    _write(tmp_path / "bad" / "gt", "a.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DatasetError, match="same height and width"):
        read_salient_dataset(tmp_path / "bad")
    _write(tmp_path / "unpaired" / "img", "a.png", image)
    _write(tmp_path / "unpaired" / "gt", "b.png", np.zeros((20, 24), np.uint8))
    with pytest.raises(DatasetError, match="no image/mask pairs"):
        read_salient_dataset(tmp_path / "unpaired")


def test_bundled_photographs_load_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the synthetic salient set must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    salient.bundled_photographs.cache_clear()
    photos = salient.bundled_photographs()
    names = [name for name, _ in photos]
    assert len(photos) >= 10
    assert {"camera", "astronaut", "coffee", "brick"} <= set(names)
    for _, gray in photos:
        assert gray.ndim == 2 and gray.dtype == np.float32
        assert gray.min() >= 0.0 and gray.max() <= 1.0


def test_synthetic_set_is_deterministic_with_sane_masks():
    a = compose_salient_set(12, size=64, seed=3)
    b = compose_salient_set(12, size=64, seed=3)
    for x, y in zip(a.images + a.masks, b.images + b.masks, strict=True):
        assert np.array_equal(x, y)
    # Sample i depends only on (seed, i): a smaller set is a prefix of a larger one.
    prefix = compose_salient_set(4, size=64, seed=3)
    assert all(np.array_equal(p, q) for p, q in zip(prefix.images, a.images[:4], strict=False))
    other = compose_salient_set(4, size=64, seed=4)
    assert not np.array_equal(other.images[0], a.images[0])

    fractions = a.mask_fractions()
    assert np.all(fractions >= 0.02) and np.all(fractions <= 0.65)
    assert 0.05 < fractions.mean() < 0.45
    for image, mask in zip(a.images, a.masks, strict=True):
        assert image.dtype == np.float32 and image.shape == (64, 64)
        assert image.min() >= 0.0 and image.max() <= 1.0 and image.std() > 0.02
        assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert a.name == "synthetic" and a.statement == SYNTHETIC_STATEMENT
    assert sum(a.info["shapes"].values()) == 12


def test_pretraining_saves_a_card_with_the_substitute_statement(tmp_path):
    from napari_ribseg.core.jobs import run_job
    from napari_ribseg.core.models import load_model

    kinds = []
    result = run_job(
        salient.pretrain_salient(
            None,
            synthetic=10,
            preset="tiny",
            size=64,
            epochs=1,
            batch_size=8,
            device="cpu",
            out=tmp_path / "x.safetensors",
        ),
        lambda e: kinds.append(e.kind),
    )
    assert result.checkpoint == tmp_path / "x.safetensors" and result.checkpoint.is_file()
    assert not result.stopped and len(result.history) == 1
    assert {"message", "batch", "epoch", "done"} <= set(kinds)
    card = json.loads((tmp_path / "x.json").read_text())
    assert card["weights_source"] == SYNTHETIC_STATEMENT
    assert card["description"].startswith(SYNTHETIC_STATEMENT)
    assert card["variant"] == "x-unet" and card["parent"] is None
    assert card["salient_pretraining"]["synthetic"] is True
    assert card["training_data"]["frames"] == 10
    loaded = load_model(tmp_path / "x.safetensors")
    assert loaded.card.variant == "x-unet" and tuple(loaded.model.widths) == (4, 8, 16, 32, 64)
    # No resume state is left once the run has finished.
    assert not (tmp_path / "x.resume").exists()
    # The saved weights are the trained ones, never the random start: a random net that marks
    # everything can out-score an early epoch on large salient objects.
    import torch

    from napari_ribseg.core.models import build_model

    torch.manual_seed(0)
    start = build_model("x-unet", "tiny", input_size=64, pretrained=False).state_dict()
    trained = loaded.model.state_dict()
    changed = sum(not torch.equal(start[k], trained[k]) for k in start)
    assert changed == len(start)


def test_pretraining_on_a_real_layout_names_it(tmp_path, rng):
    from napari_ribseg.core.jobs import run_job

    for i in range(6):
        image, mask = _pair(rng, 32, 32)
        _write(tmp_path / "XPIE" / "img", f"{i}.png", image)
        _write(tmp_path / "XPIE" / "gt", f"{i}.png", mask)
    result = run_job(
        salient.pretrain_salient(
            tmp_path / "XPIE", preset="tiny", size=32, epochs=1, device="cpu", out=tmp_path / "r"
        )
    )
    assert result.dataset == "XPIE" and result.n_images == 6
    assert "XPIE" in result.card.weights_source and "synthetic" not in result.card.weights_source


def test_cli_pretrain_salient(tmp_path, capsys):
    from napari_ribseg.cli import main
    from napari_ribseg.core.models import user_model_dir

    assert main(["pretrain-salient", "--out", "nothing"]) == 2
    assert "needs DATA or --synthetic" in capsys.readouterr().err
    args = ["--epochs", "1", "--preset", "tiny", "--size", "32", "--device", "cpu"]
    assert main(["pretrain-salient", "--synthetic", "6", "--out", "xs", *args]) == 0
    out = capsys.readouterr().out
    assert "NOT on XPIE" in out
    assert (user_model_dir() / "xs.safetensors").is_file()


def test_cli_pretrain_salient_resumes_its_own_interrupted_run(tmp_path, capsys):
    """ribseg pretrain-salient refused to continue its own interrupted run ("--out ... exists;
    choose a new name or pass --overwrite"), which ribseg finetune resumes; now the same rule:
    its own output is continued, another model at --out is still refused."""
    import json

    from napari_ribseg.cli import main
    from napari_ribseg.core.jobs import StopFlag, run_job
    from napari_ribseg.core.models import user_model_dir

    stop = StopFlag()
    first = run_job(
        salient.pretrain_salient(
            None, synthetic=6, preset="tiny", size=32, epochs=3, device="cpu", out="sal", stop=stop
        ),
        lambda e: stop.set() if e.kind == "epoch" else None,
    )
    out = user_model_dir() / "sal.safetensors"
    assert first.stopped and len(first.history) == 1 and first.checkpoint == out
    assert (user_model_dir() / "sal.resume").is_dir()
    args = ["--synthetic", "6", "--epochs", "3", "--preset", "tiny", "--size", "32"]
    assert main(["pretrain-salient", *args, "--device", "cpu", "--out", "sal"]) == 0
    printed = capsys.readouterr()
    assert "done: " + str(out) in printed.out
    assert "resuming after epoch 1" in printed.out + printed.err
    card = json.loads((user_model_dir() / "sal.json").read_text())
    assert card["epochs"] == 3
    assert not (user_model_dir() / "sal.resume").exists()
    # A finished model (no resume state) is another run's: refused without --overwrite.
    assert main(["pretrain-salient", *args, "--device", "cpu", "--out", "sal"]) == 2
    err = capsys.readouterr().err
    assert f"--out {out} exists; choose a new name or pass --overwrite" in err
