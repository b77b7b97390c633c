"""Two writers, stale locks and read-only reviews (found by a review audit, 2026-12-03).

Before: a lock deleted by hand (or lost in a race) let two viewers hold one review, and the last
save silently erased the other's work; a lock whose pid had been reused, or that came from another
machine, blocked the review with no way out named; commands that only read a review needed to
write its lock, so a review on a read-only share could not be shown, exported or trained on."""

from __future__ import annotations

import hashlib
import os
import socket

import numpy as np
import pytest

from napari_ribseg.cli import main
from napari_ribseg.core.errors import ProjectError
from napari_ribseg.core.project import LOCK_FILE, ReviewProject, _process_start
from napari_ribseg.core.session import ReviewSession
from napari_ribseg.core.stack import FrameStatus


def test_a_save_never_writes_over_a_newer_save_of_another_viewer(tmp_path):
    folder = tmp_path / "clip.npy.ribseg"
    first, _ = ReviewProject.open(folder, 4, (8, 8))
    first.save()
    first.close()
    a, _ = ReviewProject.open(folder, 4, (8, 8), lock=False)
    b, _ = ReviewProject.open(folder, 4, (8, 8), lock=False)
    b.set_status(2, FrameStatus.CURATED)
    assert b.save()
    a.set_status(1, FrameStatus.CURATED)
    with pytest.raises(ProjectError, match=r"saved this review \(save 2\) after this one read it"):
        a.save()
    assert ReviewProject.load(folder).curated_frames.tolist() == [2]  # b's work is kept
    b.set_status(3, FrameStatus.CURATED)
    assert b.save()  # the one that saved last goes on saving
    assert ReviewProject.load(folder).curated_frames.tolist() == [2, 3]


def test_a_hand_deleted_lock_loses_nothing(tmp_path):
    folder = tmp_path / "clip.npy.ribseg"
    a, _ = ReviewProject.open(folder, 3, (8, 8))
    a.save()
    (folder / LOCK_FILE).unlink()  # "it looked stale"
    a._locked = False  # noqa: SLF001 - as a second process sees it
    from napari_ribseg.core import project as project_module

    project_module._HELD.clear()
    b, _ = ReviewProject.open(folder, 3, (8, 8))
    b.set_status(0, FrameStatus.REJECTED)
    b.save()
    a.set_status(1, FrameStatus.CURATED)
    with pytest.raises(ProjectError, match="not writing over its changes"):
        a.save()
    b.close()
    assert ReviewProject.load(folder).statuses.tolist() == [2, 0, 0]


@pytest.mark.skipif(_process_start(os.getpid()) is None, reason="needs /proc")
def test_a_lock_whose_pid_was_reused_is_stale_and_a_live_one_names_its_file(tmp_path):
    folder = tmp_path / "x.ribseg"
    folder.mkdir()
    host = socket.gethostname()
    live = os.getppid()
    (folder / LOCK_FILE).write_text(f"{live}@{host} start={_process_start(live)}\n")
    with pytest.raises(ProjectError) as refused:
        ReviewProject.open(folder, 2, (4, 4))
    assert f"delete {folder / LOCK_FILE}" in str(refused.value)
    # The same pid, but a process that started at another time: the lock's owner is gone.
    (folder / LOCK_FILE).write_text(f"{live}@{host} start=1\n")
    project, _ = ReviewProject.open(folder, 2, (4, 4))
    pid, _, rest = (folder / LOCK_FILE).read_text().partition("@")
    assert int(pid) == os.getpid() and f"start={_process_start(os.getpid())}" in rest
    project.close()


def test_read_only_open_takes_no_lock_cleans_nothing_and_refuses_to_save(tmp_path):
    frames = np.random.default_rng(0).random((3, 8, 8), dtype=np.float32)
    folder = tmp_path / "r.ribseg"
    with ReviewSession.for_frames(frames, folder) as session:
        session.set_status([1], FrameStatus.CURATED)
    left_over = folder / ".v000009.tmp99999"  # another process's save in progress
    left_over.mkdir()
    (folder / LOCK_FILE).write_text(f"{os.getppid()}@{socket.gethostname()}\n")  # a viewer has it
    with ReviewSession.for_frames(frames, folder, read_only=True) as session:
        assert session.project.curated_frames.tolist() == [1]
        session.set_status([2], FrameStatus.CURATED)
        with pytest.raises(ProjectError, match="opened read-only"):
            session.save()
    assert left_over.is_dir()
    assert (folder / LOCK_FILE).read_text().startswith(str(os.getppid()))
    assert ReviewProject.load(folder).curated_frames.tolist() == [1]


def test_showing_and_exporting_a_review_work_while_a_viewer_holds_it(tmp_path, capsys):
    frames = np.random.default_rng(0).random((4, 16, 16), dtype=np.float32)
    stack = tmp_path / "clip.npy"
    np.save(stack, frames)
    with ReviewSession.open(stack) as session:
        session.project.labels[1, 4:8, 2:12] = 1
        session.set_status([1], FrameStatus.CURATED)
    held, _ = ReviewProject.open(tmp_path / "clip.npy.ribseg", 4, (16, 16))  # the "viewer"
    assert main(["review", str(stack), "--quiet"]) == 0
    assert "1 curated" in capsys.readouterr().out
    assert main(["export-curated", str(stack), "--out", str(tmp_path / "out")]) == 0
    assert len(list((tmp_path / "out" / "MASK").iterdir())) == 1
    assert main(["review", str(stack), "--curate", "2"]) == 2  # a change still needs the lock
    assert "already open" in capsys.readouterr().err
    held.close()


def test_a_review_folder_that_cannot_be_written_names_the_way_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ProjectError, match="cannot write the review there.*--project-folder"):
        ReviewProject.open(blocker / "clip.npy.ribseg", 2, (4, 4))


def _curated_stack(path):
    seed = int(hashlib.sha256(str(path).encode()).hexdigest()[:8], 16)
    frames = np.random.default_rng(seed).random((4, 16, 16), dtype=np.float32)
    np.save(path, frames)
    return frames


def test_a_renamed_stack_keeps_its_review(tmp_path, capsys):
    """Before: a renamed stack silently started an empty review; the curated one sat beside it."""
    stack = tmp_path / "clip.npy"
    _curated_stack(stack)
    with ReviewSession.open(stack) as session:
        session.set_status([1, 2], FrameStatus.CURATED)
    renamed = stack.rename(tmp_path / "patient 7 left.npy")
    assert main(["review", str(renamed), "--quiet"]) == 0
    assert "2 curated" in capsys.readouterr().out
    with ReviewSession.open(renamed) as session:
        assert session.project.curated_frames.tolist() == [1, 2]
        assert session.project.adopted_from == str(tmp_path / "clip.npy.ribseg")
        session.set_status([3], FrameStatus.CURATED)
    assert ReviewProject.load(tmp_path / "patient 7 left.npy.ribseg").curated_frames.tolist() == [
        1,
        2,
        3,
    ]
    assert ReviewProject.load(tmp_path / "clip.npy.ribseg").curated_frames.tolist() == [1, 2]


def test_one_file_name_in_two_study_folders_gets_two_reviews_under_a_project_folder(tmp_path):
    """DICOM exports reuse IM_0001 in every study: under --project-folder the second was refused
    ("this review belongs to .../studyA/IM_0001")."""
    reviews = tmp_path / "reviews"
    stacks = []
    for study in ("studyA", "studyB"):
        (tmp_path / study).mkdir()
        stacks.append(tmp_path / study / "IM_0001.npy")
        _curated_stack(stacks[-1])
    for i, stack in enumerate(stacks):
        with ReviewSession.open(stack, project_folder=reviews) as session:
            session.set_status([i], FrameStatus.CURATED)
    for i, stack in enumerate(stacks):
        with ReviewSession.open(stack, project_folder=reviews, read_only=True) as session:
            assert session.project.curated_frames.tolist() == [i]
    assert len(list(reviews.glob("IM_0001.npy-*.ribseg"))) == 2


def test_a_review_under_the_old_project_folder_name_is_taken_over(tmp_path):
    reviews = tmp_path / "reviews"
    stack = tmp_path / "clip.npy"
    frames = _curated_stack(stack)
    old = reviews / "clip.npy.ribseg"  # the name before 2026-12-03
    with ReviewSession.for_frames(frames, old, source=stack) as session:
        session.set_status([2], FrameStatus.CURATED)
    with ReviewSession.open(stack, project_folder=reviews, read_only=True) as session:
        assert session.project.curated_frames.tolist() == [2]
        assert session.project.adopted_from == str(old)


def test_a_copy_of_a_reviewed_stack_starts_its_own_review(tmp_path):
    """A second annotator's copy (the original still there) pre-filled the first one's review."""
    stack = tmp_path / "a.npy"
    _curated_stack(stack)
    with ReviewSession.open(stack) as session:
        session.set_status([1], FrameStatus.CURATED)
    copy = tmp_path / "b.npy"
    copy.write_bytes(stack.read_bytes())
    with ReviewSession.open(copy) as session:
        assert session.project.curated_frames.size == 0 and session.project.adopted_from is None


def test_a_review_saved_when_12_bit_data_read_as_16_bit_still_opens(tmp_path):
    """Until 2026-12-03 every uint16 stack was divided by 65535; the reviews of 12-bit stacks,
    bound to those frames' fingerprint, were refused ("belongs to X, not to X") once the reader
    divided by 4095 -- next to the stack, and under a project folder (the old name)."""
    import tifffile

    raw = np.random.default_rng(3).integers(0, 4096, (5, 16, 16), dtype=np.uint16)
    raw[0, 0, 0] = 4095
    stack = tmp_path / "clip12.tif"
    tifffile.imwrite(stack, raw, photometric="minisblack")
    as_before = raw.astype(np.float32) / np.float32(65535)
    for folder in (tmp_path / "clip12.tif.ribseg", tmp_path / "reviews" / "clip12.tif.ribseg"):
        with ReviewSession.for_frames(as_before, folder, source=stack) as session:
            session.set_status([2], FrameStatus.CURATED)
    with ReviewSession.open(stack) as session:
        assert session.project.curated_frames.tolist() == [2]
        session.set_status([3], FrameStatus.CURATED)
    # Saved again, it is bound to the frames as read now.
    with ReviewSession.open(stack, read_only=True) as session:
        assert session.project.curated_frames.tolist() == [2, 3]
    with ReviewSession.open(stack, project_folder=tmp_path / "reviews", read_only=True) as session:
        assert session.project.curated_frames.tolist() == [2]


def test_a_copy_opened_from_another_folder_does_not_take_the_original_review(
    tmp_path, monkeypatch, capsys
):
    """Audit 2026-12-04: a review recorded its stack as typed ("clip.npy"); from another working
    folder the original looked deleted, and a second annotator's copy took over the first one's
    curated frames."""
    study = tmp_path / "study"
    study.mkdir()
    _curated_stack(study / "clip.npy")
    monkeypatch.chdir(study)
    with ReviewSession.open("clip.npy") as session:
        session.set_status([1, 2], FrameStatus.CURATED)
    assert ReviewProject.load(study / "clip.npy.ribseg").source == str(study / "clip.npy")
    (study / "copy.npy").write_bytes((study / "clip.npy").read_bytes())
    monkeypatch.chdir(tmp_path)
    with ReviewSession.open("study/copy.npy") as session:
        assert session.project.curated_frames.size == 0 and session.project.adopted_from is None
    # A review recorded before the fix (relative source) is found beside its review folder.
    old = ReviewProject.load(study / "clip.npy.ribseg")
    meta = study / "clip.npy.ribseg"
    old.close()
    project, _ = ReviewProject.open(meta, 4, (16, 16))
    project.source = "clip.npy"  # as typed, the way reviews were saved until 2026-12-04
    project.set_status(3, FrameStatus.CURATED)
    project.save()
    project.close()
    (study / "copy2.npy").write_bytes((study / "clip.npy").read_bytes())
    with ReviewSession.open(study / "copy2.npy") as session:
        assert session.project.adopted_from is None


def test_a_review_taken_over_is_not_taken_again_and_follows_a_rename_back(tmp_path):
    """Audit 2026-12-04: after clip -> a (taken over, then more curation), a copy b of a took over
    the stale clip review (3 curated instead of 4); renaming a back to clip restored the stale
    review and left the newer work behind."""
    stack = tmp_path / "clip.npy"
    _curated_stack(stack)
    with ReviewSession.open(stack) as session:
        session.set_status([1, 2], FrameStatus.CURATED)
    a = stack.rename(tmp_path / "a.npy")
    with ReviewSession.open(a) as session:
        assert session.project.adopted_from == str(tmp_path / "clip.npy.ribseg")
        session.set_status([3], FrameStatus.CURATED)
    b = tmp_path / "b.npy"
    b.write_bytes(a.read_bytes())
    with ReviewSession.open(b) as session:
        assert session.project.curated_frames.size == 0 and session.project.adopted_from is None
    back = a.rename(stack)
    with ReviewSession.open(back) as session:
        assert session.project.curated_frames.tolist() == [1, 2, 3]
        assert session.project.adopted_from == str(tmp_path / "a.npy.ribseg")
        session.set_status([0], FrameStatus.CURATED)
    with ReviewSession.open(back, read_only=True) as session:
        assert session.project.curated_frames.tolist() == [0, 1, 2, 3]


def test_commands_that_only_read_find_a_version_1_review(tmp_path, capsys):
    """Audit 2026-12-04: `ribseg review STACK` (show) and export-curated said "no review" for a
    version-1 "<stem>.ribseg" review that setting a status did find."""
    stack = tmp_path / "clip.npy"
    _curated_stack(stack)
    old = ReviewProject.new(tmp_path / "clip.ribseg", 4, (16, 16), source=str(stack))
    old.set_status(1, FrameStatus.CURATED)
    old.labels[1, 4:8, 4:8] = 1
    old.save()
    assert main(["review", str(stack)]) == 0
    assert "1 curated" in capsys.readouterr().out
    assert main(["export-curated", str(stack), "--out", str(tmp_path / "pairs")]) == 0
    assert len(list((tmp_path / "pairs").rglob("*.tif"))) == 2
