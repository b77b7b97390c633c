"""Fine-tune section: train a new checkpoint on the curated frames, or adapt one to the stack.

Both run in a separate OS process (:class:`~napari_ribseg.core.training.BackgroundFinetune`,
:class:`~napari_ribseg.core.training.BackgroundAdapt`; one at a time), polled by a QTimer on the GUI
thread, so napari stays responsive, Cancel works and a crash in training cannot take the viewer
down. The section shows epoch, batch and ETA, plots training loss and validation Dice, and at the
end compares the new model with its base on frames it never trained on.
"""

from __future__ import annotations

import contextlib
import math
import re
from pathlib import Path
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

from napari_ribseg._widgets._session import (
    USER_ERRORS,
    ReviewSession,
    notify_error,
    notify_info,
    notify_user_error,
    user_error,
)
from napari_ribseg._widgets._settings import model_dir, save_settings

if TYPE_CHECKING:
    from napari_ribseg.core.jobs import Progress

#: How often the child process's events are read; fast enough for a smooth progress bar.
POLL_MS = 200
#: Strategies named by what trains ("Freeze: all" read as "freeze everything").
TRAIN_LABELS = {
    "all": "all layers",
    "encoder": "bottleneck + decoder (encoder frozen)",
    "bottleneck": "encoder + decoder (bottleneck frozen)",
    "decoder": "decoder only",
    "progressive": "decoder first, then deeper layers",
}
SPAWN_GUARD = (
    "A fine-tune started from a Python script needs the script's code under `if __name__ == "
    '"__main__":` (training runs in a spawned child process, which imports the script again).'
)
ADAPT_HELP = (
    "Self-train the base model on this stack's own frames, in the background. With 3 or more "
    "curated frames you corrected (showing ribs) it is kept only when it beats the base on "
    "them; without, a label-free check "
    "on held-out frames decides, which cannot tell a better model from a worse one (kept models "
    "scored 0.115 Dice worse to 0.10 better): it is offered for this stack, never made the default"
)
CANCEL_HELP = (
    "Stop after this batch: a fine-tune's weights so far are judged by the gate and kept only if "
    "they beat the base; an adaptation leaves no model"
)
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
        # Margins hold the tick labels and the legend, so no curve or label is ever covered.
        rect = QRectF(self.rect()).adjusted(46, 22, -34, -34)
        fg = self.palette().color(self.foregroundRole())
        painter.setPen(QPen(fg, 1))
        painter.drawRect(rect)
        right = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        centre = int(Qt.AlignmentFlag.AlignHCenter)
        # x axis: epoch ticks with values.
        ticks = self.x_ticks()
        for tick in ticks:
            x = rect.left() + rect.width() * tick / self.epochs
            painter.drawLine(QPointF(x, rect.bottom()), QPointF(x, rect.bottom() + 3))
            painter.drawText(QRectF(x - 20, rect.bottom() + 3, 40, 14), centre, str(tick))
        painter.drawText(QRectF(rect.left(), rect.bottom() + 17, rect.width(), 14), centre, "epoch")
        # Left axis: training loss, scaled to 1.15x its maximum so the curve stays off the border.
        top_loss = self.loss_top()
        painter.setPen(QPen(LOSS_COLOUR, 1))
        for frac in (0.0, 0.5, 1.0):
            y = rect.bottom() - rect.height() * frac
            text = self.loss_tick(top_loss * frac) if top_loss else ("0" if frac == 0 else "")
            painter.drawText(QRectF(0, y - 7, 42, 14), right, text)
        # Right axis: held-out Dice, 0-1.
        painter.setPen(QPen(DICE_COLOUR, 1))
        for frac in (0.0, 0.5, 1.0):
            y = rect.bottom() - rect.height() * frac
            painter.drawText(QRectF(rect.right() + 3, y - 7, 30, 14), 0, f"{frac:g}")
        # Legend above the plot area.
        painter.setPen(QPen(LOSS_COLOUR, 1))
        painter.drawText(QRectF(rect.left(), 2, 140, 16), 0, "— training loss (left)")
        painter.setPen(QPen(DICE_COLOUR, 1))
        painter.drawText(QRectF(rect.left() + 145, 2, 170, 16), 0, "— held-out Dice (right)")

        def to_point(x: float, y: float, top: float) -> QPointF:
            return QPointF(
                rect.left() + rect.width() * x / self.epochs,
                rect.bottom() - rect.height() * min(max(y / top, 0.0), 1.0),
            )

        for points, top, colour in (
            (self.loss, top_loss or 1.0, LOSS_COLOUR),
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

    def loss_top(self) -> float:
        """Top of the loss axis: 1.15x the largest loss, 0 before any loss arrived."""
        return 1.15 * max(y for _, y in self.loss) if self.loss else 0.0

    @staticmethod
    def loss_tick(value: float) -> str:
        """A short tick label (never exponent notation that clips, such as '1e-06')."""
        if value == 0:
            return "0"
        return f"{value:.2f}" if value < 10 else f"{value:.0f}"

    def x_ticks(self) -> list[int]:
        """Up to six round epoch ticks from 0 to the number of epochs."""
        step = max(1, math.ceil(self.epochs / 5))
        for nice in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000):
            if nice >= step:
                step = nice
                break
        ticks = list(range(0, self.epochs + 1, step))
        return ticks if ticks[-1] == self.epochs else [*ticks, self.epochs]


class FinetuneSection(QWidget):
    """Settings, progress and outcome of fine-tuning on this stack's curated frames."""

    #: The user asked to re-segment the unreviewed frames with the selected model.
    resegment_requested = Signal()
    #: Fine-tuning ended; argument: the result (``None`` when it failed).
    done = Signal(object)
    #: Adaptation to the stack ended; argument: the AdaptResult (``None`` when it failed).
    adapt_done = Signal(object)
    #: One progress event from the child process arrived (for scripts watching the run).
    event_received = Signal(object)

    def __init__(self, session: ReviewSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.job: Any = None
        self.result: Any = None
        #: The model "Use new model" selects: the last fine-tune's or adaptation's output.
        self._candidate: str | None = None
        #: Frames "Re-segment unreviewed frames" writes (counted on its label); None: not yet.
        self._writable: set[int] | None = None
        #: Its file (it may be deleted before "Use new model" is clicked).
        self._candidate_path: Any = None
        self._last_job: Any = None
        self._base_name = ""
        self._loaded_base: tuple[str, Any] | None = None
        self._card_names: dict[str, str] = {}
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.poll)
        layout = QVBoxLayout(self)

        form = QFormLayout()
        self.base_combo = QComboBox()
        self.base_combo.setToolTip("The model to start from")
        self.strategy_combo = QComboBox()
        self.trainable_label = QLabel("–")
        # Ranges, defaults and help come from FinetuneConfig's declarations (one source).
        self.epochs_spin = QSpinBox()
        _bind_spin(self.epochs_spin, "epochs")
        self.lr_spin = QDoubleSpinBox()
        self.lr_spin.setDecimals(6)
        self.lr_spin.setSingleStep(1e-4)
        _bind_spin(self.lr_spin, "lr")
        self.augment_combo = QComboBox()
        self.augment_combo.setToolTip(
            "none: no augmentation; flip: left-right flips; standard: flips, small rotation, "
            "scale and shift, gain, contrast, gamma, speckle noise, blur, depth crops; domain: "
            "standard plus simulated scanner looks (fans, overlays, grey curves, JPEG)"
        )
        self.val_spin = QDoubleSpinBox()
        self.val_spin.setSingleStep(0.05)
        _bind_spin(self.val_spin, "val_share")
        self.mix_spin = QDoubleSpinBox()
        self.mix_spin.setSingleStep(0.25)
        _bind_spin(self.mix_spin, "mix")
        form.addRow("Base model:", self.base_combo)
        form.addRow("Train:", self.strategy_combo)
        form.addRow("", self.trainable_label)
        form.addRow("Epochs:", self.epochs_spin)
        form.addRow("Learning rate:", self.lr_spin)
        form.addRow("Augmentation:", self.augment_combo)
        form.addRow("Validation share:", self.val_spin)
        form.addRow("Change kept:", self.mix_spin)
        layout.addLayout(form)

        self.reason_label = QLabel("")
        self.reason_label.setWordWrap(True)
        layout.addWidget(self.reason_label)
        row = QHBoxLayout()
        self.start_btn = QPushButton("Start fine-tuning")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setToolTip(CANCEL_HELP)
        self.cancel_btn.setEnabled(False)
        row.addWidget(self.start_btn, 1)
        row.addWidget(self.cancel_btn)
        layout.addLayout(row)
        self.adapt_btn = QPushButton("Adapt to this stack (no labels)")
        self.adapt_btn.setToolTip(ADAPT_HELP)
        layout.addWidget(self.adapt_btn)
        self.adapt_result: Any = None
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
        self.adapt_btn.clicked.connect(self.start_adapt)
        self.strategy_combo.currentIndexChanged.connect(self._on_strategy)
        self.base_combo.currentIndexChanged.connect(lambda _i: self.update_trainable())
        # Which curated frames can judge a new model depends on the base (its own masks do not).
        self.base_combo.currentIndexChanged.connect(self.update_start_enabled)
        self.use_new_btn.clicked.connect(self._use_new)
        self.keep_base_btn.clicked.connect(self._keep_base)
        self.resegment_btn.clicked.connect(self.resegment_requested.emit)
        session.statuses_changed.connect(self.update_start_enabled)
        # Drawing on a curated frame changes whether the curated frames mark a rib.
        session.labels_updated.connect(self.update_start_enabled)
        session.image_bound.connect(lambda _r: self.update_start_enabled())
        session.statuses_changed.connect(self._update_resegment_text)
        session.image_bound.connect(lambda _r: self._update_resegment_text())
        session.labels_updated.connect(self._update_resegment_text)
        session.models_listed.connect(self._fill_models)
        session.model_selected.connect(self.select_base)
        self.update_start_enabled()

    # -- pickers -------------------------------------------------------------------------------
    def _fill_pickers(self) -> None:
        from napari_ribseg.core.training import AUGMENT_PRESETS, FREEZE_STRATEGIES

        for name, strategy in FREEZE_STRATEGIES.items():
            self.strategy_combo.addItem(TRAIN_LABELS.get(name, name), name)
            index = self.strategy_combo.count() - 1
            self.strategy_combo.setItemData(index, strategy.description, _tooltip_role())
        from napari_ribseg.core.training.config import FinetuneConfig

        # An unset preference means the engine's default strategy (one source of truth).
        wanted = self.session.settings.default_strategy or FinetuneConfig().strategy
        if wanted in FREEZE_STRATEGIES:
            self.strategy_combo.setCurrentIndex(list(FREEZE_STRATEGIES).index(wanted))

        self.augment_combo.addItems(list(AUGMENT_PRESETS))
        self.augment_combo.setCurrentText(FinetuneConfig().augment)

    def _fill_models(self, entries: list) -> None:
        """Offer the models the Segment section listed (one registry scan serves both), each name
        once: a run starts from what the name resolves to (a user model shadows a bundled one)."""
        from napari_ribseg.core.models.registry import entry_named

        keep = self.base_combo.currentData()
        self.base_combo.blockSignals(True)
        self.base_combo.clear()
        for entry in entries:
            if entry_named(entries, entry.name) is not entry:
                continue
            # What a review records as the model that drew its masks is the card's name.
            self._card_names[entry.name] = entry.card.name
            label = entry.name if entry.source == "bundled" else f"{entry.name} (yours)"
            self.base_combo.addItem(label, entry.name)
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
        from napari_ribseg.core.models import count_parameters
        from napari_ribseg.core.models.factory import architecture_of
        from napari_ribseg.core.training import get_strategy

        name, strategy = self.base_combo.currentData(), self.strategy_combo.currentData()
        if not name or not strategy:
            self.trainable_label.setText("–")
            return
        try:
            if self._loaded_base is None or self._loaded_base[0] != name:
                # The card's architecture with weightless (meta) parameters: no weights are read.
                self._loaded_base = (
                    name,
                    architecture_of(name, model_dir=model_dir(self.session.settings)),
                )
            model = self._loaded_base[1]
            trainable = get_strategy(strategy).trainable_parameters(model)
            total = count_parameters(model)
        except USER_ERRORS as exc:
            self.trainable_label.setText(user_error(f"cannot read {name}", exc))
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
        return self._blocker("finetune")

    def adapt_blocker(self) -> str:
        """Why "Adapt to this stack" is disabled, or an empty string when it is enabled."""
        return self._blocker("adapt")

    def _blocker(self, job: str) -> str:
        from napari_ribseg.core.session import start_blocker

        running = None if self.job is None else self.job.kind
        return start_blocker(
            self.session.core, job, base=self.base_combo.currentData(), running=running
        )

    def update_start_enabled(self, *_args: Any) -> None:
        from napari_ribseg.core.session import finetune_note

        reason = self.start_blocker()
        self.start_btn.setEnabled(not reason)
        self.start_btn.setToolTip(reason or f"Train on {self.curated_count()} curated frames")
        base = self.base_combo.currentData()
        base = self._card_names.get(base, base)
        note = "" if reason else finetune_note(self.session.core, base=base)
        self.reason_label.setText(reason or note)
        blocker = self.adapt_blocker()
        self.adapt_btn.setEnabled(not blocker)
        self.adapt_btn.setToolTip(blocker or ADAPT_HELP)

    def config(self) -> Any:
        from napari_ribseg.core.training import FinetuneConfig

        return FinetuneConfig(
            strategy=self.strategy_combo.currentData(),
            epochs=int(self.epochs_spin.value()),
            lr=float(self.lr_spin.value()),
            augment=self.augment_combo.currentText(),
            val_share=float(self.val_spin.value()),
            mix=float(self.mix_spin.value()),
            device=self.session.settings.device or "auto",
        )

    # -- running -------------------------------------------------------------------------------
    def start(self) -> bool:
        """Start fine-tuning in a child process; returns whether it started."""
        from napari_ribseg.core.models import resolve_model
        from napari_ribseg.core.session import training_set_from_review
        from napari_ribseg.core.training import BackgroundFinetune
        from napari_ribseg.core.training.output import released_if_refused, stamped_output

        if not self._may_start(self.start_blocker()):
            return False
        s = self.session
        project = s.project
        base = self.base_combo.currentData()
        try:
            data = training_set_from_review(s.frames, project, name=_safe(s.image_layer.name))
            config = self.config()
            config.validate()
            folder = model_dir(s.settings)
            base_path = resolve_model(base, model_dir=folder)
            out = stamped_output(base, s.image_layer.name, model_dir=folder)  # reserves it
            with released_if_refused(out):
                # A stamped output is never continued: no resume state is left beside the models.
                job = BackgroundFinetune(base_path, data, config, out, keep_resume=False)
            job.start()  # gives the name back itself when the child cannot start
        except USER_ERRORS as exc:
            self.outcome_label.setText(notify_user_error("Fine-tuning cannot start", exc))
            return False
        self.result = None
        self.plot.reset(config.epochs)
        self._started(job, base, f"Starting: {len(data)} curated frames, base {base}…", "Running…")
        return True

    def start_adapt(self) -> bool:
        """Adapt the base model to the loaded stack without labels, in a child process."""
        from napari_ribseg.core.models import resolve_model
        from napari_ribseg.core.models.checkpoint import read_card
        from napari_ribseg.core.session import curated_masks, unedited_frames
        from napari_ribseg.core.training import BackgroundAdapt
        from napari_ribseg.core.training.adapt import AdaptConfig
        from napari_ribseg.core.training.output import released_if_refused, stamped_output

        if not self._may_start(self.adapt_blocker()):
            return False
        s = self.session
        base = self.base_combo.currentData()
        folder = model_dir(s.settings)
        try:
            base_path = resolve_model(base, model_dir=folder)
            unedited = (
                unedited_frames(s.project, read_card(base_path).name)
                if s.project is not None
                else []
            )
            out = stamped_output(base, s.image_layer.name, "adapt", model_dir=folder)
            with released_if_refused(out):
                job = BackgroundAdapt(
                    base_path,
                    s.frames,
                    AdaptConfig(device=s.settings.device or "auto"),
                    out,
                    source=s.image_layer.name,
                    # Curated frames, if any, are left out and judge the result (the gate).
                    labelled=curated_masks(s.project) if s.project is not None else None,
                    unedited=unedited,
                )
            job.start()  # gives the name back itself when the child cannot start
        except USER_ERRORS as exc:
            self.outcome_label.setText(notify_user_error("Adaptation cannot start", exc))
            return False
        self.adapt_result = None
        self._started(job, base, f"Starting: adapting {base} to {s.image_layer.name}…", "Adapting…")
        return True

    def _may_start(self, blocker: str) -> bool:
        """Whether a run may start: nothing blocks it and the running script has the spawn guard
        (both run in a spawned child); otherwise the user is told why."""
        if blocker:
            notify_info(blocker)
            return False
        guard = spawn_guard_problem()
        if guard:
            notify_error(guard)
            self.outcome_label.setText(guard)
            return False
        return True

    def _started(self, job: Any, base: str, progress: str, outcome: str) -> None:
        """Show a started run and poll its child until it ends."""
        self.job = job
        self._base_name = base
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress_label.setText(progress)
        self.outcome_label.setText(outcome)
        for btn in (self.use_new_btn, self.keep_base_btn, self.resegment_btn):
            btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.update_start_enabled()
        self._timer.start()

    def _adapt_done(self, result: Any) -> None:
        self.adapt_result = result
        if result.checkpoint is None:
            text = f"<b>No new model</b>: {result.reason}. The base {self._base_name} stays."
            self.session.models_changed.emit(self._base_name)
        else:
            name = self._candidate = result.checkpoint.stem
            self._candidate_path = result.checkpoint
            if result.gate is not None and result.gate.promoted:
                # It won the gate on curated frames it never saw: selected, like a fine-tune winner.
                text = (
                    f"<b>{name}</b><br>Adapted and {result.reason}.<br>The new model is selected."
                )
                self.session.models_changed.emit(name)
            else:
                # Not selected: a label-free check cannot show it is better (measured: it promoted
                # losses of 0.01-0.03 Dice), so the user chooses it knowingly with "Use new model".
                text = (
                    f"<b>{name}</b> saved, not selected.<br>Adapted without labels: "
                    f"{result.reason}.<br>The base {self._base_name} stays selected; "
                    "<i>Use new model</i> switches."
                )
                self.session.models_changed.emit(self._base_name)
            self.use_new_btn.setEnabled(True)
            self.keep_base_btn.setEnabled(True)
        self.outcome_label.setText(
            f"{text}<br>Teacher: {result.teacher_view} frames; {result.frames_trained} frames "
            f"learned from, {result.frames_checked} checked, {result.seconds:.0f} s."
        )
        # As after a fine-tune: the selected model (adapted or base) can re-segment the rest.
        self.resegment_btn.setEnabled(True)
        self._update_resegment_text()

    def cancel(self) -> None:
        """Stop the run: a fine-tune's weights so far go through the gate, an adaptation leaves no
        model."""
        if self.job is not None:
            self.job.cancel()
            self.progress_label.setText(
                "Stopping after this step; no new model…"
                if _adapting(self.job)
                else "Stopping after this batch; the weights so far go through the gate (kept only "
                "if they beat the base)…"
            )

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
        elif kind in ("loss", "val_dice"):
            # With epochs on "from steps" (0) the run's epoch count is known only from its events.
            if event.total and event.total != self.plot.epochs:
                self.plot.epochs = max(1, int(event.total))
            series, key = ("loss", "loss") if kind == "loss" else ("dice", "val_dice")
            self.plot.add(series, event.step, values.get(key, float("nan")))
        elif kind in ("epoch", "message", "done") and event.message:
            self.progress_label.setText(event.message)
        # "error" events are reported once, by _finish, with what the user can do about them.

    def _finish(self) -> None:
        self._timer.stop()
        job, self.job = self.job, None
        self._last_job = job
        self.cancel_btn.setEnabled(False)
        if job.error is not None or job.result is None:
            self._finish_failed(job.error or "the training process gave no result")
            return
        if _adapting(job):
            self._adapt_done(job.result)
            self.update_start_enabled()
            self.adapt_done.emit(job.result)
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
        message = explain_child_failure(message, getattr(self._last_job, "error_details", ""))
        adapting = _adapting(self._last_job)
        notify_error(
            f"{'Adaptation' if adapting else 'Fine-tuning'} failed: {message}. Your curated labels "
            "are safe; check the settings and try again."
        )
        self.outcome_label.setText(f"Failed: {message}")
        self.update_start_enabled()
        (self.adapt_done if adapting else self.done).emit(None)

    def _show_outcome(self, result: Any) -> None:
        n_val = len(result.val_ids)
        promoted = result.checkpoint is not None and getattr(result, "promoted", True)
        gate = getattr(result, "gate", None)
        if gate is not None and gate.frames:
            # The numbers the verdict (and the new model's card) rest on: the judged frames only.
            new_dice, base_dice = gate.new_mean, gate.base_mean
            judged = f"{gate.frames} of {n_val}"
        else:
            new_dice, base_dice = result.best_val_dice, result.base_val_dice
            judged = f"0 of {n_val} judged, mean of all {n_val}" if gate is not None else f"{n_val}"
        numbers = (
            f"Held-out Dice on {judged} curated frame(s) it never trained on: new "
            f"{new_dice:.3f} vs base {self._base_name} {base_dice:.3f}."
        )
        reason = getattr(result, "reason", "")
        if result.checkpoint is None:
            text = f"<b>No new model</b>: {reason}.<br>{numbers}"
            if result.stopped:
                text += "<br>Cancelled before the end."
            text += f"<br>The base model {self._base_name} stays selected."
        else:
            name = result.checkpoint.stem
            text = f"<b>{name}</b><br>{numbers}<br>{reason}."
            if result.stopped:
                text += "<br>Cancelled: the weights so far were judged and kept."
            text += (
                "<br>The new model is better and is now selected."
                if promoted
                else "<br>The base model stays selected (the new one did not pass the gate)."
            )
        self.outcome_label.setText(text)
        self._candidate = result.checkpoint.stem if result.checkpoint is not None else None
        self._candidate_path = result.checkpoint
        # The default model is the gate's winner, never a loser.
        winner = result.checkpoint.stem if promoted else self._base_name
        self.session.models_changed.emit(winner)
        self.use_new_btn.setEnabled(result.checkpoint is not None)
        self.keep_base_btn.setEnabled(True)
        self.resegment_btn.setEnabled(True)
        self._update_resegment_text()

    def _update_resegment_text(self, frames: Any = None) -> None:
        """The re-segment button counts the unreviewed frames of the stack under review now (it
        runs on that stack, whichever it is and whatever was marked since the run ended): those
        it writes, unreviewed and not edited by hand. ``frames``: only these changed (a paint)."""
        if not self.resegment_btn.isEnabled():
            return  # "Re-segment unreviewed frames" until a fine-tune has ended
        core = self.session.core
        if core is None:
            self._writable = set()
        elif frames and isinstance(frames, list) and self._writable is not None:
            # One frame painted: recount just it, as the review table does.
            self._writable.difference_update(int(f) for f in frames)
            self._writable.update(int(f) for f in core.writable_of(frames))
        else:
            self._writable = {int(f) for f in core.frames_for("unreviewed")}
        self.resegment_btn.setText(f"Re-segment {len(self._writable)} unreviewed frames")

    def _use_new(self) -> None:
        if not self._candidate:
            return
        path = self._candidate_path
        if path is not None and not Path(path).is_file():
            # Selecting a missing name would fall back to the default model without a word.
            self.use_new_btn.setEnabled(False)
            notify_error(
                f"{self._candidate} is no longer in the model folder ({path}); the model in use "
                "stays."
            )
            return
        self.session.models_changed.emit(self._candidate)

    def _keep_base(self) -> None:
        if self._base_name:
            self.session.models_changed.emit(self._base_name)

    def shutdown(self) -> None:
        """Stop a running child process (when the widget closes), before anything Qt; its
        temporary files go when it has ended (nothing polls it from here on)."""
        if self.job is not None:
            with contextlib.suppress(Exception):
                self.job.end()
        with contextlib.suppress(RuntimeError):  # the timer may already be deleted
            self._timer.stop()


def _adapting(job: Any) -> bool:
    """Whether ``job`` (a ``core.training.BackgroundJob``) adapts to the stack, not fine-tunes."""
    return getattr(job, "kind", "") == "adapt"


def _safe(name: str) -> str:
    """A file-name-safe version of a layer or model name."""
    from napari_ribseg.core.training.output import safe_name

    return safe_name(name)


def _bind_spin(spin: Any, name: str) -> None:
    """Range, default, 'auto' text and tooltip of a spin box from FinetuneConfig's declaration."""
    from napari_ribseg.core.training.config import setting_spec

    spec = setting_spec(name)
    low = spec.low if spec.low is not None else 0
    high = spec.high if spec.high is not None else 1e9
    spin.setRange(type(spin.value())(low), type(spin.value())(high))
    spin.setValue(spec.default)
    if spec.auto:
        spin.setSpecialValueText(spec.auto)
    spin.setToolTip(spec.help[:1].upper() + spec.help[1:])


def spawn_guard_problem(main_module: Any = None) -> str:
    """The spawn-guard requirement when the running script lacks it, else an empty string."""
    import sys

    main_module = main_module if main_module is not None else sys.modules.get("__main__")
    path = getattr(main_module, "__file__", None)
    if not path or not str(path).endswith(".py") or "napari" in str(path):
        return ""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            source = handle.read()
    except OSError:
        return ""
    if re.search(r"""if\s+__name__\s*==\s*['"]__main__['"]""", source):
        return ""
    return f"Fine-tuning cannot start from {path}: {SPAWN_GUARD}"


def explain_child_failure(message: str, details: str) -> str:
    """The child's own exception line when there is one; the spawn guard when that was it."""
    lines = [line for line in (details or "").strip().splitlines() if line.strip()]
    last = lines[-1].strip() if lines else ""
    if "bootstrapping phase" in (details or "") or "bootstrapping phase" in message:
        return f"{SPAWN_GUARD} The child process said: {last or message}"
    if last and last not in message:
        return f"{message} ({last})"
    return message


def _tooltip_role() -> int:
    return Qt.ItemDataRole.ToolTipRole
