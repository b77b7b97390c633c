"""Screenshots of the Rib Segmentation widget for docs/widget.md (run under Xvfb on a CPU).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py

Opens napari with the widget and the linear sample, segments it with the bundled model the widget
selects by default (the best test Dice on its card), "corrects" a few frames by copying the
sample's ground-truth ribs into them as a user painting would, marks them curated, runs the default
fine-tune in the background process, and saves ``docs/img/widget_<section>.png`` for load, segment, review and
finetune plus ``widget_overview.png`` (the whole window). Models and review projects go to a
temporary folder: nothing in the user's folders is touched.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _pump(until: Callable[[], bool], timeout_s: float) -> None:
    """Run the Qt event loop until ``until()`` holds (or time runs out)."""
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout_s
    while not until():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting after {timeout_s:.0f} s")
        QApplication.processEvents()
        time.sleep(0.02)
    for _ in range(10):  # let layouts and the canvas settle
        QApplication.processEvents()
        time.sleep(0.02)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix="ribseg-screens-"))
    os.environ["RIBSEG_MODEL_DIR"] = str(tmp / "models")
    os.environ["RIBSEG_CONFIG_DIR"] = str(tmp / "config")

    # napari's own settings go to the scratch folder too, so the change below stays there.
    os.environ["NAPARI_CONFIG"] = str(tmp / "napari" / "settings.yaml")
    import napari
    from napari.settings import get_settings

    # napari's PyQt5 deprecation warning would otherwise sit as a toast on top of the canvas.
    get_settings().application.gui_notification_level = "error"

    from napari_ribseg.core.stack import FrameStatus

    t0 = time.perf_counter()

    viewer = napari.Viewer(title="napari-ribseg", show=True)
    viewer.window.resize(1500, 950)
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-ribseg", "Rib Segmentation")
    widget.load_sample("linear")
    ground_truth = next(layer for layer in viewer.layers if "ground truth" in layer.name)
    ground_truth.visible = False
    print(f"model: {widget.segment_section.current_model().name}")
    widget.segment_section.fill_holes_check.setChecked(True)
    widget.segment_section.min_size_spin.setValue(20)

    def grab(section: str, tab: object) -> None:
        widget.tabs.setCurrentWidget(tab)
        _pump(lambda: True, 1)
        path = args.out / f"widget_{section}.png"
        widget.grab().save(str(path))
        print(f"saved {path}")

    grab("load", widget.load_section)

    widget.segment("all")
    _pump(lambda: widget.segment_section.worker is None, 300)
    widget.segment_section.show_prob_check.setChecked(False)
    grab("segment", widget.segment_section)

    session = widget.session
    project = session.project
    # A short review: "correct" some frames to the true ribs, curate them, reject one.
    labels = session.labels_layer
    truth = np.asarray(ground_truth.data)
    for frame in (0, 1, 2, 3, 5, 6, 8):
        project.labels[frame] = truth[frame]
        widget.set_status(frame, FrameStatus.CURATED)
    widget.set_status(7, FrameStatus.REJECTED)
    labels.refresh()
    session.go_to(3)
    viewer.layers.selection.active = labels
    viewer.reset_view()
    grab("review", widget.review_section)

    overview = args.out / "widget_overview.png"
    viewer.screenshot(str(overview), canvas_only=False)
    print(f"saved {overview}")

    # The one-click path: the fine-tune tab's defaults, as a new user leaves them.
    section = widget.finetune_section
    section.start()
    _pump(lambda: section.job is None, 600)
    grab("finetune", section)

    # The viewer is closed without a Qt event loop ever having run: save and quit.
    widget.save_project()
    viewer.close()
    print(f"done in {time.perf_counter() - t0:.0f} s; scratch folder {tmp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
