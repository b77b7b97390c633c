"""What a save reads: the widget's save on every change of frame read the whole stack (a CRC-32 of
every label, the changed-pixel counts of every frame, a sha256 of every probability), so each step of
the slider cost time in proportion to the stack's length; a quick save reads only the frames reported
edited, and an exact save still catches edits nobody reported."""

from __future__ import annotations

import tracemalloc
import types
import zlib

import numpy as np
import pytest

import napari_ribseg.core.project as project_module
import napari_ribseg.core.session as session_module
from napari_ribseg.core.project import ReviewProject
from napari_ribseg.core.session import ReviewSession
from napari_ribseg.core.stack import FrameStatus

N, H, W = 40, 16, 16
FRAME = H * W


@pytest.fixture
def reads(monkeypatch) -> dict:
    """Bytes of labels checksummed, frames whose changed pixels were counted, probability hashes."""
    seen = {"crc_bytes": 0, "counted": 0, "prob_hashes": 0}

    def crc32(data, value=0):
        seen["crc_bytes"] += memoryview(data).nbytes
        return zlib.crc32(data, value)

    counts, prob_digests = ReviewProject.changed_pixels_of, ReviewProject._prob_digests

    def changed_pixels_of(self, frames):
        seen["counted"] += self.n_frames if frames is None else np.asarray(frames).size
        return counts(self, frames)

    def hashed(self, frames):
        if self.probabilities is not None:
            seen["prob_hashes"] += self.n_frames if frames is None else np.asarray(frames).size
        return prob_digests(self, frames)

    monkeypatch.setattr(project_module, "zlib", types.SimpleNamespace(crc32=crc32))
    monkeypatch.setattr(ReviewProject, "changed_pixels_of", changed_pixels_of)
    monkeypatch.setattr(ReviewProject, "_prob_digests", hashed)
    return seen


def _saved_review(tmp_path) -> ReviewProject:
    rng = np.random.default_rng(0)
    project = ReviewProject.new(tmp_path / "s.ribseg", N, (H, W))
    project.apply_prediction(range(N), (rng.random((N, H, W)) > 0.7).astype(np.uint8), [0.5] * N)
    project.probabilities = rng.integers(0, 256, (N, H, W), dtype=np.uint8)
    assert project.save()
    return project


def test_a_quick_save_reads_only_the_frames_reported_edited(tmp_path, reads):
    project = _saved_review(tmp_path)
    reads.update(crc_bytes=0, counted=0, prob_hashes=0)
    assert not project.save(check_all=False)  # a step of the slider, nothing changed
    assert reads == {"crc_bytes": 0, "counted": 0, "prob_hashes": 0}
    # A stroke as napari paints it: written into the labels in place, then reported.
    project.labels[7, 2:5, 2:5] ^= 1
    project.mark_labels_changed([7])
    project.set_status(7, FrameStatus.CURATED)
    assert project.save(check_all=False)
    assert reads == {"crc_bytes": FRAME, "counted": 1, "prob_hashes": 0}
    again = ReviewProject.load(project.folder)
    np.testing.assert_array_equal(again.labels, project.labels)
    assert again.changed_pixels.tolist() == project.changed_pixels.tolist()
    assert again.changed_pixels[7] == 9 and again.statuses[7] == FrameStatus.CURATED
    reads.update(crc_bytes=0, counted=0, prob_hashes=0)
    assert not project.save(check_all=False)  # the frames reported were checked by that save
    assert reads == {"crc_bytes": 0, "counted": 0, "prob_hashes": 0}


def test_an_exact_save_still_reads_every_frame_and_catches_an_unreported_edit(tmp_path, reads):
    project = _saved_review(tmp_path)
    project.labels[3, 0, 0] ^= 1  # a script's edit, nobody told
    assert not project.save(check_all=False)  # a quick save trusts the reports
    reads.update(crc_bytes=0, counted=0, prob_hashes=0)
    assert project.save()  # the exact check (scripts, closing)
    # Every frame's labels checksum and probabilities; changed pixels counted only where the
    # labels moved (the count follows the labels and the model mask; until 2026-12-05 afternoon
    # every frame was counted again).
    assert reads["crc_bytes"] == N * FRAME and reads["counted"] == 1
    assert reads["prob_hashes"] == N  # every frame's probabilities
    assert ReviewProject.load(project.folder).labels[3, 0, 0] == project.labels[3, 0, 0]
    # After it, the moved correction (same count, other pixel) is caught as before.
    project.labels[3, 0, 0] ^= 1
    project.labels[3, 9, 9] ^= 1
    assert project.save()


def test_a_quick_save_reads_every_frame_when_it_cannot_trust_the_reports(tmp_path, reads):
    """An edit reported without frames, or an array replaced, makes the quick save exact."""
    project = _saved_review(tmp_path)
    project.labels[5, 1, 1] ^= 1
    project.mark_labels_changed()  # frames unknown
    reads.update(crc_bytes=0, counted=0)
    assert project.save(check_all=False)
    # Every frame checksummed; only the frame whose labels moved is counted again.
    assert reads["crc_bytes"] == N * FRAME and reads["counted"] == 1
    project.labels = project.labels.copy()  # replaced (a plugin swapped the layer's data)
    project.labels[6, 1, 1] ^= 1
    assert project.save(check_all=False)
    assert ReviewProject.load(project.folder).labels[6, 1, 1] == project.labels[6, 1, 1]


def test_probabilities_changed_through_the_review_are_saved_by_a_quick_save(tmp_path, reads):
    project = _saved_review(tmp_path)
    project.probabilities[2] = 9  # as ReviewSession.apply_prediction writes them, then reports
    project.mark_probabilities_changed([2])
    reads.update(prob_hashes=0)
    assert project.save(check_all=False)
    assert reads["prob_hashes"] == 1  # the frame reported
    assert (ReviewProject.load(project.folder).probabilities[2] == 9).all()
    project.probabilities[3] = 8
    project.mark_probabilities_changed()  # frames unknown: every frame is hashed
    reads.update(prob_hashes=0)
    assert project.save(check_all=False)
    assert reads["prob_hashes"] == N
    assert (ReviewProject.load(project.folder).probabilities[3] == 8).all()


def test_the_session_reports_its_edits_and_checks_every_frame_now_and_then(tmp_path, reads):
    frames = np.random.default_rng(1).random((N, H, W), dtype=np.float32)
    with ReviewSession.for_frames(frames, tmp_path / "r.ribseg") as session:
        session.set_labels(4, np.ones((H, W), np.uint8))
        assert session.save(check_all=False)
        session.labels[9, 3, 3] = 1  # as napari paints: into the array, then the paint event
        session.mark_edited([9])
        reads.update(crc_bytes=0)
        assert session.save(check_all=False)
        assert reads["crc_bytes"] == FRAME
        assert ReviewProject.load(session.project.folder).labels[9, 3, 3] == 1
        session.labels[11, 3, 3] = 1  # nobody told
        assert not session.save(check_all=False)
        session._last_exact_check -= session_module.EXACT_CHECK_EVERY_S  # that long ago
        assert session.save(check_all=False)  # the periodic exact check
        assert ReviewProject.load(session.project.folder).labels[11, 3, 3] == 1


def test_a_save_writes_the_labels_without_a_copy_of_them_in_memory(tmp_path):
    """The labels file was built in memory first (np.save into a BytesIO), then hashed and
    written: a one-frame edit of a long stack allocated the whole file again on every save."""
    project = ReviewProject.new(tmp_path / "m.ribseg", 128, (512, 512))
    assert project.save()
    project.labels[3, :5, :5] = 1
    project.mark_labels_changed([3])
    tracemalloc.start()
    try:
        assert project.save(check_all=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    size = project.labels.nbytes
    assert peak < 0.75 * size  # 16 MiB chunks of a 32 MiB file; it was 48 MiB
    again = ReviewProject.load(project.folder)  # the manifest's sha256 verifies
    np.testing.assert_array_equal(again.labels, project.labels)


class _Clock:
    """A clock the test moves by hand (``ReviewSession.clock``)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_an_idle_review_saves_an_unreported_edit_once_the_exact_check_is_due(
    tmp_path, reads, monkeypatch
):
    """Only a quick save (a step) reached the periodic exact check, so labels a script wrote in
    place without mark_edited stayed unsaved until close while nobody stepped; the widget's idle
    tick now asks ``save_if_due``, which the core answers by its clock."""
    clock = _Clock()
    monkeypatch.setattr(ReviewSession, "clock", clock)
    frames = np.random.default_rng(1).random((N, H, W), dtype=np.float32)
    with ReviewSession.for_frames(frames, tmp_path / "r.ribseg") as session:
        assert session.save()  # the first, exact save
        session.labels[11, 3, 3] = 1  # a script, nobody told
        reads.update(crc_bytes=0)
        clock.now += session_module.EXACT_CHECK_EVERY_S - 1
        assert not session.exact_check_due()
        assert not session.save_if_due()  # not due: nothing read, nothing written
        assert reads["crc_bytes"] == 0
        assert not ReviewProject.load(session.project.folder).labels[11, 3, 3]
        clock.now += 1
        assert session.exact_check_due()
        reads.update(crc_bytes=0)
        assert session.save_if_due()  # due: every frame read, the edit saved
        assert reads["crc_bytes"] == N * FRAME
        assert ReviewProject.load(session.project.folder).labels[11, 3, 3] == 1
        assert not session.exact_check_due()  # the check just made is the new mark
        clock.now += 2 * session_module.EXACT_CHECK_EVERY_S
        assert not session.save_if_due()  # due, but nothing changed: nothing written
        assert not session.exact_check_due()
    # A read-only review is never saved: not due, not an error.
    with ReviewSession.for_frames(frames, tmp_path / "r.ribseg", read_only=True) as shown:
        shown.labels[12, 3, 3] = 1
        clock.now += 2 * session_module.EXACT_CHECK_EVERY_S
        assert shown.exact_check_due()
        assert not shown.save_if_due()
    assert not ReviewProject.load(tmp_path / "r.ribseg").labels[12, 3, 3]
