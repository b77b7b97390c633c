"""The imaged region as an editable napari Shapes layer: shown on load, read back for inference.

The core finds the region (:func:`~napari_ribseg.core.region.detect_imaged_region`); this module
only draws it as a polygon the user can move or reshape and turns that polygon back into an
:class:`~napari_ribseg.core.region.ImagedRegion` when the model runs. :class:`DepthControl` turns
the scanner's imaging depth into a pixel spacing over that region
(:func:`~napari_ribseg.core.region.depth_spacing`, which also keeps a spacing the file records) and
puts it on the layers' scale.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QCheckBox, QDoubleSpinBox, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from napari_ribseg.core.region import (
    DEPTH_RANGE_MM,
    DepthSpacing,
    ImagedRegion,
    depth_spacing,
    detect_imaged_region,
)

if TYPE_CHECKING:
    from napari.layers import Image, Shapes

    from napari_ribseg._widgets._session import ReviewSession

#: Name of the Shapes layer that holds the imaged region.
REGION_LAYER = "imaged region"


def region_layer(viewer: Any) -> Shapes | None:
    """The viewer's imaged-region layer, if there is one."""
    return next((layer for layer in viewer.layers if layer.name == REGION_LAYER), None)


#: Key in an image layer's metadata under which its outline waits while another stack is shown.
KEPT_REGION = "ribseg_region"


def _frame_shape(image: Image) -> tuple[int, int]:
    return tuple(int(v) for v in image.data.shape[-2:])


def region_owner(layer: Shapes | None) -> str | None:
    """``unique_id`` of the image layer the region layer outlines (``None``: none, an orphan).

    The link is the layer's identity, not its name: a stack renamed in the layer list keeps its
    outline, and a later stack given a deleted one's name does not inherit it.
    """
    return None if layer is None else layer.metadata.get("image_id")


def _outlines(layer: Shapes | None, image: Any) -> bool:
    """Whether the region layer outlines ``image`` (the same layer, whatever its name now)."""
    owner = region_owner(layer)
    return owner is not None and owner == getattr(image, "unique_id", None)


def show_region(viewer: Any, image: Image) -> Shapes | None:
    """Show the imaged region of ``image`` as an editable outline (one region layer per viewer).

    An outline already drawn for ``image`` stays as the user left it. Another stack's outline is
    kept in that stack's metadata (:data:`KEPT_REGION`) and comes back when it is shown again;
    a stack never outlined before is detected.
    """
    from napari_ribseg._widgets._session import frames_of

    frame_shape = _frame_shape(image)
    old = region_layer(viewer)
    if old is not None:
        if _outlines(old, image) and tuple(old.metadata["frame_shape"]) == frame_shape:
            old.scale = tuple(image.scale[-2:])  # the image may have gained mm since
            old.units = tuple(str(u) for u in image.units)[-2:]
            old.visible = True
            return old
        owner = next((x for x in viewer.layers if _outlines(old, x)), None)
        if owner is not None and isinstance(owner.metadata, dict):
            owner.metadata[KEPT_REGION] = {
                "frame_shape": list(old.metadata["frame_shape"]),
                "data": [np.asarray(d) for d in old.data],
                "shape_type": list(old.shape_type),
                "detected": old.metadata.get("detected"),
            }
        viewer.layers.remove(old)
    meta = image.metadata if isinstance(image.metadata, dict) else {}
    kept = meta.get(KEPT_REGION)
    if kept and tuple(kept["frame_shape"]) == frame_shape:
        data, shape_type, detected = kept["data"], kept["shape_type"], kept["detected"]
    else:
        region = detect_imaged_region(frames_of(image))
        if region.kind == "full":
            return None
        data, shape_type, detected = [region.polygon()], "polygon", region.to_dict()
    layer = viewer.add_shapes(
        data,
        shape_type=shape_type,
        name=REGION_LAYER,
        edge_color="#39c5ff",
        edge_width=max(1.0, min(frame_shape) / 200),
        face_color="transparent",
        scale=tuple(image.scale[-2:]),
        # The image's units too: napari drops all units (and warns) when layers' units differ.
        units=tuple(str(u) for u in image.units)[-2:],
        metadata={
            "frame_shape": list(frame_shape),
            "detected": detected,
            "image_id": image.unique_id,
        },
    )
    viewer.layers.selection.active = image
    return layer


def region_from_layer(layer: Shapes | None, frame_shape: tuple[int, int]) -> ImagedRegion | None:
    """The region the user's shapes cover (their union) in frames of ``frame_shape``.

    Polygons, rectangles and ellipses are filled as napari draws them; a path or line is closed
    into the polygon of its points. No layer: ``None``. Shapes that cover nothing (every one
    deleted): the whole frame, kind ``full`` (:meth:`ImagedRegion.from_outline`).
    """
    if layer is None:
        return None
    from napari_ribseg.core.region import polygon_to_mask

    mask = np.zeros(frame_shape, bool)
    filled = None
    for index, (shape, kind) in enumerate(zip(layer.data, layer.shape_type, strict=True)):
        if kind == "ellipse":
            # Its points are the corners of its bounding box; napari rasterises the ellipse.
            if filled is None:
                filled = layer.to_masks(mask_shape=frame_shape)
            mask |= np.asarray(filled[index], bool)
        elif len(shape) >= 3:
            mask |= polygon_to_mask(np.asarray(shape)[:, -2:], frame_shape)
    return ImagedRegion.from_outline(mask)


def region_for(viewer: Any, image: Image) -> ImagedRegion | None:
    """The region to run the model on in ``image``: the layer's, when it outlines this stack.

    ``None`` when no outline of this stack is shown (the core then detects the region); the
    whole frame (kind ``full``) when the user emptied the outline.
    """
    layer = region_layer(viewer)
    frame_shape = _frame_shape(image)
    if (
        layer is None
        or not _outlines(layer, image)
        or tuple(layer.metadata.get("frame_shape", ())) != frame_shape
    ):
        return None
    return region_from_layer(layer, frame_shape)


def forget_region_of(viewer: Any, image: Any) -> None:
    """``image`` was deleted: its outline belongs to no stack (never to a later one of its name)."""
    layer = region_layer(viewer)
    if layer is not None and _outlines(layer, image):
        layer.metadata["image_id"] = None


class DepthControl(QWidget):
    """ "Imaging depth (mm)": the depth the scanner shows gives the pixel spacing of the stack."""

    #: The layers got a spacing from the depth; argument: the :class:`DepthSpacing`.
    applied = Signal(object)

    def __init__(self, session: ReviewSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.depth_spin = QDoubleSpinBox()
        self.depth_spin.setRange(0.0, DEPTH_RANGE_MM[1])
        self.depth_spin.setDecimals(1)
        self.depth_spin.setSingleStep(10.0)
        self.depth_spin.setSuffix(" mm")
        self.depth_spin.setSpecialValueText("unknown")  # shown at 0, the default
        self.depth_spin.setToolTip(
            "The imaging depth the scanner prints on screen (160 mm for 16 cm). With Apply, the "
            "pixel spacing becomes depth / height of the imaged region (as you left its outline), "
            "for exports that record none (PNG, JPEG, video)"
        )
        self.apply_btn = QPushButton("Apply")
        self.apply_btn.setToolTip("Set the stack's pixel spacing from the imaging depth")
        self.replace_box = QCheckBox("Replace the file's spacing")
        self.replace_box.setToolTip(
            "A spacing the file records (DICOM, TIFF) is kept unless this is ticked"
        )
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.depth_spin, 1)
        row.addWidget(self.apply_btn)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.replace_box)
        self.apply_btn.clicked.connect(lambda: self.apply_depth())

    def apply_depth(self, depth_mm: float | None = None) -> DepthSpacing | None:
        """Give the stack under review the spacing of ``depth_mm`` (default: the spin box's)."""
        from napari_ribseg._widgets._session import USER_ERRORS, notify_error, notify_user_error

        if depth_mm is not None:
            self.depth_spin.setValue(float(depth_mm))
        depth = float(self.depth_spin.value())
        image = self.session.image_layer
        if image is None:
            notify_error("Load a stack first: the imaging depth applies to the stack under review.")
            return None
        if depth == 0.0:
            notify_error("Enter the imaging depth the scanner shows (e.g. 160 mm for 16 cm).")
            return None
        meta = image.metadata if isinstance(image.metadata, dict) else {}
        try:
            derived = depth_spacing(
                region_for(self.session.viewer, image),
                depth,
                existing=meta.get("spacing_mm"),
                replace=self.replace_box.isChecked(),
                what=f"'{image.name}'",
            )
        except USER_ERRORS as exc:
            notify_user_error("Could not set the spacing from the imaging depth", exc)
            return None
        meta["spacing_from_depth"] = derived.to_dict()
        self._scale_layers(image, derived.spacing_mm)
        self.applied.emit(derived)
        return derived

    def _scale_layers(self, image: Image, spacing: tuple[float, float]) -> None:
        """Put ``spacing`` on the scale of the stack's image, labels, probability and region."""
        s = self.session
        stack_layers = [image, s.labels_layer, s.prob_layer]
        for layer in (x for x in stack_layers if x is not None and x in s.viewer.layers):
            layer.scale = (*tuple(layer.scale)[:-2], *spacing)
            layer.units = ("pixel",) * (layer.ndim - 2) + ("mm", "mm")
        region = region_layer(s.viewer)
        if region is not None:
            region.scale = tuple(spacing)
            region.units = ("mm", "mm")
        s.viewer.reset_view()
