"""A review is bound to its source file as stored on disk, not only to the frames read from it.

Found twice (2026-12-03, uint16 bit depth; 2026-12-04, 16-bit colour PNGs at full depth): when the
reader's rules changed, the same unchanged file read to other float frames, its content fingerprint
differed and its review was refused ("this review belongs to ... not to ..."). A review now also
records ``source_signature`` (size and sampled bytes of the file); an equal signature restores it.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import shutil

import numpy as np
import pytest

import napari_ribseg.core.project as project_module
from napari_ribseg.core.errors import ProjectError
from napari_ribseg.core.project import (
    JSON_FILE,
    SIGNATURE_BLOCK,
    ReviewProject,
    file_signature,
    project_dir_for,
    saved_file,
    source_signature,
    stack_fingerprint,
)
from napari_ribseg.core.stack import FrameStatus

MiB = 1 << 20


def _frames(rng: np.random.Generator, n: int = 5, shape=(12, 16)) -> np.ndarray:
    return rng.random((n, *shape), dtype=np.float32)


def _source(tmp_path, rng, name: str = "clip.bin", size: int = 4096):
    path = tmp_path / name
    path.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def _saved_review(tmp_path, rng, frames, source):
    """A review of ``frames`` read from ``source`` with hand edits and statuses, saved, closed."""
    folder = project_dir_for(source)
    project, restored = ReviewProject.open(
        folder, frames.shape[0], frames.shape[1:], source=source, frames=frames
    )
    assert not restored
    project.labels[1, 2:5, 3:9] = 1  # 18 pixels drawn by hand
    project.labels[3, 0, :4] = 1
    project.set_status(1, FrameStatus.CURATED)
    project.set_status(4, FrameStatus.REJECTED)
    assert project.save()
    project.close()
    return folder, project.labels.copy()


def _meta(folder) -> dict:
    return json.loads(saved_file(folder, JSON_FILE).read_text(encoding="utf-8"))


def test_signature_is_recorded_with_the_fingerprint(tmp_path, rng):
    frames = _frames(rng)
    source = _source(tmp_path, rng)
    folder, _ = _saved_review(tmp_path, rng, frames, source)
    meta = _meta(folder)
    assert meta["fingerprint"] == stack_fingerprint(frames)
    assert meta["source_signature"] == source_signature(source)
    assert meta["source_signature"]["kind"] == "file"
    assert meta["source_signature"]["bytes"] == 4096


def test_unchanged_file_read_differently_is_restored_and_rebound(tmp_path, rng, caplog):
    frames = _frames(rng)
    source = _source(tmp_path, rng)
    folder, labels = _saved_review(tmp_path, rng, frames, source)
    old_sha = stack_fingerprint(frames)["sha256"]
    # The reader's rules changed: the same bytes read to other frames of the same count and shape.
    now = np.clip(frames * np.float32(1.25) - np.float32(0.1), 0, 1)
    new_sha = stack_fingerprint(now)["sha256"]
    assert new_sha != old_sha
    with caplog.at_level(logging.WARNING, logger="napari_ribseg.core.project"):
        project, restored = ReviewProject.open(folder, 5, (12, 16), source=source, frames=now)
    assert restored
    np.testing.assert_array_equal(project.labels, labels)
    assert project.statuses.tolist() == [0, 1, 0, 0, 2]
    assert project.changed_pixels.tolist() == [0, 18, 0, 4, 0]
    assert project.rebound_from == old_sha
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1
    assert "unchanged on disk" in warned[0]
    assert old_sha[:12] in warned[0] and new_sha[:12] in warned[0]
    # Rebound at the next save, as a review under a legacy fingerprint is.
    assert project.fingerprint == stack_fingerprint(now)
    assert project.save()
    project.close()
    meta = _meta(folder)
    assert meta["fingerprint"]["sha256"] == new_sha
    assert meta["source_signature"] == source_signature(source)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="napari_ribseg.core.project"):
        again, restored = ReviewProject.open(folder, 5, (12, 16), source=source, frames=now)
    assert restored and again.rebound_from is None and not caplog.records
    np.testing.assert_array_equal(again.labels, labels)
    again.close()


def test_another_array_of_the_same_npz_is_refused_not_rebound(tmp_path, rng):
    """The review of array 'a' of an .npz was restored onto array 'b' of the same unchanged file
    (same size and bytes, same shape) as a new reading of the same data, with a/'s hand edits
    and statuses, and rebound to b at the next save; before signatures it was refused."""
    from napari_ribseg.core.io import read_stack
    from napari_ribseg.core.session import ReviewSession

    path = tmp_path / "data.npz"
    np.savez(path, a=_frames(rng), b=_frames(rng))
    with ReviewSession.open(read_stack(path, variable="a")) as session:
        session.project.labels[1, 2:5, 3:9] = 1
        session.project.set_status(1, FrameStatus.CURATED)
        assert session.project.save()
    with pytest.raises(ProjectError, match=r"belongs to variable 'a' of .*not to variable 'b'"):
        ReviewSession.open(read_stack(path, variable="b"))
    # The same array still opens its review.
    with ReviewSession.open(read_stack(path, variable="a")) as session:
        assert session.project.statuses.tolist()[1] == int(FrameStatus.CURATED)


def test_renamed_npz_read_differently_is_found_by_commands_that_need_a_review(tmp_path, rng):
    """``review_exists`` (asked by ``ribseg review``/``export-curated``/``finetune STACK`` and
    ``adapt``) signed the source without its array name, so the review of array 'a' of a renamed
    .npz now read differently was 'no review at ...' there, while the widget restored it."""
    import dataclasses

    from napari_ribseg.core.io import read_stack
    from napari_ribseg.core.project import review_exists
    from napari_ribseg.core.session import ReviewSession

    path = tmp_path / "data.npz"
    np.savez(path, a=_frames(rng), b=_frames(rng))
    with ReviewSession.open(read_stack(path, variable="a")) as session:
        session.project.labels[1, 2:5, 3:9] = 1
        session.project.set_status(1, FrameStatus.CURATED)
        assert session.project.save()
    renamed = path.rename(tmp_path / "renamed.npz")
    stack = read_stack(renamed, variable="a")
    now = dataclasses.replace(stack, frames=stack.frames * np.float32(0.5))  # new reader rules
    with ReviewSession.open(now, existing=True, read_only=True) as session:
        assert session.project.statuses.tolist()[1] == int(FrameStatus.CURATED)
        assert int(session.project.labels[1].sum()) == 18
    folder = project_dir_for(renamed)
    assert review_exists(folder, now.frames, renamed, variable="a")
    assert not review_exists(folder, now.frames, renamed, variable="b")


def test_changed_file_of_the_same_shape_is_still_refused(tmp_path, rng):
    frames = _frames(rng)
    source = _source(tmp_path, rng)
    folder, _ = _saved_review(tmp_path, rng, frames, source)
    data = bytearray(source.read_bytes())
    data[100] ^= 0xFF  # another file under the same name and size: other frames
    source.write_bytes(bytes(data))
    other = _frames(rng)
    with pytest.raises(ProjectError, match="changed on disk") as info:
        ReviewProject.open(folder, 5, (12, 16), source=source, frames=other)
    assert "belongs to" in str(info.value) and "move the folder away" in str(info.value).lower()
    # Refused, not restored and not overwritten; the folder is free again.
    assert _meta(folder)["fingerprint"] == stack_fingerprint(frames)
    assert not (folder / ".lock").exists()


def test_same_bytes_but_another_frame_count_is_refused(tmp_path, rng):
    frames = _frames(rng)
    source = _source(tmp_path, rng)
    folder, _ = _saved_review(tmp_path, rng, frames, source)
    with pytest.raises(ProjectError, match="holds 5 frames"):
        ReviewProject.open(folder, 4, (12, 16), source=source, frames=frames[:4])


def test_review_without_signature_keeps_the_old_refusal_and_names_a_way_out(tmp_path, rng):
    frames = _frames(rng)
    source = _source(tmp_path, rng, "clip.tif")
    folder, labels = _saved_review(tmp_path, rng, frames, source)
    # As saved before 2026-12-04: no source_signature.
    old = ReviewProject.load(folder)
    old.source_signature = None
    assert old.save()
    assert _meta(folder)["source_signature"] is None
    now = frames * np.float32(0.5)
    with pytest.raises(ProjectError) as info:
        ReviewProject.open(folder, 5, (12, 16), source=source, frames=now)
    text = str(info.value)
    assert "may be unchanged" in text and "no signature" in text
    assert str(saved_file(folder, "labels.000000.npy")) in text and "saved_array" in text
    assert "16-bit colour PNG" not in text  # a TIFF: that rule is not named
    assert f'ribseg review "{source}" --rebind' in text and "--project-folder" not in text
    assert not (folder / ".lock").exists()
    # The way out the message names works: rebound on request, the review opens and rebinds.
    project, restored = ReviewProject.open(
        folder, 5, (12, 16), source=source, frames=now, rebind=True
    )
    assert restored and project.rebound_from == stack_fingerprint(frames)["sha256"]
    np.testing.assert_array_equal(project.labels, labels)
    assert project.save()
    project.close()
    meta = _meta(folder)
    assert meta["fingerprint"] == stack_fingerprint(now)
    assert meta["source_signature"] == source_signature(source)


def test_another_stack_without_signature_gets_the_old_message(tmp_path, rng):
    frames = _frames(rng)
    source = _source(tmp_path, rng)
    folder, _ = _saved_review(tmp_path, rng, frames, source)
    other = _source(tmp_path, rng, "other.bin")
    with pytest.raises(ProjectError, match="belongs to .*clip.bin.*not to .*other.bin"):
        ReviewProject.open(folder, 5, (12, 16), source=other, frames=_frames(rng))


def test_renamed_file_read_differently_is_taken_over(tmp_path, rng):
    frames = _frames(rng)
    source = _source(tmp_path, rng, "a.bin")
    old_folder, labels = _saved_review(tmp_path, rng, frames, source)
    renamed = tmp_path / "b.bin"
    source.rename(renamed)
    now = frames * np.float32(0.5)
    project, restored = ReviewProject.open(
        project_dir_for(renamed), 5, (12, 16), source=renamed, frames=now
    )
    assert restored and project.adopted_from == str(old_folder)
    assert project.fingerprint == stack_fingerprint(now)
    np.testing.assert_array_equal(project.labels, labels)
    project.close()


def test_signature_of_a_1_gib_file_reads_at_most_3_mib(tmp_path, monkeypatch):
    big = tmp_path / "cine.mp4"
    with open(big, "wb") as fh:
        fh.truncate(1 << 30)  # sparse: 1 GiB on the file system's books, nothing on disk
        fh.seek(0)
        fh.write(b"header")
    read = []
    real_open = builtins.open

    class Counting:
        def __init__(self, fh):
            self._fh = fh

        def read(self, n=-1):
            data = self._fh.read(n)
            read.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self._fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._fh.close()

    monkeypatch.setattr(
        project_module, "open", lambda *a, **k: Counting(real_open(*a, **k)), raising=False
    )
    first = file_signature(big)
    assert first["bytes"] == 1 << 30
    assert sum(read) == 3 * SIGNATURE_BLOCK == 3 * MiB
    # A byte changed in the middle block is seen; the size too.
    with real_open(big, "r+b") as fh:
        fh.seek((1 << 29) + 10)
        fh.write(b"x")
    assert file_signature(big) != first
    # A small file is hashed whole.
    small = tmp_path / "small.png"
    small.write_bytes(b"a" * (3 * MiB))
    read.clear()
    assert file_signature(small)["bytes"] == 3 * MiB and sum(read) == 3 * MiB


def test_folder_signature_lists_names_and_sizes(tmp_path, rng):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(7):
        (folder / f"f{i:03d}.png").write_bytes(rng.integers(0, 256, 100 + i, np.uint8).tobytes())
    first = source_signature(folder)
    assert first["kind"] == "folder" and first["files"] == 7
    assert first["bytes"] == sum(100 + i for i in range(7))
    (folder / ".DS_Store").write_bytes(b"junk")  # hidden files are not frames
    assert source_signature(folder) == first
    os.rename(folder / "f003.png", folder / "f003b.png")  # a frame renamed (middle, unsampled)
    assert source_signature(folder) != first
    os.rename(folder / "f003b.png", folder / "f003.png")
    assert source_signature(folder) == first
    (folder / "f006.png").write_bytes(b"\0" * 106)  # the last frame rewritten, same size
    assert source_signature(folder) != first
    assert source_signature(tmp_path / "missing") is None and source_signature(None) is None


# ---- the 2026-12-04 change itself: 16-bit colour PNG frames --------------------------------------


def _png16_folder(tmp_path, rng):
    import cv2

    folder = tmp_path / "png16"
    folder.mkdir()
    for i in range(4):
        bgr = rng.integers(0, 65536, (10, 14, 3), dtype=np.uint16)
        assert cv2.imwrite(str(folder / f"frame{i:02d}.png"), bgr)
    return folder


def _as_before_2026_12_04(monkeypatch):
    """The reader as it was: 16-bit colour PNGs decoded by Pillow (its high byte)."""
    from napari_ribseg.core.io import frame_folder

    monkeypatch.setattr(frame_folder, "is_png16_colour", lambda path: False)


def test_png16_colour_review_survives_the_full_depth_rule(tmp_path, rng, monkeypatch, caplog):
    pytest.importorskip("cv2")
    from napari_ribseg.core.session import ReviewSession

    folder = _png16_folder(tmp_path, rng)
    with monkeypatch.context() as m:
        _as_before_2026_12_04(m)
        with ReviewSession.open(folder) as session:
            old_sha = session.project.fingerprint["sha256"]
            session.labels[2, 1:4, 1:4] = 1
            session.set_status([2], FrameStatus.CURATED)
            session.save()
            labels = session.labels.copy()
    with (
        caplog.at_level(logging.WARNING, logger="napari_ribseg.core.project"),
        ReviewSession.open(folder) as session,
    ):
        assert session.project.fingerprint["sha256"] != old_sha  # read differently now
        assert session.project.rebound_from == old_sha
        np.testing.assert_array_equal(session.labels, labels)
        assert session.project.curated_frames.tolist() == [2]
    assert any("unchanged on disk" in r.getMessage() for r in caplog.records)
    # read_only commands (export-curated, review) see it too, without writing anything.
    with ReviewSession.open(folder, read_only=True) as session:
        np.testing.assert_array_equal(session.labels, labels)


def test_png16_colour_review_without_signature_names_the_rule(tmp_path, rng, monkeypatch):
    pytest.importorskip("cv2")
    from napari_ribseg.core.session import ReviewSession

    folder = _png16_folder(tmp_path, rng)
    with monkeypatch.context() as m:
        _as_before_2026_12_04(m)
        with ReviewSession.open(folder) as session:
            session.labels[0, 0, 0] = 1
            session.save()
            review = session.project.folder
    old = ReviewProject.load(review)
    old.source_signature = None  # saved before 2026-12-04
    old.save()
    with pytest.raises(ProjectError) as info:
        ReviewSession.open(folder)
    text = str(info.value)
    assert "2026-12-04" in text and "16-bit colour PNG" in text and "may be unchanged" in text
    # A copy of the folder elsewhere is another stack: its own new review, nothing taken.
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    with ReviewSession.open(copy) as session:
        assert session.labels.sum() == 0


def test_rebind_takes_only_the_review_of_this_very_file(tmp_path, rng):
    """``rebind`` is the user's word that the file is unchanged; it does not move a review onto
    another file, nor onto other frame counts."""
    frames = _frames(rng)
    source = _source(tmp_path, rng)
    folder, _ = _saved_review(tmp_path, rng, frames, source)
    other = _source(tmp_path, rng, "other.bin")
    with pytest.raises(ProjectError, match="belongs to"):
        ReviewProject.open(folder, 5, (12, 16), source=other, frames=_frames(rng), rebind=True)
    with pytest.raises(ProjectError, match="holds 5 frames"):
        ReviewProject.open(folder, 4, (12, 16), source=source, frames=frames[:4], rebind=True)
    with pytest.raises(ProjectError, match="read-only"):
        ReviewProject.open(folder, 5, (12, 16), source=source, frames=frames, read_only=True,
                           rebind=True)  # fmt: skip


def test_cli_review_rebind_restores_a_review_saved_before_signatures(tmp_path, rng, capsys):
    """A review saved before 2026-12-04 (no signature) of a file now read differently: ``ribseg
    review`` refuses and names ``--rebind``; with it the review is restored and saved."""
    from napari_ribseg.cli import main
    from napari_ribseg.core.project import project_dir_for
    from napari_ribseg.core.session import ReviewSession
    from napari_ribseg.core.stack import FrameStatus

    stack = tmp_path / "clip.npy"
    now = rng.random((6, 16, 16), dtype=np.float32)
    np.save(stack, now)
    folder = project_dir_for(stack)
    with ReviewSession.for_frames(now * np.float32(0.5), folder, source=stack) as old:
        old.set_status([2, 4], FrameStatus.CURATED)
    meta = json.loads(saved_file(folder, "project.json").read_text())
    assert meta["source_signature"] is not None
    # Saved before signatures were recorded:
    p = ReviewProject.load(folder)
    p.source_signature = None
    assert p.save()
    assert main(["review", str(stack), "--quiet"]) == 2
    assert "--rebind" in capsys.readouterr().err
    assert main(["review", str(stack), "--rebind", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "rebound to" in out and "2 curated" in out
    assert main(["review", str(stack), "--quiet"]) == 0
    assert "2 curated" in capsys.readouterr().out
    assert _meta(folder)["fingerprint"] == stack_fingerprint(now)
