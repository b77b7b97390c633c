"""Fine-tuning: training sets, augmentation, losses, freeze strategies, the loop, a child process.

Names are loaded on first use so that ``import napari_ribseg.core.training`` (e.g. by the widget to
fill its pickers) does not import torch; ``TrainingSet``, ``FREEZE_STRATEGIES`` and
``AUGMENT_PRESETS`` need no torch at all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from napari_ribseg.core.training.adapt import AdaptConfig, AdaptResult, adapt, adapt_sync
    from napari_ribseg.core.training.augment import AUGMENT_PRESETS, Augmenter, build_augmentation
    from napari_ribseg.core.training.background import BackgroundAdapt, BackgroundFinetune
    from napari_ribseg.core.training.config import FinetuneConfig, setting_specs
    from napari_ribseg.core.training.data import TrainingSet
    from napari_ribseg.core.training.evaluation import evaluate_dice
    from napari_ribseg.core.training.freeze import (
        FREEZE_STRATEGIES,
        FreezeStrategy,
        ProgressiveStrategy,
        get_strategy,
    )
    from napari_ribseg.core.training.gate import GateReport, judge
    from napari_ribseg.core.training.loop import (
        FinetuneResult,
        finetune,
        finetune_sync,
    )
    from napari_ribseg.core.training.losses import LOSSES, dice_bce_loss, dice_loss, get_loss

_WHERE = {
    "AUGMENT_PRESETS": "augment",
    "Augmenter": "augment",
    "build_augmentation": "augment",
    "BackgroundAdapt": "background",
    "BackgroundFinetune": "background",
    "TrainingSet": "data",
    "FREEZE_STRATEGIES": "freeze",
    "FreezeStrategy": "freeze",
    "ProgressiveStrategy": "freeze",
    "get_strategy": "freeze",
    "LOSSES": "losses",
    "dice_bce_loss": "losses",
    "dice_loss": "losses",
    "get_loss": "losses",
    "AdaptConfig": "adapt",
    "AdaptResult": "adapt",
    "adapt": "adapt",
    "adapt_sync": "adapt",
    "FinetuneConfig": "config",
    "setting_specs": "config",
    "GateReport": "gate",
    "judge": "gate",
    "FinetuneResult": "loop",
    "evaluate_dice": "evaluation",
    "finetune": "loop",
    "finetune_sync": "loop",
}

__all__ = [
    "AUGMENT_PRESETS",
    "AdaptConfig",
    "AdaptResult",
    "GateReport",
    "adapt",
    "adapt_sync",
    "judge",
    "setting_specs",
    "Augmenter",
    "BackgroundAdapt",
    "BackgroundFinetune",
    "FREEZE_STRATEGIES",
    "FinetuneConfig",
    "FinetuneResult",
    "FreezeStrategy",
    "LOSSES",
    "ProgressiveStrategy",
    "TrainingSet",
    "build_augmentation",
    "dice_bce_loss",
    "dice_loss",
    "evaluate_dice",
    "finetune",
    "finetune_sync",
    "get_loss",
    "get_strategy",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
