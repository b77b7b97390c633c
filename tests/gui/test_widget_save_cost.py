"""The save on every change of frame: it checksummed every frame's labels (and hashed every
probability) whether or not anything changed, so each step of the slider on a long stack took as long
as reading the stack. It now reads the frames the widget reported edited (strokes, undos and redos),
and what the user painted or undid is still saved."""

from __future__ import annotations

import types
import zlib

import numpy as np
import pytest

import napari_ribseg.core.project as project_module
from napari_ribseg.core.project import ReviewProject
from napari_ribseg.core.stack import FrameStatus

N, SIDE = 12, 64
FRAME = SIDE * SIDE


@pytest.fixture
def long_stack(tmp_path) -> str:
    path = tmp_path / "long.npy"
    np.save(path, np.random.default_rng(0).random((N, SIDE, SIDE), dtype=np.float32))
    return str(path)


@pytest.fixture
def crc_bytes(monkeypatch) -> list[int]:
    """Bytes of labels checksummed so far (one entry per CRC-32)."""
    seen: list[int] = []

    def crc32(data, value=0):
        seen.append(memoryview(data).nbytes)
        return zlib.crc32(data, value)

    monkeypatch.setattr(project_module, "zlib", types.SimpleNamespace(crc32=crc32))
    return seen


def _on_disk(widget) -> np.ndarray:
    return ReviewProject.load(widget.session.project.folder).labels


def test_a_step_of_the_slider_reads_only_the_frames_edited(docked, long_stack, crc_bytes):
    viewer, widget = docked
    widget.load(long_stack)
    ribs = widget.session.labels_layer
    project = widget.session.project
    viewer.dims.set_current_step(0, 1)
    crc_bytes.clear()
    for frame in (2, 3, 4, 5):  # nothing changed: nothing read but the frame on screen
        viewer.dims.set_current_step(0, frame)
    assert sum(crc_bytes) <= 4 * FRAME
    ribs.brush_size = 5
    ribs.paint((5, 40, 30), 1)
    crc_bytes.clear()
    viewer.dims.set_current_step(0, 6)
    assert sum(crc_bytes) <= 2 * FRAME  # the frame painted and the one on screen
    np.testing.assert_array_equal(_on_disk(widget), project.labels)
    assert project.changed_pixels[5] > 0


def test_an_undo_while_the_ribs_layer_was_hidden_is_saved_on_the_next_step(
    docked, long_stack, crc_bytes
):
    """napari redraws no hidden layer, so the undo is reported by nobody until it is shown: the
    step's save reads the strokes first."""
    viewer, widget = docked
    widget.load(long_stack)
    ribs = widget.session.labels_layer
    project = widget.session.project
    ribs.brush_size = 5
    viewer.dims.set_current_step(0, 2)
    ribs.paint((2, 40, 30), 1)
    viewer.dims.set_current_step(0, 3)
    assert _on_disk(widget)[2].any()
    ribs.visible = False
    ribs.undo()
    assert not project.labels[2].any()
    crc_bytes.clear()
    viewer.dims.set_current_step(0, 4)
    assert sum(crc_bytes) <= 2 * FRAME  # the frame undone and the one on screen
    assert not _on_disk(widget)[2].any()


def test_an_edit_nobody_reported_is_saved_while_the_user_does_nothing(
    docked, long_stack, monkeypatch
):
    """Only a step reached the periodic exact check: labels a script wrote in place without
    mark_edited stayed unsaved until close while nobody stepped. An idle timer now asks the core,
    which saves once its check of every frame is due."""
    import napari_ribseg.core.session as session_module
    from napari_ribseg.core.session import ReviewSession

    now = [1_000.0]
    monkeypatch.setattr(ReviewSession, "clock", staticmethod(lambda: now[0]))
    _viewer, widget = docked
    widget.load(long_stack)
    session = widget.session
    timer = session._idle_timer
    assert timer.isActive()
    assert timer.interval() == session_module.IDLE_TICK_S * 1000
    session.set_status(3, FrameStatus.REJECTED)  # saved (quick save of a change of status)
    assert ReviewProject.load(session.project.folder).statuses[3] == FrameStatus.REJECTED
    session.project.labels[7, 10, 10] = 1  # a script, nobody told
    timer.timeout.emit()  # a tick before the check is due: nothing saved
    assert not _on_disk(widget)[7, 10, 10]
    now[0] += session_module.EXACT_CHECK_EVERY_S
    timer.timeout.emit()  # due: saved without a step
    assert _on_disk(widget)[7, 10, 10] == 1
    widget.session.close()
    assert not timer.isActive()  # no review, no tick
