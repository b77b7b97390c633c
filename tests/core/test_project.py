"""The review project: atomic sidecar saves, restore, protection of curated frames."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from napari_ribseg.core.errors import DatasetError
from napari_ribseg.core.project import (
    JSON_FILE,
    ReviewProject,
    chunk_name,
    project_dir_for,
    saved_file,
)
from napari_ribseg.core.stack import FrameStatus


def _masks(rng: np.random.Generator, n: int = 4, shape=(16, 20)) -> np.ndarray:
    return (rng.random((n, *shape)) > 0.7).astype(np.uint8)


def test_project_dir_is_a_sidecar_next_to_the_data(tmp_path):
    tif = tmp_path / "clip01.tif"
    tif.touch()
    folder = tmp_path / "clip02"
    folder.mkdir()
    assert project_dir_for(tif) == tmp_path / "clip01.tif.ribseg"
    assert project_dir_for(folder) == tmp_path / "clip02.ribseg"
    tag = hashlib.sha256(os.path.normcase(str(tmp_path.resolve())).encode()).hexdigest()[:8]
    assert project_dir_for(tif, root=tmp_path / "p") == tmp_path / "p" / f"clip01.tif-{tag}.ribseg"
    assert project_dir_for(None, root=tmp_path, name="sim") == tmp_path / "sim.ribseg"
    with pytest.raises(DatasetError, match="project folder"):
        project_dir_for(None, name="sim")


def test_save_and_restore_round_trip(tmp_path, rng):
    masks = _masks(rng)
    project, restored = ReviewProject.open(tmp_path / "a.ribseg", 4, (16, 20), source="a.tif")
    assert not restored
    written = project.apply_prediction([0, 1, 2, 3], masks, [0.9, 0.2, 0.5, 0.7])
    assert written.tolist() == [0, 1, 2, 3]
    project.labels[1, :3, :3] = 1 - project.labels[1, :3, :3]  # a correction of 9 pixels
    project.set_status(1, FrameStatus.CURATED)
    project.set_status(3, FrameStatus.REJECTED)
    assert project.save()
    assert not project.save()  # nothing changed: nothing written
    project.close()

    again, restored = ReviewProject.open(tmp_path / "a.ribseg", 4, (16, 20))
    assert restored
    np.testing.assert_array_equal(again.labels, project.labels)
    assert again.statuses.tolist() == [0, 1, 0, 2]
    assert again.changed_pixels.tolist() == [0, 9, 0, 0]
    np.testing.assert_allclose(again.confidence, [0.9, 0.2, 0.5, 0.7], atol=1e-6)
    meta = json.loads(saved_file(tmp_path / "a.ribseg", JSON_FILE).read_text())
    assert meta["changed_pixels"] == [0, 9, 0, 0]
    assert meta["source"] == "a.tif"


def test_in_place_edit_without_notice_is_still_saved(tmp_path, rng):
    project = ReviewProject.new(tmp_path / "b.ribseg", 3, (8, 8))
    project.save()
    project.labels[2, 4, 4] = 1
    assert project.save()
    assert ReviewProject.load(tmp_path / "b.ribseg").labels[2, 4, 4] == 1


def test_an_unreported_edit_with_the_saved_counts_is_still_saved(tmp_path):
    """An edit in place (an undo) that moved a correction to other pixels, leaving every
    changed-pixel count as saved, was not saved: the save compared only the counts."""
    project = ReviewProject.new(tmp_path / "c.ribseg", 3, (8, 8))
    project.labels[1, 0, 0] = 1
    assert project.save()
    project.labels[1, 0, 0], project.labels[1, 5, 5] = 0, 1  # other pixel, same count
    assert project.is_dirty
    assert project.save()
    assert np.argwhere(ReviewProject.load(tmp_path / "c.ribseg").labels[1]).tolist() == [[5, 5]]
    assert not project.save()


def test_model_never_overwrites_curated_rejected_or_edited_frames(tmp_path, rng):
    """The one rule, at the storage level too. Found by a review audit: a script calling
    ``ReviewProject.apply_prediction`` overwrote hand-edited and rejected frames (only curated ones
    were kept) and reset the rejected ones to unreviewed."""
    project = ReviewProject.new(tmp_path / "c.ribseg", 5, (8, 8))
    project.apply_prediction(range(5), np.zeros((5, 8, 8), np.uint8), [0.5] * 5)
    project.labels[0, 0, 0] = 1  # edited, still unreviewed
    project.set_status(1, FrameStatus.CURATED)
    project.set_status(2, FrameStatus.REJECTED)
    project.labels[3, 1, 1] = 1  # edited
    project.set_status(3, FrameStatus.REJECTED)
    before = project.labels.copy()
    assert project.protected_frames.tolist() == [0, 1, 2, 3]
    written = project.apply_prediction(range(5), np.ones((5, 8, 8), np.uint8))
    assert written.tolist() == [4]
    np.testing.assert_array_equal(project.labels[:4], before[:4])
    assert project.labels[4].sum() == 64
    assert project.statuses.tolist()[:4] == [0, 1, 2, 2]
    assert project.apply_prediction([4], np.zeros((1, 8, 8), np.uint8), protect=[4]).size == 0


def test_navigation_queries(tmp_path):
    project = ReviewProject.new(tmp_path / "d.ribseg", 5, (4, 4))
    project.confidence[:] = [0.9, 0.1, 0.8, 0.3, np.nan]
    project.set_status(1, FrameStatus.CURATED)
    assert project.next_unreviewed(0) == 2
    assert project.next_unreviewed(4) == 0
    assert project.least_confident_unreviewed() == 4  # never predicted comes first
    project.confidence[4] = 0.95
    assert project.least_confident_unreviewed() == 3
    for f in range(5):
        project.set_status(f, FrameStatus.CURATED)
    assert project.next_unreviewed(0) is None
    assert project.least_confident_unreviewed() is None


def test_shape_mismatch_and_damage_raise_named_errors(tmp_path):
    project = ReviewProject.new(tmp_path / "e.ribseg", 2, (4, 4))
    project.save()
    with pytest.raises(DatasetError, match="2 frames"):
        ReviewProject.open(tmp_path / "e.ribseg", 3, (4, 4))
    saved_file(tmp_path / "e.ribseg", chunk_name("labels", 0)).write_bytes(b"not numpy")
    with pytest.raises(DatasetError, match="labels.000000.npy|checksum|size"):
        ReviewProject.load(tmp_path / "e.ribseg")
    with pytest.raises(DatasetError, match="project.json missing"):
        ReviewProject.load(tmp_path / "nothing")


def test_save_leaves_no_temporary_files(tmp_path, rng):
    project = ReviewProject.new(tmp_path / "f.ribseg", 4, (16, 20))
    project.apply_prediction(range(4), _masks(rng), [0.5] * 4)
    project.save()
    project.labels[0, 0, 0] ^= 1
    project.save()
    project.labels[0, 0, 1] ^= 1
    project.save()
    # One committed version folder per save, the last two kept, nothing temporary left behind.
    assert sorted(p.name for p in (tmp_path / "f.ribseg").iterdir()) == ["v000002", "v000003"]
    names = sorted(p.name for p in saved_file(tmp_path / "f.ribseg", JSON_FILE).parent.iterdir())
    assert names == [
        "labels.000000.npy",
        "manifest.json",
        "model_labels.000000.npy",
        "project.json",
    ]
