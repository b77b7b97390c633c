"""ReviewSession as a script calls it: bad options and frame numbers are refused before any change."""

from __future__ import annotations

import numpy as np
import pytest

from napari_ribseg.core.errors import DatasetError
from napari_ribseg.core.session import MaskOptions, ReviewSession


@pytest.fixture
def tiny_model(tmp_path):
    import torch

    from napari_ribseg.core.models import ModelCard, build_model, save_checkpoint

    torch.manual_seed(0)
    model = build_model("unet", preset="tiny", input_size=64, pretrained=False)
    card = ModelCard(name="tiny", variant="unet", preset="tiny", widths=list(model.widths))
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(model, card, path)
    return path


@pytest.fixture
def session(tmp_path):
    frames = np.random.default_rng(0).random((3, 64, 64), dtype=np.float32) * 0.2
    frames[:, 20:26, 8:56] += 0.7
    np.save(tmp_path / "clip.npy", frames.clip(0, 1))
    with ReviewSession.open(tmp_path / "clip.npy") as session:
        yield session


def test_a_threshold_of_50_is_refused_before_the_model_runs(session, tiny_model):
    """set_options(threshold=50) was kept; the next predict_sync ran the model, stored its
    probabilities and then failed writing masks, with the session stuck at threshold 50."""
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]; got 50"):
        session.set_options(threshold=50)
    assert session.options == MaskOptions()
    written = session.predict_sync(tiny_model, device="cpu")
    np.testing.assert_array_equal(written, [0, 1, 2])
    with pytest.raises(ValueError, match=r"min_size and keep_largest must be >= 0; got -1 and 0"):
        session.set_options(min_size=-1)
    assert session.options == MaskOptions()


def test_options_given_at_open_are_checked(tmp_path):
    np.save(tmp_path / "c.npy", np.zeros((2, 16, 16), np.float32))
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]; got 50"):
        ReviewSession.open(tmp_path / "c.npy", options=MaskOptions(threshold=50))


def test_set_labels_and_revert_refuse_frames_outside_the_stack(session):
    """Frame 9 of 3 raised a bare IndexError; frame -1 silently edited the last frame
    (set_status already refused both with DatasetError)."""
    mask = np.ones((64, 64), np.uint8)
    for frame in (9, -1):
        with pytest.raises(DatasetError, match=rf"frame {frame} is outside this stack of 3 frames"):
            session.set_labels(frame, mask)
        with pytest.raises(DatasetError, match=rf"frame {frame} is outside this stack of 3 frames"):
            session.revert(frame)
    assert session.labels.sum() == 0 and session.edited_frames().size == 0
    session.set_labels(2, mask)
    assert session.labels[2].sum() == 64 * 64


def test_predict_sync_takes_a_bool_mask_of_frames(session, tiny_model):
    """A bool mask (as predict_stack's frame_indices take) became the indices 0 and 1: with
    frames 1 and 2 selected the model wrote frames 0 and 1."""
    written = session.predict_sync(tiny_model, np.array([False, True, True]), device="cpu")
    np.testing.assert_array_equal(written, [1, 2])
    assert session.has_prob.tolist() == [False, True, True]
    np.testing.assert_array_equal(session.overwritable_frames([2.0, 0]), [0, 2])
    for frames, message in [
        ([True, False], r"frames as a mask must have one entry per frame \(3\); got shape \(2,\)"),
        ([1.5], r"frames must be frame indices 0\.\.2; got \[1\.5\]"),
        ([0, 3, -1], r"frames \[3, -1\] are outside this stack of 3 frames"),
    ]:
        with pytest.raises(DatasetError, match=message):
            session.predict_sync(tiny_model, frames, device="cpu")
    assert session.has_prob.tolist() == [False, True, True]


def test_in_memory_frames_are_named_when_they_cannot_open_a_review(tmp_path):
    """A 2-D array failed with 'IndexError: tuple index out of range', an array given to open()
    with pathlib's TypeError, and a frame stack without a file pointed only at the widget."""
    from napari_ribseg.core.stack import Stack

    with pytest.raises(DatasetError, match=r"a\.ribseg: frames must be \(N, H, W\); got shape \(16, 16\)"):  # fmt: skip
        ReviewSession.for_frames(np.zeros((16, 16), np.float32), tmp_path / "a.ribseg")
    assert not (tmp_path / "a.ribseg").exists()
    with pytest.raises(
        TypeError, match=r"stack must be a Stack or a path; got ndarray \(.*for_frames"
    ):
        ReviewSession.open(np.zeros((2, 16, 16), np.float32))
    with pytest.raises(DatasetError, match=r"\(in Python: project_folder=, with a name=\)"):
        ReviewSession.open(Stack(np.zeros((2, 16, 16), np.float32)))
    with ReviewSession.open(
        Stack(np.zeros((2, 16, 16), np.float32)), project_folder=tmp_path, name="mem"
    ) as session:
        assert session.project.folder == tmp_path / "mem.ribseg"


def test_set_status_takes_a_bool_mask_of_frames(session):
    """set_status(statuses == UNREVIEWED, ...) set frames 0 and 1 (the mask read as indices)."""
    from napari_ribseg.core.stack import FrameStatus

    session.set_status(np.array([False, False, True]), FrameStatus.REJECTED)
    assert session.statuses.tolist() == [0, 0, int(FrameStatus.REJECTED)]
    session.set_status(2, FrameStatus.CURATED)
    assert session.statuses.tolist() == [0, 0, int(FrameStatus.CURATED)]
    with pytest.raises(DatasetError, match=r"frames must be frame indices 0\.\.2; got \[0\.5\]"):
        session.set_status([0.5], FrameStatus.CURATED)
    assert session.statuses.tolist() == [0, 0, int(FrameStatus.CURATED)]


def test_curated_masks_and_unedited_frames_take_the_session(session):
    """curated_masks(session) failed with "'ReviewSession' object has no attribute
    'curated_frames'": it took only session.project, while start_blocker, finetune_note and the
    session's own methods take the session. Both work now; anything else is named."""
    from napari_ribseg.core.session import curated_masks, unedited_frames
    from napari_ribseg.core.stack import FrameStatus

    mask = np.zeros((64, 64), np.uint8)
    mask[20:26, 8:56] = 1
    session.set_labels(1, mask)
    session.set_status([1, 2], FrameStatus.CURATED)
    by_session = curated_masks(session)
    by_project = curated_masks(session.project)
    assert sorted(by_session) == sorted(by_project) == [1, 2]
    assert int(by_session[1].sum()) == int(by_project[1].sum()) == 6 * 48
    assert int(by_session[2].sum()) == 0
    assert unedited_frames(session, "tiny") == unedited_frames(session.project, "tiny") == []
    with pytest.raises(TypeError, match=r"curated_masks takes a ReviewSession or its ReviewProject \(session\.project\); got ndarray"):  # fmt: skip
        curated_masks(session.labels)
    with pytest.raises(TypeError, match=r"unedited_frames takes a ReviewSession or its ReviewProject \(session\.project\); got str"):  # fmt: skip
        unedited_frames("clip.npy", "tiny")
