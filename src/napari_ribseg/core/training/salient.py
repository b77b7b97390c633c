"""Salient-object pre-training of the X-Unet: the job (data sets in core.io, the substitute in core.simulate).

Cheng & Lam (2021) pre-trained their plain U-Net (X-Unet) on the grayscale salient-object set XPIE
before fine-tuning it on lung ultrasound. This module reads the public salient-object sets in their
usual download layouts (DUTS, ECSSD, XPIE, MSRA10K, or a plain ``images/``+``masks/`` folder), turns
the photographs to grayscale as the study did, and pre-trains the plain U-Net from scratch through
the one fine-tuning loop of :mod:`napari_ribseg.core.training` (strategy ``all``).

Where no real set can be downloaded (offline CI, a headless server), :func:`compose_salient_set`
builds a deterministic substitute: object silhouettes filled with one photograph's texture pasted on
another photograph's background, from the photographs scikit-image ships in its wheel. Its model
card says so plainly; it must never be mistaken for an XPIE pre-training.

torch is imported only inside :func:`pretrain_salient`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_ribseg.core.errors import DatasetError
from napari_ribseg.core.io.salient_datasets import (
    FOLDER_LAYOUTS,
    IMAGE_SUFFIXES,
    MASK_SUFFIXES,
    SalientSet,
    detect_salient_layout,
    read_salient_dataset,
)
from napari_ribseg.core.simulate.salient_compose import (
    BUNDLED_PHOTOS,
    SYNTHETIC_STATEMENT,
    bundled_photographs,
    compose_salient_sample,
    compose_salient_set,
)

if TYPE_CHECKING:
    from napari_ribseg.core.jobs import Job, StopFlag

__all__ = [
    "BUNDLED_PHOTOS",
    "FOLDER_LAYOUTS",
    "IMAGE_SUFFIXES",
    "MASK_SUFFIXES",
    "SYNTHETIC_STATEMENT",
    "PretrainResult",
    "SalientSet",
    "bundled_photographs",
    "compose_salient_sample",
    "compose_salient_set",
    "detect_salient_layout",
    "pretrain_salient",
    "read_salient_dataset",
    "salient_training_set",
]

# --------------------------------------------------------------------------------------------------
# Pre-training
# --------------------------------------------------------------------------------------------------


@dataclass
class PretrainResult:
    """A finished (or stopped) salient pre-training: the checkpoint, its card and the data set."""

    checkpoint: Path | None
    card: Any
    statement: str
    dataset: str
    n_images: int
    best_val_dice: float
    stopped: bool
    history: list[dict[str, float]] = field(default_factory=list)
    model: Any = None


def salient_training_set(data: SalientSet) -> Any:
    """A :class:`~napari_ribseg.core.training.TrainingSet` with one group per photograph.

    Salient-object photographs are independent, so every image is its own group and the
    validation split of the fine-tuning loop takes whole images.
    """
    from napari_ribseg.core.training.data import TrainingSet

    return TrainingSet(
        images=list(data.images),
        masks=list(data.masks),
        groups=list(data.ids),
        source=data.source,
        ids=list(data.ids),
    )


def _resolve_out(out: str | Path | None, name: str) -> Path:
    """The output of a pre-training (see :func:`~napari_ribseg.core.models.paths.model_output_path`)."""
    from napari_ribseg.core.models.paths import model_output_path

    return model_output_path(name if out is None else out)


def pretrain_salient(
    data: SalientSet | str | Path | None = None,
    *,
    synthetic: int = 0,
    variant: str = "x-unet",
    preset: str = "compact",
    widths: Sequence[int] | None = None,
    size: int = 256,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 8,
    val_share: float = 0.1,
    augment: str = "flip",
    loss: str = "dice_bce",
    seed: int = 0,
    device: str = "auto",
    out: str | Path | None = None,
    stop: StopFlag | None = None,
    limit: int | None = None,
    overwrite: bool = False,
) -> Job[PretrainResult]:
    """Pre-train the plain U-Net from scratch on salient objects; a job returning PretrainResult.

    ``data`` is a :class:`SalientSet`, a folder in one of the layouts of
    :func:`read_salient_dataset`, or ``None`` with ``synthetic=N`` for the composed substitute.
    Training is the fine-tuning loop of ``core.training`` with strategy ``all`` started from a freshly
    built (random) model, Adam and horizontal flips. The loss is Dice + BCE, not the study's pure
    negative Dice: without batch norm, Dice alone drove the logits to +-3000 in our runs, the sigmoid
    saturated and fine-tuning on ultrasound could no longer move the model (loss flat at 0.993). ``out`` is a
    registry name (saved in ``user_model_dir()``) or a path; its card states what the model was
    pre-trained on, and names the substitute plainly when it is synthetic. A model already at
    ``out`` is refused before any work unless ``overwrite`` (or the run resumes the interrupted
    one that wrote it).
    """
    import torch

    from napari_ribseg.core.jobs import Progress
    from napari_ribseg.core.models import (
        LoadedModel,
        ModelCard,
        TrainingDataSummary,
        build_model,
        save_checkpoint,
    )
    from napari_ribseg.core.training.loop import FinetuneConfig, finetune, refuse_existing_out

    if variant not in ("x-unet", "unet"):
        raise DatasetError(
            f"salient pre-training trains the plain U-Net architecture (x-unet or unet); got "
            f"{variant!r}"
        )
    preset_name = preset if widths is None else "custom"
    target = _resolve_out(out, f"{variant}-{preset_name}-salient")
    # Before the set is read; the loop checks again with the same rule.
    refuse_existing_out(target, overwrite=overwrite, resume=True)
    if isinstance(data, SalientSet):
        salient = data
    elif data is not None:
        yield Progress("message", message=f"reading salient-object set {data}")
        salient = read_salient_dataset(data, size=size, limit=limit)
    elif synthetic > 0:
        yield Progress("message", message=f"composing {synthetic} synthetic salient images")
        salient = compose_salient_set(synthetic, size=size, seed=seed)
    else:
        raise DatasetError(
            "salient pre-training needs a data folder (DUTS, ECSSD, XPIE, MSRA10K, images/masks) "
            "or synthetic=N"
        )
    if len(salient) < 2:
        raise DatasetError(
            f"salient set {salient.source} has {len(salient)} image(s); need at least 2"
        )
    yield Progress(
        "message",
        message=f"{salient.name}: {len(salient)} images, mean object area "
        f"{salient.mask_fractions().mean():.1%}",
    )

    torch.manual_seed(seed)
    model = build_model(variant, preset, input_size=size, pretrained=False, widths=widths)
    scratch_card = ModelCard(
        name=f"{variant}-{preset_name}-scratch",
        variant=model.variant,
        preset=model.preset,
        widths=list(model.widths),
        input_size=size,
        description="random (He) initialisation before salient-object pre-training",
    )
    base = LoadedModel(model=model, card=scratch_card, path=Path(f"<{scratch_card.name}>"))
    config = FinetuneConfig(
        strategy="all",
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        loss=loss,
        augment=augment,
        val_share=val_share,
        # The set is large and training starts from scratch: the validation Dice climbs slowly
        # and noisily, so early stopping would end runs that are still improving.
        early_stop_patience=0,
        schedule="cosine",
        seed=seed,
        device=device,
        base_is_candidate=False,
    )
    result = yield from finetune(
        base, salient_training_set(salient), config, out=target, stop=stop, overwrite=overwrite
    )

    # The loop's card describes a fine-tune of a scratch model; the truth is a pre-training, and
    # whether it was on a real set or the synthetic substitute must be impossible to miss.
    description = (
        f"{salient.statement}. Plain U-Net ({variant}) trained from scratch for "
        f"{len(result.history)} epochs at {size}x{size} on {len(salient)} grayscale images "
        f"({loss} loss, Adam lr {lr}, {augment} augmentation); validation Dice "
        f"{result.best_val_dice:.3f}."
    )
    card = ModelCard(
        **{
            **{k: getattr(result.card, k) for k in ("metrics", "epochs", "loss", "augmentation")},
            "name": target.stem,
            "variant": model.variant,
            "preset": model.preset,
            "widths": list(model.widths),
            "input_size": size,
            "parent": None,
            "freeze_strategy": "all",
            "training_data": TrainingDataSummary(
                frames=len(salient), source=salient.source, hash=salient_training_set(salient).hash
            ),
            "description": description,
            "weights_source": salient.statement,
            "extra": {
                "salient_pretraining": {
                    "dataset": salient.name,
                    "statement": salient.statement,
                    "synthetic": salient.name == "synthetic",
                    "info": salient.info,
                    "config": config.to_dict(),
                    "val_ids": result.val_ids,
                    "history": result.history,
                    "stopped": result.stopped,
                }
            },
        }
    )
    save_checkpoint(result.model, card, target)
    if result.stopped:
        from napari_ribseg.core.training.resume import bind_resume_to_output

        # The card was rewritten after the loop bound its resume state to the file: without
        # this the next run counted the stopped run's own model as another's and refused it.
        bind_resume_to_output(target)
    yield Progress(
        "message",
        message=f"saved {target} ({'stopped early' if result.stopped else 'finished'}; "
        f"validation Dice {result.best_val_dice:.3f})",
    )
    return PretrainResult(
        checkpoint=target,
        card=card,
        statement=salient.statement,
        dataset=salient.name,
        n_images=len(salient),
        best_val_dice=result.best_val_dice,
        stopped=result.stopped,
        history=result.history,
        model=result.model,
    )
