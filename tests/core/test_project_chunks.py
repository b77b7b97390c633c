"""Format 3: each saved array in chunks of CHUNK_FRAMES frames. Format 2 kept labels in one file, so
a save after a one-frame edit rewrote the whole stack's labels (1.2 s at 400 frames of 820 x 1124);
now it writes the chunk holding the edited frame and hard-links the others."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from napari_ribseg.core.errors import ProjectError
from napari_ribseg.core.project import (
    CHUNK_FRAMES,
    FORMAT_NAME,
    JSON_FILE,
    MANIFEST_FILE,
    ReviewProject,
    chunk_name,
    current_version_dir,
    saved_array,
)

N, H, W = 2 * CHUNK_FRAMES + 5, 12, 10  # the last chunk is short


def _project(folder, rng) -> ReviewProject:
    project = ReviewProject.new(folder, N, (H, W))
    project.model_labels[:] = rng.random((N, H, W)) > 0.8
    project.labels[:] = project.model_labels
    project.probabilities = rng.integers(0, 256, (N, H, W), dtype=np.uint8)
    project.labels[3, 0, 0] ^= 1
    return project


def _inodes(version) -> dict[str, int]:
    return {p.name: p.stat().st_ino for p in version.iterdir() if p.suffix == ".npy"}


def test_arrays_round_trip_through_chunks_of_a_stack_not_a_multiple(tmp_path, rng):
    project = _project(tmp_path / "a.ribseg", rng)
    assert project.save()
    version = current_version_dir(tmp_path / "a.ribseg")
    names = sorted(p.name for p in version.iterdir() if p.name.startswith("labels"))
    assert names == [chunk_name("labels", s) for s in range(0, N, CHUNK_FRAMES)]
    assert np.load(version / chunk_name("labels", 2 * CHUNK_FRAMES)).shape == (5, H, W)
    loaded = ReviewProject.load(tmp_path / "a.ribseg")
    np.testing.assert_array_equal(loaded.labels, project.labels)
    np.testing.assert_array_equal(loaded.model_labels, project.model_labels)
    np.testing.assert_array_equal(loaded.probabilities, project.probabilities)
    assert loaded.changed_pixels[3] == 1 and not loaded.is_dirty
    np.testing.assert_array_equal(saved_array(tmp_path / "a.ribseg", "labels"), project.labels)
    assert json.loads((version / JSON_FILE).read_text())["version"] == 3


def test_a_one_frame_edit_writes_one_labels_chunk_and_links_the_rest(tmp_path, rng):
    project = _project(tmp_path / "e.ribseg", rng)
    project.save()
    before = _inodes(current_version_dir(tmp_path / "e.ribseg"))
    frame = CHUNK_FRAMES + 4
    project.labels[frame, 5, 5] ^= 1
    project.mark_labels_changed([frame])
    assert project.save(check_all=False)
    after = _inodes(current_version_dir(tmp_path / "e.ribseg"))
    assert set(after) == set(before)
    rewritten = sorted(name for name in after if after[name] != before[name])
    assert rewritten == [chunk_name("labels", CHUNK_FRAMES)]
    # An edit found only by the exact check (a script, not reported) is written the same way.
    project.labels[0, 1, 1] ^= 1
    assert project.save()
    latest = _inodes(current_version_dir(tmp_path / "e.ribseg"))
    assert sorted(n for n in latest if latest[n] != after[n]) == [chunk_name("labels", 0)]
    loaded = ReviewProject.load(tmp_path / "e.ribseg")
    np.testing.assert_array_equal(loaded.labels, project.labels)


def test_a_model_run_on_one_frame_writes_its_chunks_only(tmp_path, rng):
    """A run on the current frame wrote the whole stack's model masks and probabilities."""
    project = _project(tmp_path / "m.ribseg", rng)
    project.save()
    before = _inodes(current_version_dir(tmp_path / "m.ribseg"))
    frame = 2 * CHUNK_FRAMES + 1
    project.apply_prediction([frame], project.model_labels[frame : frame + 1] ^ 1, [0.4])
    project.probabilities[frame] = 7  # as ReviewSession.apply_prediction writes them
    project.mark_probabilities_changed([frame])
    assert project.save(check_all=False)
    after = _inodes(current_version_dir(tmp_path / "m.ribseg"))
    rewritten = sorted(name for name in after if after[name] != before[name])
    start = 2 * CHUNK_FRAMES
    assert rewritten == sorted(
        chunk_name(a, start) for a in ("labels", "model_labels", "probabilities")
    )
    # The exact check (a model run's save, closing) finds the same chunks.
    project.probabilities[0] = 9
    assert project.save()
    latest = _inodes(current_version_dir(tmp_path / "m.ribseg"))
    assert sorted(n for n in latest if latest[n] != after[n]) == [chunk_name("probabilities", 0)]
    loaded = ReviewProject.load(tmp_path / "m.ribseg")
    np.testing.assert_array_equal(loaded.model_labels, project.model_labels)
    np.testing.assert_array_equal(loaded.probabilities, project.probabilities)
    np.testing.assert_array_equal(loaded.labels, project.labels)


def _write_format2(folder, labels, model_labels) -> None:
    """A review as format 2 wrote it: one .npy per array in v000001/ with its manifest."""
    version = folder / "v000001"
    version.mkdir(parents=True)
    n = labels.shape[0]
    meta = {
        "format": FORMAT_NAME,
        "version": 2,
        "source": None,
        "fingerprint": None,
        "source_signature": None,
        "model": None,
        "n_frames": n,
        "frame_shape": list(labels.shape[1:]),
        "statuses": [0] * n,
        "confidence": [None] * n,
        "changed_pixels": [int(c) for c in np.count_nonzero(labels != model_labels, axis=(1, 2))],
        "saved_at": "",
    }
    files = {}
    for name, array in (("labels.npy", labels), ("model_labels.npy", model_labels)):
        np.save(version / name, array)
    (version / JSON_FILE).write_text(json.dumps(meta, indent=1))
    for name in ("labels.npy", "model_labels.npy", JSON_FILE):
        data = (version / name).read_bytes()
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (version / MANIFEST_FILE).write_text(
        json.dumps({"format": FORMAT_NAME, "version": 1, "files": files})
    )


def test_a_format2_review_is_read_and_saved_as_chunks(tmp_path, rng):
    folder = tmp_path / "old.ribseg"
    model = (rng.random((N, H, W)) > 0.8).astype(np.uint8)
    labels = model.copy()
    labels[7, 2, 2] ^= 1
    _write_format2(folder, labels, model)
    np.testing.assert_array_equal(saved_array(folder, "labels"), labels)
    project = ReviewProject.load(folder)
    np.testing.assert_array_equal(project.labels, labels)
    assert project.probabilities is None and project.changed_pixels[7] == 1
    project.labels[8, 0, 0] ^= 1
    project.mark_labels_changed([8])
    assert project.save(check_all=False)
    version = current_version_dir(folder)
    assert version.name == "v000002"
    assert (version / chunk_name("labels", 0)).is_file() and not (version / "labels.npy").exists()
    np.testing.assert_array_equal(ReviewProject.load(folder).labels, project.labels)


def test_a_gap_in_the_chunks_is_named(tmp_path, rng):
    project = _project(tmp_path / "g.ribseg", rng)
    project.save()
    version = current_version_dir(tmp_path / "g.ribseg")
    gone = chunk_name("labels", CHUNK_FRAMES)
    manifest = json.loads((version / MANIFEST_FILE).read_text())
    del manifest["files"][gone]
    (version / MANIFEST_FILE).write_text(json.dumps(manifest))
    os.remove(version / gone)
    with pytest.raises(ProjectError, match=f"expected one starting at frame {CHUNK_FRAMES}"):
        ReviewProject.load(tmp_path / "g.ribseg")


@pytest.mark.parametrize("seed", range(6))
def test_random_edits_predictions_and_saves_reload_exactly(tmp_path, seed):
    """Whatever mix of reported and unreported edits, model runs and quick or exact saves: after an
    exact save the review on disk is the review in memory, counts included."""
    rng = np.random.default_rng(seed)
    folder = tmp_path / "f.ribseg"
    project = _project(folder, rng)
    project.save()
    for _ in range(25):
        op = rng.integers(5)
        f = int(rng.integers(N))
        if op == 0:  # a stroke, reported
            project.labels[f, rng.integers(H), rng.integers(W)] ^= 1
            project.mark_labels_changed([f])
        elif op == 1:  # a script's edit, not reported
            project.labels[f, rng.integers(H), rng.integers(W)] ^= 1
        elif op == 2:  # a model run on some frames, probabilities reported as the session does
            frames = rng.choice(N, size=int(rng.integers(1, 6)), replace=False)
            masks = (rng.random((frames.size, H, W)) > 0.8).astype(np.uint8)
            project.apply_prediction(frames, masks, rng.random(frames.size))
            project.probabilities[frames] = rng.integers(0, 256, (frames.size, H, W))
            project.mark_probabilities_changed(frames)
        elif op == 3:
            project.save(check_all=False)
        else:
            project.save()
    project.save()
    loaded = ReviewProject.load(folder)
    np.testing.assert_array_equal(loaded.labels, project.labels)
    np.testing.assert_array_equal(loaded.model_labels, project.model_labels)
    np.testing.assert_array_equal(loaded.probabilities, project.probabilities)
    expected = np.count_nonzero(project.labels != project.model_labels, axis=(1, 2))
    np.testing.assert_array_equal(project.changed_pixels, expected)
    saved = json.loads((current_version_dir(folder) / JSON_FILE).read_text())["changed_pixels"]
    assert saved == expected.tolist()
