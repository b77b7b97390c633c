"""Score a model on paired frames: predict -> threshold and clean up -> compare with the true masks.

The one predict -> mask -> score chain: ``ribseg evaluate``, the study runner and the training
scripts all call :func:`evaluate_model`, so a change of the post-processing or of the scaling reaches
every number the project reports. torch is imported only when a prediction runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from napari_ribseg.core.metrics import Evaluation, evaluate_masks

#: ``probability_to_mask`` options accepted in ``postprocess``.
POSTPROCESS_KEYS = ("min_size", "fill_holes", "keep_largest")


def _model_device(model: Any) -> Any:
    """The device of the model's first parameter (a ``LoadedModel`` or a bare module)."""
    module = getattr(model, "model", model)
    return next(module.parameters()).device


def predict_masks(
    model: Any,
    images: Sequence[np.ndarray],
    *,
    threshold: float = 0.5,
    postprocess: Mapping[str, Any] | None = None,
    device: Any = None,
    batch_size: int | None = None,
    region: bool | None = None,
    flip_average: bool | None = None,
    on_progress: Callable | None = None,
    clips: Sequence[str] | None = None,
) -> list[np.ndarray]:
    """Rib masks (uint8 0/1) of ``images`` at their own sizes, through the inference engine.

    ``clips`` (each image's clip) keeps each clip's imaged region its own (``predict_images``).
    ``device=None`` runs where the model's weights are; ``region`` is ``predict_stack``'s
    ``crop_to_region`` and ``flip_average`` its ``flip_average`` (``None``: their defaults);
    ``postprocess`` holds ``min_size``, ``fill_holes`` and ``keep_largest`` of
    :func:`~napari_ribseg.core.postprocess.probability_to_mask`.
    """
    from napari_ribseg.core.inference import predict_images_sync
    from napari_ribseg.core.postprocess import MaskOptions, probability_to_mask

    options = dict(postprocess or {})
    unknown = sorted(set(options) - set(POSTPROCESS_KEYS))
    if unknown:
        raise ValueError(f"postprocess options {unknown}; expected some of {POSTPROCESS_KEYS}")
    # Before the model runs: threshold=50 failed only after every image was predicted.
    MaskOptions(threshold, **options).check()
    probs = predict_images_sync(
        model,
        list(images),
        device=_model_device(model) if device is None else device,
        batch_size=batch_size,
        crop_to_region=region,
        flip_average=flip_average,
        on_progress=on_progress,
        clips=clips,
    )
    return [probability_to_mask(p, threshold, **options) for p in probs]


def evaluate_model(
    model: Any,
    data: Any,
    *,
    threshold: float = 0.5,
    postprocess: Mapping[str, Any] | None = None,
    device: Any = None,
    batch_size: int | None = None,
    region: bool | None = None,
    spacing: tuple[float, float] | None = None,
    flip_average: bool | None = None,
    on_progress: Callable | None = None,
) -> Evaluation:
    """Predict ``data.images``, turn them into masks and score them against ``data.masks``.

    ``data`` is anything with ``images``, ``masks`` and ``ids`` (a ``PairedDataset``, a
    ``TrainingSet``); ``spacing`` (mm) defaults to ``data.spacing_mm`` when it has one. The
    predicted masks come back in ``Evaluation.masks``, in the order of ``data``.
    """
    from napari_ribseg.core.metrics import _spacing

    if spacing is None:
        spacing = getattr(data, "spacing_mm", None)
    spacing = _spacing(spacing)  # before the model runs, not after every image was predicted
    masks = predict_masks(
        model,
        data.images,
        threshold=threshold,
        postprocess=postprocess,
        device=device,
        batch_size=batch_size,
        region=region,
        flip_average=flip_average,
        on_progress=on_progress,
        clips=getattr(data, "groups", None),
    )
    ids = list(getattr(data, "ids", None) or []) or None
    evaluation = evaluate_masks(masks, data.masks, spacing=spacing, ids=ids)
    evaluation.masks = masks
    from napari_ribseg.core.inference import FLIP_AVERAGE

    flipped = FLIP_AVERAGE if flip_average is None else bool(flip_average)
    evaluation.extra.update(
        {
            "threshold": float(threshold),
            "postprocess": dict(postprocess or {}),
            "flip_average": flipped,
        }
    )
    return evaluation


__all__ = ["POSTPROCESS_KEYS", "evaluate_model", "predict_masks"]
