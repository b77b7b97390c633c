"""Segment a stack file into label TIFFs without holding the stack, its probabilities or its masks.

``ribseg predict`` runs this job: frames come from :func:`~napari_ribseg.core.io.lazy.open_frames`
one batch at a time, each batch's probabilities are thresholded and cleaned up at once (the clean-up
is per frame, so a batch gives the same masks as the whole stack) and appended to the output TIFFs.
Peak memory is the model and a batch, plus the stack itself only for formats without a lazy reader
(benchmarks/bench_predict_memory.py measures it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_ribseg.core.inference import Prediction, predict_stack
from napari_ribseg.core.io.lazy import LabelTiffStream, open_frames
from napari_ribseg.core.jobs import Progress, StopFlag
from napari_ribseg.core.postprocess import MaskOptions, probability_to_mask


@dataclass
class SegmentedFile:
    """What :func:`segment_file` wrote: the prediction's bookkeeping, the mask's rib fraction and
    the pixel spacing its TIFFs record (the source's, ``None`` when it had none, or the one an
    imaging depth gave: ``spacing_from_depth``)."""

    prediction: Prediction
    frame_shape: tuple[int, int]
    rib_fraction: float
    spacing_mm: tuple[float, float] | None = None
    spacing_from_depth: Any = None


def segment_file(
    loaded: Any,
    source: str | os.PathLike,
    masks_path: str | os.PathLike,
    *,
    prob_path: str | os.PathLike | None = None,
    threshold: float = 0.5,
    min_size: int = 0,
    fill_holes: bool = False,
    keep_largest: int = 0,
    variable: str | None = None,
    device: Any = "auto",
    batch_size: int | None = None,
    stop: StopFlag | None = None,
    crop_to_region: bool | None = None,
    region: Any = None,
    flip_average: bool | None = None,
    depth_mm: float | None = None,
    replace_spacing: bool = False,
) -> Generator[Progress, None, SegmentedFile]:
    """Job: predict every frame of ``source`` and write the uint8 0/1 masks (and p x 255) as TIFFs.

    The outputs are committed atomically when every frame is done; a stop or an error leaves any
    existing file at those paths untouched. They carry the source's pixel spacing, if it has one.
    ``crop_to_region``/``region``/``flip_average`` as in ``predict_stack``; an automatic region is
    detected from at most 32 frames sampled across the file. ``depth_mm``: record the spacing the
    scanner's imaging depth gives over the region's height (``core.region.depth_spacing``; a
    spacing the file records wins unless ``replace_spacing``), checked before any frame is run.
    """
    from napari_ribseg.core.inference import CROP_TO_REGION
    from napari_ribseg.core.region import depth_spacing, detect_imaged_region

    # Before any frame is read or run: threshold=50 failed after the first batch.
    MaskOptions(threshold, min_size, fill_holes, keep_largest).check()
    frames, spacing = open_frames(source, variable=variable)
    derived = None
    if region is None and (crop_to_region is not False or depth_mm is not None):
        region = detect_imaged_region(frames)
    if depth_mm is not None:
        what = f"'{source}'"
        derived = depth_spacing(
            region, depth_mm, existing=spacing, replace=replace_spacing, what=what
        )
        spacing = derived.spacing_mm
        if crop_to_region is False:
            region = None  # found for the depth only: the model still sees whole frames
    crop = CROP_TO_REGION if crop_to_region is None else bool(crop_to_region)
    n_frames, height, width = (int(s) for s in frames.shape)
    rib_pixels = 0

    with contextlib.ExitStack() as outputs:
        masks_out = outputs.enter_context(LabelTiffStream(masks_path, n_frames, spacing))
        prob_out = (
            outputs.enter_context(LabelTiffStream(prob_path, n_frames, spacing))
            if prob_path
            else None
        )

        def write(_indices: np.ndarray, probs: np.ndarray) -> None:
            nonlocal rib_pixels
            masks = probability_to_mask(
                probs,
                threshold,
                min_size=min_size,
                fill_holes=fill_holes,
                keep_largest=keep_largest,
            )
            rib_pixels += int(np.count_nonzero(masks))
            masks_out.write(masks)
            if prob_out is not None:
                prob_out.write(probs)

        prediction = yield from predict_stack(
            loaded,
            frames,
            device=device,
            batch_size=batch_size,
            stop=stop,
            on_batch=write,
            keep_probabilities=False,
            crop_to_region=crop,
            region=region,
            flip_average=flip_average,
        )
        if prediction.stopped:
            raise InterruptedError(f"{source}: stopped after {prediction.n_done} frames")
    total = max(n_frames * height * width, 1)
    return SegmentedFile(prediction, (height, width), rib_pixels / total, spacing, derived)


__all__ = ["SegmentedFile", "segment_file"]
