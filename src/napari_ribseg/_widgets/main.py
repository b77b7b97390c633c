"""The Rib Segmentation dock widget: four sections (Load, Segment, Review, Fine-tune) in tabs.

The container only builds the sections, hands them one shared :class:`ReviewSession` and forwards a
few calls so scripts and tests can drive the whole flow without clicking: ``load``,
``load_sample``, ``segment``, ``set_status``, ``start_finetune``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QEvent, QSize, Qt, QTimer
from qtpy.QtWidgets import (
    QApplication,
    QLabel,
    QMainWindow,
    QSizePolicy,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from napari_ribseg._widgets._session import ReviewSession
from napari_ribseg._widgets._settings import load_settings
from napari_ribseg._widgets.finetune import FinetuneSection
from napari_ribseg._widgets.load import LoadSection
from napari_ribseg._widgets.review import ReviewSection
from napari_ribseg._widgets.segment import SegmentSection
from napari_ribseg.core.stack import FrameStatus

if TYPE_CHECKING:
    import napari
    from napari.layers import Image


#: Width the dock asks for and the most it takes: napari's default window (about 1200 px wide)
#: keeps at least 60% of its width for the canvas (the dock once took ~600 of 1226 px).
DOCK_WIDTH = 340
DOCK_MAX_WIDTH = 420


class RibSegWidget(QWidget):
    """Load an ultrasound stack, segment its ribs, review and correct them, and fine-tune."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self._shut_down = False
        self._docked = False
        self._window: QWidget | None = None  # the main window it is shown in, once it is
        settings = load_settings()
        self.session = ReviewSession(napari_viewer, settings)
        self.load_section = LoadSection(self.session)
        self.segment_section = SegmentSection(self.session)
        self.review_section = ReviewSection(self.session)
        self.finetune_section = FinetuneSection(self.session)

        self.tabs = QTabWidget()
        self.tabs.addTab(self.load_section, "1 Load")
        self.tabs.addTab(self.segment_section, "2 Segment")
        self.tabs.addTab(self.review_section, "3 Review")
        self.tabs.addTab(self.finetune_section, "4 Fine-tune")
        self.status_line = QLabel("Load a stack or a sample to start.")
        self.status_line.setWordWrap(True)
        self.status_line.setStyleSheet("color: gray;")
        self.tabs.setUsesScrollButtons(True)
        self.tabs.setElideMode(Qt.TextElideMode.ElideRight)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.tabs)
        layout.addWidget(self.status_line)
        self.setMaximumWidth(DOCK_MAX_WIDTH)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)

        # The Segment section lists the models; the Fine-tune section, built after it, catches up.
        self.segment_section.refresh_models()
        self.load_section.image_added.connect(self._on_image_added)
        self.session.saved.connect(self._on_saved)
        self.session.image_bound.connect(self._on_bound)
        self.session.image_renamed.connect(self._on_renamed)
        self.segment_section.finished.connect(self._on_segment_finished)
        self.segment_section.image_chosen.connect(self.load_section.show_stack)
        self.finetune_section.resegment_requested.connect(self._resegment_unreviewed)
        napari_viewer.layers.events.removed.connect(self._on_layer_removed)
        app = QApplication.instance()
        if app is not None:
            # Last chance to save when napari quits without closing the dock first.
            app.aboutToQuit.connect(self.session.autosave)

    # -- forwarding for scripts and tests ------------------------------------------------------
    def load(self, path: str | Path) -> Image | None:
        """Open a stack file or folder and put it under review (errors become notifications)."""
        return self.load_section.load(path)

    def load_sample(self, kind: str = "linear") -> Image | None:
        """Open the simulated ``linear`` or ``convex`` sample cine."""
        return self.load_section.load_sample(kind)

    def segment(self, scope: str = "all") -> Any:
        """Start segmentation of ``current``, ``all`` or ``unreviewed`` frames; returns the worker."""
        return self.segment_section.run(scope)

    def set_status(self, frame: int, status: FrameStatus) -> None:
        """Set a frame's review status (and autosave)."""
        self.session.set_status(frame, status)

    def start_finetune(self) -> bool:
        """Start fine-tuning on the curated frames; returns whether it started."""
        return self.finetune_section.start()

    def save_project(self) -> bool:
        """Save the review project now; returns whether anything was written."""
        return self.session.autosave()

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(DOCK_WIDTH, super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(min(DOCK_WIDTH, super().minimumSizeHint().width()), 0)

    # -- reactions -----------------------------------------------------------------------------
    def _on_segment_finished(self, outcome: str) -> None:
        # The result goes where the user looks (the status line under every tab); only a
        # complete run moves on to reviewing, a cancelled or failed one stays where it was.
        message = self.segment_section.progress_label.text()
        self._run_message = message
        if message:
            self.status_line.setText(message)
        if outcome == "done":
            self.tabs.setCurrentWidget(self.review_section)

    def _on_image_added(self, layer: Image) -> None:
        self.segment_section.select_image(layer)
        self.tabs.setCurrentWidget(self.segment_section)

    def _on_bound(self, restored: bool) -> None:
        s = self.session
        if s.image_layer is None or s.project is None:
            self.status_line.setText("Load a stack or a sample to start.")
            return
        self._run_message = ""
        what = "Restored the review of" if restored else "Reviewing"
        text = f"{what} '{s.image_layer.name}' ({s.project.n_frames} frames)."
        if s.project.adopted_from:  # a renamed stack: its review was found by content
            text += f" Taken over from {Path(s.project.adopted_from).name} (same stack content)."
        if s.project.rebound_from:  # the file is unchanged; the reader's rules for it changed
            text += (
                " The file is unchanged but now reads differently (the reader's rules changed);"
                " the review is bound to the new reading at the next save."
            )
        self.status_line.setText(text)
        self.status_line.setToolTip(str(s.project.folder))

    def _on_renamed(self, old: str, new: str) -> None:
        # The stack is named in quotes where the status line names it ("Reviewing 'clip01' ...").
        self.status_line.setText(self.status_line.text().replace(f"'{old}'", f"'{new}'"))

    def _on_saved(self, message: str) -> None:
        # The run's outcome stays in view; the save note is added after it.
        run = getattr(self, "_run_message", "")
        self.status_line.setText(f"{run} · {message}" if run else message)
        if self.session.project is not None:
            self.status_line.setToolTip(str(self.session.project.folder))

    def _on_layer_removed(self, event: Any) -> None:
        from napari_ribseg._widgets.region import forget_region_of

        self.session.forget_layer(event.value)
        forget_region_of(self.viewer, event.value)

    def _resegment_unreviewed(self) -> None:
        self.tabs.setCurrentWidget(self.segment_section)
        self.segment_section.run("unreviewed")

    def hideEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        # The dock is hidden when napari closes or the user closes the dock: save then, because
        # child widgets get no closeEvent of their own.
        with contextlib.suppress(RuntimeError):
            self.session.autosave()
        super().hideEvent(event)

    def shutdown(self) -> None:
        """The widget goes away: save, stop the jobs (a fine-tune child too), release the review
        (its lock) and the viewer's events, so a dock opened later starts clean. Idempotent."""
        if self._shut_down:
            return
        self._shut_down = True
        for step in (
            self.finetune_section.shutdown,
            self.segment_section.shutdown,
            self.review_section.shutdown,
            self.session.close,
            lambda: self.viewer.layers.events.removed.disconnect(self._on_layer_removed),
        ):
            with contextlib.suppress(RuntimeError):  # one deleted Qt part must not stop the rest
                step()
        self._window = None  # no reference keeps a closed napari window alive

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        self.shutdown()
        super().closeEvent(event)

    def event(self, event: Any) -> bool:
        # napari's dock "x" (remove_dock_widget) only takes the widget out of its dock
        # (setParent(None)); napari closing its window sends the widget nothing. Both end it here:
        # the first as the parent goes, the second through a filter on the window it is shown in.
        kind = event.type()
        if kind == QEvent.Type.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif self._docked:
                self.shutdown()
        elif kind == QEvent.Type.Show:
            # napari's main window only: a floating dock is a window of its own, hidden on close
            # and shown again from the menu.
            window = self.window()
            if isinstance(window, QMainWindow) and window is not self._window:
                window.installEventFilter(self)
                self._window = window
        return super().event(event)

    def eventFilter(self, watched: Any, event: Any) -> bool:  # noqa: N802 (Qt's name)
        if watched is self._window and event.type() == QEvent.Type.Close:
            # napari may ask first and keep the window; ended only once it has really closed.
            QTimer.singleShot(0, self._end_if_window_closed)
        return False

    def _end_if_window_closed(self) -> None:
        with contextlib.suppress(RuntimeError):  # the window may already be deleted
            if self._window is not None and self._window.isVisible():
                return
        self.shutdown()
