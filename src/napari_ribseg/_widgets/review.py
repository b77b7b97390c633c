"""Review section: per-frame status table, review shortcuts, and where the review is saved.

Corrections use napari's own Labels tools on the ``<image> ribs`` layer; this section only records
what the user decided about each frame. Shortcuts are bound on the viewer so they work whichever
layer is selected (a layer's own binding of the same key wins while that layer is active).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QBrush, QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_ribseg._widgets._session import ReviewSession, notify_info
from napari_ribseg.core.stack import FrameStatus

#: Key -> (action name, label). Shift keeps them clear of the Labels layer's one-letter tools.
SHORTCUTS = {
    "Shift-C": ("curate", "Mark curated"),
    "Shift-R": ("reject", "Reject"),
    "Shift-N": ("next_unreviewed", "Next unreviewed"),
    "Shift-L": ("least_confident", "Least confident"),
}
#: What a review key or button says when no stack is under review (it did nothing, silently).
NO_STACK = (
    "No stack under review: load a stack or a sample (Load section) or pick one in Segment -> "
    "Image; the review keys act on its frames."
)
STATUS_COLOURS = {
    FrameStatus.UNREVIEWED: None,
    FrameStatus.CURATED: QColor(46, 160, 67, 110),
    FrameStatus.REJECTED: QColor(218, 54, 51, 110),
}
COLUMNS = ("Frame", "Status", "Uncertainty", "Changed px")


class ReviewSection(QWidget):
    """The frame table and the buttons (and keys) that review frames."""

    def __init__(self, session: ReviewSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self._bound_keys: list[str] = []
        #: Changed-pixel counts as last shown, refreshed per row while painting.
        self._changed: np.ndarray | None = None
        self._last_row: int | None = None
        layout = QVBoxLayout(self)
        self.summary_label = QLabel("No stack under review.")
        self.summary_label.setWordWrap(True)
        layout.addWidget(self.summary_label)

        grid = QGridLayout()
        self.curate_btn = QPushButton("Curate  (Shift-C)")
        self.curate_btn.setToolTip(
            "Mark this frame curated: its mask is right (after your corrections). Shift-C"
        )
        self.reject_btn = QPushButton("Reject  (Shift-R)")
        self.reject_btn.setToolTip("This frame is unusable; it is left out of fine-tuning. Shift-R")
        # Short labels: the dock is narrow (the canvas keeps most of the window); the shortcuts
        # are in the tooltips.
        self.next_btn = QPushButton("Next unreviewed")
        self.next_btn.setToolTip("Jump to the next unreviewed frame. Shift-N")
        self.least_btn = QPushButton("Least confident")
        self.least_btn.setToolTip(
            "Jump to the unreviewed frame with the highest uncertainty (share of the rib-like area "
            "the model hedged on; see the Uncertainty column). Shift-L"
        )
        self.unreview_btn = QPushButton("Unreview")
        self.revert_btn = QPushButton("Revert edits")
        self.revert_btn.setToolTip("Revert to the model's mask: undo every hand edit on this frame")
        grid.addWidget(self.curate_btn, 0, 0)
        grid.addWidget(self.reject_btn, 0, 1)
        grid.addWidget(self.next_btn, 1, 0)
        grid.addWidget(self.least_btn, 1, 1)
        grid.addWidget(self.unreview_btn, 2, 0)
        grid.addWidget(self.revert_btn, 2, 1)
        layout.addLayout(grid)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setToolTip("Click a row to show that frame")
        layout.addWidget(self.table, 1)

        self.curate_btn.clicked.connect(lambda: self.mark(FrameStatus.CURATED))
        self.reject_btn.clicked.connect(lambda: self.mark(FrameStatus.REJECTED))
        self.unreview_btn.clicked.connect(lambda: self.mark(FrameStatus.UNREVIEWED))
        self.next_btn.clicked.connect(self.next_unreviewed)
        self.least_btn.clicked.connect(self.least_confident)
        self.revert_btn.clicked.connect(self.revert_frame)
        self.table.cellClicked.connect(lambda row, _col: self.session.go_to(row))
        session.image_bound.connect(lambda _restored: self.refresh())
        session.labels_updated.connect(self._refresh_rows)
        session.statuses_changed.connect(self.refresh)
        session.viewer.dims.events.current_step.connect(self._follow_frame)
        self.bind_keys()
        self.refresh()

    # -- shortcuts -----------------------------------------------------------------------------
    def bind_keys(self) -> None:
        """Bind the review shortcuts on the viewer (replacing earlier bindings of these keys)."""
        actions = {
            "curate": lambda: self.mark(FrameStatus.CURATED),
            "reject": lambda: self.mark(FrameStatus.REJECTED),
            "next_unreviewed": self.next_unreviewed,
            "least_confident": self.least_confident,
        }
        for key, (action, _label) in SHORTCUTS.items():
            callback = actions[action]

            def handler(viewer: Any, _callback=callback) -> None:
                _callback()

            self.session.viewer.bind_key(key, handler, overwrite=True)
            self._bound_keys.append(key)

    def unbind_keys(self) -> None:
        for key in self._bound_keys:
            with contextlib.suppress(Exception):  # the viewer may already be gone
                self.session.viewer.bind_key(key, None)
        self._bound_keys.clear()

    def shutdown(self) -> None:
        """The widget is going away: free the keys and stop following the viewer's frame."""
        self.unbind_keys()
        with contextlib.suppress(Exception):
            self.session.viewer.dims.events.current_step.disconnect(self._follow_frame)

    # -- actions -------------------------------------------------------------------------------
    def mark(self, status: FrameStatus, frame: int | None = None) -> None:
        """Set the status of ``frame`` (default: the frame shown); saved at once."""
        if self.session.project is None:
            notify_info(NO_STACK)
            return
        frame = self.session.frame_on_screen() if frame is None else frame
        if frame is None:
            notify_info(self.session.not_on_screen())
            return
        self.session.set_status(frame, status)

    def next_unreviewed(self) -> int | None:
        project = self.session.project
        if project is None:
            notify_info(NO_STACK)
            return None
        frame = project.next_unreviewed(self.session.current_frame())
        if frame is None:
            notify_info("Every frame has been reviewed.")
        else:
            self.session.go_to(frame)
        return frame

    def least_confident(self) -> int | None:
        core = self.session.core
        if core is None:
            notify_info(NO_STACK)
            return None
        frame = core.least_confident(exclude=self.session.current_frame())
        if frame is None:
            notify_info("Every frame has been reviewed.")
        else:
            self.session.go_to(frame)
        return frame

    def revert_frame(self) -> None:
        s = self.session
        if s.core is None:
            notify_info(NO_STACK)
            return
        frame = s.frame_on_screen()
        if frame is None:
            notify_info(s.not_on_screen())
            return
        s.core.revert(frame)
        s.autosave(check_all=False)

    # -- table ---------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Rebuild the whole table and the summary from the project."""
        project = self.session.project
        if project is None:
            self.table.setRowCount(0)
            self.summary_label.setText("No stack under review.")
            return
        self.table.setUpdatesEnabled(False)
        if self.table.rowCount() != project.n_frames:
            self.table.setRowCount(project.n_frames)
        self._refresh_rows([])
        self.table.setUpdatesEnabled(True)
        self._follow_frame()

    def _refresh_rows(self, frames: list[int]) -> None:
        project = self.session.project
        if project is None:
            return
        if self.table.rowCount() != project.n_frames:
            self.table.setRowCount(project.n_frames)
            frames = []
        rows = list(frames) if frames else list(range(project.n_frames))
        if not frames or self._changed is None or self._changed.size != project.n_frames:
            self._changed = project.changed_pixels
        else:
            # Only the frames named changed: count just those (one frame while painting).
            self._changed[rows] = project.changed_pixels_of(rows)
        changed = self._changed
        uncertainty = self.session.core.uncertainty
        for row in rows:
            status = FrameStatus(int(project.statuses[row]))
            unc = float(uncertainty[row])
            values = (
                str(row),
                status.name.lower(),
                "–" if math.isnan(unc) else f"{unc:.2f}",
                str(int(changed[row])),
            )
            colour = STATUS_COLOURS[status]
            for col, text in enumerate(values):
                item = self.table.item(row, col)
                if item is None:
                    item = QTableWidgetItem()
                    item.setTextAlignment(int(Qt.AlignmentFlag.AlignCenter))
                    self.table.setItem(row, col, item)
                item.setText(text)
                item.setBackground(QBrush(colour) if colour is not None else QBrush())
        counts = np.bincount(project.statuses, minlength=3)
        self.summary_label.setText(
            f"{counts[1]} curated, {counts[2]} rejected, {counts[0]} unreviewed of "
            f"{project.n_frames} frames; {int(changed.sum())} pixels corrected by hand."
        )

    def _follow_frame(self, event: Any = None) -> None:
        if self.session.project is None or not self.isVisible():
            return
        row = self.session.current_frame()
        if 0 <= row < self.table.rowCount():
            self.table.selectRow(row)
            # The frame just left may have been edited without a paint event (e.g. by a script).
            rows = [row] if self._last_row in (None, row) else [self._last_row, row]
            self._refresh_rows([r for r in rows if r < self.table.rowCount()])
            self._last_row = row
