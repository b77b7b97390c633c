"""What following napari's undo and redo costs the ribs layer's redraws.

    OMP_NUM_THREADS=1 python benchmarks/bench_stroke_history.py [--frames 100] [--size 820 1124]

A napari Labels layer (no viewer) gets ``--strokes`` mouse-like strokes (brush 15, 100 dabs each,
a third of them erasing), each told to a ``StrokeHistory`` as the widget tells it. Then timed
(median of ``--repeats``): ``settle`` on a redraw with nothing undone (every redraw and slider
step pays it), after five undos (or redos), ``painted`` on a new stroke's paint event (the
strokes' pixels gathered again) and ``settle`` on the redraw after it; napari's own undo and paint
are not timed. Single-threaded, no GUI.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from bench_save import timed


def main() -> None:
    from napari.layers import Labels

    from napari_ribseg._widgets._session import StrokeHistory

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--size", type=int, nargs=2, default=(820, 1124))
    parser.add_argument("--strokes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    layer = Labels(np.zeros((args.frames, *args.size), np.uint8))
    history = StrokeHistory()
    paint_times: list[float] = []

    def on_paint(event) -> None:
        start = time.perf_counter()
        history.painted(event.value, {0}, layer.data)
        paint_times.append(time.perf_counter() - start)

    layer.events.paint.connect(on_paint)
    layer.brush_size = 15
    for s in range(args.strokes):
        with (
            layer.block_history()
        ):  # one undo item, its paint event after the write: a mouse stroke
            for x in range(100, 400, 3):
                layer.paint((s % args.frames, 300 + s, x), 1 if s % 3 else 0, refresh=False)
    history.settle(layer.data)
    pixels = len(history._pixels)
    idle = timed(lambda: history.settle(layer.data), args.repeats)

    def settle_after(change) -> float:
        """Median time of the redraw's ``settle`` after ``change`` (napari's own work untimed)."""
        times = []
        for _ in range(args.repeats):
            change()
            start = time.perf_counter()
            history.settle(layer.data)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    def undos_or_redos() -> None:
        for _ in range(5):
            layer.undo() if history.in_effect == len(history._items) else layer.redo()

    def stroke_undone_or_painted() -> None:
        if history.in_effect == len(history._items):
            layer.undo()
            history.settle(layer.data)
        with layer.block_history():
            layer.paint((0, 700, 700), 1, refresh=False)

    undo = settle_after(undos_or_redos)
    paint_times.clear()
    first = settle_after(stroke_undone_or_painted)
    paint = statistics.median(paint_times)
    print(
        f"{args.frames} frames of {args.size[0]} x {args.size[1]}, {args.strokes} strokes "
        f"({pixels} pixels): redraw {idle * 1e3:.1f} ms, after five undos {undo * 1e3:.1f} ms, "
        f"a stroke's paint event {paint * 1e3:.1f} ms, the redraw after it {first * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
