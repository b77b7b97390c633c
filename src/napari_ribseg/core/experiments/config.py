"""What a study runs: the grid, the models, the data and the training budget, from YAML or a preset.

A study is the grid variants x freeze strategies x training-set sizes x augmentation presets x folds
of Cheng & Lam (2021). Two presets ship: ``paper`` (the full study, sized for a GPU) and ``smoke``
(minutes on a CPU). A YAML file names a preset under ``base:`` and overrides any field.

How each cell fine-tunes is one nested :class:`~napari_ribseg.core.training.config.FinetuneConfig`
(``finetune:``), the same declaration the CLI and the widget are built from; the study declares no
fine-tune setting of its own. The grid sets ``strategy`` and ``augment`` per cell and the study's
``seed`` (plus the fold) sets ``seed``, so those three are refused under ``finetune:``. The flat keys
of older study files (``lr: 1e-3`` beside ``folds:``) are still read into ``finetune``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_ribseg.core.errors import RibsegError, TrainingError
from napari_ribseg.core.models.variants import VARIANTS
from napari_ribseg.core.training.config import FinetuneConfig

#: Fine-tune settings older study files wrote at the top level; read into ``finetune``.
LEGACY_FINETUNE_KEYS = (
    "epochs",
    "lr",
    "batch_size",
    "loss",
    "optimizer",
    "schedule",
    "val_share",
    "early_stop_patience",
    "device",
)
#: FinetuneConfig fields each cell sets itself: the grid axes and the per-fold seed.
PER_CELL_KEYS = {
    "strategy": "strategies: [...]",
    "augment": "augments: [...]",
    "seed": "the study's seed: (each fold adds its index)",
}


class StudyConfigError(RibsegError):
    """A study configuration is malformed (unknown key, bad value, missing file)."""


@dataclass
class DataConfig:
    """Where the frames come from.

    ``source="simulator"``: ``n_clips`` clips of ``frames_per_clip`` frames from
    ``core.simulate`` with a random configuration per clip (``overrides`` passed to
    ``random_config``, e.g. ``{"size": [128, 128]}``), seeded by ``seed``. ``source="paired"``:
    ``core.io.read_paired_dataset(path)``; its clip ids are the fold groups.
    """

    source: str = "simulator"
    path: str | None = None
    n_clips: int = 12
    frames_per_clip: int = 8
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class SalientConfig:
    """How the X-Unet's salient-object initialisation is made when none is given.

    ``data`` is a real salient-object folder (DUTS, ECSSD, XPIE, MSRA10K, images/masks); when it is
    ``None`` a synthetic set of ``synthetic`` images is composed from scikit-image's photographs.
    """

    data: str | None = None
    synthetic: int = 200
    epochs: int = 5
    size: int | None = None
    lr: float = 1e-3
    batch_size: int = 8
    #: Dice + BCE: pure Dice saturated the logits of the batch-norm-free U-Net (docs/study.md).
    loss: str = "dice_bce"
    seed: int = 0


@dataclass
class StudyConfig:
    """One study. ``preset`` is the model width preset (``paper``/``compact``/``tiny``);
    ``widths`` maps a variant to five explicit channel widths and wins over the preset.

    ``x_unet_init``: ``"pretrain"`` pre-trains the X-Unet on salient objects once per study
    (see :class:`SalientConfig`; the checkpoint is kept in the output folder and reused on resume),
    ``"bundled"`` uses the bundled ``x-unet-<preset>-salient`` checkpoint, anything else is a
    model name or checkpoint path.

    ``finetune`` is how every cell trains (its ``strategy``, ``augment`` and ``seed`` are set per
    cell); ``finetune.device`` also runs the salient pre-training. ``min_steps`` and ``threshold``
    are the study's own: a floor on a cell's optimiser steps and the test masks' cut-off.
    """

    name: str = "study"
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    strategies: list[str] = field(default_factory=lambda: ["all", "bottleneck"])
    sizes: list[int] = field(default_factory=lambda: [10, 40])
    augments: list[str] = field(default_factory=lambda: ["none", "flip"])
    folds: int = 3
    preset: str = "compact"
    widths: dict[str, list[int]] = field(default_factory=dict)
    input_size: int = 128
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    #: When > 0, a cell trains for at least this many batches (epochs raised for small sets), so
    #: that a size comparison is about the amount of data and not about fewer optimiser steps.
    min_steps: int = 0
    threshold: float = 0.5
    seed: int = 0
    x_unet_init: str = "pretrain"
    salient: SalientConfig = field(default_factory=SalientConfig)
    data: DataConfig = field(default_factory=DataConfig)
    overlays: int = 4
    torch_threads: int = 0

    def validate(self) -> StudyConfig:
        """Raise :class:`StudyConfigError` naming the first bad field; return self.

        Everything that can be checked before any data is read or any model trained is checked
        here, nested ``data`` and ``salient`` fields included, so a typo fails in a second rather
        than after the salient pre-training.
        """
        _check_types(self, f"study {self.name!r}: ")
        _check_types(self.data, f"study {self.name!r}: data.")
        _check_types(self.salient, f"study {self.name!r}: salient.")
        _check_types(self.finetune, f"study {self.name!r}: finetune.")
        if not 0.0 <= self.threshold <= 1.0:
            raise StudyConfigError(
                f"study {self.name!r}: threshold must lie in [0, 1] (a probability, e.g. 0.5 "
                f"rather than 50); got {self.threshold}"
            )
        for where, value, low in (
            ("data.n_clips", self.data.n_clips, 1),
            ("data.frames_per_clip", self.data.frames_per_clip, 1),
            ("salient.synthetic", self.salient.synthetic, 0),
            ("salient.epochs", self.salient.epochs, 1),
            ("salient.batch_size", self.salient.batch_size, 1),
            ("overlays", self.overlays, 0),
            ("min_steps", self.min_steps, 0),
            ("torch_threads", self.torch_threads, 0),
        ):
            if value < low:
                raise StudyConfigError(
                    f"study {self.name!r}: {where} must be >= {low}; got {value}"
                )
        if not self.salient.lr > 0:
            raise StudyConfigError(
                f"study {self.name!r}: salient.lr must be > 0; got {self.salient.lr}"
            )
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad or not self.variants:
            raise StudyConfigError(
                f"study {self.name!r}: variants {bad or '[]'}; expected {VARIANTS}"
            )
        if not self.strategies or not self.augments or not self.sizes:
            raise StudyConfigError(
                f"study {self.name!r}: strategies, augments and sizes must each list at least one"
            )
        if min(self.sizes) < 2:
            raise StudyConfigError(
                f"study {self.name!r}: training-set sizes must be >= 2 frames; got {self.sizes}"
            )
        if self.folds < 2:
            raise StudyConfigError(f"study {self.name!r}: folds must be >= 2; got {self.folds}")
        if self.input_size % 16:
            raise StudyConfigError(
                f"study {self.name!r}: input_size must be a multiple of 16; got {self.input_size}"
            )
        if self.data.source not in ("simulator", "paired"):
            raise StudyConfigError(
                f"study {self.name!r}: data.source {self.data.source!r}; expected simulator|paired"
            )
        if self.data.source == "paired" and not self.data.path:
            raise StudyConfigError(f"study {self.name!r}: data.source paired needs data.path")
        try:
            self.finetune.validate()
            # The grid's axes are FinetuneConfig choices too: check them against its declaration.
            for strategy in self.strategies:
                dataclasses.replace(self.finetune, strategy=strategy).validate()
            for augment in self.augments:
                dataclasses.replace(self.finetune, augment=augment).validate()
        except TrainingError as exc:
            raise StudyConfigError(f"study {self.name!r}: {exc}") from exc
        for variant, widths in self.widths.items():
            if variant not in VARIANTS or len(widths) != 5:
                raise StudyConfigError(
                    f"study {self.name!r}: widths[{variant!r}] = {widths}; expected five widths "
                    f"for one of {VARIANTS}"
                )
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> dict[str, Any]:
        """The fields that change a cell's result; resuming refuses a CSV made with other ones."""
        keep = (
            "preset",
            "widths",
            "input_size",
            "finetune",
            "min_steps",
            "threshold",
            "seed",
            "x_unet_init",
            "salient",
            "data",
            "folds",
        )
        full = self.to_dict()
        # Where and how fast a cell runs does not change its numbers; the per-cell keys are
        # overwritten by the grid.
        ignore = {"device", "num_workers", *PER_CELL_KEYS}
        full["finetune"] = {k: v for k, v in full["finetune"].items() if k not in ignore}
        return {k: full[k] for k in keep}

    def cell_finetune(self, strategy: str, augment: str, fold: int, epochs: int) -> FinetuneConfig:
        """The FinetuneConfig of one cell: ``finetune`` with the cell's axes, seed and epochs."""
        return dataclasses.replace(
            self.finetune, strategy=strategy, augment=augment, seed=self.seed + fold, epochs=epochs
        )


def _check_types(obj: Any, prefix: str) -> None:
    """Raise :class:`StudyConfigError` for the first field of dataclass ``obj`` whose value is not
    of its declared type (``int``, ``float``, ``str``, ``list[int]``, ``list[str]``, a ``dict``,
    each optionally ``| None``); other types are checked elsewhere."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        declared = str(f.type)
        if declared.endswith(" | None"):
            if value is None:
                continue
            declared = declared[: -len(" | None")]
        if declared == "float":
            if isinstance(value, str):
                # YAML 1.1 reads 1e-4 (no dot) as text; a number written so is taken as one.
                with contextlib.suppress(ValueError):
                    value = float(value)
                    if math.isfinite(value):
                        setattr(obj, f.name, value)
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            kind = "a number"
        elif declared == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
            kind = "a whole number"
        elif declared == "str":
            ok = isinstance(value, str)
            kind = "a text"
        elif declared == "list[int]":
            ok = isinstance(value, list) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            )
            kind = "whole numbers"
        elif declared == "list[str]":
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            kind = "a list of names"
        elif declared.startswith("dict["):
            ok = isinstance(value, dict)
            kind = "a mapping"
        else:
            continue
        if not ok:
            raise StudyConfigError(f"{prefix}{f.name} must be {kind}; got {value!r}")


def paper_recipe(**settings: Any) -> FinetuneConfig:
    """Cheng & Lam's fine-tuning: negative Dice, Adam, no schedule or warm-up, best validation epoch.

    The presets replicate the paper, so they keep its recipe rather than the product's measured
    fine-tune defaults (docs/training.md); ``settings`` override it.
    """
    recipe: dict[str, Any] = {
        "loss": "dice",
        "optimizer": "adam",
        "schedule": "none",
        "warmup_share": 0.0,
        "select": "best",
        "batch_size": 4,
        **settings,
    }
    return FinetuneConfig(**recipe)


PAPER = StudyConfig(
    name="paper",
    variants=list(VARIANTS),
    strategies=["all", "bottleneck"],
    sizes=[50, 100, 200, 400],
    augments=["none", "flip"],
    folds=5,
    preset="paper",
    input_size=256,
    # The loop validates on whole clips; a tenth keeps most of a small training set for training.
    finetune=paper_recipe(epochs=50, lr=1e-4, val_share=0.1, early_stop_patience=10),
    x_unet_init="pretrain",
    # Without a real XPIE download the substitute is synthetic; pass salient.data for the real one.
    salient=SalientConfig(synthetic=10000, epochs=30, lr=1e-4, batch_size=8),
    # 30 clips x 20 frames: each 5-fold training pool holds 480 frames, enough for the 400 size.
    data=DataConfig(n_clips=30, frames_per_clip=20, overrides={"size": [256, 256]}),
    overlays=6,
)

SMOKE = StudyConfig(
    name="smoke",
    variants=list(VARIANTS),
    strategies=["all", "bottleneck"],
    sizes=[4, 8],
    augments=["none", "flip"],
    folds=2,
    preset="tiny",
    input_size=64,
    finetune=paper_recipe(epochs=1, lr=1e-3),
    x_unet_init="pretrain",
    salient=SalientConfig(synthetic=16, epochs=1, batch_size=8),
    data=DataConfig(n_clips=4, frames_per_clip=6, overrides={"size": [64, 64]}),
    overlays=2,
)

PRESETS: dict[str, StudyConfig] = {"paper": PAPER, "smoke": SMOKE}


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    """Dataclass ``cls`` from a dict; unknown keys raise with their dotted path."""
    if not isinstance(data, dict):
        raise StudyConfigError(f"{where}: expected a mapping; got {type(data).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise StudyConfigError(
            f"{where}: unknown key(s) {unknown}; expected some of {sorted(names)}"
        )
    return data


def _finetune_overrides(overrides: dict[str, Any], where: str) -> dict[str, Any]:
    """The ``finetune`` keys of ``overrides``: its nested mapping plus the legacy flat keys."""
    nested = overrides.get("finetune") or {}
    _build(FinetuneConfig, nested, f"{where}.finetune")
    for key, hint in PER_CELL_KEYS.items():
        if key in nested:
            raise StudyConfigError(
                f"{where}.finetune.{key}: set per cell by the study; use {hint} instead"
            )
    flat = {k: overrides[k] for k in LEGACY_FINETUNE_KEYS if k in overrides}
    both = sorted(set(flat) & set(nested))
    if both:
        raise StudyConfigError(
            f"{where}: {both} given both at the top level and under finetune:; keep finetune:"
        )
    return {**flat, **nested}


def merge_config(
    base: StudyConfig, overrides: dict[str, Any], where: str = "config"
) -> StudyConfig:
    """``base`` with ``overrides`` applied (nested ``data``/``salient``/``finetune`` merge key by
    key; the legacy flat fine-tune keys go into ``finetune``)."""
    if not isinstance(overrides, dict):
        raise StudyConfigError(f"{where}: expected a mapping; got {type(overrides).__name__}")
    study_keys = {f.name for f in dataclasses.fields(StudyConfig)}
    unknown = sorted(set(overrides) - study_keys - set(LEGACY_FINETUNE_KEYS))
    if unknown:
        hint = sorted(set(unknown) & {f.name for f in dataclasses.fields(FinetuneConfig)})
        extra = f" ({hint} belong under finetune:)" if hint else ""
        raise StudyConfigError(
            f"{where}: unknown key(s) {unknown}{extra}; expected some of {sorted(study_keys)}"
        )
    values = dataclasses.asdict(base)
    values["finetune"] = {**values["finetune"], **_finetune_overrides(overrides, where)}
    for key, value in overrides.items():
        if key in ("data", "salient"):
            cls = DataConfig if key == "data" else SalientConfig
            _build(cls, value or {}, f"{where}.{key}")
            values[key] = {**values[key], **(value or {})}
        elif key != "finetune" and key not in LEGACY_FINETUNE_KEYS:
            values[key] = value
    try:
        values["data"] = DataConfig(**values["data"])
        values["salient"] = SalientConfig(**values["salient"])
        values["finetune"] = FinetuneConfig(**values["finetune"])
        return StudyConfig(**values).validate()
    except TypeError as exc:
        raise StudyConfigError(f"{where}: {exc}") from exc


def load_study_config(name_or_path: str | os.PathLike) -> StudyConfig:
    """A preset name (``paper``, ``smoke``) or a YAML file; the file may start from ``base: <preset>``."""
    text = os.fspath(name_or_path)
    if text in PRESETS:
        return merge_config(PRESETS[text], {}, text)
    path = Path(text)
    if not path.is_file():
        raise StudyConfigError(
            f"study config {text!r} is neither a preset ({', '.join(PRESETS)}) nor a YAML file"
        )
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise StudyConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise StudyConfigError(f"{path}: expected a mapping at the top level")
    base_name = raw.pop("base", "smoke")
    if base_name not in PRESETS:
        raise StudyConfigError(f"{path}: base {base_name!r}; expected one of {sorted(PRESETS)}")
    raw.setdefault("name", path.stem)
    return merge_config(PRESETS[base_name], raw, str(path))
