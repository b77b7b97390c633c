"""Load section: open a stack from a file or folder, or a simulated sample, and show what it is."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from napari_ribseg._widgets._session import (
    USER_ERRORS,
    ReviewSession,
    notify_error,
    notify_user_error,
    same_layer,
    source_of,
)
from napari_ribseg._widgets._settings import model_dir, save_settings, settings_backend
from napari_ribseg.core.errors import RibsegError
from napari_ribseg.core.stack import spacing_from_scale

if TYPE_CHECKING:
    from napari.layers import Image

    from napari_ribseg.core.stack import Stack

#: File filter of the open dialog; the reader registry decides in the end, so "All files" stays.
FILE_FILTER = (
    "Ultrasound stacks (*.tif *.tiff *.dcm *.dicom *.mp4 *.avi *.mov *.mat *.npy *.npz);;"
    "Images and animations (*.png *.jpg *.jpeg *.bmp *.gif *.webp);;"
    "All files (*)"
)
#: Name ending of a sample's ground-truth layer: shown hidden and locked so no one paints on it.
TRUTH_SUFFIX = "(ground truth)"


def _fmt_spacing(spacing: tuple[float, float] | None) -> str:
    if not spacing:
        return "unknown (pixels shown square)"
    return f"{spacing[0]:.3g} x {spacing[1]:.3g} mm/pixel"


class LoadSection(QWidget):
    """Buttons to open data and a summary of the stack under review."""

    #: An image layer was added by this section and should become the one under review.
    image_added = Signal(object)

    def __init__(self, session: ReviewSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        #: Whether loading a stack removes the previous stack's layers (default: only hides them).
        self.remove_previous = False
        layout = QVBoxLayout(self)

        buttons = QGridLayout()
        self.open_file_btn = QPushButton("Open file…")
        self.open_file_btn.setToolTip("Open a TIFF, DICOM, video, MAT or NumPy ultrasound stack")
        self.open_folder_btn = QPushButton("Open folder…")
        self.open_folder_btn.setToolTip("Open a folder of frame images (PNG, JPEG, TIFF)")
        self.sample_linear_btn = QPushButton("Sample: linear probe")
        self.sample_convex_btn = QPushButton("Sample: convex probe")
        for btn in (self.sample_linear_btn, self.sample_convex_btn):
            btn.setToolTip(
                "A simulated lung-ultrasound cine with known ribs, for trying things out"
            )
        buttons.addWidget(self.open_file_btn, 0, 0)
        buttons.addWidget(self.open_folder_btn, 0, 1)
        buttons.addWidget(self.sample_linear_btn, 1, 0)
        buttons.addWidget(self.sample_convex_btn, 1, 1)
        layout.addLayout(buttons)

        form = QFormLayout()
        self.frames_label = QLabel("–")
        self.size_label = QLabel("–")
        self.spacing_label = QLabel("–")
        self.rate_label = QLabel("–")
        self.source_label = QLabel("–")
        self.project_label = QLabel("–")
        for lab in (self.source_label, self.project_label):
            lab.setWordWrap(True)
        form.addRow("Frames:", self.frames_label)
        form.addRow("Size:", self.size_label)
        form.addRow("Spacing:", self.spacing_label)
        from napari_ribseg._widgets.region import DepthControl

        self.depth_control = DepthControl(session)
        form.addRow("Imaging depth:", self.depth_control)
        form.addRow("Frame rate:", self.rate_label)
        form.addRow("Source:", self.source_label)
        form.addRow("Review:", self.project_label)
        layout.addLayout(form)
        hint = QLabel("You can also drop a file onto napari; pick its layer in Segment.")
        hint.setWordWrap(True)
        hint.setStyleSheet("color: gray;")
        layout.addWidget(hint)

        folders = QGroupBox("Folders")
        folders.setToolTip(
            f"Kept in {'napari Preferences' if settings_backend() == 'napari' else 'settings.json'}"
        )
        folder_form = QFormLayout(folders)
        self.project_folder_label = QLabel()
        self.model_folder_label = QLabel()
        for lab in (self.project_folder_label, self.model_folder_label):
            lab.setWordWrap(True)
        self.project_folder_btn = QToolButton()
        self.project_folder_btn.setText("…")
        self.project_folder_btn.setToolTip("Save reviews in a folder of your choice")
        self.project_folder_reset = QToolButton()
        self.project_folder_reset.setText("↺")
        self.project_folder_reset.setToolTip("Save reviews next to the data again")
        self.model_folder_btn = QToolButton()
        self.model_folder_btn.setText("…")
        self.model_folder_btn.setToolTip("Where your fine-tuned models are kept and listed from")
        self.model_folder_reset = QToolButton()
        self.model_folder_reset.setText("↺")
        self.model_folder_reset.setToolTip("Use the default model folder")
        for label, lab, btn, reset in (
            (
                "Reviews:",
                self.project_folder_label,
                self.project_folder_btn,
                self.project_folder_reset,
            ),
            (
                "Your models:",
                self.model_folder_label,
                self.model_folder_btn,
                self.model_folder_reset,
            ),
        ):
            row = QHBoxLayout()
            row.addWidget(lab, 1)
            row.addWidget(btn)
            row.addWidget(reset)
            folder_form.addRow(label, row)
        layout.addWidget(folders)
        layout.addStretch(1)
        self.project_folder_btn.clicked.connect(self._choose_project_folder)
        self.project_folder_reset.clicked.connect(lambda: self.set_project_folder(None))
        self.model_folder_btn.clicked.connect(self._choose_model_folder)
        self.model_folder_reset.clicked.connect(lambda: self.set_model_folder(None))
        self._show_folders()

        self.open_file_btn.clicked.connect(self._open_file_dialog)
        self.open_folder_btn.clicked.connect(self._open_folder_dialog)
        self.sample_linear_btn.clicked.connect(lambda: self.load_sample("linear"))
        self.sample_convex_btn.clicked.connect(lambda: self.load_sample("convex"))
        session.image_bound.connect(self._show_summary)
        session.saved.connect(lambda msg: self._show_summary(False))
        session.image_renamed.connect(
            lambda *_: self._show_summary(self.project_label.text().startswith("Restored"))
        )
        self.depth_control.applied.connect(lambda derived: self._show_summary(False))

    # -- dialogs (never on a test path: tests call load()) ---------------------------------------
    def _start_folder(self) -> str:
        return self.session.settings.last_folder or str(Path.home())

    def _open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open ultrasound stack", self._start_folder(), FILE_FILTER
        )
        if path:
            self.session.remember_folder(Path(path).parent)
            self.load(path)

    def _open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open folder of frames", self._start_folder())
        if path:
            self.session.remember_folder(Path(path).parent)
            self.load(path)

    def _choose_project_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(
            self, "Folder for review projects", self._start_folder()
        )
        if path:
            self.set_project_folder(path)

    def _choose_model_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(
            self, "Folder for your models", self._start_folder()
        )
        if path:
            self.set_model_folder(path)

    # -- folders -------------------------------------------------------------------------------
    def set_project_folder(self, folder: str | Path | None) -> None:
        """Save future reviews under ``folder`` (``None``: next to the data); the current stays."""
        self.session.settings.project_folder = str(folder) if folder else ""
        save_settings(self.session.settings)
        self._show_folders()

    def set_model_folder(self, folder: str | Path | None) -> None:
        """List and save user models in ``folder`` (``None``: the default user model folder)."""
        self.session.settings.model_folder = str(folder) if folder else ""
        save_settings(self.session.settings)
        self._show_folders()
        self.session.models_changed.emit("")

    def _show_folders(self) -> None:
        from napari_ribseg.core.models import user_model_dir

        project = self.session.settings.project_folder
        self.project_folder_label.setText(project or "next to each stack (<name>.ribseg)")
        self.model_folder_label.setText(str(user_model_dir(model_dir(self.session.settings))))

    # -- loading -------------------------------------------------------------------------------
    def load(self, path: str | Path) -> Image | None:
        """Read ``path`` through the reader registry and add it as an image; errors are notified."""
        from napari_ribseg.core.io import read_stack

        try:
            stack = read_stack(path)
        except USER_ERRORS as exc:
            # A reader bug or an unexpected file must not take the viewer down with it.
            what = "" if isinstance(exc, RibsegError) else " (is it an ultrasound stack?)"
            notify_user_error(f"Could not open{what}", exc, path)
            return None
        return self.add_stack(stack)

    def add_stack(self, stack: Stack) -> Image:
        """Show a :class:`Stack` as an image layer whose scale is its physical spacing."""
        extra = {}
        if stack.spacing_mm:
            # Physical spacing becomes the layer scale, so napari's scale bar reads millimetres.
            extra = {
                "scale": (1.0, float(stack.spacing_mm[0]), float(stack.spacing_mm[1])),
                "units": ("pixel", "mm", "mm"),
            }
        before = list(self.session.viewer.layers)
        active = self.session.viewer.layers.selection.active
        layer = self.session.viewer.add_image(
            stack.frames,
            name=stack.name,
            **extra,
            colormap="gray",
            contrast_limits=(0.0, 1.0),
            # The same metadata as the npe2 reader gives, so dropped and loaded stacks look alike.
            metadata={**stack.metadata, **stack.describe()},
        )
        self._present(before, [layer], layer, active)
        return layer

    def load_sample(self, kind: str = "linear") -> Image | None:
        """Add the simulated ``linear`` or ``convex`` sample cine and put it under review."""
        from napari.layers import Layer

        from napari_ribseg import _sample_data

        factory = {"linear": _sample_data.linear_cine, "convex": _sample_data.convex_cine}.get(kind)
        if factory is None:
            notify_error(f"Unknown sample {kind!r}: choose 'linear' or 'convex'.")
            return None
        name = _sample_data.SAMPLE_NAMES[kind]
        viewer = self.session.viewer
        if name in viewer.layers:
            # Already loaded: show it again (with its review), not a copy named "... [1]" whose
            # review would start empty.
            existing = viewer.layers[name]
            self.image_added.emit(existing)  # bound, it is shown as a pick of it shows it
            return existing
        image = None
        before = list(self.session.viewer.layers)
        active = self.session.viewer.layers.selection.active
        added = []
        for data, meta, layer_type in factory():
            layer = Layer.create(data, dict(meta or {}), layer_type)
            self.session.viewer.add_layer(layer)
            added.append(layer)
            if layer_type == "image" and image is None:
                image = layer
        if image is not None:
            self._present(before, added, image, active)
        return image

    def _show_region(self, image: Image) -> None:
        """Outline the imaged region as an editable Shapes layer; the model runs inside it."""
        from napari_ribseg._widgets.region import show_region

        try:
            show_region(self.session.viewer, image)
        except USER_ERRORS as exc:
            notify_user_error(f"Could not find the ultrasound image inside '{image.name}'", exc)

    def _present(self, before: list, added: list, image: Image, active: Any = None) -> None:
        """Show a new stack as the one to work on: alone, framed, in mm, its ribs layer active.

        Every new layer gets the same units (napari warns about mixed units otherwise); a sample's
        ground truth is hidden and locked. Then the stack is put under review, which shows it as a
        pick of it does (:meth:`show_stack`: the view framed on it, its ribs layer selected, so the
        first brush stroke lands on the review, not on the truth). Only once it is under review
        are the previous stack's layers hidden (or removed, with ``remove_previous``): a stack
        that cannot be reviewed is hidden instead, and the one under review stays as it was, the
        layer that was selected (``active``, before the new ones were added) selected again.
        """
        viewer = self.session.viewer
        mm = spacing_from_scale(image.scale) is not None
        if mm:
            image.units = ("pixel", "mm", "mm")
            # The ribs layer the session made when the image was inserted too, before the next
            # draw (a layer shown or hidden below): napari warns at every draw with mixed units.
            labels = self.session.labels_layer
            own = same_layer(self.session.image_layer, image)
            if own and labels is not None and labels.ndim == image.ndim:
                labels.units = tuple(str(u) for u in image.units)
            from napari_ribseg._widgets.region import region_layer

            outline = region_layer(viewer)  # its scale follows in _show_region
            if outline is not None:
                outline.units = ("mm", "mm")
        for layer in added:
            if mm:
                layer.units = tuple(str(u) for u in image.units)
            if layer.name.endswith(TRUTH_SUFFIX):
                layer.visible = False
                layer.editable = False  # no paint tool lands on the truth
                layer.locked = True  # nor can it be deleted by a stray key
        self.image_added.emit(image)  # Segment binds it and, bound, shows it (show_stack)
        if not same_layer(self.session.image_layer, image):
            if self.session.image_layer is not None:
                for layer in added:  # not over the stack still under review
                    layer.visible = False
                if active is not None and active in viewer.layers:
                    viewer.layers.selection.active = active
            return
        for old in before:
            if old in viewer.layers:
                if self.remove_previous:
                    viewer.layers.remove(old)
                else:
                    old.visible = False

    def show_stack(self, image: Image) -> None:
        """Show a stack already in the viewer as the one under review (picked in Segment -> Image).

        As after loading it: the other layers are hidden, its ribs layer is shown and selected, its
        probability map (when *Show probability map* shows one) is shown, and the imaged-region
        outline is this stack's (as the user left it, or detected).
        """
        viewer = self.session.viewer
        s = self.session
        # Its own layers by the layers themselves: names change, and napari renames a new layer
        # "<name> [1]" when its name is taken.
        own = [image]
        if same_layer(s.image_layer, image):
            own += [s.labels_layer, s.prob_layer]
        for layer in viewer.layers:
            if not any(same_layer(layer, x) for x in own if x is not None):
                layer.visible = False
        image.visible = True
        if s.prob_layer is not None and same_layer(s.image_layer, image):
            s.prob_layer.visible = True  # as binding the stack again shows it
        self._show_region(image)
        self._select_ribs(image)

    def _select_ribs(self, image: Image) -> None:
        viewer = self.session.viewer
        # Only the image's own ribs layer: a load whose stack could not be reviewed leaves the
        # previous stack under review, and its ribs layer was shown (and selected) over the new one.
        labels = self.session.labels_layer if same_layer(self.session.image_layer, image) else None
        if labels is not None and any(same_layer(x, labels) for x in viewer.layers):
            # It may have been made when the image was inserted, before the units were set.
            labels.units = tuple(str(u) for u in image.units)
            labels.visible = True
            viewer.layers.selection.active = labels
        viewer.reset_view()

    # -- summary -------------------------------------------------------------------------------
    def _show_summary(self, restored: bool) -> None:
        s = self.session
        layer = s.image_layer
        if layer is None or s.project is None:
            for lab in (self.frames_label, self.size_label, self.spacing_label, self.rate_label):
                lab.setText("–")
            self.source_label.setText("–")
            self.project_label.setText("Load a stack to start.")
            return
        meta = layer.metadata if isinstance(layer.metadata, dict) else {}
        n, (h, w) = s.project.n_frames, s.project.frame_shape
        # The layer's scale is what the viewer measures with (the file's spacing, or one the
        # imaging depth gave); the metadata only says what the file recorded.
        spacing = spacing_from_scale(layer.scale) or meta.get("spacing_mm")
        self.frames_label.setText(str(n))
        size = f"{h} x {w} pixels"
        if spacing:
            size += f" ({h * spacing[0]:.1f} x {w * spacing[1]:.1f} mm)"
        self.size_label.setText(size)
        spacing_text = _fmt_spacing(tuple(spacing) if spacing else None)
        derived = meta.get("spacing_from_depth")
        if derived and spacing and abs(derived["spacing_mm"][0] - spacing[0]) < 1e-5 * spacing[0]:
            spacing_text += f" (from {derived['depth_mm']:g} mm depth)"
        self.spacing_label.setText(spacing_text)
        rate = meta.get("frame_rate")
        self.rate_label.setText(f"{rate:.1f} frames/s" if rate else "unknown")
        source = source_of(layer)
        self.source_label.setText(str(source) if source else f"layer '{layer.name}' (no file)")
        counts = s.project.statuses
        text = (
            f"{int((counts == 1).sum())} curated, {int((counts == 2).sum())} rejected, "
            f"{int((counts == 0).sum())} unreviewed; saved in {s.project.folder}"
        )
        if restored:
            text = "Restored earlier review: " + text
        self.project_label.setText(text)
        self.project_label.setToolTip(str(s.project.folder))
