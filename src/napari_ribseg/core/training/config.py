"""``FinetuneConfig``: every fine-tune setting declared once, with its default, range and help.

The CLI (``ribseg finetune``), the widget's controls, the study config and the benchmark are built
from these declarations or checked against them in tests (``SETTINGS``, :func:`setting_spec`), so a
default changes in one place only. No torch here: the CLI and the widget read it at start-up.

The defaults are product decisions measured in ``benchmarks/bench_finetune.py`` on the hard domain
(see docs/training.md, "Default recipe"): a fixed schedule in optimiser steps (not epochs, so 5 and
20 frames get the same amount of training), a learning rate per freeze strategy with a linear
warm-up then cosine decay, a loss for thin rare structures, augmentation on, and no early stopping
on a handful of validation frames; the validation frames judge the result instead (the gate).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from napari_ribseg.core.errors import TrainingError
from napari_ribseg.core.field_types import expected_type
from napari_ribseg.core.training.augment import AUGMENT_PRESETS
from napari_ribseg.core.training.freeze import FREEZE_STRATEGIES
from napari_ribseg.core.training.gate import GATE_FRAMES, GATE_MARGIN
from napari_ribseg.core.training.losses import LOSSES

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("cosine", "plateau", "none")
#: gated: the final weights of the fixed schedule, kept only when they beat the base on held-out
#: frames; last: the final weights whatever the gate says (the card says so); best: the epoch with
#: the best validation Dice, the base competing as epoch 0 (the old rule; for studies and tests).
SELECTIONS = ("gated", "last", "best")
#: Learning rate per freeze strategy when ``lr`` is 0 ("auto"); measured on the hard domain.
AUTO_LR: dict[str, float] = {
    "all": 1e-3,
    "encoder": 1e-3,
    "bottleneck": 1e-3,
    "decoder": 2e-3,
    "progressive": 1e-3,
}
#: ``lr`` 0 ("auto"), a base of one of ``SMALL_STEP_VARIANTS`` that already scores at least this
#: mean Dice on the training frames before training: the strategy's rate times
#: ``STRONG_BASE_LR_FACTOR``. A V-Unet (VGG16 encoder) that finds the ribs gained most from small
#: steps (2 of 2 replicas); one that does not, and the U-Net and X-Unet, weak or strong, from the
#: strategy's rate (7 of 7; the U-Net at base Dice 0.76 and 0.79 too) (docs/training.md,
#: "Learning rate against base strength"). A weak V-Unet base keeps the full rate: against
#: 3e-4 it won every run of a base that marks no rib (the real-scan case) and tied on scanners
#: the bundled V-Unet does poorly on (docs/training.md, "Learning rate for a weak V-Unet base").
STRONG_BASE_DICE = 0.75
STRONG_BASE_LR_FACTOR = 0.1
SMALL_STEP_VARIANTS = ("v-unet",)
#: The rule in words (the lr setting's help, the study report).
STRONG_BASE_RULE = (
    f"{STRONG_BASE_LR_FACTOR:g} x that for a v-unet base that already scores Dice >= "
    f"{STRONG_BASE_DICE} on the training frames"
)
#: ``mix`` 0 ("auto"): the share of the fine-tuned change a base keeps (weight-space ensembling,
#: WiSE-FT: kept = base + mix x (trained - base)). A base that already scores at least
#: ``MIX_BASE_DICE`` on the training frames keeps half the change: on the hard domain the
#: half-way weights beat or matched the trained ones on frames of other clips in 7 of 7 runs
#: (V-Unet, U-Net, X-Unet; bases 0.78-0.82) and beat the base in 5 of 7 (docs/training.md, "Weight
#: mixing"); a weak base keeps the whole change. The threshold lies between the bases measured on
#: either side (benchmarks/bench_gate.py, gain on 190 frames of other clips, "Weight mixing against
#: base strength"): at 0.02 (a base that marks no rib), 0.22 and 0.62 (an early X-Unet) the whole
#: change won by far (0.681 against 0.422; +0.550 against +0.266; +0.151 against +0.082); at 0.70
#: (an early U-Net) they tied (+0.106 against +0.105); at 0.69 (today's U-Net on a hard clip, K=10)
#: half won by far (+0.006 against -0.060).
MIX_BASE_DICE = 0.65
STRONG_BASE_MIX = 0.5
#: The rule in words (the mix setting's help).
STRONG_BASE_MIX_RULE = (
    f"{STRONG_BASE_MIX:g} for a base that already scores Dice >= {MIX_BASE_DICE} on the "
    "training frames, else 1"
)
#: Fields that may change between an interrupted run and its resumption (``mix`` is applied
#: after the last step, so a resumed run may ask for another).
RESUME_FREE = ("epochs", "device", "num_workers", "early_stop_patience", "mix")


def setting(
    default: Any,
    help: str,  # noqa: A002 (argparse's name)
    *,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] | None = None,
    auto: str | None = None,
    flag: str | None = None,
    cli: bool = True,
) -> Any:
    """A dataclass field carrying its help, range/choices, the text of its 'auto' value and flag."""
    meta = {
        "help": help,
        "low": low,
        "high": high,
        "choices": choices,
        "auto": auto,
        "flag": flag,
        "cli": cli,
    }
    return field(default=default, metadata=meta)


@dataclass
class FinetuneConfig:
    """How to fine-tune. Each field's default, range and help are its single declaration."""

    strategy: str = setting(
        "all", "which layers train", choices=tuple(FREEZE_STRATEGIES), flag="--strategy"
    )
    steps: int = setting(
        240,
        "optimiser steps of the fixed schedule (epochs follow from the frame count)",
        low=1,
        high=100_000,
    )
    epochs: int = setting(
        0,
        "epochs; 0 = from --steps and the number of training frames",
        low=0,
        high=10_000,
        auto="from steps",
    )
    lr: float = setting(
        0.0,
        f"peak learning rate; 0 = auto: per strategy (1e-3; decoder 2e-3), {STRONG_BASE_RULE}",
        low=0.0,
        high=0.1,
        auto="auto",
    )
    warmup_share: float = setting(
        0.1, "share of the steps with a linear learning-rate warm-up", low=0.0, high=0.5
    )
    batch_size: int = setting(4, "frames per optimiser step", low=1, high=256)
    optimizer: str = setting("adam", "optimiser", choices=OPTIMIZERS)
    weight_decay: float = setting(0.0, "weight decay", low=0.0, high=1.0)
    schedule: str = setting(
        "cosine", "learning-rate schedule after the warm-up (per step)", choices=SCHEDULES
    )
    loss: str = setting("tversky", "training loss", choices=tuple(LOSSES))
    augment: str = setting("standard", "augmentation preset", choices=AUGMENT_PRESETS)
    val_share: float = setting(
        0.2,
        "share of the frames held out to judge the new model (at least --gate-frames)",
        low=0.01,
        high=0.9,
    )
    #: Epochs without a better validation Dice before stopping; 0 never stops early.
    early_stop_patience: int = setting(
        0,
        "stop after this many epochs without a better validation Dice (0: never; with few "
        "validation frames early stopping ends runs that would have learned)",
        low=0,
        high=1000,
        flag="--patience",
    )
    select: str = setting(
        "gated",
        "which weights become the new model: gated (final weights, only if they beat the base "
        "on held-out frames), last (final weights whatever the gate says), best (best "
        "validation epoch, the base competing as epoch 0)",
        choices=SELECTIONS,
    )
    mix: float = setting(
        0.0,
        "share of the fine-tuned change the new model keeps (weight-space mix with the base): "
        f"base + mix x (trained - base); 1 = the trained weights; 0 = auto: {STRONG_BASE_MIX_RULE}",
        low=0.0,
        high=1.0,
        auto="auto",
    )
    gate_frames: int = setting(
        GATE_FRAMES,
        "fewest held-out corrected frames the promotion gate judges on",
        low=1,
        high=1000,
    )
    gate_margin: float = setting(
        GATE_MARGIN, "mean Dice gain over the base the new model needs on them", low=0.0, high=1.0
    )
    seed: int = setting(0, "random seed (splits, augmentation, initial order)", low=0, high=2**31)
    device: str = setting("auto", "auto, cpu, cuda, cuda:N or mps")
    num_workers: int = setting(0, "DataLoader worker processes", low=0, high=64, flag="--workers")
    #: Mixed precision; only takes effect on CUDA.
    amp: bool = setting(True, "mixed precision on CUDA", cli=False)
    #: Epochs per unfreezing step of the ``progressive`` strategy.
    progressive_step: int = setting(
        1, "epochs per unfreezing step of 'progressive'", low=1, high=1000
    )
    #: With ``select="best"`` the base competes as "epoch 0". Training from a random start
    #: (salient pre-training) turns this off: a random network that marks everything can
    #: out-score early epochs on large objects, and the "best" model would silently be the
    #: random initialisation.
    base_is_candidate: bool = setting(True, "the base competes as epoch 0", cli=False)

    def effective_lr(self, base_dice: float | None = None, variant: str | None = None) -> float:
        """The peak learning rate: ``lr``, or when it is 0 the strategy's measured default,
        lowered for a strong base of a small-step variant (``base_dice``: its mean Dice on the
        training frames before training, None when not measured; ``variant``: the base's)."""
        if self.lr > 0:
            return self.lr
        lr = AUTO_LR.get(self.strategy, 1e-3)
        return lr * STRONG_BASE_LR_FACTOR if _strong_base(base_dice, variant) else lr

    def lr_reason(self, base_dice: float | None = None, variant: str | None = None) -> str:
        """Why :meth:`effective_lr` is what it is, for the run's first message ("" for a set lr)."""
        if self.lr > 0:
            return ""
        if base_dice is None:
            return f"auto for '{self.strategy}'"
        said = f"auto: the base scores Dice {base_dice:.3f} on the training frames, "
        if _strong_base(base_dice, variant):
            return said + f">= {STRONG_BASE_DICE}: a strong {variant} base takes small steps"
        if base_dice >= STRONG_BASE_DICE:
            return said + (
                f"but a {variant or 'model'} base takes the strategy's rate (small steps only for "
                f"{', '.join(SMALL_STEP_VARIANTS)})"
            )
        return said + f"< {STRONG_BASE_DICE}: the strategy's rate"

    def selects_best(self) -> bool:
        """Whether epochs are selected by validation Dice (no gate, no weight mixing):
        ``select="best"``, or a random start (``base_is_candidate=False``, salient
        pre-training), where beating the base, or keeping part of it, means nothing."""
        return self.select == "best" or not self.base_is_candidate

    def effective_mix(self, base_dice: float | None = None) -> float:
        """The share of the fine-tuned change kept: ``mix``, or when it is 0 ``STRONG_BASE_MIX``
        for a base scoring at least ``MIX_BASE_DICE`` on the training frames (``base_dice``;
        None: not measured), else 1 (the trained weights)."""
        if self.mix > 0:
            return self.mix
        strong = base_dice is not None and base_dice >= MIX_BASE_DICE
        return STRONG_BASE_MIX if strong else 1.0

    def mix_reason(self, base_dice: float | None = None) -> str:
        """Why 'auto' mixes (:meth:`effective_mix` below 1); "" for a set mix or no mixing."""
        if self.mix > 0 or self.effective_mix(base_dice) == 1.0:
            return ""
        return (
            f"auto: the base scores Dice {base_dice:.3f} on the training frames, >= "
            f"{MIX_BASE_DICE}: a strong base keeps half the fine-tuned change"
        )

    def effective_epochs(self, n_train: int) -> int:
        """``epochs``, or enough epochs over ``n_train`` frames to make ``steps`` steps."""
        if self.epochs > 0:
            return self.epochs
        per_epoch = max(1, math.ceil(max(1, n_train) / self.batch_size))
        return max(1, math.ceil(self.steps / per_epoch))

    def validate(self) -> None:
        """Raise TrainingError naming the first bad field."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            meta = f.metadata
            if problem := expected_type(value, str(f.type)):
                raise _bad(self, f.name, problem)
            if meta.get("choices") and value not in meta["choices"]:
                raise _bad(self, f.name, f"one of {', '.join(meta['choices'])}")
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if isinstance(value, float) and not math.isfinite(value):
                raise _bad(self, f.name, "a finite number")
            low, high = meta.get("low"), meta.get("high")
            if low is not None and value < low:
                raise _bad(self, f.name, f"at least {low}")
            if high is not None and value > high:
                raise _bad(self, f.name, f"at most {high}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        """Config from a dict; unknown keys raise TrainingError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise TrainingError(f"unknown fine-tune settings {unknown}")
        return cls(**data)


#: The settings before the issue-9 recipe (for the benchmark's "old defaults" rows).
OLD_DEFAULTS: dict[str, Any] = {
    "epochs": 20,
    "lr": 1e-4,
    "loss": "dice_bce",
    "augment": "flip",
    "early_stop_patience": 5,
    "select": "best",
    "warmup_share": 0.0,
}


def _strong_base(base_dice: float | None, variant: str | None) -> bool:
    """Whether 'auto' lr takes small steps: a base of ``SMALL_STEP_VARIANTS`` scoring at least
    ``STRONG_BASE_DICE`` (None: not measured)."""
    return (
        base_dice is not None and base_dice >= STRONG_BASE_DICE and variant in SMALL_STEP_VARIANTS
    )


def _bad(config: FinetuneConfig, name: str, expected: str) -> TrainingError:
    return TrainingError(f"fine-tune setting {name}={getattr(config, name)!r}: expected {expected}")


@dataclass(frozen=True)
class SettingSpec:
    """One setting as the CLI and the widget see it."""

    name: str
    type: type
    default: Any
    help: str
    low: float | None
    high: float | None
    choices: tuple[str, ...] | None
    auto: str | None
    flag: str
    cli: bool


def setting_specs() -> list[SettingSpec]:
    """Every FinetuneConfig field with its type, default, range, choices, help and CLI flag."""
    specs = []
    for f in dataclasses.fields(FinetuneConfig):
        meta = f.metadata
        specs.append(
            SettingSpec(
                name=f.name,
                type=type(f.default),
                default=f.default,
                help=meta["help"],
                low=meta["low"],
                high=meta["high"],
                choices=meta["choices"],
                auto=meta["auto"],
                flag=meta["flag"] or "--" + f.name.replace("_", "-"),
                cli=meta["cli"],
            )
        )
    return specs


def setting_spec(name: str) -> SettingSpec:
    """The spec of one setting (KeyError naming it when there is none)."""
    for spec in setting_specs():
        if spec.name == name:
            return spec
    raise KeyError(f"no fine-tune setting {name!r}")


def add_arguments(parser) -> None:
    """Add one ``--flag`` per CLI setting to an argparse parser (defaults, choices, help)."""
    for spec in setting_specs():
        if not spec.cli:
            continue
        kwargs: dict[str, Any] = {"dest": spec.name, "default": spec.default}
        if spec.choices:
            kwargs["choices"] = spec.choices
        if spec.type is not str:
            kwargs["type"] = spec.type
        extra = f"; {spec.auto} when 0" if spec.auto else ""
        kwargs["help"] = f"{spec.help} (default {spec.default}{extra})"
        parser.add_argument(spec.flag, **kwargs)


def config_from_args(args) -> FinetuneConfig:
    """The FinetuneConfig an argparse namespace built by :func:`add_arguments` describes."""
    values = {s.name: getattr(args, s.name) for s in setting_specs() if s.cli}
    config = FinetuneConfig(**values)
    config.validate()
    return config
