"""TrainingSet: hashing, curated-only stacks, group splits and folds, npz round trip, augmentation."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from test_training_support import synthetic_set

from napari_ribseg.core.errors import DatasetError, TrainingError
from napari_ribseg.core.stack import FrameStatus, Stack
from napari_ribseg.core.training.augment import AUGMENT_PRESETS, Augmenter, build_augmentation
from napari_ribseg.core.training.data import TrainingSet


def test_hash_is_stable_and_changes_with_one_pixel():
    a = synthetic_set(2, 3, seed=5)
    b = synthetic_set(2, 3, seed=5)
    assert a.hash == b.hash and len(a.hash) == 64
    images = [im.copy() for im in a.images]
    images[4][10, 10] += 0.01
    assert TrainingSet(images, a.masks, a.groups).hash != a.hash
    masks = [m.copy() for m in a.masks]
    masks[0][0, 0] ^= 1
    assert TrainingSet(a.images, masks, a.groups).hash != a.hash


def test_mismatched_shapes_raise_dataset_error():
    with pytest.raises(DatasetError, match="frame 0"):
        TrainingSet([np.zeros((4, 4), np.float32)], [np.zeros((4, 5), np.uint8)], ["a"])


def test_from_stack_takes_curated_frames_and_rib_label_only():
    frames = np.random.default_rng(0).random((5, 16, 16)).astype(np.float32)
    labels = np.zeros((5, 16, 16), np.uint8)
    labels[:, 2:4] = 1  # ribs
    labels[:, 8:10] = 2  # pleura, not a rib
    statuses = [FrameStatus.CURATED, 0, FrameStatus.REJECTED, FrameStatus.CURATED, 0]
    ts = TrainingSet.from_stack(Stack(frames), labels, statuses, name="scan7")
    assert len(ts) == 2
    assert ts.ids == ["scan7_f0000", "scan7_f0003"]
    assert ts.groups == ["scan7", "scan7"]
    np.testing.assert_array_equal(ts.images[1], frames[3])
    assert int(ts.masks[0].sum()) == 2 * 16 and ts.masks[0][8:10].sum() == 0
    with pytest.raises(TrainingError, match="no frame is marked curated"):
        TrainingSet.from_stack(frames, labels, [0] * 5)


def test_from_stack_takes_a_0_255_mask_as_binary_and_names_labels_without_a_rib():
    """A 0/255 mask (an image editor's) gave empty masks and then "no mask marks a rib pixel ...
    Check the masks' rib value (1, or above half range such as 255 for 8-bit masks)", which said
    255 works; it is read as binary now, as the paired readers read it. Labels that mark
    something but hold no 1 are named at once."""
    frames = np.random.default_rng(0).random((4, 16, 16), dtype=np.float32)
    masks = np.zeros((4, 16, 16), np.uint8)
    masks[:, 4:8, 2:14] = 255
    ts = TrainingSet.from_stack(frames, masks, [1, 1, 0, 1])
    assert [int(m.sum()) for m in ts.masks] == [48, 48, 48]
    assert all(m.dtype == np.uint8 and set(np.unique(m)) == {0, 1} for m in ts.masks)
    as_float = TrainingSet.from_stack(frames, masks.astype(np.float32), [1, 1, 0, 1])
    assert [int(m.sum()) for m in as_float.masks] == [48, 48, 48]
    pleura = (masks // 255) * 2
    message = (
        r"stack stack: the curated frames' labels hold 2: 144 px but no rib label 1; expected a "
        r"rib mask: rib 1 \(or 255, as an image editor saves a 0/255 mask\), all else 0"
    )
    with pytest.raises(TrainingError, match=message):
        TrainingSet.from_stack(frames, pleura, [1, 1, 0, 1])
    # A 1 anywhere keeps the review's rule: 1 is the rib, 2 and 255 are not.
    mixed = masks // 255
    mixed[0, 0, :3] = 2
    mixed[1, 15, :] = 255
    ts = TrainingSet.from_stack(frames, mixed, [1, 1, 0, 1])
    assert [int(m.sum()) for m in ts.masks] == [48, 48, 48]


def test_from_paired_keeps_ids_and_clip_groups(tmp_path):
    ds = synthetic_set(2, 2)
    paired = SimpleNamespace(
        images=ds.images,
        masks=ds.masks,
        ids=["c1_f1", "c1_f2", "c2_f1", "c2_f2"],
        groups=["c1", "c1", "c2", "c2"],
        root=tmp_path,
    )
    ts = TrainingSet.from_paired(paired)
    assert ts.ids[2] == "c2_f1" and ts.group_names == ["c1", "c2"] and ts.source == str(tmp_path)
    assert ts.hash == ds.hash


@pytest.mark.parametrize("seed", range(20))
def test_split_never_puts_one_clip_in_both_sets(seed):
    ts = synthetic_set(n_clips=7, frames_per_clip=3, size=16, seed=1)
    train, val = ts.split(0.3, seed=seed)
    assert not set(train.groups) & set(val.groups)
    assert len(train) + len(val) == 21 and len(val) == 2 * 3
    assert sorted(train.ids + val.ids) == sorted(ts.ids)


def test_split_with_one_clip_is_a_contiguous_block_at_one_end():
    ts = synthetic_set(n_clips=1, frames_per_clip=10, size=16)
    for seed in range(6):
        train, val = ts.split(0.2, seed=seed)
        idx = sorted(ts.ids.index(i) for i in val.ids)
        assert idx in ([0, 1], [8, 9])
        assert len(train) == 8


def test_folds_by_clip_cover_every_frame_once():
    ts = synthetic_set(n_clips=5, frames_per_clip=2, size=16)
    seen = []
    for train, val in ts.folds(k=5, seed=3):
        assert not set(train.groups) & set(val.groups)
        assert len(set(val.groups)) == 1
        seen += val.ids
    assert sorted(seen) == sorted(ts.ids)
    blocks = [val.ids for _, val in synthetic_set(1, 9, size=16).folds(k=3)]
    assert [[int(i[-4:]) for i in b] for b in blocks] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    with pytest.raises(TrainingError, match="needs at least 6"):
        list(ts.folds(k=6))


def test_npz_round_trip_without_pickle(tmp_path):
    ts = synthetic_set(2, 2, size=16)
    path = ts.save_npz(tmp_path / "set.npz")
    back = TrainingSet.load_npz(path)
    assert back.hash == ts.hash and back.ids == ts.ids and back.groups == ts.groups
    assert back.source == ts.source
    # What a review knows of the labels travels to the fine-tune's child process too.
    ts.edited, ts.labelled_by = [True, False, False, True], "v-unet-compact"
    back = TrainingSet.load_npz(ts.save_npz(tmp_path / "flags.npz"))
    assert back.edited == [True, False, False, True] and back.labelled_by == "v-unet-compact"
    assert back.subset([3, 1]).edited == [True, False]
    assert back.corrected_for("v-unet-compact") == [True, False, False, True]
    assert back.corrected_for("unet-compact") == [True, None, None, True]
    assert synthetic_set(1, 2, size=16).corrected_for("unet-compact") is None


def test_from_simulator_groups_by_clip():
    ts = TrainingSet.from_simulator(2, 3, np.random.default_rng(0), seed=4)
    assert len(ts) == 6 and ts.group_names == ["sim0004", "sim0005"]
    assert ts.images[0].dtype == np.float32 and set(np.unique(ts.masks[0])) <= {0, 1}
    again = TrainingSet.from_simulator(2, 3, np.random.default_rng(0), seed=4)
    assert again.hash == ts.hash


# ---- augmentation ---------------------------------------------------------------------------


@pytest.mark.parametrize("preset", AUGMENT_PRESETS)
def test_augmentation_moves_mask_with_image_and_is_reproducible(preset):
    rng = np.random.default_rng(2)
    mask = np.zeros((48, 64), np.uint8)
    mask[10:16, 5:40] = 1
    image = np.where(mask == 1, 1.0, 0.0).astype(np.float32)
    aug = Augmenter(preset)
    for seed in rng.integers(0, 2**31, 15):
        out_image, out_mask = aug(image, mask, int(seed))
        again = aug(image, mask, int(seed))
        assert np.array_equal(out_image, again[0]) and np.array_equal(out_mask, again[1])
        assert out_image.shape == image.shape and out_mask.dtype == np.uint8
        assert set(np.unique(out_mask)) <= {0, 1}
        assert out_image.min() >= 0.0 and out_image.max() <= 1.0
        if preset in ("none", "flip"):
            # Geometry only: the mask is exactly where the bright pixels went.
            np.testing.assert_array_equal(out_mask, (out_image > 0.5).astype(np.uint8))
        else:
            # Intensity changes, fans and overlays blur the edge, but the rib stays where the
            # mask says.
            inside = out_image[out_mask == 1].mean() if out_mask.any() else 1.0
            outside = out_image[out_mask == 0].mean()
            assert inside > outside


def test_flip_preset_flips_about_half_the_time():
    image = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (8, 1))
    mask = (image > 0.5).astype(np.uint8)
    aug = Augmenter("flip")
    flipped = sum(bool(aug(image, mask, s)[1][0, 0]) for s in range(200))
    assert 70 < flipped < 130


def test_unknown_preset_is_a_training_error():
    with pytest.raises(TrainingError, match="unknown augmentation preset"):
        build_augmentation("heavy")
