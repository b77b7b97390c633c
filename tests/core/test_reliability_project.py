"""Reliability of review projects: crash-consistent saves, binding to the stack, lock, damage."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_ribseg.core.errors import MemoryBudgetError, ProjectError
from napari_ribseg.core.project import (
    JSON_FILE,
    LABELS_FILE,
    LOCK_FILE,
    ReviewProject,
    chunk_name,
    project_dir_for,
    saved_file,
)
from napari_ribseg.core.stack import FrameStatus

sys.path.insert(0, str(Path(__file__).parent))
from reliability_harness import kill_run  # noqa: E402


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the harness forks")
def test_sigkill_during_saves_never_mixes_or_loses(tmp_path):
    counts = kill_run(tmp_path / "clip.tif.ribseg", kills=100, seed=1, max_delay_s=0.12)
    assert counts["kills"] == 100
    assert counts["mixed"] == 0
    assert counts["lost"] == 0
    assert counts["unloadable"] == 0
    assert counts["max_state"] > 20  # saves really happened between the kills
    # Interrupted saves are cleaned on open; at most two versions remain.
    project, _ = ReviewProject.open(tmp_path / "clip.tif.ribseg", 4, (24, 24))
    names = sorted(p.name for p in (tmp_path / "clip.tif.ribseg").iterdir())
    assert [n for n in names if n.startswith("v")] == names[-2:] or len(names) <= 3
    assert not [n for n in names if ".tmp" in n]
    project.close()


def test_two_stacks_with_one_stem_get_two_reviews(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.random((3, 8, 8)).astype(np.float32)
    b = rng.random((3, 8, 8)).astype(np.float32)
    dcm, mp4 = tmp_path / "clip.dcm", tmp_path / "clip.mp4"
    assert project_dir_for(dcm) != project_dir_for(mp4)
    first, _ = ReviewProject.open(project_dir_for(dcm), 3, (8, 8), source=dcm, frames=a)
    first.labels[1] = 1
    first.set_status(1, FrameStatus.CURATED)
    first.save()
    first.close()
    second, restored = ReviewProject.open(project_dir_for(mp4), 3, (8, 8), source=mp4, frames=b)
    assert not restored and second.labels.sum() == 0
    # The same review folder pointed at another stack's content is refused, naming both.
    with pytest.raises(ProjectError, match=r"clip\.dcm.*not to .*clip\.mp4"):
        ReviewProject.open(project_dir_for(dcm), 3, (8, 8), source=mp4, frames=b)
    again, restored = ReviewProject.open(project_dir_for(dcm), 3, (8, 8), source=dcm, frames=a)
    assert restored and again.curated_frames.tolist() == [1]


def test_old_stem_sidecar_is_adopted_only_by_its_own_file(tmp_path):
    old = tmp_path / "clip.ribseg"
    project = ReviewProject.new(old, 2, (4, 4), source=str(tmp_path / "clip.dcm"))
    project.labels[0] = 1
    project.save()
    mine, restored = ReviewProject.open(
        project_dir_for(tmp_path / "clip.dcm"), 2, (4, 4), source=tmp_path / "clip.dcm"
    )
    assert restored and mine.labels[0].sum() == 16
    other, restored = ReviewProject.open(
        project_dir_for(tmp_path / "clip.mp4"), 2, (4, 4), source=tmp_path / "clip.mp4"
    )
    assert not restored and other.labels.sum() == 0


def test_second_viewer_is_refused_and_stale_lock_taken_over(tmp_path):
    folder = tmp_path / "x.ribseg"
    folder.mkdir()
    (folder / LOCK_FILE).write_text(f"1@{os.uname().nodename}\n")  # pid 1 is always alive
    with pytest.raises(ProjectError, match="open in another viewer"):
        ReviewProject.open(folder, 2, (4, 4))
    (folder / LOCK_FILE).write_text(f"{2**22 + 12345}@{os.uname().nodename}\n")  # no such pid
    project, _ = ReviewProject.open(folder, 2, (4, 4))
    assert (folder / LOCK_FILE).read_text().startswith(str(os.getpid()))
    project.close()
    assert not (folder / LOCK_FILE).exists()


def test_one_process_cannot_open_one_review_twice(tmp_path):
    """Two viewers in one Python session (a notebook, a script) each saving the same review
    wiped each other's statuses: the lock now holds within the process too."""
    import gc

    folder = tmp_path / "y.ribseg"
    first, _ = ReviewProject.open(folder, 2, (4, 4))
    with pytest.raises(ProjectError, match="already open in this Python session"):
        ReviewProject.open(folder, 2, (4, 4))
    first.close()
    second, _ = ReviewProject.open(folder, 2, (4, 4))  # closed: free again
    # A project dropped without close() (an exception, a forgotten handle) frees it too.
    del second
    gc.collect()
    third, _ = ReviewProject.open(folder, 2, (4, 4))
    third.close()
    assert not (folder / LOCK_FILE).exists()


def test_damaged_newest_save_falls_back_to_the_previous(tmp_path):
    project = ReviewProject.new(tmp_path / "p.ribseg", 2, (4, 4))
    project.labels[0, 0, 0] = 1
    project.save()
    project.labels[0, 0, 1] = 1
    project.save()
    labels = saved_file(tmp_path / "p.ribseg", chunk_name("labels", 0))
    labels.write_bytes(labels.read_bytes()[:-3] + b"\x07\x07\x07")
    loaded = ReviewProject.load(tmp_path / "p.ribseg")
    assert loaded.labels.sum() == 1 and "checksum" in loaded.recovered_from
    # The next save keeps the intact save it followed, not the damaged one (which left a single
    # intact save on disk), and is not taken for another viewer's save.
    loaded.labels[1, 1, 1] = 1
    assert loaded.save()
    names = sorted(p.name for p in (tmp_path / "p.ribseg").iterdir() if p.name.startswith("v"))
    assert names == ["v000001", "v000003"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"n_frames": float("inf")}, "n_frames"),  # written as a 401-digit integer
        ({"n_frames": "two"}, "n_frames"),
        ({"frame_shape": [4]}, "frame_shape"),
        ({"statuses": [0, 9]}, "statuses"),
        ({"confidence": ["x", 1]}, "confidence"),
        ({"source": 5}, "source"),
    ],
)
def test_damaged_project_json_names_file_and_field(tmp_path, change, field):
    folder = tmp_path / "d.ribseg"
    ReviewProject.new(folder, 2, (4, 4)).save()
    meta_path = saved_file(folder, JSON_FILE)
    meta = json.loads(meta_path.read_text())
    meta.update(change)
    text = json.dumps(meta).replace("Infinity", "1" + "0" * 400)
    version = meta_path.parent
    meta_path.write_text(text)  # damage that the manifest agrees with: only validation can catch it
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["files"][JSON_FILE] = {
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "bytes": len(text.encode()),
    }
    (version / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ProjectError, match=rf"project\.json.*{field}|{field}.*project\.json"):
        ReviewProject.load(folder)


def test_labels_header_claiming_10_tb_is_a_budget_error(tmp_path, monkeypatch):
    folder = tmp_path / "t.ribseg"
    folder.mkdir()
    n, h, w = 10_000_000, 1000, 1000  # 10 TB of uint8
    meta = ReviewProject.new(tmp_path / "small", 1, (1, 1))._json_text("")
    meta = json.loads(meta)
    meta.update(n_frames=n, frame_shape=[h, w], statuses=[0] * n, confidence=[None] * n)
    meta.pop("changed_pixels")
    (folder / JSON_FILE).write_text(json.dumps(meta))  # a version-1 layout
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1, 1), np.uint8))
    header["shape"] = (n, h, w)
    with open(folder / LABELS_FILE, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
    monkeypatch.setenv("RIBSEG_MAX_BYTES", str(64 * 1024**2))
    with pytest.raises(MemoryBudgetError, match="labels"):
        ReviewProject.load(folder)
