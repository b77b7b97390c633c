"""What a refresh of the ribs layer recounts: the frames an undo or redo wrote, never every frame
painted so far (a long review made each refresh slower), and the counts stay exact."""

from __future__ import annotations

import numpy as np
import pytest

from napari_ribseg.core.project import ReviewProject
from napari_ribseg.core.stack import FrameStatus

N_PAINTED = 10


@pytest.fixture
def long_stack(tmp_path) -> str:
    """A 12-frame 64x64 stack (no model run: every label a hand edit)."""
    path = tmp_path / "long.npy"
    np.save(path, np.random.default_rng(0).random((12, 64, 64), dtype=np.float32))
    return str(path)


@pytest.fixture
def recounted(monkeypatch) -> list:
    """The frames each per-frame count was asked for (``None``: every frame), in call order."""
    calls: list = []
    original = ReviewProject.changed_pixels_of

    def spy(self, frames):
        calls.append(None if frames is None else [int(f) for f in np.atleast_1d(frames)])
        return original(self, frames)

    monkeypatch.setattr(ReviewProject, "changed_pixels_of", spy)
    return calls


def _frames_recounted(calls: list) -> list[int]:
    assert None not in calls, "a refresh recounted every frame"
    return sorted(f for call in calls for f in call)


def _assert_counts_shown(widget) -> None:
    project = widget.session.project
    changed = project.changed_pixels_of(None)
    table = widget.review_section.table
    shown = [table.item(f, 3).text() for f in range(project.n_frames)]
    assert shown == [str(int(c)) for c in changed]
    summary = widget.review_section.summary_label.text()
    assert f"{int(changed.sum())} pixels corrected by hand" in summary


def test_a_refresh_recounts_only_the_frames_its_undo_wrote(docked, long_stack, recounted):
    viewer, widget = docked
    widget.load(long_stack)
    widget.tabs.setCurrentWidget(widget.review_section)
    ribs = widget.session.labels_layer
    ribs.brush_size = 5
    for frame in range(N_PAINTED):  # one stroke on each of frames 0-9
        viewer.dims.set_current_step(0, frame)
        ribs.paint((frame, 40, 30), 1)
    widget.set_status(8, FrameStatus.CURATED)
    widget.set_status(9, FrameStatus.CURATED)
    viewer.dims.set_current_step(0, 11)  # a frame never painted
    project = widget.session.project
    disc = int(project.changed_pixels_of([9])[0])
    assert disc > 0
    _assert_counts_shown(widget)

    recounted.clear()
    ribs.refresh()  # a redraw (slicing): no stroke moved, only the frame shown
    assert _frames_recounted(recounted) == [11]

    # Ctrl-Z on frame 11 undoes the stroke on curated frame 9: that frame and the one shown are
    # recounted (every painted frame was: 11 frames, growing with the review).
    recounted.clear()
    ribs.undo()
    assert _frames_recounted(recounted) == [9, 11]
    assert project.changed_pixels_of([9])[0] == 0
    _assert_counts_shown(widget)
    assert widget.finetune_section.reason_label.text().startswith("2 curated frames ready.")

    recounted.clear()
    ribs.undo()  # the stroke on frame 8: now neither curated frame marks a rib
    assert _frames_recounted(recounted) == [8, 11]
    _assert_counts_shown(widget)
    reason = widget.finetune_section.reason_label.text()
    assert reason.startswith("None of the 2 curated frames marks a rib"), reason

    recounted.clear()
    ribs.redo()
    assert _frames_recounted(recounted) == [8, 11]
    _assert_counts_shown(widget)
    assert int(project.changed_pixels_of([8])[0]) == disc
    assert int(project.changed_pixels.sum()) == (N_PAINTED - 1) * disc


def test_undos_while_the_ribs_layer_was_hidden_are_all_counted(docked, long_stack, recounted):
    """A hidden layer is not redrawn on undo: the next redraw recounts every stroke taken back."""
    viewer, widget = docked
    widget.load(long_stack)
    widget.tabs.setCurrentWidget(widget.review_section)
    ribs = widget.session.labels_layer
    ribs.brush_size = 5
    for frame in (2, 5, 7):
        viewer.dims.set_current_step(0, frame)
        ribs.paint((frame, 40, 30), 1)
    viewer.dims.set_current_step(0, 0)
    ribs.visible = False
    ribs.undo()
    ribs.undo()
    recounted.clear()
    ribs.visible = True
    assert _frames_recounted(recounted) == [0, 5, 7]
    _assert_counts_shown(widget)
    assert np.flatnonzero(widget.session.project.changed_pixels).tolist() == [2]


def test_a_stroke_overwritten_by_a_script_recounts_every_frame(docked, long_stack, recounted):
    """A stroke whose pixels hold neither what it wrote nor what it replaced (a script wrote
    there): which frames changed is unknown, so every frame is recounted. Once: every later
    redraw recounted every frame too (each slider step counted the whole stack) until the stroke
    left napari's history; the next redraw now recounts the frame on screen, and a redo over the
    script's pixels its stroke's frame."""
    viewer, widget = docked
    widget.load(long_stack)
    widget.tabs.setCurrentWidget(widget.review_section)
    ribs = widget.session.labels_layer
    ribs.brush_size = 5
    viewer.dims.set_current_step(0, 3)
    ribs.paint((3, 40, 30), 1)
    viewer.dims.set_current_step(0, 0)
    ribs.undo()
    ribs.data[3, 38:43, 28:33] = 1  # the undone stroke, half written again
    ribs.data[3, 40:43, 28:33] = 0
    recounted.clear()
    ribs.refresh()
    assert None in recounted
    _assert_counts_shown(widget)
    recounted.clear()
    ribs.refresh()
    assert _frames_recounted(recounted) == [0]
    recounted.clear()
    ribs.redo()
    assert _frames_recounted(recounted) == [0, 3]
    _assert_counts_shown(widget)


def test_the_undo_depth_is_that_of_napari_labels():
    from napari.layers import Labels

    from napari_ribseg._widgets._session import UNDO_DEPTH

    assert Labels._history_limit == UNDO_DEPTH


def test_an_undo_and_redo_of_an_erase_over_a_stroke_names_its_frames():
    """A stroke, then an erase of part of it (and a pixel on frame 2): undo and redo of the
    erase. After the redo the first stroke's erased pixel holds neither what it wrote nor what
    it replaced, and StrokeHistory.settle gave None (every frame recounted) for that refresh and
    every later one, each slider step counting the whole stack; it now names the erase's frames
    once, then nothing."""
    from napari_ribseg._widgets._session import StrokeHistory

    data = np.zeros((3, 8, 8), np.uint8)
    stroke = [((np.array([1, 1]), np.array([2, 3]), np.array([2, 2])), np.zeros(2, np.uint8), 1)]
    erase = [
        ((np.array([1]), np.array([3]), np.array([2])), np.ones(1, np.uint8), 0),
        ((np.array([2]), np.array([0]), np.array([0])), np.zeros(1, np.uint8), 1),
    ]

    def play(item, undoing=False):
        for indices, before, after in reversed(item) if undoing else item:
            data[indices] = before if undoing else after

    history = StrokeHistory()
    play(stroke)
    history.painted(stroke, {1})
    play(erase)
    history.painted(erase, {1, 2})
    assert history.settle(data) == set()
    play(erase, undoing=True)
    assert history.settle(data) == {1, 2}
    play(erase)  # redo
    assert history.settle(data) == {1, 2}
    assert history.settle(data) == set()  # a slider step: no stroke moved
    play(erase, undoing=True)
    assert history.settle(data) == {1, 2}
    play(stroke, undoing=True)
    assert history.settle(data) == {1}
    play(stroke)
    assert history.settle(data) == {1}
    data[1, 2, 2] = 0  # a script's edit of the stroke in effect
    assert history.settle(data) is None
    assert history.settle(data) == set()  # followed from the labels as they are now
    play(stroke, undoing=True)
    assert history.settle(data) == {1}
    play(erase)  # napari could not redo it now (not the next to redo): no number gives this
    assert history.settle(data) is None


def test_an_undo_and_redo_of_a_ball_over_an_erased_spot_recount_the_balls_frames(
    docked, long_stack, recounted
):
    """A disc, an erase of its centre, then a 3-D ball over that spot (the erase's pixels lie inside
    the ball's). A single paint() sends its paint event before it writes: the redraw in that event
    filed the ball as undone, and once the ball was written the erase read as undone too, so the
    next undo recounted frame 3 only and the counts of the ball's frames 1, 2, 4 and 5 went stale.
    Undo and redo now recount the ball's frames, and the next undos follow napari's order."""
    viewer, widget = docked
    widget.load(long_stack)
    widget.tabs.setCurrentWidget(widget.review_section)
    ribs = widget.session.labels_layer
    project = widget.session.project
    viewer.dims.set_current_step(0, 3)
    ribs.brush_size = 7
    ribs.paint((3, 40, 30), 1)
    ribs.brush_size = 3
    ribs.paint((3, 40, 30), 0)  # the erase: inside the disc
    ribs.n_edit_dimensions = 3
    ribs.brush_size = 5
    ribs.paint((3, 40, 30), 1)  # the ball: frame 3's erased spot and discs on frames 1-5
    ribs.n_edit_dimensions = 2
    viewer.dims.set_current_step(0, 0)
    ball = project.changed_pixels_of([1, 2, 4, 5]).tolist()
    assert min(ball) > 0

    recounted.clear()
    ribs.undo()
    assert _frames_recounted(recounted) == [0, 1, 2, 3, 4, 5]
    assert project.changed_pixels_of([1, 2, 4, 5]).tolist() == [0, 0, 0, 0]
    _assert_counts_shown(widget)

    recounted.clear()
    ribs.redo()
    assert _frames_recounted(recounted) == [0, 1, 2, 3, 4, 5]
    assert project.changed_pixels_of([1, 2, 4, 5]).tolist() == ball
    _assert_counts_shown(widget)

    # The history follows napari's: the next undo takes the ball back, not the erase.
    recounted.clear()
    ribs.undo()
    assert _frames_recounted(recounted) == [0, 1, 2, 3, 4, 5]
    _assert_counts_shown(widget)
    recounted.clear()
    ribs.undo()  # the erase
    assert _frames_recounted(recounted) == [0, 3]
    _assert_counts_shown(widget)


@pytest.mark.parametrize("mouse", [False, True])
def test_two_undos_while_hidden_that_leave_the_last_stroke_looking_in_effect_are_counted(
    docked, long_stack, recounted, mouse
):
    """A wide disc, an erase of all of it, then a smaller disc inside: two undos while the ribs
    layer is hidden (no redraw between them) bring the wide disc back, and the small disc's pixels
    hold what it wrote. StrokeHistory.settle took that for "nothing moved" and frame 3, whose
    labels changed, was recounted by nobody; it is now recounted when the layer is shown. With
    single paint() calls (paint event before the write) and mouse-like strokes (event after)."""
    viewer, widget = docked

    def paint(label: int) -> None:
        if mouse:
            with ribs.block_history():
                ribs.paint((3, 40, 30), label)
        else:
            ribs.paint((3, 40, 30), label)

    widget.load(long_stack)
    widget.tabs.setCurrentWidget(widget.review_section)
    ribs = widget.session.labels_layer
    project = widget.session.project
    viewer.dims.set_current_step(0, 3)
    ribs.brush_size = 9
    paint(1)
    wide = int(project.changed_pixels_of([3])[0])
    paint(0)
    ribs.brush_size = 5
    paint(1)
    small = int(project.changed_pixels_of([3])[0])
    assert 0 < small < wide
    viewer.dims.set_current_step(0, 0)
    ribs.visible = False
    ribs.undo()
    ribs.undo()
    recounted.clear()
    ribs.visible = True
    assert _frames_recounted(recounted) == [0, 3]
    assert int(project.changed_pixels_of([3])[0]) == wide
    _assert_counts_shown(widget)
    ribs.redo()  # the erase: napari's redo, and the history's, hold the erase and the small disc
    assert not project.labels[3].any()
    _assert_counts_shown(widget)
    ribs.redo()
    assert int(project.changed_pixels_of([3])[0]) == small
    _assert_counts_shown(widget)


def test_a_stroke_painted_after_an_undo_no_redraw_reported_reports_the_undo_first(
    docked, long_stack, recounted
):
    """An undo while the ribs layer is hidden (no redraw), then a stroke on another frame: napari
    drops the undone stroke, but StrokeHistory kept it in effect, so the undo's frame (5) was
    reported by nobody (a quick save skipped it, its count went stale) until the new stroke was
    undone, when frame 5 was recounted for nothing. The stroke's paint event now reports the undo
    first, and its own undo recounts only its frame."""
    viewer, widget = docked
    widget.load(long_stack)
    widget.tabs.setCurrentWidget(widget.review_section)
    ribs = widget.session.labels_layer
    project = widget.session.project
    ribs.brush_size = 5
    for frame in (2, 5):
        viewer.dims.set_current_step(0, frame)
        ribs.paint((frame, 40, 30), 1)
    viewer.dims.set_current_step(0, 3)
    ribs.visible = False
    ribs.undo()  # the stroke on frame 5
    recounted.clear()
    ribs.paint((3, 20, 20), 1)
    assert 5 in _frames_recounted(recounted)
    viewer.dims.set_current_step(0, 0)  # its quick save reads the frames reported edited
    np.testing.assert_array_equal(ReviewProject.load(project.folder).labels, project.labels)
    ribs.visible = True
    _assert_counts_shown(widget)
    recounted.clear()
    ribs.undo()  # the stroke on frame 3
    assert _frames_recounted(recounted) == [0, 3]
    _assert_counts_shown(widget)


@pytest.mark.parametrize("scripts", [0.0, 0.05])
def test_any_strokes_undos_and_redos_report_exactly_the_frames_that_changed(scripts):
    """Random strokes (single paints, whose paint event comes before the write, and mouse-like
    strokes, whose event comes after; brush and 3-D ball; paint and erase over a few spots, so
    strokes lie inside others) with undos and redos, read every few operations as a redraw (often
    several undos at once, as while the ribs layer is hidden). Every frame whose labels changed
    since the last redraw is reported, by a stroke's own frames, by its paint event (the undos
    before it) or by the redraw; a redraw after undos and redos alone names exactly those
    frames (redraws while a mouse stroke is under way, its pixels partly written and no paint
    event yet, do not misplace it); with scripts' edits now and then (reported by the script), which frames changed is
    unknown at most once per edit. The previous StrokeHistory named extra frames on this sequence."""
    from napari.layers import Labels

    from napari_ribseg._widgets._session import StrokeHistory

    rng = np.random.default_rng(7)
    layer = Labels(np.zeros((5, 12, 12), np.uint8))
    history = StrokeHistory()
    told: set[int] = set()
    painted = False

    def on_paint(event) -> None:
        nonlocal painted, unknown
        painted = True
        frames = set()
        for atom in event.value:
            start, stop, _ = atom.slice_key[0].indices(5)
            frames.update(range(start, stop))
        told.update(frames)
        moved = history.painted(event.value, frames, layer.data)
        told.update(range(5) if moved is None else moved)
        unknown += moved is None

    layer.events.paint.connect(on_paint)
    last = layer.data.copy()
    spots = [(3, 4), (4, 5), (8, 7)]
    redraws = moves = scripted = unknown = 0
    for _ in range(600):
        op = rng.choice(
            ["paint", "stroke", "undo", "redo", "script"],
            p=[0.2, 0.2, 0.35 - scripts, 0.25, scripts],
        )
        if op in ("paint", "stroke"):
            layer.n_edit_dimensions = int(rng.choice([2, 3]))
            layer.brush_size = int(rng.choice([1, 3, 5]))
            label = int(rng.integers(0, 2))
            frame = int(rng.integers(0, 5))
            y, x = spots[int(rng.integers(0, len(spots)))]
            if op == "paint":
                layer.paint((frame, y, x), label)
            else:
                with layer.block_history():
                    for dx in range(int(rng.integers(1, 4))):
                        layer.paint((frame, y, x + dx), label, refresh=False)
                        if rng.random() < 0.3:  # a redraw while the stroke is under way
                            moved = history.settle(layer.data)
                            told.update(range(5) if moved is None else moved)
                            painted = True
        elif op == "undo":
            layer.undo()
        elif op == "redo":
            layer.redo()
        else:  # a script's edit, which it reports (mark_edited)
            frame, y, x = (
                int(rng.integers(0, 5)),
                int(rng.integers(2, 10)),
                int(rng.integers(2, 10)),
            )
            layer.data[frame, y, x] = 1 - layer.data[frame, y, x]
            told.add(frame)
            painted, scripted = True, scripted + 1
        if rng.random() < 0.4:  # a redraw
            moved = history.settle(layer.data)
            unknown += moved is None
            painted = painted or moved is None
            moved = set(range(5)) if moved is None else moved
            changed = set(np.flatnonzero((layer.data != last).any(axis=(1, 2))).tolist())
            assert changed <= moved | told
            if not painted:
                assert moved == changed
                moves += bool(moved)
            last, told, painted = layer.data.copy(), set(), False
            redraws += 1
    assert redraws > 150 and moves > 50
    if scripts:
        assert scripted > 20
        assert unknown < scripted  # a script's edit is followed from the next redraw on
    else:
        assert unknown == 0
