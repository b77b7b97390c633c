"""Which parts of a RibSegNet train during fine-tuning.

A model is cut into units from input to output: the encoder stages, the bottleneck, the decoder
stages and the head. A strategy names the trainable units (per epoch for ``progressive``). Frozen
units get ``requires_grad=False`` and are put in eval mode: otherwise BatchNorm running statistics
keep drifting towards the new domain although the weights are "frozen", and the features the
trainable parts were tuned on change underneath them.

Anything at the model's top level outside encoder/bottleneck/decoder/head (an input normalisation,
a stem) counts as part of the encoder, the input side.
"""

from __future__ import annotations

from dataclasses import dataclass

from napari_ribseg.core.errors import TrainingError

_PARTS = ("encoder", "bottleneck", "decoder", "head")


def model_units(model) -> list[tuple[str, object]]:
    """(name, module) from input to output: ``encoder.i``, ``bottleneck``, ``decoder.i``, ``head``.

    Decoder stages are listed deepest first, as the model stores them.
    """
    missing = [p for p in _PARTS if not hasattr(model, p)]
    if missing:
        raise TrainingError(
            f"{type(model).__name__} has no {', '.join(missing)}; freeze strategies need a "
            "RibSegNet with encoder, bottleneck, decoder and head"
        )
    units: list[tuple[str, object]] = []
    units += [(f"encoder.{i}", m) for i, m in enumerate(model.encoder)]
    units.append(("bottleneck", model.bottleneck))
    units += [(f"decoder.{i}", m) for i, m in enumerate(model.decoder)]
    units.append(("head", model.head))
    return units


def _stem_modules(model) -> list:
    return [m for name, m in model.named_children() if name not in _PARTS]


def _stem_parameters(model) -> list:
    """Top-level parameters outside the four parts (submodules and direct parameters)."""
    params = [p for m in _stem_modules(model) for p in m.parameters()]
    return params + list(model.parameters(recurse=False))


@dataclass(frozen=True)
class FreezeStrategy:
    """A named rule for which units train; ``trainable_units`` may depend on the epoch."""

    name: str
    description: str
    parts: tuple[str, ...] = ()

    def trainable_units(self, model, epoch: int = 0) -> set[str]:
        """Names of the units (see :func:`model_units`) that train in ``epoch``."""
        return {name for name, _ in model_units(model) if name.split(".")[0] in self.parts}

    def apply(self, model, epoch: int = 0) -> None:
        """Set ``requires_grad`` for ``epoch`` and put frozen units in eval mode.

        Call it after ``model.train()``: trainable units follow the model's mode, frozen ones are
        always in eval mode.
        """
        trainable = self.trainable_units(model, epoch)
        for name, unit in model_units(model):
            on = name in trainable
            for param in unit.parameters():
                param.requires_grad_(on)
            unit.train(model.training and on)
        stem_on = "encoder.0" in trainable
        for param in _stem_parameters(model):
            param.requires_grad_(stem_on)
        for module in _stem_modules(model):
            module.train(model.training and stem_on)

    def trainable_parameters(self, model, epoch: int = 0) -> int:
        """Number of scalar parameters that train in ``epoch`` (does not change the model)."""
        trainable = self.trainable_units(model, epoch)
        total = sum(
            p.numel()
            for name, unit in model_units(model)
            if name in trainable
            for p in unit.parameters()
        )
        if "encoder.0" in trainable:
            total += sum(p.numel() for p in _stem_parameters(model))
        return int(total)

    def frozen_tensors(self, model, epoch: int = 0) -> dict[str, object]:
        """Parameters and buffers of frozen units, by their name in ``model.state_dict()``."""
        trainable = self.trainable_units(model, epoch)
        prefixes = [f"{name}." for name, _ in model_units(model) if name not in trainable]
        if "encoder.0" not in trainable:
            prefixes += [f"{name}." for name, _ in model.named_children() if name not in _PARTS]
            direct = {n for n, _ in model.named_parameters(recurse=False)}
            direct |= {n for n, _ in model.named_buffers(recurse=False)}
        else:
            direct = set()
        return {
            key: value
            for key, value in model.state_dict(keep_vars=False).items()
            if key in direct or any(key.startswith(p) for p in prefixes)
        }


@dataclass(frozen=True)
class ProgressiveStrategy(FreezeStrategy):
    """Gradual unfreezing from the output down (as in ULMFiT).

    Epoch 0 trains the decoder and head, epoch ``step`` adds the bottleneck, and every further
    ``step`` epochs adds one encoder stage, deepest first. The layers near the output adapt first
    while the generic low-level features stay intact until the new top is no longer random-ish.
    """

    step: int = 1

    def trainable_units(self, model, epoch: int = 0) -> set[str]:
        units = [name for name, _ in model_units(model)]
        top = {n for n in units if n.startswith(("decoder", "head"))}
        stage = max(0, epoch) // max(1, self.step)
        if stage >= 1:
            top.add("bottleneck")
        encoder = [n for n in units if n.startswith("encoder")]
        for name in reversed(encoder):
            if stage >= 2 + (len(encoder) - 1 - encoder.index(name)):
                top.add(name)
        return top


FREEZE_STRATEGIES: dict[str, FreezeStrategy] = {
    s.name: s
    for s in (
        FreezeStrategy("all", "fine-tune every layer (the study's best)", _PARTS),
        FreezeStrategy(
            "encoder", "encoder (contracting path) frozen", ("bottleneck", "decoder", "head")
        ),
        FreezeStrategy(
            "bottleneck",
            "bottleneck frozen (the study's X-Unet v3_2)",
            ("encoder", "decoder", "head"),
        ),
        FreezeStrategy("decoder", "only decoder and head train", ("decoder", "head")),
        ProgressiveStrategy(
            "progressive", "gradual unfreezing from the decoder down, one unit per epoch"
        ),
    )
}


def get_strategy(name: str, *, progressive_step: int = 1) -> FreezeStrategy:
    """The strategy registered under ``name``; ``progressive_step`` sets epochs per unfreezing."""
    try:
        strategy = FREEZE_STRATEGIES[name]
    except KeyError:
        raise TrainingError(
            f"unknown freeze strategy {name!r}; expected one of {', '.join(FREEZE_STRATEGIES)}"
        ) from None
    if isinstance(strategy, ProgressiveStrategy) and progressive_step != strategy.step:
        return ProgressiveStrategy(strategy.name, strategy.description, step=progressive_step)
    return strategy
