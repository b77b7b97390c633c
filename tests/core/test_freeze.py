"""Freeze strategies: trainable counts add up, frozen tensors stay bit-identical through training."""

from __future__ import annotations

import pytest
import torch
from test_training_support import state_equal, synthetic_set, tiny_base

from napari_ribseg.core.errors import TrainingError
from napari_ribseg.core.jobs import StopFlag
from napari_ribseg.core.models import build_model, count_parameters
from napari_ribseg.core.training.freeze import FREEZE_STRATEGIES, get_strategy, model_units
from napari_ribseg.core.training.loop import FinetuneConfig, finetune_sync, resume_paths

torch.set_num_threads(1)


def _part_params(model, part: str) -> int:
    return sum(p.numel() for _, p in model.parameter_groups()[part])


@pytest.mark.parametrize("variant", ["unet", "v-unet"])
def test_trainable_counts_add_up(variant):
    model = build_model(variant, "tiny", input_size=64, pretrained=False)
    total = count_parameters(model)
    enc, bott = _part_params(model, "encoder"), _part_params(model, "bottleneck")
    dec, head = _part_params(model, "decoder"), _part_params(model, "head")
    assert enc + bott + dec + head == total
    count = {name: s.trainable_parameters(model) for name, s in FREEZE_STRATEGIES.items()}
    assert count["all"] == total
    assert count["encoder"] + enc == total
    assert count["bottleneck"] + bott == total
    assert count["decoder"] == dec + head
    assert count["progressive"] == dec + head
    # apply() and the count agree, and apply() leaves requires_grad exactly on the counted ones.
    for name, strategy in FREEZE_STRATEGIES.items():
        strategy.apply(model, 0)
        assert count_parameters(model, trainable_only=True) == count[name]


def test_progressive_unfreezes_from_the_decoder_down():
    model = build_model("unet", "tiny", input_size=64, pretrained=False)
    strategy = get_strategy("progressive")
    units = [strategy.trainable_units(model, e) for e in range(7)]
    assert units[0] == {"decoder.0", "decoder.1", "decoder.2", "decoder.3", "head"}
    assert units[1] - units[0] == {"bottleneck"}
    assert units[2] - units[1] == {"encoder.3"}
    assert units[5] - units[4] == {"encoder.0"}
    assert units[6] == {name for name, _ in model_units(model)}
    counts = [strategy.trainable_parameters(model, e) for e in range(7)]
    assert counts == sorted(counts) and counts[-1] == count_parameters(model)
    slow = get_strategy("progressive", progressive_step=2)
    assert slow.trainable_units(model, 1) == units[0] and slow.trainable_units(model, 2) == units[1]


def test_frozen_units_go_to_eval_mode():
    model = build_model("unet", "tiny", input_size=64, pretrained=False)
    model.train()
    get_strategy("decoder").apply(model, 0)
    modes = {name: unit.training for name, unit in model_units(model)}
    assert not any(modes[f"encoder.{i}"] for i in range(4)) and not modes["bottleneck"]
    assert all(modes[f"decoder.{i}"] for i in range(4)) and modes["head"]
    with pytest.raises(TrainingError, match="unknown freeze strategy"):
        get_strategy("half")


@pytest.mark.parametrize("strategy", ["encoder", "bottleneck", "decoder", "progressive"])
def test_frozen_parameters_and_buffers_are_bit_identical_after_training(tmp_path, strategy):
    from safetensors.torch import load_file

    # v-unet: its first convolution carries a buffer (pad_response), so buffers are covered too.
    base = tiny_base(tmp_path / "base.safetensors", variant="v-unet")
    rule = get_strategy(strategy)
    frozen_before = {k: v.clone() for k, v in rule.frozen_tensors(base.model, 0).items()}
    assert frozen_before, "the strategy should freeze something"
    all_before = {k: v.clone() for k, v in base.model.state_dict().items()}
    # AdamW weight decay and a high lr would move any frozen weight that leaked into the update.
    config = FinetuneConfig(
        strategy=strategy,
        epochs=2,
        lr=1e-2,
        batch_size=2,
        augment="flip",
        schedule="none",
        optimizer="adamw",
        weight_decay=0.1,
        early_stop_patience=0,
        device="cpu",
    )
    stop = StopFlag()
    out = tmp_path / "tuned.safetensors"

    def stop_after_first_epoch(event):
        if event.kind == "epoch":
            stop.set()

    # Stopping after epoch 1 leaves its weights (the trained ones, not the best) in the resume state.
    result = finetune_sync(
        base, synthetic_set(3, 4), config, out=out, stop=stop, on_progress=stop_after_first_epoch
    )
    assert result.stopped and len(result.history) == 1
    tensors = load_file(str(resume_paths(out)[0]))
    trained = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    assert set(trained) == set(all_before)
    assert state_equal(frozen_before, {k: trained[k] for k in frozen_before})
    moved = [k for k in trained if not torch.equal(trained[k], all_before[k])]
    trainable_names = set(all_before) - set(frozen_before)
    assert set(moved) <= trainable_names and len(moved) > len(trainable_names) // 2
    assert result.history[0]["trainable"] == rule.trainable_parameters(base.model, 0)
