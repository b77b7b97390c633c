"""Fine-tune section: train a new checkpoint on the curated frames in a child process.

Training runs in :class:`~napari_ribseg.core.training.BackgroundFinetune` (a separate OS process),
polled by a QTimer on the GUI thread, so napari stays responsive and a crash in training cannot take
the viewer down. The section shows epoch, batch and ETA, plots training loss and validation Dice,
and at the end compares the new model with its base on the same validation frames.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import re
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_ribseg._widgets._session import ReviewSession, notify_error, notify_info
from napari_ribseg._widgets._settings import save_settings
from napari_ribseg.core.errors import RibsegError
from napari_ribseg.core.stack import FrameStatus

if TYPE_CHECKING:
    from napari_ribseg.core.jobs import Progress

#: Fewest curated frames fine-tuning accepts: one to train on and one to validate with.
MIN_CURATED = 2
#: How often the child process's events are read; fast enough for a smooth progress bar.
POLL_MS = 200
LOSS_COLOUR = QColor(255, 159, 28)
DICE_COLOUR = QColor(80, 180, 255)


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class CurvePlot(QWidget):
    """A light QPainter plot of training loss (left axis, auto-scaled) and validation Dice (0-1).

    matplotlib would work too, but importing its Qt backend costs about a second and it is not
    needed for two short curves.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loss: list[tuple[float, float]] = []
        self.dice: list[tuple[float, float]] = []
        self.epochs = 1
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def reset(self, epochs: int) -> None:
        self.loss, self.dice, self.epochs = [], [], max(1, epochs)
        self.update()

    def add(self, series: str, x: float, y: float) -> None:
        if not math.isfinite(y):
            return
        (self.loss if series == "loss" else self.dice).append((float(x), float(y)))
        self.update()

    def paintEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRectF(self.rect()).adjusted(36, 8, -36, -22)
        fg = self.palette().color(self.foregroundRole())
        painter.setPen(QPen(fg, 1))
        painter.drawRect(rect)
        painter.drawText(
            QRectF(rect.left(), rect.bottom() + 2, rect.width(), 18),
            int(Qt.AlignmentFlag.AlignHCenter),
            "epoch",
        )
        painter.setPen(QPen(LOSS_COLOUR, 1))
        top_loss = max([y for _, y in self.loss] + [1e-6])
        painter.drawText(
            QRectF(0, rect.top(), 34, 14), int(Qt.AlignmentFlag.AlignRight), f"{top_loss:.2g}"
        )
        painter.drawText(
            QRectF(0, rect.bottom() - 14, 34, 14), int(Qt.AlignmentFlag.AlignRight), "0"
        )
        painter.drawText(QRectF(rect.left() + 4, rect.top() + 2, 120, 14), 0, "training loss")
        painter.setPen(QPen(DICE_COLOUR, 1))
        painter.drawText(QRectF(rect.right() + 2, rect.top(), 34, 14), 0, "1")
        painter.drawText(QRectF(rect.right() + 2, rect.bottom() - 14, 34, 14), 0, "0")
        painter.drawText(QRectF(rect.left() + 4, rect.top() + 16, 120, 14), 0, "validation Dice")

        def to_point(x: float, y: float, top: float) -> QPointF:
            return QPointF(
                rect.left() + rect.width() * x / self.epochs,
                rect.bottom() - rect.height() * min(max(y / top, 0.0), 1.0),
            )

        for points, top, colour in (
            (self.loss, top_loss, LOSS_COLOUR),
            (self.dice, 1.0, DICE_COLOUR),
        ):
            if not points:
                continue
            path = QPainterPath(to_point(*points[0], top))
            for x, y in points[1:]:
                path.lineTo(to_point(x, y, top))
            painter.setPen(QPen(colour, 2))
            painter.drawPath(path)
            for x, y in points:
                painter.drawEllipse(to_point(x, y, top), 2.5, 2.5)
        painter.end()


class FinetuneSection(QWidget):
    """Settings, progress and outcome of fine-tuning on this stack's curated frames."""

    #: The user asked to re-segment the unreviewed frames with the selected model.
    resegment_requested = Signal()
    #: Fine-tuning ended; argument: the result (``None`` when it failed).
    done = Signal(object)
    #: One progress event from the child process arrived (for scripts watching the run).
    event_received = Signal(object)

    def __init__(self, session: ReviewSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.job: Any = None
        self.result: Any = None
        self._base_name = ""
        self._loaded_base: tuple[str, Any] | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.poll)
        layout = QVBoxLayout(self)

        form = QFormLayout()
        self.base_combo = QComboBox()
        self.base_combo.setToolTip("The model to start from")
        self.strategy_combo = QComboBox()
        self.trainable_label = QLabel("–")
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 500)
        self.epochs_spin.setValue(20)
        self.lr_spin = QDoubleSpinBox()
        self.lr_spin.setDecimals(6)
        self.lr_spin.setRange(1e-6, 1e-1)
        self.lr_spin.setSingleStep(1e-5)
        self.lr_spin.setValue(1e-4)
        self.augment_combo = QComboBox()
        self.augment_combo.setToolTip(
            "none: no augmentation; flip: left-right flips; standard: flips, gain, depth crops"
        )
        self.val_spin = QDoubleSpinBox()
        self.val_spin.setRange(0.05, 0.5)
        self.val_spin.setSingleStep(0.05)
        self.val_spin.setValue(0.2)
        self.val_spin.setToolTip("Share of curated frames held back to measure validation Dice")
        form.addRow("Base model:", self.base_combo)
        form.addRow("Freeze:", self.strategy_combo)
        form.addRow("", self.trainable_label)
        form.addRow("Epochs:", self.epochs_spin)
        form.addRow("Learning rate:", self.lr_spin)
        form.addRow("Augmentation:", self.augment_combo)
        form.addRow("Validation share:", self.val_spin)
        layout.addLayout(form)

        self.reason_label = QLabel("")
        self.reason_label.setWordWrap(True)
        layout.addWidget(self.reason_label)
        row = QHBoxLayout()
        self.start_btn = QPushButton("Start fine-tuning")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setToolTip("Stop; the best checkpoint so far is kept")
        self.cancel_btn.setEnabled(False)
        row.addWidget(self.start_btn, 1)
        row.addWidget(self.cancel_btn)
        layout.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress_label = QLabel("")
        self.progress_label.setWordWrap(True)
        layout.addWidget(self.progress)
        layout.addWidget(self.progress_label)
        self.plot = CurvePlot()
        layout.addWidget(self.plot)

        outcome = QGroupBox("Outcome")
        out_layout = QVBoxLayout(outcome)
        self.outcome_label = QLabel("No fine-tuning run yet.")
        self.outcome_label.setWordWrap(True)
        out_layout.addWidget(self.outcome_label)
        out_row = QHBoxLayout()
        self.use_new_btn = QPushButton("Use new model")
        self.keep_base_btn = QPushButton("Keep base model")
        out_row.addWidget(self.use_new_btn)
        out_row.addWidget(self.keep_base_btn)
        out_layout.addLayout(out_row)
        self.resegment_btn = QPushButton("Re-segment unreviewed frames")
        self.resegment_btn.setToolTip("Run the selected model on frames you have not reviewed yet")
        out_layout.addWidget(self.resegment_btn)
        for btn in (self.use_new_btn, self.keep_base_btn, self.resegment_btn):
            btn.setEnabled(False)
        layout.addWidget(outcome)
        layout.addStretch(1)

        self._fill_pickers()
        self.start_btn.clicked.connect(self.start)
        self.cancel_btn.clicked.connect(self.cancel)
        self.strategy_combo.currentIndexChanged.connect(self._on_strategy)
        self.base_combo.currentIndexChanged.connect(lambda _i: self.update_trainable())
        self.use_new_btn.clicked.connect(self._use_new)
        self.keep_base_btn.clicked.connect(self._keep_base)
        self.resegment_btn.clicked.connect(self.resegment_requested.emit)
        session.statuses_changed.connect(self.update_start_enabled)
        session.image_bound.connect(lambda _r: self.update_start_enabled())
        session.models_listed.connect(self._fill_models)
        session.model_selected.connect(self.select_base)
        self.update_start_enabled()

    # -- pickers -------------------------------------------------------------------------------
    def _fill_pickers(self) -> None:
        from napari_ribseg.core.training import AUGMENT_PRESETS, FREEZE_STRATEGIES

        for name, strategy in FREEZE_STRATEGIES.items():
            self.strategy_combo.addItem(name, name)
            index = self.strategy_combo.count() - 1
            self.strategy_combo.setItemData(index, strategy.description, _tooltip_role())
        wanted = self.session.settings.default_strategy
        if wanted in FREEZE_STRATEGIES:
            self.strategy_combo.setCurrentIndex(list(FREEZE_STRATEGIES).index(wanted))
        self.augment_combo.addItems(list(AUGMENT_PRESETS))
        if "flip" in AUGMENT_PRESETS:
            self.augment_combo.setCurrentText("flip")

    def _fill_models(self, entries: list) -> None:
        """Offer the models the Segment section listed (one registry scan serves both)."""
        keep = self.base_combo.currentData()
        self.base_combo.blockSignals(True)
        self.base_combo.clear()
        for entry in entries:
            self.base_combo.addItem(entry.name, entry.name)
        index = self.base_combo.findData(keep) if keep else -1
        self.base_combo.setCurrentIndex(max(index, 0) if entries else -1)
        self.base_combo.blockSignals(False)
        self.update_trainable()
        self.update_start_enabled()

    def select_base(self, name: str) -> None:
        """Start from ``name`` (follows the Segment section's model unless a run is going)."""
        index = self.base_combo.findData(name)
        if index >= 0 and self.job is None:
            self.base_combo.setCurrentIndex(index)

    def _on_strategy(self, _index: int) -> None:
        name = self.strategy_combo.currentData()
        if name:
            self.session.settings.default_strategy = name
            save_settings(self.session.settings)
        self.update_trainable()

    def update_trainable(self) -> None:
        """Show how many parameters the chosen strategy trains on the chosen base model."""
        from napari_ribseg.core.models import count_parameters, load_model
        from napari_ribseg.core.training import get_strategy

        name, strategy = self.base_combo.currentData(), self.strategy_combo.currentData()
        if not name or not strategy:
            self.trainable_label.setText("–")
            return
        try:
            if self._loaded_base is None or self._loaded_base[0] != name:
                # Built on the CPU only to count parameters: small even for the paper preset.
                self._loaded_base = (name, load_model(name, device="cpu"))
            model = self._loaded_base[1].model
            trainable = get_strategy(strategy).trainable_parameters(model)
            total = count_parameters(model)
        except RibsegError as exc:
            self.trainable_label.setText(f"cannot read {name}: {exc}")
            return
        share = 100.0 * trainable / max(total, 1)
        self.trainable_label.setText(
            f"trains {trainable:,} of {total:,} parameters ({share:.0f}%) at the first epoch"
        )
        self.strategy_combo.setToolTip(
            self.strategy_combo.itemData(self.strategy_combo.currentIndex(), _tooltip_role()) or ""
        )

    # -- start conditions ------------------------------------------------------------------------
    def curated_count(self) -> int:
        project = self.session.project
        return 0 if project is None else int(len(project.curated_frames))

    def start_blocker(self) -> str:
        """Why Start is disabled, or an empty string when it is enabled."""
        if self.job is not None:
            return "Fine-tuning is running."
        if self.session.project is None:
            return "Load a stack and segment it first."
        if not self.base_combo.currentData():
            return "No base model: add a checkpoint to the model folder."
        n = self.curated_count()
        if n < MIN_CURATED:
            return (
                f"Mark at least {MIN_CURATED} frames curated to fine-tune ({n} so far): one to "
                "train on, one to check the new model against."
            )
        return ""

    def update_start_enabled(self) -> None:
        reason = self.start_blocker()
        self.start_btn.setEnabled(not reason)
        self.start_btn.setToolTip(reason or f"Train on {self.curated_count()} curated frames")
        self.reason_label.setText(reason or f"{self.curated_count()} curated frames ready.")

    def config(self) -> Any:
        from napari_ribseg.core.training import FinetuneConfig

        return FinetuneConfig(
            strategy=self.strategy_combo.currentData(),
            epochs=int(self.epochs_spin.value()),
            lr=float(self.lr_spin.value()),
            augment=self.augment_combo.currentText(),
            val_share=float(self.val_spin.value()),
            device=self.session.settings.device or "auto",
        )

    # -- running -------------------------------------------------------------------------------
    def start(self) -> bool:
        """Start fine-tuning in a child process; returns whether it started."""
        from napari_ribseg.core.models import resolve_model, user_model_dir
        from napari_ribseg.core.training import BackgroundFinetune, TrainingSet

        reason = self.start_blocker()
        if reason:
            notify_info(reason)
            return False
        s = self.session
        project = s.project
        base = self.base_combo.currentData()
        try:
            data = TrainingSet.from_stack(
                s.frames, project.labels, project.statuses, name=_safe(s.image_layer.name)
            )
            config = self.config()
            config.validate()
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            out = user_model_dir() / f"{_safe(base)}-ft-{_safe(s.image_layer.name)}-{stamp}"
            job = BackgroundFinetune(resolve_model(base), data, config, out)
            job.start()
        except RibsegError as exc:
            notify_error(f"Fine-tuning cannot start: {exc}")
            return False
        self.job = job
        self._base_name = base
        self.result = None
        self.plot.reset(config.epochs)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress_label.setText(f"Starting: {len(data)} curated frames, base {base}…")
        self.outcome_label.setText("Running…")
        for btn in (self.use_new_btn, self.keep_base_btn, self.resegment_btn):
            btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.update_start_enabled()
        self._timer.start()
        return True

    def cancel(self) -> None:
        """Stop training; the child keeps the best checkpoint written so far."""
        if self.job is not None:
            self.job.cancel()
            self.progress_label.setText("Stopping after this batch; the best checkpoint is kept…")

    def poll(self) -> None:
        """Read the child's events (on the GUI thread) and finish when it is done."""
        if self.job is None:
            self._timer.stop()
            return
        for event in self.job.poll():
            self._on_event(event)
            self.event_received.emit(event)
            if self.job is None:  # a listener cancelled and the run already ended
                return
        if self.job.result is not None or self.job.error is not None:
            self._finish()

    def _on_event(self, event: Progress) -> None:
        kind, values = event.kind, event.values
        if kind == "batch":
            self.progress.setMaximum(max(event.total, 1))
            self.progress.setValue(event.step)
            eta = values.get("eta_s")
            self.progress_label.setText(f"{event.message}, ETA {_fmt_eta(eta)}")
        elif kind == "loss":
            self.plot.add("loss", event.step, values.get("loss", float("nan")))
        elif kind == "val_dice":
            self.plot.add("dice", event.step, values.get("val_dice", float("nan")))
        elif kind in ("epoch", "message", "done") and event.message:
            self.progress_label.setText(event.message)
        # "error" events are reported once, by _finish, with what the user can do about them.

    def _finish(self) -> None:
        self._timer.stop()
        job, self.job = self.job, None
        self.cancel_btn.setEnabled(False)
        if job.error is not None or job.result is None:
            self._finish_failed(job.error or "the training process gave no result")
            return
        result = job.result
        self.result = result
        self._show_outcome(result)
        self.update_start_enabled()
        self.done.emit(result)

    def _finish_failed(self, message: str) -> None:
        self._timer.stop()
        self.job = None
        self.progress_label.setText("Failed; see the notification.")
        self.cancel_btn.setEnabled(False)
        notify_error(
            f"Fine-tuning failed: {message}. Your curated labels are safe; check the settings "
            "and try again."
        )
        self.outcome_label.setText(f"Failed: {message}")
        self.update_start_enabled()
        self.done.emit(None)

    def _show_outcome(self, result: Any) -> None:
        if result.checkpoint is None:
            self.outcome_label.setText("Stopped before any epoch finished; no new model.")
            return
        name = result.checkpoint.stem
        n_val = len(result.val_ids)
        better = result.best_val_dice > result.base_val_dice
        text = (
            f"<b>{name}</b><br>Validation Dice on the same {n_val} curated frame(s): "
            f"new {result.best_val_dice:.3f} (epoch {result.best_epoch}) vs base "
            f"{self._base_name} {result.base_val_dice:.3f}."
        )
        if result.stopped:
            text += "<br>Cancelled: the best checkpoint so far was kept."
        text += (
            "<br>The new model is better and is now selected."
            if better
            else "<br>The base model stays selected (the new one is not better)."
        )
        self.outcome_label.setText(text)
        self.session.models_changed.emit(name if better else self._base_name)
        self.use_new_btn.setEnabled(True)
        self.keep_base_btn.setEnabled(True)
        self.resegment_btn.setEnabled(True)
        n_todo = (
            0
            if self.session.project is None
            else len(self.session.project.frames_with(FrameStatus.UNREVIEWED))
        )
        self.resegment_btn.setText(f"Re-segment {n_todo} unreviewed frames")

    def _use_new(self) -> None:
        if self.result is not None and self.result.checkpoint is not None:
            self.session.models_changed.emit(self.result.checkpoint.stem)

    def _keep_base(self) -> None:
        if self._base_name:
            self.session.models_changed.emit(self._base_name)

    def shutdown(self) -> None:
        """Stop a running child process (when the widget closes)."""
        self._timer.stop()
        if self.job is not None:
            with contextlib.suppress(Exception):
                self.job.cancel()


def _safe(name: str) -> str:
    """A file-name-safe version of a layer or model name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "stack"


def _tooltip_role() -> int:
    return Qt.ItemDataRole.ToolTipRole
