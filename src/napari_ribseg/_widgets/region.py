"""The imaged region as an editable napari Shapes layer: shown on load, read back for inference.

The core finds the region (:func:`~napari_ribseg.core.region.detect_imaged_region`); this module
only draws it as a polygon the user can move or reshape and turns that polygon back into an
:class:`~napari_ribseg.core.region.ImagedRegion` when the model runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from napari_ribseg.core.region import ImagedRegion, detect_imaged_region

if TYPE_CHECKING:
    from napari.layers import Image, Shapes

#: Name of the Shapes layer that holds the imaged region.
REGION_LAYER = "imaged region"


def region_layer(viewer: Any) -> Shapes | None:
    """The viewer's imaged-region layer, if there is one."""
    return next((layer for layer in viewer.layers if layer.name == REGION_LAYER), None)


def show_region(viewer: Any, image: Image) -> Shapes | None:
    """Detect the imaged region of ``image`` and show it as an editable polygon (replacing any)."""
    from napari_ribseg._widgets._session import frames_of

    frames = frames_of(image)
    region = detect_imaged_region(frames)
    old = region_layer(viewer)
    if old is not None:
        viewer.layers.remove(old)
    if region.kind == "full":
        return None
    layer = viewer.add_shapes(
        [region.polygon()],
        shape_type="polygon",
        name=REGION_LAYER,
        edge_color="#39c5ff",
        edge_width=max(1.0, min(region.shape) / 200),
        face_color="transparent",
        scale=tuple(image.scale[-2:]),
        metadata={"frame_shape": list(region.shape), "detected": region.to_dict()},
    )
    viewer.layers.selection.active = image
    return layer


def region_from_layer(layer: Shapes | None, frame_shape: tuple[int, int]) -> ImagedRegion | None:
    """The region the user's polygons cover (their union) in frames of ``frame_shape``."""
    if layer is None or not len(layer.data):
        return None
    from napari_ribseg.core.region import polygon_to_mask

    mask = np.zeros(frame_shape, bool)
    for shape in layer.data:
        if len(shape) >= 3:
            mask |= polygon_to_mask(np.asarray(shape)[:, -2:], frame_shape)
    if not mask.any():
        return None
    return ImagedRegion.from_mask(mask, kind="hull", source="user")


def region_for(viewer: Any, frame_shape: tuple[int, int]) -> ImagedRegion | None:
    """The region to run the model on: the layer's, when it was drawn for frames of this size."""
    layer = region_layer(viewer)
    if layer is None or tuple(layer.metadata.get("frame_shape", ())) != tuple(frame_shape):
        return None
    return region_from_layer(layer, frame_shape)
