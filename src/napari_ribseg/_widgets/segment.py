"""Segment section: pick image, model and device, run the model in a worker, tune the mask live.

The model runs in a napari thread worker that drives the core session's ``compute_prediction`` job;
the worker only computes probabilities and returns them, and the core session applies them (with its
overwrite rule) here on the GUI thread when the ``returned`` signal arrives. Threshold and clean-up
options go to the core session, which re-derives masks from the stored probabilities (no model run)
and skips curated, rejected and hand-edited frames.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from napari_ribseg._widgets._session import (
    PROBABILITY_KEY,
    USER_ERRORS,
    ReviewSession,
    friendly_error,
    layer_key,
    notify_error,
    notify_info,
    notify_user_error,
    same_layer,
)
from napari_ribseg._widgets._settings import model_dir, save_settings
from napari_ribseg.core.errors import RibsegError
from napari_ribseg.core.inference import FLIP_AVERAGE
from napari_ribseg.core.jobs import Progress, StopFlag
from napari_ribseg.core.session import MaskOptions, PredictionBatch
from napari_ribseg.core.session import ReviewSession as CoreSession

if TYPE_CHECKING:
    from napari.layers import Image

    from napari_ribseg.core.models import ModelEntry

SCOPES = {
    "current": "Current frame",
    "all": "All frames (curated kept)",
    "unreviewed": "Frames not yet reviewed",
}
#: Delay before re-deriving masks after a slider move: one recompute per pause, not per pixel.
LIVE_UPDATE_MS = 120


#: The mask options are the core session's (one declaration of defaults and ranges).
PostOptions = MaskOptions
#: What a finished (or stopped) run hands back to the GUI thread.
SegmentationResult = PredictionBatch


def model_tooltip(entry: ModelEntry) -> str:
    """Rich-text summary of a model card: variant, preset, size, training and metrics."""
    card = entry.card
    lines = [
        f"<b>{entry.name}</b> ({entry.source})",
        f"Variant: {card.variant}, preset: {card.preset}, input {card.input_size} px",
        f"Parameters: {entry.n_params:,}",
    ]
    data = card.training_data
    if data.frames or data.source:
        lines.append(f"Trained on: {data.frames} frames from {data.source or 'unknown data'}")
    if card.parent:
        lines.append(f"Fine-tuned from: {card.parent}")
    if card.freeze_strategy or card.epochs:
        lines.append(
            f"Training: {card.epochs} epochs, freeze '{card.freeze_strategy or '-'}', "
            f"augmentation '{card.augmentation or '-'}'"
        )
    for metric in card.metrics:
        where = f" on {metric.data}" if metric.data else ""
        lines.append(f"{metric.name}: {metric.value:.3f}{where}")
    if card.description:
        lines.append(card.description)
    lines.append(f"Created {card.created}")
    return "<br>".join(lines)


def segmentation_job(
    core: CoreSession,
    model_path: str,
    cached: Any,
    device: str,
    indices: np.ndarray,
    stop: StopFlag,
    region: Any = None,
    flip_average: bool | None = None,
) -> Generator[Progress, None, PredictionBatch]:
    """Worker body: the core session's prediction job (loads the model unless cached)."""
    import torch

    from napari_ribseg.core.devices import resolve_device

    threads_before = torch.get_num_threads()
    if resolve_device(device).type == "cpu":
        # Leave one core to napari's GUI thread: with every core busy in convolutions the viewer
        # stutters (measured in benchmarks/bench_ui.py). Costs 1/N of throughput on N cores.
        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    model = cached if cached is not None else model_path
    try:
        batch = yield from core.compute_prediction(
            model, indices, device=device, stop=stop, region=region, flip_average=flip_average
        )
    finally:
        # The setting is process-wide: give every other torch user (fine-tune, notebooks) it back.
        torch.set_num_threads(threads_before)
    if batch.model_name == model_path:
        batch.model_name = Path(model_path).stem
    return batch


class SegmentSection(QWidget):
    """Controls for running the model and shaping its mask."""

    #: A run ended; argument: "done", "stopped", "failed", "discarded" or "nothing" (it did not
    #: start: nothing to segment; the reason is in ``progress_label``).
    finished = Signal(str)
    #: The picker put another image layer under review (the user's choice or a dropped stack);
    #: argument: the layer, to be shown as the stack to work on.
    image_chosen = Signal(object)

    def __init__(self, session: ReviewSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.worker: Any = None
        self._stop: StopFlag | None = None
        self._pbar: Any = None
        self._model_cache: dict[tuple[str, float, str], Any] = {}
        self._entries: list[ModelEntry] = []
        #: The picker row just chosen through currentIndexChanged, until the activated signal that
        #: follows it in the same pick by the user (or the next turn of the event loop).
        self._picked_row: int | None = None
        #: The last refused bind (layer, message), until the next turn of the event loop.
        self._refusal: tuple[str, str] | None = None
        self._outcome = "done"
        #: Said after the run's message: where the model ran when that is not the imaged region.
        self._region_note = ""
        layout = QVBoxLayout(self)

        form = QFormLayout()
        self.image_combo = QComboBox()
        self.image_combo.setToolTip("The image layer to segment (a stack you loaded or dropped)")
        model_row = QHBoxLayout()
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("Bundled and your fine-tuned models; hover for details")
        self.refresh_models_btn = QToolButton()
        self.refresh_models_btn.setText("↻")
        self.refresh_models_btn.setToolTip("Look for new models in the model folders")
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.refresh_models_btn)
        self.device_combo = QComboBox()
        self.device_combo.setToolTip("Where the model runs; 'auto' picks a GPU when there is one")
        self.scope_combo = QComboBox()
        for key, text in SCOPES.items():
            self.scope_combo.addItem(text, key)
        self.scope_combo.setCurrentIndex(1)
        form.addRow("Image:", self.image_combo)
        form.addRow("Model:", model_row)
        form.addRow("Device:", self.device_combo)
        form.addRow("Run on:", self.scope_combo)
        self.flip_check = QCheckBox("Average with the mirror image")
        self.flip_check.setChecked(FLIP_AVERAGE)
        self.flip_check.setToolTip(
            "Run each frame and its left-right mirror image and average the two (test-time "
            "augmentation): twice the time; measured gains in docs/inference.md"
        )
        form.addRow("Flips:", self.flip_check)
        layout.addLayout(form)

        run_row = QHBoxLayout()
        self.run_btn = QPushButton("Segment")
        self.run_btn.setToolTip("Run the model; curated frames are never overwritten")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setToolTip("Stop after the current batch and keep what is done")
        self.cancel_btn.setEnabled(False)
        run_row.addWidget(self.run_btn, 1)
        run_row.addWidget(self.cancel_btn)
        layout.addLayout(run_row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        # No "0 / 1 frames" before the first run: the bar appears when a run starts.
        self.progress.setFormat("")
        self.progress.setVisible(False)
        self.progress_label = QLabel("")
        self.progress_label.setWordWrap(True)
        layout.addWidget(self.progress)
        layout.addWidget(self.progress_label)

        post = QGroupBox("Mask (updates live, no model re-run)")
        post_form = QFormLayout(post)
        defaults = MaskOptions()
        self.threshold_slider = QLabeledDoubleSlider()
        self.threshold_slider.setRange(
            *MaskOptions.__dataclass_fields__["threshold"].metadata["range"]
        )
        self.threshold_slider.setDecimals(2)
        self.threshold_slider.setValue(defaults.threshold)
        self.threshold_slider.setToolTip("Probability at or above which a pixel counts as rib")
        self.min_size_spin = QSpinBox()
        self.min_size_spin.setRange(0, 100_000)
        self.min_size_spin.setSuffix(" px")
        self.min_size_spin.setToolTip("Drop rib pieces smaller than this (0 keeps all)")
        self.fill_holes_check = QCheckBox("Fill holes")
        self.keep_spin = QSpinBox()
        self.keep_spin.setRange(0, 50)
        self.keep_spin.setSpecialValueText("all")
        self.keep_spin.setToolTip("Keep only the K largest rib pieces per frame (0: all)")
        self.show_prob_check = QCheckBox("Show probability map")
        post_form.addRow("Threshold:", self.threshold_slider)
        post_form.addRow("Min size:", self.min_size_spin)
        post_form.addRow("Keep largest:", self.keep_spin)
        post_form.addRow(self.fill_holes_check)
        post_form.addRow(self.show_prob_check)
        layout.addWidget(post)
        layout.addStretch(1)

        self._live_timer = QTimer(self)
        self._live_timer.setSingleShot(True)
        self._live_timer.setInterval(LIVE_UPDATE_MS)
        self._live_timer.timeout.connect(self.update_masks)

        self.run_btn.clicked.connect(lambda: self.run(self.scope_combo.currentData()))
        self.cancel_btn.clicked.connect(self.cancel)
        self.refresh_models_btn.clicked.connect(lambda: self.refresh_models())
        # A script's pick (setCurrentIndex) emits currentIndexChanged; a user's pick of another
        # entry emits it and then activated; a pick of the entry already shown (a reopened dock
        # shows a stack not yet bound) only activated. Each pick binds and shows the stack once.
        self.image_combo.currentIndexChanged.connect(self._on_image_changed)
        self.image_combo.activated.connect(self._on_image_activated)
        self.device_combo.currentTextChanged.connect(self._on_device_choice)
        self.model_combo.currentIndexChanged.connect(self._on_model_choice)
        self.threshold_slider.valueChanged.connect(self._schedule_update)
        self.min_size_spin.valueChanged.connect(self._schedule_update)
        self.keep_spin.valueChanged.connect(self._schedule_update)
        self.fill_holes_check.toggled.connect(self._schedule_update)
        self.show_prob_check.toggled.connect(self.session.show_probability)
        # A stack put under review shows its map when the box is ticked (a restored review has one).
        session.image_bound.connect(
            lambda _r: self.show_prob_check.isChecked() and self.session.show_probability(True)
        )
        # A stack bound later starts with the options shown here, not the defaults.
        session.mask_options = self.options
        session.models_changed.connect(self.refresh_models)
        layers = session.viewer.layers
        layers.events.inserted.connect(self._refresh_images)
        layers.events.removed.connect(self._refresh_images)
        layers.events.renamed.connect(self._refresh_images)

        self._refresh_images()
        self.refresh_models()
        self._fill_devices()
        self._update_run_enabled()

    # -- pickers -------------------------------------------------------------------------------
    def _image_layers(self) -> list[Image]:
        from napari.layers import Image

        return [
            layer
            for layer in self.session.viewer.layers
            if isinstance(layer, Image)
            and not layer.rgb
            and not same_layer(layer, self.session.prob_layer)
            # Another stack's probability map (kept, hidden, when that stack was left).
            and not (isinstance(layer.metadata, dict) and layer.metadata.get(PROBABILITY_KEY))
        ]

    def _refresh_images(self, event: Any = None) -> None:
        current = self.session.image_layer
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        for layer in self._image_layers():
            self.image_combo.addItem(layer.name, layer)
        index = self._index_of(current)
        if index >= 0:
            self.image_combo.setCurrentIndex(index)
        self.image_combo.blockSignals(False)
        if (
            current is None
            and self.image_combo.count()
            and getattr(event, "type", "") == "inserted"
        ):
            # A stack dropped onto napari becomes the one under review when nothing else is (not
            # when a layer goes: closing napari removes them one by one).
            self._on_image_choice(self.image_combo.currentIndex())
        self._update_run_enabled()

    def _index_of(self, layer: Image | None) -> int:
        """The picker's row of ``layer`` (by the layer, not its name: names change), or -1."""
        if layer is None:
            return -1
        combo = self.image_combo
        return next((i for i in range(combo.count()) if same_layer(combo.itemData(i), layer)), -1)

    def select_image(self, layer: Image) -> bool:
        """Put ``layer`` under review and show it in the picker, as picking it there does (the
        other stacks hidden, its ribs layer selected); errors become notifications."""
        self._refresh_images()
        index = self._index_of(layer)
        self.image_combo.blockSignals(True)
        if index >= 0:
            self.image_combo.setCurrentIndex(index)
        self.image_combo.blockSignals(False)
        return self._choose(layer)

    def _on_image_changed(self, index: int) -> None:
        self._picked_row = index
        QTimer.singleShot(0, self._forget_picked_row)  # a script's pick: no activated follows
        self._on_image_choice(index)

    def _on_image_activated(self, index: int) -> None:
        if self._picked_row == index:  # the same pick, already handled by currentIndexChanged
            self._picked_row = None
            return
        self._on_image_choice(index)

    def _forget_picked_row(self) -> None:
        self._picked_row = None

    def _forget_refusal(self) -> None:
        self._refusal = None

    def _on_image_choice(self, index: int) -> None:
        layer = self.image_combo.itemData(index) if index >= 0 else None
        if layer is not None:
            self._choose(layer)

    def _choose(self, layer: Image) -> bool:
        """The one way a stack is picked (the picker, a script): bind it and show it as the one on
        screen. The stack already under review too: a pick of it shows again its layers that were
        hidden (by hand), as switching back does."""
        if not self._bind(layer):
            return False
        self.image_chosen.emit(layer)
        return True

    def _bind(self, layer: Image) -> bool:
        try:
            restored = self.session.bind_image(layer)
        except USER_ERRORS as exc:
            action = f"Cannot review '{layer.name}'"
            refusal = (layer_key(layer), friendly_error(action, exc))
            # A load binds its stack twice in one go (as inserted, when nothing is under review,
            # and as the load's pick): one refusal, one notification.
            if refusal != self._refusal:
                notify_user_error(action, exc)
                self._refusal = refusal
                QTimer.singleShot(0, self._forget_refusal)
            self._refresh_images()  # the picker shows the stack under review, if one still is
            return False
        if restored and self.session.project is not None:
            n = len(self.session.project.curated_frames)
            notify_info(f"Restored the earlier review of '{layer.name}' ({n} curated frames).")
        self._update_run_enabled()
        return True

    def refresh_models(self, select: str | None = None) -> None:
        """Re-read the model registry; select ``select`` (a name) or keep the current choice."""
        from napari_ribseg.core.models import default_model, list_models
        from napari_ribseg.core.models.registry import entry_named

        keep = select or self.model_combo.currentText().split(" ")[0]
        # Without a name to select, the model chosen stays: by its file (a user model and a
        # bundled one can share a name).
        keep_path = None if select else self.model_combo.currentData()
        try:
            # Start checkpoints (salient pre-training) never saw a rib: not offered for segmenting.
            entries = list_models(model_dir=model_dir(self.session.settings))
            self._entries = [e for e in entries if not e.is_start]
        except USER_ERRORS as exc:
            notify_user_error("Could not list models", exc)
            self._entries = []
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for i, entry in enumerate(self._entries):
            label = entry.name if entry.source == "bundled" else f"{entry.name} (yours)"
            self.model_combo.addItem(label, str(entry.path))
            self.model_combo.setItemData(i, model_tooltip(entry), _tooltip_role())
        index = next(
            (i for i, e in enumerate(self._entries) if keep_path and str(e.path) == keep_path), -1
        )
        if index < 0 and (named := entry_named(self._entries, keep)) is not None:
            index = self._entries.index(named)  # a name means what resolve_model gives for it
        if index < 0 and self._entries:
            # The registry's one rule (a gate winner, never a loser; see default_model).
            default = default_model(self._entries)
            index = self._entries.index(default) if default is not None else 0
        if index >= 0:
            self.model_combo.setCurrentIndex(index)
        self.model_combo.blockSignals(False)
        self.session.models_listed.emit(list(self._entries))
        self._on_model_choice(self.model_combo.currentIndex())
        self._update_run_enabled()

    def _on_model_choice(self, index: int) -> None:
        if 0 <= index < len(self._entries):
            self.model_combo.setToolTip(model_tooltip(self._entries[index]))
            self.session.model_selected.emit(self._entries[index].name)

    def current_model(self) -> ModelEntry | None:
        index = self.model_combo.currentIndex()
        return self._entries[index] if 0 <= index < len(self._entries) else None

    def select_model(self, name: str) -> bool:
        """Select the model called ``name`` (re-reading the registry if it is new)."""
        from napari_ribseg.core.models.registry import entry_named

        if not any(e.name == name for e in self._entries):
            self.refresh_models()
        named = entry_named(self._entries, name)
        index = self._entries.index(named) if named is not None else -1
        if index >= 0:
            self.model_combo.setCurrentIndex(index)
        return index >= 0

    def _fill_devices(self) -> None:
        from napari_ribseg.core.devices import available_devices

        self.device_combo.blockSignals(True)
        self.device_combo.clear()
        names = ["auto", *available_devices()]
        self.device_combo.addItems(names)
        wanted = self.session.settings.device
        self.device_combo.setCurrentIndex(names.index(wanted) if wanted in names else 0)
        self.device_combo.blockSignals(False)

    def _on_device_choice(self, name: str) -> None:
        if name:
            self.session.settings.device = name
            save_settings(self.session.settings)

    def _update_run_enabled(self) -> None:
        running = self.worker is not None
        reason = ""
        if self.session.image_layer is None:
            reason = "Load a stack first (Load section)."
        elif not self._entries:
            reason = "No model found: add a checkpoint to the model folder."
        self.run_btn.setEnabled(not running and not reason)
        self.run_btn.setToolTip(reason or "Run the model; curated frames are never overwritten")
        if reason and not running:
            self.progress_label.setText(reason)
        elif not running and self.progress_label.text().startswith(("Load a", "No model")):
            self.progress_label.setText("")

    # -- running -------------------------------------------------------------------------------
    def frames_for(self, scope: str) -> np.ndarray:
        """Frame indices a run on ``scope`` may write (the core session's overwrite rule)."""
        core = self.session.core
        if core is None:
            return np.zeros(0, np.int64)
        return core.frames_for(scope, self.session.current_frame())

    def options(self) -> PostOptions:
        return PostOptions(
            threshold=float(self.threshold_slider.value()),
            min_size=int(self.min_size_spin.value()),
            fill_holes=bool(self.fill_holes_check.isChecked()),
            keep_largest=int(self.keep_spin.value()),
        )

    def current_region(self) -> Any:
        """The imaged region from the "imaged region" layer (as the user left it), else ``None``.

        An outline the user emptied is the whole frame (kind ``full``): the model runs on whole
        frames, and the run's message says so.
        """
        from napari_ribseg._widgets.region import region_for

        image = self.session.image_layer
        if self.session.project is None or image is None:
            return None
        return region_for(self.session.viewer, image)

    def run(self, scope: str = "all") -> Any:
        """Start a segmentation worker on ``scope``; returns it (``None`` if nothing to do)."""
        from napari.qt.threading import create_worker
        from napari.utils import progress

        if self.worker is not None:
            notify_info("A segmentation is already running; cancel it first.")
            return None
        entry = self.current_model()
        if self.session.project is None or entry is None:
            notify_error(
                "Nothing to segment: load a stack (Load section) and make sure a model is listed."
            )
            return None
        if scope == "current" and self.session.frame_on_screen() is None:
            self._nothing_to_do("Nothing to segment: " + self.session.not_on_screen())
            return None
        indices = self.frames_for(scope)
        if indices.size == 0:
            current = self.session.current_frame()
            why = self.session.core.nothing_to_run(scope, current)
            self._nothing_to_do(f"Nothing to segment: {why}.")
            return None
        device = self.device_combo.currentText() or "auto"
        key = (str(entry.path), _mtime(entry.path), device)
        self._stop = StopFlag()
        region = self.current_region()
        whole = region is not None and region.kind == "full"
        self._region_note = " on whole frames (the imaged-region outline is empty)" if whole else ""
        worker = create_worker(
            segmentation_job,
            self.session.core,
            str(entry.path),
            self._model_cache.get(key),
            device,
            indices,
            self._stop,
            region=region,
            flip_average=self.flip_check.isChecked(),
            _start_thread=False,
        )
        self._pbar = progress(total=int(indices.size), desc=f"Segmenting ribs ({entry.name})")
        self.progress.setRange(0, int(indices.size))
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m frames")
        self.progress.setVisible(True)
        self._outcome = "done"
        self.progress_label.setText(f"Starting {entry.name} on {device}{self._region_note}…")
        worker.yielded.connect(self._on_progress)
        core = self.session.core
        worker.returned.connect(lambda result: self._on_returned(result, key, core))
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.cancel_btn.setEnabled(True)
        self._update_run_enabled()
        worker.start()
        return worker

    def _nothing_to_do(self, message: str) -> None:
        """A run that did not start: say why here, in a notification and, as the outcome of
        this run (not the last one that ran), in the status line."""
        self.progress_label.setText(message)
        notify_info(message)
        self.finished.emit("nothing")

    def cancel(self) -> None:
        """Ask the running model to stop after its current batch; finished frames are kept."""
        if self._stop is not None:
            self._stop.set()
            self.progress_label.setText("Stopping after this batch…")

    def _on_progress(self, event: Progress) -> None:
        if event.kind == "batch":
            self.progress.setMaximum(max(event.total, 1))
            self.progress.setValue(event.step)
            if self._pbar is not None:
                self._pbar.n = event.step
                self._pbar.refresh()
            fps = event.values.get("frames_per_s", 0.0)
            if fps:
                self.progress_label.setText(
                    f"{event.step}/{event.total} frames, {fps:.1f} frames/s"
                )
        elif event.message:
            self.progress_label.setText(event.message)
            if self._pbar is not None:
                self._pbar.set_description(event.message)

    def _on_returned(self, result: PredictionBatch, key: tuple, core: Any) -> None:
        if result.loaded is not None:
            self._model_cache = {key: result.loaded}  # one model resident at a time
        if core is not self.session.core:
            # The user switched to another stack while the model ran: these masks are not its.
            self._outcome = "discarded"
            self.progress_label.setText("Discarded: the stack changed during the run.")
            return
        written = self.session.apply_prediction(result)
        if result.frames.size and self.show_prob_check.isChecked():
            self.session.show_probability(True)
        done = (
            f"{written.size} of {result.requested} frames segmented with {result.model_name}"
            f"{self._region_note}"
        )
        if result.stopped:
            self._outcome = "stopped"
            done = "Cancelled: " + done + " (kept)"
        self.progress_label.setText(done)

    def _on_error(self, exc: BaseException) -> None:
        self._outcome = "failed"
        if isinstance(exc, RibsegError):
            notify_error(friendly_error("Segmentation failed", exc))
        else:
            notify_error(
                f"Segmentation failed ({type(exc).__name__}: {exc}). Try the CPU device or "
                "another model; your labels are unchanged."
            )
        self.progress_label.setText("Segmentation failed; see the notification.")

    def _on_finished(self) -> None:
        self.worker = None
        self._stop = None
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self.cancel_btn.setEnabled(False)
        self._update_run_enabled()
        self.finished.emit(self._outcome)

    # -- live mask -----------------------------------------------------------------------------
    def _schedule_update(self, *_: Any) -> None:
        self._live_timer.start()

    def update_masks(self) -> np.ndarray:
        """Send the mask options to the core session; return the frames it re-derived."""
        core = self.session.core
        if core is None:
            return np.zeros(0, np.int64)
        return core.set_options(self.options())

    def shutdown(self) -> None:
        """Stop a running worker and stop following the viewer's layers (the widget closes)."""
        self.cancel()
        self._live_timer.stop()
        layers = self.session.viewer.layers
        for emitter in (layers.events.inserted, layers.events.removed, layers.events.renamed):
            with contextlib.suppress(Exception):  # the viewer may already be gone
                emitter.disconnect(self._refresh_images)
        if self._pbar is not None:
            with contextlib.suppress(Exception):
                self._pbar.close()


def _mtime(path: Path) -> float:
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return 0.0


def _tooltip_role() -> int:
    from qtpy.QtCore import Qt

    return Qt.ItemDataRole.ToolTipRole
