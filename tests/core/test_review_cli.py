"""The batch review path: predict --review, review --curate, export-curated, finetune STACK."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_ribseg.cli import main
from napari_ribseg.core.io import read_paired_dataset
from napari_ribseg.core.session import ReviewSession
from napari_ribseg.core.stack import FrameStatus


@pytest.fixture
def tiny_model(tmp_path, monkeypatch):
    """An untrained tiny U-Net (64 px input) in a per-test user model folder; its name."""
    import torch

    from napari_ribseg.core.models import ModelCard, build_model, save_checkpoint

    monkeypatch.setenv("RIBSEG_MODEL_DIR", str(tmp_path / "models"))
    torch.manual_seed(0)
    model = build_model("unet", preset="tiny", input_size=64, pretrained=False)
    card = ModelCard(
        name="tiny", variant="unet", preset="tiny", widths=list(model.widths), input_size=64
    )
    save_checkpoint(model, card, tmp_path / "models" / "tiny.safetensors")
    return "tiny"


@pytest.fixture
def stack_file(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.random((8, 64, 64), dtype=np.float32) * 0.2
    frames[:, 20:26, 8:56] += 0.7
    path = tmp_path / "clip01.npy"
    np.save(path, frames.clip(0, 1))
    return path


def test_batch_review_path_end_to_end(tmp_path, tiny_model, stack_file, capsys):
    assert (
        main(["predict", str(stack_file), "--review", "--model", tiny_model, "--device", "cpu"])
        == 0
    )
    out = capsys.readouterr().out
    assert "8 of 8 frames written by tiny" in out
    sidecar = stack_file.parent / "clip01.npy.ribseg"
    assert sidecar.is_dir()

    # A hand edit and a rejection made in between survive the next night's run.
    with ReviewSession.open(stack_file) as session:
        session.set_labels(6, np.ones((64, 64), np.uint8))
    assert main(["review", str(stack_file), "--curate", "0-3", "--reject", "7"]) == 0
    out = capsys.readouterr().out
    assert "4 curated, 1 rejected, 3 unreviewed of 8 frames; 1 hand-edited" in out
    assert out.splitlines()[1].split()[:2] == ["0", "curated"]

    with ReviewSession.open(stack_file) as opened:
        before = opened.labels.copy()
    assert (
        main(["predict", str(stack_file), "--review", "--model", tiny_model, "--device", "cpu"])
        == 0
    )
    assert "2 of 8 frames written" in capsys.readouterr().out  # frames 4 and 5 only
    after = ReviewSession.open(stack_file)
    for f in (0, 1, 2, 3, 6, 7):
        np.testing.assert_array_equal(after.labels[f], before[f])
    assert after.statuses[7] == FrameStatus.REJECTED
    after.close()  # one open review per stack, in this process too

    assert main(["export-curated", str(stack_file), "--out", str(tmp_path / "pairs")]) == 0
    assert "4 curated frame pairs" in capsys.readouterr().out
    pairs = read_paired_dataset(tmp_path / "pairs")
    assert len(pairs.images) == 4
    assert sorted(p.name for p in (tmp_path / "pairs").iterdir()) == ["IMG", "MASK"]
    np.testing.assert_array_equal(pairs.masks[0], after.labels[0])

    args = ["finetune", str(stack_file), "--model", tiny_model, "--out", "tiny-ft", "--epochs", "1"]
    args += ["--batch-size", "2", "--val-share", "0.25", "--device", "cpu", "--patience", "0"]
    # --select last: this test is about the data path, not whether one epoch of a tiny model wins.
    assert main([*args, "--select", "last"]) == 0
    assert "done:" in capsys.readouterr().out
    card = json.loads((tmp_path / "models" / "tiny-ft.json").read_text())
    # It trained on exactly the review's curated frames (same content hash as the export's source).
    with ReviewSession.open(stack_file) as session:
        assert card["training_data"]["hash"] == session.training_set().hash
    assert 1 <= card["training_data"]["frames"] < 4  # some curated frames are held out


def test_review_cli_errors_are_one_line(stack_file, capsys):
    assert main(["review", str(stack_file), "--curate", "5-12"]) == 2
    err = capsys.readouterr().err
    assert "outside this stack of 8 frames" in err and len(err.strip().splitlines()) == 1
    assert main(["export-curated", str(stack_file), "--out", str(stack_file.parent / "x")]) == 2
    assert "no review at" in capsys.readouterr().err  # the refused --curate saved nothing
    assert main(["review", str(stack_file), "--curate", "5-2"]) == 2
    assert "'5-2' runs backwards; write the lower frame first (2-5)" in capsys.readouterr().err
    assert main(["review", str(stack_file), "--curate", "1-3", "--reject", "3,6"]) == 2
    assert "frames [3] are asked to be both curated and rejected" in capsys.readouterr().err
    with ReviewSession.open(stack_file) as session:
        assert (session.statuses == FrameStatus.UNREVIEWED).all(), "nothing half-applied"


def test_predict_needs_out_or_review(stack_file, capsys):
    assert main(["predict", str(stack_file), "--model", "unet"]) == 2
    assert "--review" in capsys.readouterr().err


def test_adapt_is_judged_on_the_reviews_curated_frames(tmp_path, tiny_model, capsys):
    rng = np.random.default_rng(1)
    frames = rng.random((12, 64, 64), dtype=np.float32) * 0.2
    frames[:, 20:26, 8:56] += 0.7
    path = tmp_path / "clip02.npy"
    np.save(path, frames.clip(0, 1))
    args = ["adapt", str(path), "--model", tiny_model, "--out", "tiny-ad", "--steps", "2"]
    args += ["--device", "cpu"]
    # No review: label-free, and none is created.
    assert main(args) == 0
    assert "curated frames" not in capsys.readouterr().out
    assert not (tmp_path / "clip02.npy.ribseg").exists()
    band = np.zeros((64, 64), np.uint8)
    band[20:26, 8:56] = 1
    with ReviewSession.open(path) as session:
        for f in (0, 5, 10):
            session.set_labels(f, band)
            session.set_status(f, FrameStatus.CURATED)
    assert main([*args[:5], "tiny-ad2", *args[6:]]) == 0
    out = capsys.readouterr().out
    assert "3 curated frames in the stack's review: left out, they judge the result" in out
    assert "judged on the stack's curated frames" in out


def test_adapt_options_reach_the_recipe(tmp_path, tiny_model, capsys):
    frames = np.random.default_rng(2).random((12, 64, 64), dtype=np.float32) * 0.2
    frames[:, 20:26, 8:56] += 0.7
    path = tmp_path / "clip03.npy"
    np.save(path, frames.clip(0, 1))
    args = ["adapt", str(path), "--model", tiny_model, "--steps", "2", "--device", "cpu"]
    recipe = ["--teacher", "mean", "--temporal", "2", "--mix", "0.5"]
    assert main([*args, "--out", "tiny-mean", *recipe]) == 0
    captured = capsys.readouterr()
    # The teacher line names the recipe: both views averaged, over neighbouring frames.
    assert "teacher: mean frames" in captured.err + captured.out
    assert "averaged over" in captured.err + captured.out
    assert main([*args, "--out", "tiny-bad", "--mix", "0"]) == 2
    assert "0 < mix <= 1" in capsys.readouterr().err


def test_finetune_gate_does_not_judge_on_frames_accepted_unedited_at_another_size(
    tmp_path, tiny_model, capsys
):
    """Frames of 48 x 80 (not the model's 64 x 64 input) predicted, curated without an edit, then
    fine-tuned from the same model: none of them is a correction, whatever the resampled Dice."""
    rng = np.random.default_rng(5)
    frames = rng.random((10, 48, 80), dtype=np.float32) * 0.2
    frames[:, 14:19, 6:70] += 0.7
    path = tmp_path / "wide.npy"
    np.save(path, frames.clip(0, 1))
    assert main(["predict", str(path), "--review", "--model", tiny_model, "--device", "cpu"]) == 0
    assert main(["review", str(path), "--curate", "0-9"]) == 0
    capsys.readouterr()
    with ReviewSession.open(path) as session:
        data = session.training_set()
    assert data.edited == [False] * 10 and data.labelled_by == tiny_model
    args = ["finetune", str(path), "--model", tiny_model, "--out", "wide-ft", "--epochs", "1"]
    args += ["--batch-size", "2", "--device", "cpu", "--patience", "0"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "too few held-out corrected frames to judge: 0 of" in out
    assert not (tmp_path / "models" / "wide-ft.safetensors").exists()

    # One frame painted by hand: that one is a correction the review knows of.
    with ReviewSession.open(path) as session:
        session.set_labels(3, np.ones((48, 80), np.uint8))
        assert session.training_set().edited == [f == 3 for f in range(10)]


def test_finetune_and_adapt_read_a_review_kept_under_a_project_folder(tmp_path, tiny_model, capsys):
    frames = np.random.default_rng(2).random((12, 64, 64), dtype=np.float32) * 0.2
    frames[:, 20:26, 8:56] += 0.7
    stack_file = tmp_path / "clip01.npy"
    np.save(stack_file, frames)
    reviews = tmp_path / "reviews ü"
    base = ["--model", tiny_model, "--device", "cpu"]
    kept = ["--project-folder", str(reviews)]
    assert main(["predict", str(stack_file), "--review", *kept, *base]) == 0
    assert main(["review", str(stack_file), *kept, "--curate", "0-5"]) == 0
    capsys.readouterr()
    sidecar = stack_file.parent / "clip01.npy.ribseg"
    # Without the folder: an error that says where it looked, and no empty review left behind.
    args = ["finetune", str(stack_file), *base, "--out", "pf-ft", "--epochs", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"no review at {sidecar}" in err and "--project-folder" in err
    assert main(["review", str(stack_file)]) == 2 and "no review at" in capsys.readouterr().err
    assert not sidecar.exists()
    # With it: trained on its 6 curated frames, some held out.
    args += [*kept, "--batch-size", "2", "--val-share", "0.5", "--select", "last"]
    assert main(args) == 0
    card = json.loads((tmp_path / "models" / "pf-ft.json").read_text())
    assert 1 <= card["training_data"]["frames"] < 6
    code = main(["adapt", str(stack_file), *base, *kept, "--out", "pf-ad", "--steps", "2"])
    assert code == 0 and "6 curated frames in the stack's review" in capsys.readouterr().out
    assert not sidecar.exists()


def test_project_folder_is_refused_where_it_would_be_ignored(
    tmp_path, tiny_model, stack_file, capsys
):
    """predict --out without --review and finetune on a paired folder ignored --project-folder."""
    kept = ["--project-folder", str(tmp_path / "reviews")]
    masks = tmp_path / "masks.tif"
    code = main(["predict", str(stack_file), "--out", str(masks), *kept, "--model", tiny_model])
    assert code == 2 and not masks.exists()
    assert capsys.readouterr().err == (
        "ribseg predict: error: --project-folder says where the review is kept; it does "
        "nothing without --review\n"
    )
    from napari_ribseg.core.io import write_paired_dataset

    pairs = write_paired_dataset(
        tmp_path / "pairs",
        [np.zeros((64, 64), np.float32)] * 2,
        [np.zeros((64, 64))] * 2,
        ["a", "b"],
    )
    args = ["finetune", str(pairs), "--model", tiny_model, "--out", "x", "--epochs", "1", *kept]
    assert main(args) == 2
    assert capsys.readouterr().err == (
        f"ribseg finetune: error: {pairs} is a paired image/mask folder, which has no review; "
        "--project-folder applies to a STACK whose review is kept there\n"
    )
    assert not (tmp_path / "models" / "x.safetensors").exists()


def test_predict_review_says_when_prob_cannot_be_written(tmp_path, tiny_model, stack_file, capsys):
    """Every frame drawn by hand and curated: --prob was skipped in silence (exit 0) and the
    summary said 'written by None'."""
    with ReviewSession.open(stack_file) as session:
        session.set_labels(0, np.ones((64, 64), np.uint8))
    assert main(["review", str(stack_file), "--curate", "0-7", "--quiet"]) == 0
    capsys.readouterr()
    prob, masks = tmp_path / "prob.tif", tmp_path / "masks.tif"
    argv = ["predict", str(stack_file), "--review", "--model", tiny_model, "--device", "cpu"]
    assert main([*argv, "--prob", str(prob), "--out", str(masks)]) == 2
    captured = capsys.readouterr()
    assert "0 of 8 frames written by tiny; kept 8 curated" in captured.out
    assert captured.err == (
        f"ribseg predict: error: {prob} not written: the review holds no probabilities (every "
        "frame is curated, rejected or hand-edited and none was ever predicted)\n"
    )
    assert masks.is_file() and not prob.exists()


@pytest.mark.parametrize(("flag", "text"), [("--curate", ""), ("--reject", " , ")])
def test_review_refuses_an_empty_frame_list(tmp_path, tiny_model, stack_file, capsys, flag, text):
    """--curate "$FRAMES" with FRAMES unset only printed the review and exited 0."""
    assert main(["predict", str(stack_file), "--review", "--model", tiny_model]) == 0
    capsys.readouterr()
    assert main(["review", str(stack_file), flag, text]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"ribseg review: error: {flag} {text!r}: no frames given; expected e.g. 0-3,7\n"
    )


def test_the_review_of_one_array_of_an_npz_is_reached_with_variable(tmp_path, tiny_model, capsys):
    """predict --review --variable b made a review that review, export-curated, finetune and
    adapt (no --variable) could not open: they read array 'a' and said 'holds 2 frames ... but
    data.npz has 8 frames; move the folder away'."""
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(
        path,
        a=rng.random((8, 64, 64), dtype=np.float32),
        b=rng.random((6, 64, 64), dtype=np.float32),
    )
    argv = ["predict", str(path), "--review", "--variable", "b", "--model", tiny_model]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["review", str(path), "--quiet"]) == 2
    sidecar = tmp_path / "data.npz.ribseg"
    assert capsys.readouterr().err == (
        f"ribseg review: error: {sidecar}: this review is of variable 'b' of {path} (6 frames of "
        f"(64, 64)), but {path} was read as 8 frames of (64, 64) from variable 'a'; open it "
        "with variable 'b' (--variable b)\n"
    )
    assert main(["review", str(path), "--variable", "b", "--curate", "0-5", "--quiet"]) == 0
    assert "6 curated, 0 rejected, 0 unreviewed of 6 frames" in capsys.readouterr().out
    out = tmp_path / "pairs"
    assert main(["export-curated", str(path), "--variable", "b", "--out", str(out)]) == 0
    assert len(read_paired_dataset(out)) == 6
    ft = ["finetune", str(out), "--variable", "b", "--model", tiny_model, "--out", "x"]
    assert main(ft) == 2
    assert (
        "pairs is a paired image/mask folder; --variable applies to a STACK"
        in capsys.readouterr().err
    )


def test_adapt_refuses_its_base_as_out(tmp_path, tiny_model, capsys):
    """adapt --model M --out M --overwrite replaced the base with its adaptation when kept."""
    frames = np.random.default_rng(3).random((12, 64, 64), dtype=np.float32) * 0.2
    frames[:, 20:26, 8:56] += 0.7
    stack_file = tmp_path / "clip12.npy"
    np.save(stack_file, frames)
    base = tmp_path / "models" / "tiny.safetensors"
    before = base.read_bytes()
    argv = ["adapt", str(stack_file), "--model", tiny_model, "--out", tiny_model, "--overwrite"]
    assert main([*argv, "--steps", "1"]) == 2
    assert capsys.readouterr().err == (
        f"ribseg adapt: error: --out {base} is the base model itself; choose a new name\n"
    )
    assert base.read_bytes() == before
