"""Models: architectures, VGG16 weights, letterboxing, the checkpoint format and the registry.

Importing this package imports torch; ``napari_ribseg.core`` itself does not import it.
"""

from napari_ribseg.core.models.architectures import (
    PRESETS,
    VARIANTS,
    RibSegNet,
    build_model,
    count_parameters,
    flops_per_frame,
    macs_per_frame,
    preset_widths,
)
from napari_ribseg.core.models.card import Metric, ModelCard, TrainingDataSummary
from napari_ribseg.core.models.checkpoint import LoadedModel, load_checkpoint, save_checkpoint
from napari_ribseg.core.models.letterbox import (
    Letterbox,
    letterbox,
    letterbox_tensor,
    unletterbox,
    unletterbox_tensor,
)
from napari_ribseg.core.models.registry import (
    ModelEntry,
    bundled_model_dir,
    list_models,
    load_model,
    resolve_model,
    user_model_dir,
)

__all__ = [
    "PRESETS",
    "VARIANTS",
    "Letterbox",
    "LoadedModel",
    "Metric",
    "ModelCard",
    "ModelEntry",
    "RibSegNet",
    "TrainingDataSummary",
    "build_model",
    "bundled_model_dir",
    "count_parameters",
    "flops_per_frame",
    "letterbox",
    "letterbox_tensor",
    "list_models",
    "load_checkpoint",
    "load_model",
    "macs_per_frame",
    "preset_widths",
    "resolve_model",
    "save_checkpoint",
    "unletterbox",
    "unletterbox_tensor",
    "user_model_dir",
]
