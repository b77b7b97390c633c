"""``ribseg finetune`` end to end, in-process: paired folder in, checkpoint + card out."""

from __future__ import annotations

import json

import pytest
import torch
from test_training_support import synthetic_set, tiny_base

from napari_ribseg.cli import main
from napari_ribseg.cli.cmd_finetune import output_path
from napari_ribseg.core.errors import TrainingError
from napari_ribseg.core.io import write_paired_dataset
from napari_ribseg.core.models import list_models, load_model, user_model_dir

torch.set_num_threads(1)


@pytest.fixture
def paired(tmp_path):
    data = synthetic_set(n_clips=3, frames_per_clip=4)
    return write_paired_dataset(tmp_path / "paired", data.images, data.masks, data.ids), data


def test_finetune_into_the_user_model_folder(tmp_path, paired, capsys):
    root, data = paired
    tiny_base(tmp_path / "base.safetensors")
    code = main(
        [
            "finetune",
            str(root),
            "--model",
            str(tmp_path / "base.safetensors"),
            "--strategy",
            "encoder",
            "--epochs",
            "2",
            "--augment",
            "flip",
            "--out",
            "my-probe",
            "--lr",
            "3e-3",
            "--batch-size",
            "2",
            "--val-share",
            "0.34",
            "--loss",
            "dice",
            "--device",
            "cpu",
            "--seed",
            "3",
            "--select",
            "last",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    target = user_model_dir() / "my-probe.safetensors"
    assert target.is_file() and f"{target}" in captured.out
    assert "finetune [" in captured.err  # the progress bar
    card = json.loads(target.with_suffix(".json").read_text())
    assert card["parent"] == "base" and card["freeze_strategy"] == "encoder"
    assert card["augmentation"] == "flip" and card["loss"] == "dice"
    assert card["training_data"]["frames"] == 8 and card["training_data"]["hash"]
    assert len(card["finetune"]["val_ids"]) == 4 and card["finetune"]["config"]["seed"] == 3
    assert "my-probe" in [entry.name for entry in list_models()]
    assert load_model("my-probe").card.epochs == 2


def test_finetune_to_an_explicit_path(tmp_path, paired, capsys):
    root, _ = paired
    tiny_base(tmp_path / "base.safetensors")
    out = tmp_path / "models" / "tuned.safetensors"
    code = main(
        [
            "finetune",
            str(root),
            "--model",
            str(tmp_path / "base.safetensors"),
            "--epochs",
            "1",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--augment",
            "none",
            "--select",
            "last",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert out.is_file() and out.with_suffix(".json").is_file()
    card = json.loads(out.with_suffix(".json").read_text())
    # --select last keeps the final weights whatever the gate said, and the card says so.
    assert card["finetune"]["select"] == "last" and card["finetune"]["gate"] is not None
    gate = card["finetune"]["gate"]
    if not gate["promoted"]:
        assert "kept anyway: --select last" in card["description"]


def test_a_finetune_that_cannot_improve_leaves_no_model_and_says_why(tmp_path, paired, capsys):
    root, _ = paired
    tiny_base(tmp_path / "base.safetensors", head_bias=-5.0)
    out = tmp_path / "models" / "nothing.safetensors"
    # lr 1e-9 cannot move the weights: the gate must refuse the unchanged copy of the base.
    code = main(
        [
            "finetune",
            str(root),
            "--model",
            str(tmp_path / "base.safetensors"),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--lr",
            "1e-9",
            "--steps",
            "4",
            "--val-share",
            "0.34",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert "no new model, the base stays: no clear improvement" in captured.out
    assert "on 4 held-out corrected frames" in captured.out


def test_cli_options_are_generated_from_the_config_fields():
    import argparse
    import dataclasses

    from napari_ribseg.cli.cmd_finetune import register
    from napari_ribseg.core.training.config import FinetuneConfig, config_from_args

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["finetune", "d", "--model", "m", "--out", "x"])
    config = config_from_args(args)
    # Every CLI default is the dataclass default: one declaration.
    assert config == FinetuneConfig()
    cli_fields = {f.name for f in dataclasses.fields(FinetuneConfig) if f.metadata["cli"]}
    assert cli_fields <= set(vars(args)) and {"amp", "base_is_candidate"} - cli_fields


def test_bad_output_and_same_as_base_fail_with_one_line(tmp_path, paired, capsys):
    root, _ = paired
    tiny_base(tmp_path / "base.safetensors")
    with pytest.raises(TrainingError, match="path ending in .safetensors"):
        output_path("models/x.pt")
    code = main(
        [
            "finetune",
            str(root),
            "--model",
            str(tmp_path / "base.safetensors"),
            "--out",
            str(tmp_path / "base.safetensors"),
            "--device",
            "cpu",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "is the base model itself" in err and err.count("\n") == 1
    (tmp_path / "taken.safetensors").write_bytes(b"a model the user made")
    code = main(
        [
            "finetune",
            str(root),
            "--model",
            str(tmp_path / "base.safetensors"),
            "--out",
            str(tmp_path / "taken.safetensors"),
            "--device",
            "cpu",
        ]
    )
    assert code == 2 and "exists" in capsys.readouterr().err
    assert (tmp_path / "taken.safetensors").read_bytes() == b"a model the user made"


def test_pretrain_salient_does_not_replace_an_existing_model(tmp_path, capsys):
    (tmp_path / "mine.safetensors").write_bytes(b"keep me")
    args = ["pretrain-salient", "--synthetic", "2", "--epochs", "1", "--preset", "tiny"]
    code = main([*args, "--size", "32", "--out", str(tmp_path / "mine.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and "exists; choose a new name or pass --overwrite" in err
    assert (tmp_path / "mine.safetensors").read_bytes() == b"keep me"


@pytest.mark.parametrize(
    "option,value,message",
    [
        ("--epochs", "0", "must be >= 1"),
        ("--size", "0", "must be >= 1"),
        ("--size", "100", "multiple of 16"),
        ("--lr", "nan", "expected a number > 0"),
        ("--batch-size", "0", "must be >= 1"),
        # --seed -1 composed the images, then failed as "ValueError: expected non-negative integer".
        ("--seed", "-1", "argument --seed: must be >= 0; got -1"),
        ("--limit", "0", "argument --limit: must be >= 1; got 0"),
        ("--synthetic", "-3", "argument --synthetic: must be >= 0; got -3"),
    ],
)
def test_pretrain_salient_numbers_are_checked_first(tmp_path, option, value, message, capsys):
    args = ["pretrain-salient", "--synthetic", "2", "--out", str(tmp_path / "s.safetensors")]
    with pytest.raises(SystemExit):
        main([*args, option, value])
    assert message in capsys.readouterr().err


def test_pretrain_salient_refuses_limit_with_synthetic(tmp_path, capsys):
    """--limit was ignored in silence with --synthetic N."""
    out = tmp_path / "s.safetensors"
    args = ["pretrain-salient", "--synthetic", "2", "--limit", "1", "--out", str(out)]
    assert main(args) == 2
    assert capsys.readouterr().err == (
        "ribseg pretrain-salient: error: pretrain-salient: --limit applies to DATA; --synthetic N "
        "sets the count\n"
    )
    assert not out.exists()


def test_progressive_step_without_the_progressive_strategy_is_refused(tmp_path, paired, capsys):
    """--progressive-step 3 with the default strategy ('all') was ignored in silence."""
    root, _ = paired
    tiny_base(tmp_path / "base.safetensors")
    args = ["finetune", str(root), "--model", str(tmp_path / "base.safetensors")]
    args += ["--out", str(tmp_path / "new.safetensors"), "--device", "cpu"]
    assert main([*args, "--progressive-step", "3"]) == 2
    assert capsys.readouterr().err == (
        "ribseg finetune: error: --progressive-step 3 applies only to --strategy progressive; "
        "this run's strategy is 'all'\n"
    )
    assert not (tmp_path / "new.safetensors").exists()
