"""The fine-tuning job: it learns, is deterministic, stops, resumes and writes a complete card."""

from __future__ import annotations

import json

import pytest
import torch
from test_training_support import state_equal, synthetic_set, tiny_base

from napari_ribseg.core.errors import TrainingError
from napari_ribseg.core.jobs import StopFlag
from napari_ribseg.core.models import load_checkpoint
from napari_ribseg.core.training.data import TrainingSet
from napari_ribseg.core.training.loop import (
    FinetuneConfig,
    FinetuneResult,
    evaluate_dice,
    finetune,
    finetune_sync,
    resume_paths,
)

torch.set_num_threads(1)

#: Settings under which the untrained tiny U-Net learns the synthetic ribs within two epochs.
FAST = {
    "lr": 3e-3,
    "batch_size": 1,
    "schedule": "none",
    "augment": "none",
    "device": "cpu",
    "select": "best",
    "warmup_share": 0.0,
    "loss": "dice_bce",
}


@pytest.fixture
def base(tmp_path):
    return tiny_base(tmp_path / "base.safetensors")


@pytest.fixture(scope="module")
def data():
    return synthetic_set(n_clips=4, frames_per_clip=8)


def test_two_epochs_raise_validation_dice_above_the_base(base, data, tmp_path):
    events = []
    out = tmp_path / "tuned.safetensors"
    result = finetune_sync(
        base, data, FinetuneConfig(epochs=2, **FAST), out=out, on_progress=events.append
    )
    assert result.best_val_dice > result.base_val_dice + 0.3
    assert result.best_val_dice > 0.5 and not result.stopped
    assert [h["epoch"] for h in result.history] == [1, 2]
    kinds = {e.kind for e in events}
    assert {"message", "batch", "loss", "val_dice", "epoch", "done"} <= kinds
    batch = next(e for e in events if e.kind == "batch")
    assert batch.total == 2 * 24 and {"loss", "lr", "eta_s"} <= set(batch.values)
    # The written checkpoint is the best model and scores what the result says.
    loaded = load_checkpoint(out)
    val = data.subset([data.ids.index(i) for i in result.val_ids])
    assert evaluate_dice(loaded.model, val) == pytest.approx(result.best_val_dice, abs=1e-6)
    assert state_equal(loaded.model.state_dict(), result.model.state_dict())
    assert not resume_paths(out)[0].parent.exists(), "a finished run removes its resume state"


def test_card_records_parent_strategy_data_and_validation(base, data, tmp_path):
    out = tmp_path / "tuned.safetensors"
    config = FinetuneConfig(epochs=1, strategy="decoder", **{**FAST, "loss": "dice"})
    result = finetune_sync(base, data, config, out=out)
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["name"] == "tuned" and card["parent"] == "base"
    assert card["freeze_strategy"] == "decoder" and card["loss"] == "dice"
    assert card["augmentation"] == "none" and card["epochs"] == 1
    assert card["training_data"] == {"frames": 24, "source": data.source, "hash": data.hash}
    metrics = {m["name"]: m for m in card["metrics"]}
    assert metrics["dice"]["value"] == pytest.approx(result.best_val_dice, abs=1e-6)
    assert metrics["dice_base"]["value"] == pytest.approx(result.base_val_dice, abs=1e-6)
    assert "validation: 8 frames" in metrics["dice"]["data"]
    assert card["finetune"]["val_ids"] == result.val_ids and len(result.val_ids) == 8
    assert card["finetune"]["config"]["strategy"] == "decoder"


def test_same_seed_gives_identical_weights(base, data):
    config = FinetuneConfig(epochs=1, **{**FAST, "augment": "standard"})
    first = finetune_sync(base, data, config)
    second = finetune_sync(base, data, config)
    assert first.best_epoch == 1, "the comparison should be between trained weights"
    assert [h["train_loss"] for h in first.history] == [h["train_loss"] for h in second.history]
    assert state_equal(first.model.state_dict(), second.model.state_dict())
    other_seed = finetune_sync(base, data, FinetuneConfig(epochs=1, seed=1, **FAST))
    assert not state_equal(first.model.state_dict(), other_seed.model.state_dict())


def test_stop_after_first_batch_leaves_no_new_model(base, data, tmp_path):
    stop = StopFlag()
    out = tmp_path / "stopped.safetensors"

    def on_progress(event):
        if event.kind == "batch":
            stop.set()

    result = finetune_sync(
        base, data, FinetuneConfig(epochs=3, **FAST), out=out, stop=stop, on_progress=on_progress
    )
    assert isinstance(result, FinetuneResult) and result.stopped
    assert result.history == [] and result.best_epoch == 0
    # Nothing better than the base was found: no copy of the base poses as a new model.
    assert result.checkpoint is None and not out.exists() and not result.promoted
    assert "base is kept" in result.reason


def test_interrupted_run_resumes_from_last_epoch_and_matches_an_uninterrupted_one(
    base, data, tmp_path
):
    config = FinetuneConfig(epochs=3, early_stop_patience=0, **{**FAST, "schedule": "cosine"})
    whole = finetune_sync(base, data, config, out=tmp_path / "whole.safetensors")

    out = tmp_path / "parts.safetensors"
    stop = StopFlag()

    def stop_after_epoch_two(event):
        if event.kind == "epoch" and event.step == 2:
            stop.set()

    first = finetune_sync(base, data, config, out=out, stop=stop, on_progress=stop_after_epoch_two)
    assert first.stopped and len(first.history) == 2
    state = json.loads(resume_paths(out)[1].read_text())
    assert state["epoch"] == 2
    events = []
    second = finetune_sync(base, data, config, out=out, on_progress=events.append)
    assert any("resuming after epoch 2" in e.message for e in events)
    assert sum(e.kind == "batch" for e in events) == 24, "only the third epoch runs"
    assert [h["epoch"] for h in second.history] == [1, 2, 3]
    assert [h["val_dice"] for h in second.history] == [h["val_dice"] for h in whole.history]
    assert second.best_val_dice == whole.best_val_dice
    assert state_equal(second.model.state_dict(), whole.model.state_dict())


def test_resume_state_of_another_run_is_not_used(base, data, tmp_path):
    out = tmp_path / "x.safetensors"
    stop = StopFlag()
    finetune_sync(
        base,
        data,
        FinetuneConfig(epochs=2, **FAST),
        out=out,
        stop=stop,
        on_progress=lambda e: stop.set() if e.kind == "epoch" else None,
    )
    events = []
    result = finetune_sync(
        base,
        data,
        FinetuneConfig(epochs=1, **{**FAST, "lr": 1e-3}),
        out=out,
        on_progress=events.append,
    )
    assert any("for another run" in e.message for e in events)
    assert len(result.history) == 1


def test_a_base_replaced_at_the_same_path_is_another_run(base, data, tmp_path):
    """Resuming checked the base's path only: a file overwritten in place resumed from weights
    trained from the old base and mixed the two (found in a training-engine audit)."""
    out = tmp_path / "y.safetensors"
    stop = StopFlag()
    config = FinetuneConfig(epochs=2, **FAST)
    finetune_sync(
        base, data, config, out=out, stop=stop,
        on_progress=lambda e: stop.set() if e.kind == "epoch" else None,
    )  # fmt: skip
    replaced = tiny_base(base.path, seed=7)  # new weights, same file name
    events = []
    finetune_sync(replaced, data, config, out=out, on_progress=events.append)
    assert any("for another run" in e.message for e in events)
    assert not any("resuming" in e.message for e in events)


def test_a_resumed_run_guards_against_collapse_as_an_uninterrupted_one(tmp_path, monkeypatch):
    """The guard's snapshot and counters were not saved: a collapse that began before an
    interruption went unnoticed after it, and the results differed (training-engine audit)."""
    from napari_ribseg.core.training import loop

    real = loop._guard_collapse

    def collapses_at_11_and_12(run, epoch, snapshot_now):
        run.epoch_recall = 0.0 if epoch in (10, 11) else 0.5
        return real(run, epoch, snapshot_now)

    monkeypatch.setattr(loop, "_guard_collapse", collapses_at_11_and_12)
    base = tiny_base(tmp_path / "base.safetensors")
    data = synthetic_set(n_clips=4, frames_per_clip=3, size=64, seed=1)
    config = FinetuneConfig(epochs=20, batch_size=4, select="last", augment="flip", lr=1e-2)
    whole = finetune_sync(base, data, config, out=tmp_path / "a.safetensors")
    stop = StopFlag()
    first = finetune_sync(
        base, data, config, out=tmp_path / "b.safetensors", stop=stop,
        on_progress=lambda e: e.kind == "epoch" and e.step == 11 and stop.set(),
    )  # fmt: skip
    assert first.stopped and len(first.history) == 11
    resumed = finetune_sync(base, data, config, out=tmp_path / "b.safetensors")
    rollbacks = whole.card.extra["finetune"]["rollbacks"]
    assert [r["epoch"] for r in rollbacks] == [12]
    assert resumed.card.extra["finetune"]["rollbacks"] == rollbacks
    assert state_equal(whole.model.state_dict(), resumed.model.state_dict())


def test_a_set_whose_masks_mark_no_rib_is_refused(base, data):
    """All-empty masks (an export that lost the label value) trained a model that marks nothing,
    which the gate then promoted (training-engine audit)."""
    empty = TrainingSet(data.images, [m * 0 for m in data.masks], data.groups, source="lost-labels")
    with pytest.raises(TrainingError, match="lost-labels: no mask marks a rib pixel in any of its"):
        finetune_sync(base, empty, FinetuneConfig(epochs=1, **FAST))


def test_early_stopping_ends_the_run(base, data):
    # lr 0 never improves on the base, so patience 2 stops after 2 epochs.
    config = FinetuneConfig(epochs=6, early_stop_patience=2, **{**FAST, "lr": 1e-12})
    events = []
    result = finetune_sync(base, data, config, on_progress=events.append)
    assert len(result.history) == 2 and result.best_epoch == 0 and not result.stopped
    assert any(e.message.startswith("early stop") for e in events)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("strategy", "half"),
        ("epochs", -1),
        ("loss", "l2"),
        ("augment", "heavy"),
        ("val_share", 1.0),
        ("schedule", "step"),
        ("optimizer", "sgd"),
    ],
)
def test_bad_settings_raise_training_error(base, data, field, value):
    config = FinetuneConfig(**{field: value})
    with pytest.raises(TrainingError, match=field):
        next(finetune(base, data, config))


def test_too_few_frames_is_a_training_error(base):
    with pytest.raises(TrainingError, match="need at least 2"):
        finetune_sync(base, synthetic_set(1, 1), FinetuneConfig(**FAST))


def test_auto_lr_is_a_tenth_for_a_v_unet_that_already_finds_the_ribs(base, data, tmp_path):
    """Small steps for a strong V-Unet base only: a strong U-Net (like a weak base of any
    variant) gained more from the strategy's rate (docs/training.md)."""
    from napari_ribseg.core.training.config import STRONG_BASE_DICE

    auto = {**FAST, "lr": 0.0, "select": "last"}  # "last": the card is written whatever the gate
    assert FinetuneConfig(**auto).effective_lr() == 1e-3
    assert FinetuneConfig(**auto).effective_lr(STRONG_BASE_DICE, "v-unet") == pytest.approx(1e-4)
    assert FinetuneConfig(**auto).effective_lr(0.9, "unet") == 1e-3
    assert FinetuneConfig(**auto).effective_lr(0.9, "x-unet") == 1e-3
    assert FinetuneConfig(**auto, strategy="decoder").effective_lr(0.9, "v-unet") == pytest.approx(
        2e-4
    )
    assert FinetuneConfig(**{**auto, "lr": 5e-4}).effective_lr(0.9, "v-unet") == 5e-4

    def peak_lr(model, out):
        events = []
        finetune_sync(
            model, data, FinetuneConfig(epochs=1, **auto), out=out, on_progress=events.append
        )
        lrs = {e.values["lr"] for e in events if e.kind == "batch"}
        message = next(e.message for e in events if e.kind == "message" and "lr " in e.message)
        return max(lrs), message

    # The untrained base finds nothing: the strategy's rate.
    lr, message = peak_lr(base, tmp_path / "weak.safetensors")
    assert lr == pytest.approx(1e-3) and f"< {STRONG_BASE_DICE}" in message

    def trained_on_these_frames(model, name):
        path = tmp_path / f"{name}-trained.safetensors"  # never the base's own file
        finetune_sync(model, data, FinetuneConfig(epochs=4, **FAST), out=path)
        return load_checkpoint(path)

    # A V-Unet trained on these frames scores well on them: a tenth, and the card says so.
    v_unet = trained_on_these_frames(tiny_base(tmp_path / "v.safetensors", "v-unet"), "v")
    out = tmp_path / "strong.safetensors"
    lr, message = peak_lr(v_unet, out)
    assert lr == pytest.approx(1e-4) and f">= {STRONG_BASE_DICE}" in message, message
    recorded = json.loads(out.with_suffix(".json").read_text())["finetune"]
    assert recorded["lr"] == pytest.approx(1e-4)
    assert recorded["base_train_dice"] >= STRONG_BASE_DICE
    # The same for a U-Net: it keeps the strategy's rate, and the message says why.
    unet = trained_on_these_frames(base, "u")
    lr, message = peak_lr(unet, tmp_path / "strong-unet.safetensors")
    assert lr == pytest.approx(1e-3) and "a unet base takes the strategy's rate" in message, message


def test_mix_weights_is_the_weighted_mean_of_base_and_trained(base, tmp_path):
    from napari_ribseg.core.training.loop import mix_weights

    other = tiny_base(tmp_path / "other.safetensors")
    with torch.no_grad():
        for p in other.model.parameters():
            p.add_(1.0)
    start = {k: v.clone() for k, v in base.model.state_dict().items()}
    end = {k: v.clone() for k, v in other.model.state_dict().items()}
    mix_weights(other.model, base.model, 0.25)
    for name, value in other.model.state_dict().items():
        if value.is_floating_point():
            expected = start[name] + 0.25 * (end[name] - start[name])
            assert torch.allclose(value, expected, atol=1e-6), name


def test_auto_mix_keeps_half_the_change_for_a_strong_base_and_all_of_it_for_a_weak_one(
    base, data, tmp_path
):
    """'auto' mix: a base that already finds the ribs on the training frames keeps half the
    fine-tuned change (weight-space mix, docs/training.md "Weight mixing"); a weak one all of it.
    The half-way weights are exactly the mean of the base and the unmixed run (CPU runs are
    bit-identical), and the card and the run's messages say what was kept."""
    from napari_ribseg.core.training.config import MIX_BASE_DICE, STRONG_BASE_MIX

    auto = {**FAST, "select": "last"}
    assert FinetuneConfig(**auto).effective_mix() == 1.0
    # Measured on either side (docs/training.md "Weight mixing against base strength"): a base
    # at 0.69 on its frames gained from half, one at 0.62 from the whole change.
    assert MIX_BASE_DICE == 0.65
    assert FinetuneConfig(**auto).effective_mix(0.69) == STRONG_BASE_MIX == 0.5
    assert FinetuneConfig(**auto).effective_mix(MIX_BASE_DICE) == 0.5
    assert FinetuneConfig(**auto).effective_mix(0.62) == 1.0
    assert FinetuneConfig(**{**auto, "mix": 0.8}).effective_mix(0.9) == 0.8

    # Weak (untrained) base: the trained weights, no mixing message.
    events = []
    weak = finetune_sync(base, data, FinetuneConfig(epochs=1, **auto), on_progress=events.append)
    assert weak.card.extra["finetune"]["mix"] == 1.0
    assert not any("fine-tuned change" in e.message for e in events if e.kind == "message")

    strong_path = tmp_path / "strong.safetensors"
    finetune_sync(base, data, FinetuneConfig(epochs=4, **FAST), out=strong_path)
    strong = load_checkpoint(strong_path)
    events = []
    out = tmp_path / "mixed.safetensors"
    mixed = finetune_sync(
        strong, data, FinetuneConfig(epochs=1, **auto), out=out, on_progress=events.append
    )
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["finetune"]["base_train_dice"] >= MIX_BASE_DICE
    assert card["finetune"]["mix"] == 0.5
    assert "0.5 of the fine-tuned change kept" in card["description"]
    said = [e.message for e in events if e.kind == "message" and "fine-tuned change" in e.message]
    assert said and f">= {MIX_BASE_DICE}" in said[0], said
    whole = finetune_sync(strong, data, FinetuneConfig(epochs=1, **{**auto, "mix": 1.0}))
    assert whole.card.extra["finetune"]["mix"] == 1.0
    base_state = strong.model.float().state_dict()
    whole_state = whole.model.state_dict()
    for name, value in mixed.model.state_dict().items():
        if value.is_floating_point():
            half = base_state[name] + 0.5 * (whole_state[name] - base_state[name])
            assert torch.allclose(value, half, atol=1e-6), name
    assert not state_equal(mixed.model.state_dict(), whole_state)


def test_a_run_that_stops_marking_ribs_goes_back_and_continues_at_a_lower_lr(
    base, data, tmp_path, monkeypatch
):
    """The collapse guard (docs/training.md, "The collapse guard"). At the end of epoch 3 the
    network dies (the ReLUs under the output layer dead, its bias -20: it marks no rib pixel and
    no gradient revives it, as when the V-Unet collapsed at lr 1e-3); epochs 4 and 5 mark
    nothing, so the run goes back to the last snapshot that went on to mark ribs (epoch 2: epoch
    3's end is dead, though epoch 3 itself marked ribs on the way), lowers the lr, and ends where
    a healthy run would; without the guard it ends dead. The rollback is on the card, in the
    history's recall and in the messages."""
    from napari_ribseg.core.training import loop

    real_epoch = loop._train_epoch

    def dies_after_epoch_3(run, epoch, stop, clock):
        loss = yield from real_epoch(run, epoch, stop, clock)
        if epoch == 2:
            *_, last_features, head = [
                m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d)
            ]
            with torch.no_grad():  # dead ReLUs under the head: no gradient reaches them again
                last_features.weight.zero_()
                last_features.bias.fill_(-100.0)
                head.weight.zero_()
                head.bias.fill_(-20.0)
        return loss

    monkeypatch.setattr(loop, "_train_epoch", dies_after_epoch_3)
    config = FinetuneConfig(epochs=6, **{**FAST, "select": "last"})

    events = []
    out = tmp_path / "guarded.safetensors"
    guarded = finetune_sync(base, data, config, out=out, on_progress=events.append)
    rollbacks = guarded.card.extra["finetune"]["rollbacks"]
    assert len(rollbacks) == 1, rollbacks
    (rollback,) = rollbacks
    assert rollback["epoch"] == 5 and rollback["recall"] < loop.COLLAPSED_RECALL
    assert rollback["back_to"] == 2
    assert rollback["lr"] == pytest.approx(FAST["lr"] * loop.ROLLBACK_LR_FACTOR)
    recall = [h["train_recall"] for h in guarded.history]
    assert recall[2] > loop.LEARNED_RECALL
    assert recall[3] < loop.COLLAPSED_RECALL and recall[4] < loop.COLLAPSED_RECALL
    assert recall[5] > loop.LEARNED_RECALL, recall
    lrs = [e.values["lr"] for e in events if e.kind == "batch"]
    assert lrs[0] == pytest.approx(3e-3) and lrs[-1] == pytest.approx(3e-3 * 0.3)
    said = [e.message for e in events if e.kind == "message" and "stopped marking" in e.message]
    assert said and "back to the weights of epoch 2" in said[0], said
    assert json.loads(out.with_suffix(".json").read_text())["finetune"]["rollbacks"] == rollbacks
    # The outcome the CLI prints and the widget's outcome box shows says so too.
    assert "stopped marking ribs 1 time(s) (at epoch 5 back to epoch 2)" in guarded.reason

    monkeypatch.setattr(loop, "MAX_ROLLBACKS", 0)
    unguarded = finetune_sync(base, data, config)
    assert unguarded.card.extra["finetune"]["rollbacks"] == []
    assert unguarded.best_val_dice < 0.05, "without the guard the dead network stays dead"
    assert guarded.best_val_dice > 0.5 and guarded.best_val_dice > guarded.base_val_dice + 0.3


def test_the_guards_snapshots_are_written_only_when_they_change(base, tmp_path):
    """They go to a file named by their epochs; an epoch that took no snapshot leaves it alone,
    a new one replaces it once the JSON names the new file."""
    import copy as copy_module

    from napari_ribseg.core.training.resume import _kept_states, _save_resume

    model = base.model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.rand(1, 1, 64, 64)).mean().backward()
    optimizer.step()

    def snap(epoch):
        weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return (epoch, weights, copy_module.deepcopy(optimizer.state_dict()))

    out = tmp_path / "m.safetensors"
    folder = resume_paths(out)[0].parent
    first = {"snapshot": snap(2), "pending": snap(3)}
    _save_resume(out, model, optimizer, {"epoch": 3}, kept=first)
    (kept_file,) = folder.glob("kept-*.safetensors")
    written = kept_file.stat().st_mtime_ns
    _save_resume(out, model, optimizer, {"epoch": 4}, kept=first)
    assert kept_file.stat().st_mtime_ns == written
    _save_resume(
        out, model, optimizer, {"epoch": 5}, kept={"snapshot": first["pending"], "pending": None}
    )
    assert [f.name for f in folder.glob("kept-*.safetensors")] == ["kept-snapshot3.safetensors"]
    info = json.loads(resume_paths(out)[1].read_text())
    states = _kept_states(info, folder)
    assert states["pending"] is None and states["snapshot"][0] == 3
    assert state_equal(states["snapshot"][1], first["pending"][1])


def test_a_fine_tunes_card_records_its_own_step_not_its_parents(tmp_path, data):
    """A fine-tune of an adapted model copied the parent's ``adapt`` record and read as label-free
    (never the default, though it won its gate); the parent's other extras are kept."""
    from napari_ribseg.core.models import is_label_free, save_checkpoint

    path = tmp_path / "base.safetensors"
    loaded = tiny_base(path)
    loaded.card.extra = {"adapt": {"teacher_view": "raw", "gate": None}, "note": "kept"}
    loaded.card.weights_source = "label-free adaptation of tiny (tiny.safetensors)"
    save_checkpoint(loaded.model, loaded.card, path, overwrite=True)
    base = load_checkpoint(path)
    assert is_label_free(base.card)
    config = FinetuneConfig(epochs=1, **{**FAST, "select": "last"})
    card = finetune_sync(base, data, config, out=tmp_path / "child.safetensors").card
    assert "adapt" not in card.extra and card.extra["note"] == "kept"
    assert card.extra["finetune"]["select"] == "last" and not is_label_free(card)
