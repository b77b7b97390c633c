"""Model registry: bundled and user checkpoints, name resolution, the ``ribseg models`` command."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from napari_ribseg.cli import main
from napari_ribseg.core.errors import CheckpointError
from napari_ribseg.core.models import (
    Metric,
    ModelCard,
    build_model,
    bundled_model_dir,
    list_models,
    load_model,
    registry,
    resolve_model,
    save_checkpoint,
    user_model_dir,
)

BUNDLED = "v-unet-compact"
BUNDLED_RIB_MODELS = ("unet-compact", "v-unet-compact", "x-unet-compact")


def _save_user_model(name: str, variant: str = "unet") -> Path:
    torch.manual_seed(0)
    model = build_model(variant, "tiny", input_size=64, pretrained=False)
    card = ModelCard(name=name, variant=variant, preset="tiny", widths=list(model.widths))
    card.metrics.append(Metric("dice", 0.5, "test"))
    return save_checkpoint(model, card, user_model_dir() / name)


def test_user_dir_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RIBSEG_MODEL_DIR", str(tmp_path / "m"))
    assert user_model_dir() == tmp_path / "m"
    monkeypatch.delenv("RIBSEG_MODEL_DIR")
    assert user_model_dir().name == "models"


def test_bundled_models_are_listed_and_encoder_file_is_not(caplog):
    with caplog.at_level("WARNING"):
        entries = {e.name: e for e in list_models()}
    assert "vgg16_hed_encoder" not in entries
    assert not caplog.records, "the encoder file must be skipped silently, not as unreadable"
    for name in BUNDLED_RIB_MODELS:
        entry = entries[name]
        assert entry.source == "bundled" and entry.path.parent == bundled_model_dir()
        assert (
            entry.card.variant == name.removesuffix("-compact") and entry.card.preset == "compact"
        )
        assert "trained on simulated lung ultrasound" in entry.card.description
        assert entry.n_params == entry.card.n_params > 1_000_000
    vunet = entries[BUNDLED].card
    assert "HED" in vunet.weights_source and "MIT" in vunet.licence
    assert entries["x-unet-compact"].card.parent == "x-unet-compact-salient"
    assert "NOT on XPIE" in entries["x-unet-compact-salient"].card.weights_source


def test_bundled_models_carry_their_test_metrics_and_load_as_fp32():
    for name in BUNDLED_RIB_MODELS:
        loaded = load_model(name)
        dice = loaded.card.metric("dice")
        # Measured by scripts/train_bundled.py on simulated clips of unseen seeds.
        assert dice is not None and dice > 0.5, (name, dice)
        assert loaded.card.metric("hard_dice") is not None, name
        assert "unseen" in next(m.data for m in loaded.card.metrics if m.name == "dice")
        assert all(p.dtype == torch.float32 for p in loaded.model.parameters())


def test_user_model_is_listed_resolved_and_loaded():
    path = _save_user_model("my-unet")
    entry = next(e for e in list_models() if e.name == "my-unet")
    assert entry.source == "user" and entry.path == path
    assert entry.n_params == sum(p.numel() for p in build_model("unet", "tiny").parameters())
    assert resolve_model("my-unet") == path
    assert resolve_model(path) == path
    assert resolve_model(path.with_suffix(".json")) == path
    loaded = load_model("my-unet")
    assert loaded.name == "my-unet" and loaded.path == path
    assert loaded.model(torch.rand(1, 1, 64, 64)).shape == (1, 1, 64, 64)


def test_user_model_shadows_a_bundled_name():
    path = _save_user_model(BUNDLED)
    assert resolve_model(BUNDLED) == path
    sources = [e.source for e in list_models() if e.name == BUNDLED]
    assert sources == ["bundled", "user"]


def test_unknown_name_lists_the_available_ones():
    _save_user_model("known-one")
    with pytest.raises(CheckpointError) as info:
        resolve_model("no-such-model")
    assert "known-one" in str(info.value) and BUNDLED in str(info.value)
    with pytest.raises(CheckpointError, match="not found"):
        resolve_model(f"missing{os.sep}x.safetensors")
    with pytest.raises(CheckpointError, match="pickle"):
        resolve_model("weights.pth")


def test_unreadable_user_file_is_skipped():
    user_model_dir().mkdir(parents=True, exist_ok=True)
    (user_model_dir() / "broken.safetensors").write_bytes(b"\x00")
    assert "broken" not in {e.name for e in list_models()}


def test_x_unet_starts_from_bundled_salient_pretraining(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "bundled_model_dir", lambda: tmp_path)
    assert build_model("x-unet", "tiny").pretrained_source is None
    torch.manual_seed(3)
    pretrained = build_model("x-unet", "tiny", pretrained=False)
    card = ModelCard(
        name="",
        variant="x-unet",
        preset="tiny",
        widths=list(pretrained.widths),
        weights_source="salient-object pretraining (test)",
    )
    save_checkpoint(pretrained, card, tmp_path / "x-unet-tiny-salient")
    model = build_model("x-unet", "tiny")
    assert torch.equal(model.head.weight, pretrained.head.weight)
    assert "x-unet-tiny-salient" in model.pretrained_source


def test_cli_lists_models_as_json_and_table(capsys):
    _save_user_model("cli-model")
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    row = next(r for r in rows if r["name"] == "cli-model")
    assert (
        row["source"] == "user" and row["variant"] == "unet" and row["metrics"][0]["value"] == 0.5
    )
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "cli-model" in out and "dice=0.5" in out and BUNDLED in out


def _save_finetune(name: str, created: str, gate: dict | None, select: str = "gated") -> Path:
    """A user checkpoint whose card says how its fine-tune was judged (as loop._card writes it)."""
    torch.manual_seed(0)
    model = build_model("unet", "tiny", input_size=64, pretrained=False)
    card = ModelCard(
        name=name,
        variant="unet",
        preset="tiny",
        widths=list(model.widths),
        input_size=64,
        parent=BUNDLED,
        created=created,
        # Its own held-out frames: a number that must never rank it against bundled models.
        metrics=[Metric("dice", 1.0, "held-out corrected frames: 3")],
        extra={"finetune": {"select": select, "gate": gate}} if select else {},
    )
    return save_checkpoint(model, card, user_model_dir() / name)


def test_default_model_is_a_gate_winner_never_a_loser():
    from napari_ribseg.core.models import default_model, gate_verdict

    bundled = [e for e in list_models() if e.name in BUNDLED_RIB_MODELS]
    # Bundled models rank by the hard-domain Dice on their cards (the real-scan proxy), not by
    # the ordinary test set's, where another model may lead (the U-Net did on 2026-12-02).
    best_bundled = max(bundled, key=lambda e: e.card.metric("hard_dice"))
    assert default_model().name == best_bundled.name == "v-unet-compact"
    assert all(best_bundled.card.metric("hard_dice") >= e.card.metric("hard_dice") for e in bundled)

    # A loser kept by --select last, an ungated --select best run, both newer and "dice 1.0".
    _save_finetune("lost", "2026-03-01T00:00:00+00:00", {"promoted": False}, select="last")
    _save_finetune("ungated", "2026-03-02T00:00:00+00:00", None, select="best")
    assert default_model().name == best_bundled.name, "a 1.0 on its own frames outranked bundled"

    _save_finetune("plain", "2026-01-01T00:00:00+00:00", None, select="")  # not a fine-tune
    assert default_model().name == "plain"
    _save_finetune("won", "2026-02-01T00:00:00", {"promoted": True})  # no zone: read as UTC
    entries = {e.name: e for e in list_models()}
    assert [gate_verdict(entries[n].card) for n in ("won", "lost", "ungated", "plain")] == [
        True,
        False,
        False,
        None,
    ]
    # The newest eligible user model, by the card's date (not the name, not the file time).
    assert default_model().name == "won"
    assert default_model(list(entries.values())).name == "won"
    assert default_model([entries["lost"], entries["ungated"]]) is None
    # A model adapted without labels (even from a gate winner) is for its own stack: never the
    # default, however new.
    adapted = _save_finetune("adapted", "2026-04-01T00:00:00+00:00", {"promoted": True})
    from napari_ribseg.core.models import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(adapted)
    loaded.card.extra["adapt"] = {"teacher_view": "raw"}  # a card of before 2026-12-03: both
    loaded.card.weights_source = "label-free adaptation of won (won.safetensors)"
    save_checkpoint(loaded.model, loaded.card, adapted, overwrite=True)
    assert default_model().name == "won"


def test_a_model_is_judged_by_its_own_step_not_its_parents():
    """Found by an adaptation audit: cards copied their parent's ``extra``, so an adaptation that
    won the gate on curated frames of a bundled model (whose card records a lost ``--select last``
    gate) was never the default, and a gate-winning fine-tune of an adapted model read as
    label-free."""
    from napari_ribseg.core.models import default_model, gate_verdict, is_label_free
    from napari_ribseg.core.models.card import own_extra

    bundled = next(e for e in list_models() if e.name == "unet-compact")
    assert gate_verdict(bundled.card) is False  # trained --select last
    path = _save_finetune("gated-adapt", "2026-05-01T00:00:00+00:00", {"promoted": True})
    from napari_ribseg.core.models import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(path)
    card = loaded.card
    card.extra = {**own_extra(bundled.card), "adapt": {"gate": {"promoted": True}}}
    card.weights_source = "label-free adaptation of unet-compact (bundled)"
    save_checkpoint(loaded.model, card, path, overwrite=True)
    entry = next(e for e in list_models() if e.name == "gated-adapt")
    assert "finetune" not in entry.card.extra
    assert (gate_verdict(entry.card), is_label_free(entry.card)) == (True, False)
    assert default_model().name == "gated-adapt"

    # A fine-tune of a label-free adapted model that won its own gate.
    label_free = {"adapt": {"teacher_view": "raw", "gate": None}}
    child = _save_finetune("ft-of-adapted", "2026-06-01T00:00:00+00:00", {"promoted": True})
    loaded = load_checkpoint(child)
    loaded.card.extra = {**own_extra(type(loaded.card)(**{**vars(loaded.card), "extra": label_free})), "finetune": loaded.card.extra["finetune"]}  # fmt: skip
    save_checkpoint(loaded.model, loaded.card, child, overwrite=True)
    entry = next(e for e in list_models() if e.name == "ft-of-adapted")
    assert (gate_verdict(entry.card), is_label_free(entry.card)) == (True, False)
    assert default_model().name == "ft-of-adapted"


def test_predict_without_model_uses_the_default(tmp_path, capsys):
    import numpy as np
    import tifffile

    _save_finetune("lost", "2026-03-01T00:00:00+00:00", {"promoted": False}, select="last")
    _save_finetune("won", "2026-02-01T00:00:00+00:00", {"promoted": True})
    path = tmp_path / "clip.tif"
    tifffile.imwrite(path, np.random.default_rng(0).integers(0, 255, (2, 64, 64), np.uint8))
    out = tmp_path / "masks.tif"
    assert main(["predict", str(path), "--out", str(out), "--device", "cpu"]) == 0
    assert "model: won (the default" in capsys.readouterr().err
    assert tifffile.imread(out).shape == (2, 64, 64)


def test_cli_names_an_unreadable_model_once_on_its_own_line(tmp_path):
    """ribseg models printed the skip twice (its own warning and a bare 'Skipping unreadable
    checkpoint ...' from logging), and predict --model X printed the bare line before its error.
    In a subprocess: pytest's log capture hides logging's last-resort output here."""
    import subprocess
    import sys

    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "broken.safetensors").write_bytes(b"\x00")
    env = {**os.environ, "RIBSEG_MODEL_DIR": str(folder)}

    def stderr(*argv: str) -> list[str]:
        run = subprocess.run(
            [sys.executable, "-m", "napari_ribseg.cli", *argv],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        return run.stderr.splitlines()

    lines = stderr("models")
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"ribseg models: warning: skipping {folder / 'broken.safetensors'}: "
    )
    lines = stderr("predict", str(tmp_path / "x.npy"), "--model", "nope", "--out", "m.tif")
    assert [line.split(":")[0] for line in lines] == ["ribseg predict", "ribseg predict"], lines
    assert lines[0].startswith("ribseg predict: warning: Skipping unreadable checkpoint")
    assert lines[1].startswith("ribseg predict: error: No model named 'nope'")
