"""Models: variants, architectures, the factory, VGG16 weights, letterboxing, checkpoints, registry.

Names are imported on first use (PEP 562), so the torch-free parts (``variants``, ``card``,
``registry``, ``paths``) can be imported without torch; ``napari_ribseg.core`` never imports it.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

#: Public name -> the submodule that defines it.
_WHERE = {
    "PRESETS": "variants",
    "VARIANTS": "variants",
    "preset_widths": "variants",
    "RibSegNet": "architectures",
    "count_parameters": "architectures",
    "flops_per_frame": "architectures",
    "macs_per_frame": "architectures",
    "StartWeightsWarning": "factory",
    "WEIGHT_SOURCES": "factory",
    "architecture_of": "factory",
    "build_model": "factory",
    "Metric": "card",
    "ModelCard": "card",
    "TrainingDataSummary": "card",
    "LoadedModel": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "Letterbox": "letterbox",
    "letterbox": "letterbox",
    "letterbox_tensor": "letterbox",
    "unletterbox": "letterbox",
    "unletterbox_tensor": "letterbox",
    "ModelEntry": "registry",
    "bundled_model_dir": "registry",
    "default_model": "registry",
    "gate_verdict": "registry",
    "is_label_free": "registry",
    "list_models": "registry",
    "load_model": "registry",
    "resolve_model": "registry",
    "user_model_dir": "registry",
    "model_output_path": "paths",
}

__all__ = [
    "Letterbox",
    "LoadedModel",
    "Metric",
    "ModelCard",
    "ModelEntry",
    "PRESETS",
    "RibSegNet",
    "StartWeightsWarning",
    "TrainingDataSummary",
    "VARIANTS",
    "WEIGHT_SOURCES",
    "build_model",
    "bundled_model_dir",
    "count_parameters",
    "default_model",
    "flops_per_frame",
    "gate_verdict",
    "is_label_free",
    "letterbox",
    "letterbox_tensor",
    "list_models",
    "load_checkpoint",
    "load_model",
    "macs_per_frame",
    "model_output_path",
    "preset_widths",
    "resolve_model",
    "save_checkpoint",
    "unletterbox",
    "unletterbox_tensor",
    "user_model_dir",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


class _ModelsPackage(types.ModuleType):
    """Keeps the function ``letterbox`` bound when its submodule of the same name is imported.

    An eager ``from .letterbox import letterbox`` used to rebind it after the import system bound
    the submodule; with lazy names the package refuses that binding instead.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _WHERE and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _ModelsPackage


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


if TYPE_CHECKING:
    from napari_ribseg.core.models.architectures import (
        RibSegNet,
        count_parameters,
        flops_per_frame,
        macs_per_frame,
    )
    from napari_ribseg.core.models.card import Metric, ModelCard, TrainingDataSummary
    from napari_ribseg.core.models.checkpoint import LoadedModel, load_checkpoint, save_checkpoint
    from napari_ribseg.core.models.factory import WEIGHT_SOURCES, StartWeightsWarning, build_model
    from napari_ribseg.core.models.letterbox import (
        Letterbox,
        letterbox,
        letterbox_tensor,
        unletterbox,
        unletterbox_tensor,
    )
    from napari_ribseg.core.models.paths import model_output_path
    from napari_ribseg.core.models.registry import (
        ModelEntry,
        bundled_model_dir,
        default_model,
        gate_verdict,
        is_label_free,
        list_models,
        load_model,
        resolve_model,
        user_model_dir,
    )
    from napari_ribseg.core.models.variants import PRESETS, VARIANTS, preset_widths
