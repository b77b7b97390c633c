"""The review loop through the Qt-free core session: open, predict, correct, curate, train, redo."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from napari_ribseg.core.errors import DatasetError
from napari_ribseg.core.session import MaskOptions, ReviewSession, parse_frames
from napari_ribseg.core.stack import FrameStatus


@pytest.fixture
def tiny_model(tmp_path):
    """An untrained tiny U-Net checkpoint (deterministic)."""
    import torch

    from napari_ribseg.core.models import ModelCard, build_model, save_checkpoint

    torch.manual_seed(0)
    model = build_model("unet", preset="tiny", input_size=64, pretrained=False)
    card = ModelCard(name="tiny", variant="unet", preset="tiny", widths=list(model.widths))
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(model, card, path)
    return path


@pytest.fixture
def stack_file(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.random((6, 64, 64), dtype=np.float32) * 0.2
    frames[:, 20:26, 8:56] += 0.7
    path = tmp_path / "clip01.npy"
    np.save(path, frames.clip(0, 1))
    return path


def test_core_session_imports_no_qt():
    assert "qtpy" not in sys.modules or "napari_ribseg.core.session" in sys.modules
    import napari_ribseg.core.session as mod

    assert "napari" not in mod.__dict__ and "qtpy" not in mod.__dict__


def test_parse_frames():
    np.testing.assert_array_equal(parse_frames("0-3,7", 10), [0, 1, 2, 3, 7])
    np.testing.assert_array_equal(parse_frames(" 5 ,1-2,2", 10), [1, 2, 5])
    with pytest.raises(DatasetError, match="outside this stack of 10 frames"):
        parse_frames("8-12", 10)
    with pytest.raises(DatasetError, match="'a'"):
        parse_frames("1,a", 10)


def test_overwrite_rule_spares_curated_rejected_and_edited(stack_file, tiny_model):
    session = ReviewSession.open(stack_file)
    assert session.project.folder == stack_file.parent / "clip01.npy.ribseg"
    written = session.predict_sync(tiny_model, device="cpu")
    np.testing.assert_array_equal(written, np.arange(6))
    assert session.has_prob.all() and np.isfinite(session.uncertainty).all()
    np.testing.assert_array_equal(session.labels, (session.prob >= 128).astype(np.uint8))

    hand = np.zeros((64, 64), np.uint8)
    hand[10:30, 10:30] = 1
    session.set_labels(4, hand)  # edited, still unreviewed
    session.set_status(0, FrameStatus.CURATED)
    session.set_status(1, FrameStatus.REJECTED)
    before = session.labels.copy()
    np.testing.assert_array_equal(session.protected_frames(), [0, 1, 4])
    np.testing.assert_array_equal(session.frames_for("all"), [2, 3, 5])

    # A new threshold re-derives only the frames the rule allows, from the stored probabilities.
    written = session.set_options(threshold=0.99)
    np.testing.assert_array_equal(written, [2, 3, 5])
    for f in (0, 1, 4):
        np.testing.assert_array_equal(session.labels[f], before[f])
    np.testing.assert_array_equal(
        session.labels[2], (session.prob[2] >= 0.99 * 255).astype(np.uint8)
    )
    # So does a new model run: protected frames are not even computed.
    assert session.predict_sync(tiny_model, device="cpu").tolist() == [2, 3, 5]
    np.testing.assert_array_equal(session.labels[4], hand)
    assert session.statuses[1] == FrameStatus.REJECTED


def test_least_confident_follows_uncertainty(stack_file):
    session = ReviewSession.open(stack_file)
    prob = np.zeros((6, 64, 64), np.uint8)
    prob[:, 20:26, 8:56] = 250  # crisp everywhere ...
    prob[3, 26:40, 8:56] = 128  # ... but frame 3 hedges over a large area
    from napari_ribseg.core.session import PredictionBatch

    session.apply_prediction(PredictionBatch(np.arange(6), prob, "manual"))
    assert session.uncertainty[3] > 0.5 and session.uncertainty[0] == 0.0
    assert session.least_confident() == 3
    session.set_status(3, FrameStatus.CURATED)
    assert session.least_confident() != 3


def test_events_fire(stack_file):
    session = ReviewSession.open(stack_file)
    seen = []
    session.statuses_changed.connect(lambda: seen.append("status"))
    session.labels_changed.connect(lambda frames: seen.append(("labels", frames)))
    session.options_changed.connect(lambda opts: seen.append(opts.threshold))
    session.set_status([0, 2], FrameStatus.CURATED)
    session.set_labels(1, np.ones((64, 64), np.uint8))
    session.set_options(MaskOptions(threshold=0.3))
    assert seen[:3] == ["status", ("labels", [1]), 0.3]


def test_review_reopens_with_statuses_labels_and_probabilities(stack_file, tiny_model):
    session = ReviewSession.open(stack_file)
    session.predict_sync(tiny_model, device="cpu")
    session.set_status([0, 1], FrameStatus.CURATED)
    session.close()
    again = ReviewSession.open(stack_file)
    assert again.restored
    np.testing.assert_array_equal(again.labels, session.labels)
    np.testing.assert_array_equal(again.project.curated_frames, [0, 1])
    # The threshold still works after reopening: the probabilities came back with the review.
    np.testing.assert_array_equal(again.prob, session.prob)
    np.testing.assert_array_equal(again.uncertainty, session.uncertainty)
    assert again.set_options(threshold=0.9).tolist() == [2, 3, 4, 5]
    np.testing.assert_array_equal(again.labels[4], (again.prob[4] >= 0.9 * 255).astype(np.uint8))


def test_training_set_and_export_from_review(stack_file, tmp_path):
    from napari_ribseg.core.io import read_paired_dataset

    session = ReviewSession.open(stack_file)
    for f in range(4):
        mask = np.zeros((64, 64), np.uint8)
        mask[20:26, 8:56] = 1
        session.set_labels(f, mask)
    session.set_status(parse_frames("0-3", 6), FrameStatus.CURATED)
    data = session.training_set()
    assert len(data) == 4 and data.ids[0] == "clip01_f0000" and data.groups == ["clip01"] * 4
    out = session.export_curated(tmp_path / "curated")
    back = read_paired_dataset(out)
    assert len(back.images) == 4
    np.testing.assert_array_equal(back.masks[2], data.masks[2])
    np.testing.assert_allclose(back.images[1], data.images[1], atol=1 / 255)


def test_start_blocker_is_the_one_rule_for_training_jobs(stack_file):
    from napari_ribseg.core.session import start_blocker
    from napari_ribseg.core.training.data import MIN_TRAIN_FRAMES

    assert start_blocker(None, "finetune", base="unet") == "Load a stack and segment it first."
    assert start_blocker(None, "adapt", base="unet") == "Load a stack to adapt to."
    session = ReviewSession.open(stack_file)
    assert "No base model" in start_blocker(session, "adapt", base=None)
    # Adaptation needs no labels, but frames to learn from and to check on (the 6 frames here were
    # let through, and the run failed in its child: "check the settings and try again").
    assert start_blocker(session, "adapt", base="unet") == (
        "This stack is too short to adapt to: 6 frames; label-free adaptation needs at least 10 "
        "(every 5th is held out to check it)."
    )
    longer = ReviewSession.for_frames(np.zeros((10, 8, 8), np.float32), stack_file.parent / "l")
    assert start_blocker(longer, "adapt", base="unet") == ""
    longer.close()
    # A fine-tune needs one frame to train on and one to check.
    assert "(0 so far)" in start_blocker(session, "finetune", base="unet")
    session.set_status([0], FrameStatus.CURATED)
    assert f"at least {MIN_TRAIN_FRAMES} frames" in start_blocker(session, "finetune", base="unet")
    session.set_status([1], FrameStatus.CURATED)
    # Curated frames that mark no rib would teach a model to mark nothing (the child refused).
    assert start_blocker(session, "finetune", base="unet").startswith(
        "None of the 2 curated frames marks a rib"
    )
    session.project.labels[1, 2:4, 2:6] = 1
    assert start_blocker(session, "finetune", base="unet") == ""
    # One run at a time, named by what runs.
    assert start_blocker(session, "finetune", base="unet", running="adapt").startswith(
        "Adaptation is running"
    )
    assert start_blocker(session, "adapt", base="unet", running="finetune").startswith(
        "Fine-tuning is running"
    )
    with pytest.raises(ValueError, match="unknown training job 'train'"):
        start_blocker(session, "train", base="unet")
    session.close(save=False)


def test_nothing_to_run_says_which_frames_the_rule_keeps(tmp_path):
    session = ReviewSession.for_frames(np.zeros((4, 8, 8), np.float32), tmp_path / "n")
    session.set_status([0, 1], FrameStatus.CURATED)
    session.set_status(2, FrameStatus.REJECTED)
    session.set_labels(3, np.eye(8))
    assert session.frames_for("all").size == 0
    assert session.nothing_to_run("all") == (
        "every frame is curated, rejected or edited by hand "
        "(2 curated, 1 rejected, 1 edited by hand)"
    )
    assert session.nothing_to_run("unreviewed") == (
        "the unreviewed frame is edited by hand (kept; Revert edits gives a frame back to the "
        "model)"
    )
    assert session.nothing_to_run("current", 2) == "frame 2 is rejected (kept)"
    assert session.nothing_to_run("current", 0) == "frame 0 is curated (kept)"
    assert session.nothing_to_run("current", 3) == "frame 3 is edited by hand (kept)"
    session.set_status(3, FrameStatus.CURATED)
    assert session.nothing_to_run("unreviewed") == "no unreviewed frame (3 curated, 1 rejected)"
