"""The fine-tuning loop: one job (a generator of Progress events) for the GUI, the CLI and tests.

The job runs as named steps: :func:`_prepare` (split, letterbox, optimiser, schedule),
:func:`_measure_base`, :func:`_restore` (resume an interrupted run), then per epoch
:func:`_train_epoch` and :func:`_validate`, and at the end :func:`_select_and_gate` and
:func:`_write`. With the default ``select="gated"`` the run follows a fixed schedule (no early stop
on a few validation frames) and the promotion gate (``gate.py``) decides on the held-out frames
whether the final weights become a new model at all. Under ``torchrun`` (WORLD_SIZE > 1) the same
loop runs data-parallel. Settings live in ``config.py``, per-frame Dice in ``evaluation.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from napari_ribseg.core.errors import TrainingError
from napari_ribseg.core.jobs import Job, Progress, StopFlag, run_job
from napari_ribseg.core.models import (
    LoadedModel,
    Metric,
    ModelCard,
    TrainingDataSummary,
    letterbox_tensor,
    load_checkpoint,
    save_checkpoint,
)
from napari_ribseg.core.models.card import own_extra
from napari_ribseg.core.models.paths import model_output_path
from napari_ribseg.core.training.augment import Augmenter
from napari_ribseg.core.training.config import (
    OPTIMIZERS,
    RESUME_FREE,
    SCHEDULES,
    FinetuneConfig,
)
from napari_ribseg.core.training.data import TrainingSet
from napari_ribseg.core.training.distributed import (
    Distributed,
    all_reduce_max,
    all_reduce_sum,
    barrier,
    device_for,
    start_distributed,
)
from napari_ribseg.core.training.evaluation import (
    evaluate_dice,
    frame_dices,
    letterbox_set,
    mean_dice,
)
from napari_ribseg.core.training.freeze import FREEZE_STRATEGIES, get_strategy
from napari_ribseg.core.training.gate import GateReport, judge
from napari_ribseg.core.training.losses import get_loss
from napari_ribseg.core.training.output import release_output, released_if_refused
from napari_ribseg.core.training.resume import (
    _file_sha256,
    _kept_states,
    _load_resume,
    _save_resume,
    _unflatten_optimizer,
    bind_resume_to_output,
    remove_resume,
)
from napari_ribseg.core.training.resume import resume_paths as resume_paths  # re-exported

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "FinetuneConfig",
    "FinetuneResult",
    "evaluate_dice",
    "finetune",
    "finetune_sync",
    "letterbox_set",
    "resume_paths",
    "trainable_summary",
]


@dataclass
class FinetuneResult:
    """What a fine-tuning run produced.

    ``model`` is the selected trained model (None from a child process). ``checkpoint`` is None
    when nothing was written: no ``out``, or the gate kept the base (``promoted`` False, ``reason``
    says why).
    """

    checkpoint: Path | None
    card: ModelCard
    history: list[dict[str, float]]
    base_val_dice: float
    best_val_dice: float
    best_epoch: int
    stopped: bool
    val_ids: list[str] = field(default_factory=list)
    model: Any = None
    promoted: bool = True
    reason: str = ""
    gate: GateReport | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the model itself is left out)."""
        return {
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "card": self.card.to_dict(),
            "history": self.history,
            "base_val_dice": self.base_val_dice,
            "best_val_dice": self.best_val_dice,
            "best_epoch": self.best_epoch,
            "stopped": self.stopped,
            "val_ids": self.val_ids,
            "promoted": self.promoted,
            "reason": self.reason,
            "gate": self.gate.to_dict() if self.gate is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneResult:
        gate = data.get("gate")
        return cls(
            checkpoint=Path(data["checkpoint"]) if data.get("checkpoint") else None,
            card=ModelCard.from_dict(data["card"]),
            history=list(data["history"]),
            base_val_dice=float(data["base_val_dice"]),
            best_val_dice=float(data["best_val_dice"]),
            best_epoch=int(data["best_epoch"]),
            stopped=bool(data["stopped"]),
            val_ids=list(data.get("val_ids", [])),
            promoted=bool(data.get("promoted", True)),
            reason=str(data.get("reason", "")),
            gate=GateReport.from_dict(gate) if gate else None,
        )


# ---- data -----------------------------------------------------------------------------------


def _sample_seed(seed: int, epoch: int, index: int) -> int:
    """A distinct, reproducible augmentation seed per (run seed, epoch, frame)."""
    return (seed * 1_000_003 + epoch * 10_007 + index) % (2**32)


class _TrainFrames(Dataset):
    """Augments a frame and its mask together, then letterboxes both to the model input."""

    def __init__(self, data: TrainingSet, size: int, augment: str, seed: int) -> None:
        self.images = data.images
        self.masks = data.masks
        self.size = size
        self.augmenter = Augmenter(augment)
        self.seed = seed
        #: Set by the loop before each epoch's DataLoader iterator is created (workers copy it).
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        seed = _sample_seed(self.seed, self.epoch, index)
        image, mask = self.augmenter(self.images[index], self.masks[index], seed)
        with torch.no_grad():
            x, _ = letterbox_tensor(torch.from_numpy(np.ascontiguousarray(image))[None], self.size)
            m, _ = letterbox_tensor(torch.from_numpy(mask.astype(np.float32))[None], self.size)
        return x[0], (m[0] > 0.5).float()


def split_for_gate(data: TrainingSet, config: FinetuneConfig) -> tuple[TrainingSet, TrainingSet]:
    """(train, held-out) by clip; a gated run holds out at least ``gate_frames`` when it can."""
    train, val = data.split(config.val_share, config.seed)
    if config.selects_best():
        return train, val
    share = config.val_share
    # Grow the held-out share until the gate has enough frames, keeping >= 1 frame to train on.
    while len(val) < config.gate_frames and share < 0.9 and len(train) > 1:
        share = min(0.9, share + 0.05)
        train, val = data.split(share, config.seed)
    return train, val


# ---- optimiser and schedule ------------------------------------------------------------------


#: The collapse guard. Epochs in which the model marks (logit > 0) fewer than this share of the
#: rib pixels of its own training batches, after an epoch in which it marked at least
#: ``LEARNED_RECALL`` of them, are a collapse: the network has stopped marking ribs at all (with
#: the V-Unet at lr 1e-3 the training loss jumped from 0.14 to 0.97 within five epochs and never
#: came back; docs/training.md, "The collapse guard").
COLLAPSED_RECALL = 0.02
LEARNED_RECALL = 0.2
#: Epochs in a row below ``COLLAPSED_RECALL`` that make a collapse (one epoch of a few frames
#: whose few rib pixels a healthy model misses must not turn the run back).
COLLAPSED_EPOCHS = 2
#: On a collapse the weights and optimiser state go back to the last healthy snapshot (taken at
#: the validation points) and the rest of the schedule runs at this share of the learning rate;
#: at most ``MAX_ROLLBACKS`` times a run.
ROLLBACK_LR_FACTOR = 0.3
MAX_ROLLBACKS = 2


def _make_optimizer(model, config: FinetuneConfig, lr: float):
    # Every parameter is handed over, frozen ones included: their grad stays None, which torch
    # optimisers skip entirely (no step, no weight decay), and progressive unfreezing needs no
    # new parameter groups, so the optimizer state has one stable layout for resuming.
    params = list(model.parameters())
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=config.weight_decay)


def _make_scheduler(optimizer, config: FinetuneConfig, total_steps: int):
    """Per-step linear warm-up then cosine decay (or constant); plateau steps per epoch."""
    if config.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=0.5, patience=max(1, config.early_stop_patience // 2)
        )
    warmup = int(round(config.warmup_share * total_steps))
    cosine = config.schedule == "cosine"
    if warmup == 0 and not cosine:
        return None

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if not cosine:
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ---- the run's state ------------------------------------------------------------------------


@dataclass
class _Run:
    """Everything the steps of one run share."""

    base: LoadedModel
    data: TrainingSet
    config: FinetuneConfig
    ddp: Distributed
    device: torch.device
    out: Path | None
    train: TrainingSet
    val: TrainingSet
    model: Any
    loss_fn: Any
    strategy: Any
    epochs: int
    val_images: np.ndarray
    val_masks: np.ndarray
    eval_batch: int
    optimizer: Any = None
    scheduler: Any = None
    scaler: Any = None
    use_amp: bool = False
    amp_dtype: Any = torch.float16
    loader: Any = None
    sampler: Any = None
    dataset: Any = None
    base_dices: list[float] = field(default_factory=list)
    base_val_dice: float = float("nan")
    #: The base's mean Dice on the training frames before training (measured for ``lr`` auto).
    base_train_dice: float | None = None
    lr: float = 0.0
    #: The share of the fine-tuned change kept (``FinetuneConfig.effective_mix``); set at the end.
    mix: float = 1.0
    history: list[dict[str, float]] = field(default_factory=list)
    best_val_dice: float = float("nan")
    best_epoch: int = 0
    since_best: int = 0
    best_state: dict | None = None
    checkpoint_written: bool = False
    start_epoch: int = 0
    stopped: bool = False
    last_dices: list[float] = field(default_factory=list)
    #: Share of the training batches' rib pixels the model marked in the last epoch (NaN: none).
    epoch_recall: float = float("nan")
    learned: bool = False
    #: (epoch, model state, optimiser state) at the end of the last epoch at a validation point
    #: whose next epoch marked ribs (the collapse guard's way back), and of the last epoch at a
    #: validation point, still to be confirmed by the next.
    snapshot: tuple | None = None
    pending: tuple | None = None
    rollbacks: list[dict] = field(default_factory=list)
    collapsed_epochs: int = 0

    @property
    def name(self) -> str:
        return self.out.stem if self.out is not None else f"{self.base.card.name}-finetuned"

    @property
    def config_key(self) -> dict:
        return {k: v for k, v in self.config.to_dict().items() if k not in RESUME_FREE}

    @functools.cached_property
    def base_key(self) -> str:
        """The base checkpoint: its path and its content (a file replaced at the same path is
        another base, and a resume from the old one would mix two bases)."""
        if not self.base.path:
            return self.base.card.name
        return f"{self.base.path}#{_file_sha256(Path(self.base.path))}"


def _prepare(base, data, config, out, ddp) -> _Run:
    """Split, copy the base to the device, letterbox the held-out frames, build the optimiser."""
    device = device_for(config.device, ddp)
    if device.type == "cpu":
        # Bit-identical reruns on the CPU; warn_only because a few kernels have no deterministic
        # variant and a warning beats refusing to train.
        torch.use_deterministic_algorithms(True, warn_only=True)
    if config.batch_size % ddp.world:
        raise TrainingError(
            f"batch size {config.batch_size} must be a multiple of the {ddp.world} processes "
            "(each process takes an equal share of every batch)"
        )
    if not any(mask.any() for mask in data.masks):
        raise TrainingError(
            f"training set from {data.source or 'memory'}: no mask marks a rib pixel in any of "
            f"its {len(data)} frames; a model trained on it learns to mark nothing. Check the "
            "masks' rib value (1, or above half range such as 255 for 8-bit masks)"
        )
    train, val = split_for_gate(data, config)
    if len(train) == 0 or len(val) == 0:
        raise TrainingError(f"training set from {data.source}: nothing left to train on")
    torch.manual_seed(config.seed)
    model = copy.deepcopy(base.model).to(device).float()
    if device.type == "cpu":
        # NHWC convolutions train faster on the CPU (4-frame V-Unet step 0.71 -> 0.51 s, U-Net
        # 0.61 -> 0.43 s, denormals flushed; benchmarks/bench_denormals.py [--channels-last]).
        # Checkpoints are written contiguous, so nothing outside the run sees the layout.
        model = model.to(memory_format=torch.channels_last)
    size = int(model.input_size)
    val_images, val_masks = letterbox_set(val, size)
    run = _Run(
        base=base,
        data=data,
        config=config,
        ddp=ddp,
        device=device,
        out=out,
        train=train,
        val=val,
        model=model,
        loss_fn=get_loss(config.loss),
        strategy=get_strategy(config.strategy, progressive_step=config.progressive_step),
        epochs=config.effective_epochs(len(train) // ddp.world),
        val_images=val_images,
        val_masks=val_masks,
        eval_batch=max(config.batch_size, 8),
    )
    run.dataset = _TrainFrames(train, size, config.augment, config.seed)
    # DistributedSampler also for one process: its permutation (seed + epoch) is then the same
    # in single-process and data-parallel runs, which makes them comparable batch for batch.
    run.sampler = DistributedSampler(
        run.dataset, num_replicas=ddp.world, rank=ddp.rank, shuffle=True, seed=config.seed
    )
    run.loader = DataLoader(
        run.dataset,
        batch_size=config.batch_size // ddp.world,
        sampler=run.sampler,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        drop_last=False,
    )
    if (config.lr == 0 or config.mix == 0) and config.base_is_candidate:
        # 'auto' lr and mix: how well the base already does on the user's frames sets the step
        # size and how much of the change the new model keeps.
        train_images, train_masks = letterbox_set(train, size)
        dices, _ = frame_dices(
            model, train_images, train_masks, device, run.eval_batch, run.loss_fn
        )
        run.base_train_dice = mean_dice(dices)
    run.lr = config.effective_lr(run.base_train_dice, base.card.variant)
    run.optimizer = _make_optimizer(model, config, run.lr)
    run.scheduler = _make_scheduler(run.optimizer, config, len(run.loader) * run.epochs)
    run.use_amp = bool(config.amp and device.type == "cuda")
    if run.use_amp and torch.cuda.is_bf16_supported():
        run.amp_dtype = torch.bfloat16
    # bf16 keeps fp32's exponent range, so only fp16 needs loss scaling.
    run.scaler = torch.amp.GradScaler(
        "cuda", enabled=run.use_amp and run.amp_dtype == torch.float16
    )
    return run


def _measure_base(run: _Run) -> Iterable[Progress]:
    """The base model's Dice on each held-out frame (epoch 0 of the curves)."""
    reason = run.config.lr_reason(run.base_train_dice, run.base.card.variant)
    reason = f", {reason}" if reason else ""
    run.base_dices, _ = frame_dices(
        run.model, run.val_images, run.val_masks, run.device, run.eval_batch, run.loss_fn
    )
    run.base_val_dice = mean_dice(run.base_dices)
    run.best_val_dice = run.base_val_dice
    run.best_state = _cpu_state(run.model)
    run.last_dices = list(run.base_dices)
    yield Progress(
        "message",
        message=f"base model {run.base.card.name}: Dice {run.base_val_dice:.3f} on "
        f"{len(run.val)} held-out frames ({len(run.val.group_names)} clip(s)); training on "
        f"{len(run.train)} frames for {run.epochs} epochs ({len(run.loader) * run.epochs} steps, "
        f"lr {run.lr:g}{reason})",
    )
    yield Progress("val_dice", 0, run.epochs, values={"val_dice": run.base_val_dice})


@torch.no_grad()
def mix_weights(model, base, share: float) -> None:
    """Set ``model``'s weights to ``base + share x (model - base)`` in place (weight-space
    ensembling of a fine-tuned model with its base, WiSE-FT); buffers that are not floating point
    (counters) keep the model's values."""
    reference = base.state_dict()
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            start = reference[name].to(device=value.device, dtype=value.dtype)
            value.copy_(start + share * (value - start))


def _cpu_state(model) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _restore(run: _Run) -> Iterable[Progress]:
    """Continue an interrupted run of the same config, data and base from its last epoch."""
    saved = _load_resume(run.out)
    if saved is None:
        return
    info, tensors = saved
    if not (
        info.get("config_key") == run.config_key
        and info.get("data_hash") == run.data.hash
        and info.get("base") == run.base_key
        and info.get("epoch", 0) < run.epochs
    ):
        yield Progress(
            "message", message="resume state beside the output is for another run; starting anew"
        )
        return
    run.model.load_state_dict(
        {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    )
    run.optimizer.load_state_dict(_unflatten_optimizer(info["optimizer"], tensors))
    if run.scheduler is not None and info.get("scheduler"):
        run.scheduler.load_state_dict(info["scheduler"])
    if info.get("scaler"):
        run.scaler.load_state_dict(info["scaler"])
    run.history = info["history"]
    run.start_epoch = int(info["epoch"])
    run.best_val_dice = float(info["best_val_dice"])
    run.best_epoch = int(info["best_epoch"])
    run.since_best = int(info["since_best"])
    run.checkpoint_written = bool(info["checkpoint_written"])
    # The lowered rate itself is in the scheduler's state (its base rates); the guard's snapshots
    # and counters come back with the weights.
    run.rollbacks = list(info.get("rollbacks", []))
    run.learned = bool(info.get("learned", False))
    run.collapsed_epochs = int(info.get("collapsed_epochs", 0))
    kept = _kept_states(info, resume_paths(run.out)[0].parent)
    run.snapshot, run.pending = kept.get("snapshot"), kept.get("pending")
    if run.checkpoint_written and run.out.is_file():
        run.best_state = load_checkpoint(run.out).model.state_dict()
    else:
        run.checkpoint_written = False
    yield Progress(
        "message",
        message=f"resuming after epoch {run.start_epoch} (best validation Dice "
        f"{run.best_val_dice:.3f} at epoch {run.best_epoch})",
    )


def _train_epoch(run: _Run, epoch: int, stop: StopFlag | None, clock: dict) -> Job[float]:
    """One epoch over the training frames; yields ``batch`` events, returns the mean loss."""
    config, model, device = run.config, run.model, run.device
    torch.manual_seed(config.seed + epoch)
    model.train()
    run.strategy.apply(model, epoch)
    units = frozenset(run.strategy.trainable_units(model, epoch))
    if run.ddp.world > 1 and units != clock.get("wrapped_units"):
        from torch.nn.parallel import DistributedDataParallel

        # DDP registers the parameters that require grad when it is built, so a new trainable
        # set (progressive unfreezing) needs a new wrapper.
        clock["wrapped"] = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
        clock["wrapped_units"] = units
    wrapped = clock.get("wrapped", model)
    run.sampler.set_epoch(epoch)
    run.dataset.epoch = epoch
    per_epoch = len(run.loader)
    total = per_epoch * run.epochs
    loss_sum, loss_count = 0.0, 0
    # Counted on the device (int64, exact) and read once per epoch: no extra sync per batch.
    hit = positive = torch.zeros((), dtype=torch.int64, device=device)
    for batch_index, (x, y) in enumerate(run.loader):
        if all_reduce_max(bool(stop is not None and stop.is_set()), device, run.ddp):
            run.stopped = True
            break
        lr = run.optimizer.param_groups[0]["lr"]
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        run.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=run.amp_dtype, enabled=run.use_amp):
            logits = wrapped(x)
        loss = run.loss_fn(logits, y)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        if run.scheduler is not None and config.schedule != "plateau":
            run.scheduler.step()
        loss_value = float(loss.detach())
        loss_sum += loss_value * len(x)
        loss_count += len(x)
        with torch.no_grad():
            ribs = y > 0.5
            hit = hit + (logits.detach() > 0)[ribs].sum()
            positive = positive + ribs.sum()
        clock["done"] += 1
        clock["run_batches"] += 1
        per_batch = (time.perf_counter() - clock["start"]) / clock["run_batches"]
        yield Progress(
            "batch",
            clock["done"],
            total,
            message=f"epoch {epoch + 1}/{run.epochs} batch {batch_index + 1}/{per_epoch}",
            values={"loss": loss_value, "lr": lr, "eta_s": per_batch * (total - clock["done"])},
        )
    loss_sum, loss_count, hit, positive = all_reduce_sum(
        [loss_sum, float(loss_count), float(hit), float(positive)], device, run.ddp
    )
    run.epoch_recall = hit / positive if positive else float("nan")
    return loss_sum / max(1.0, loss_count)


def _guard_collapse(run: _Run, epoch: int, snapshot_now: bool) -> Iterable[Progress]:
    """The collapse guard: snapshot healthy epochs; on a collapse go back and lower the lr.

    A run that stops marking ribs on its own training frames (``COLLAPSED_RECALL``, for
    ``COLLAPSED_EPOCHS`` epochs in a row) after it had marked them (``LEARNED_RECALL``) has
    diverged, and a fixed schedule would carry the dead network to the end. Its weights and
    optimiser state go back to the last healthy snapshot and the rest of the schedule runs at
    ``ROLLBACK_LR_FACTOR`` of the rate (the steps already taken count: the run takes no longer).
    A snapshot (taken at the end of an epoch at a validation point) counts as healthy only once
    the next epoch, which starts from it, has marked ribs: an epoch's recall is measured on the
    way through it, so the weights at its end may already be dead. Every rollback is on the card
    (``finetune.rollbacks``).
    """
    recall = run.epoch_recall
    if not math.isfinite(recall):
        return
    collapsed = run.learned and recall < COLLAPSED_RECALL
    run.collapsed_epochs = run.collapsed_epochs + 1 if collapsed else 0
    if not collapsed:
        healthy = recall >= LEARNED_RECALL
        run.learned = run.learned or healthy
        if healthy and run.pending is not None:
            run.snapshot = run.pending
        run.pending = None
        if snapshot_now and healthy:
            run.pending = (
                epoch + 1,
                _cpu_state(run.model),
                copy.deepcopy(run.optimizer.state_dict()),
            )
        return
    run.pending = None
    if (
        run.collapsed_epochs < COLLAPSED_EPOCHS
        or run.snapshot is None
        or len(run.rollbacks) >= MAX_ROLLBACKS
    ):
        return
    run.collapsed_epochs = 0
    back_to, weights, optimizer_state = run.snapshot
    current = [group["lr"] for group in run.optimizer.param_groups]
    run.model.load_state_dict(weights)
    # A copy: the optimiser keeps the tensors it is given and updates them in place, which would
    # change the snapshot a second rollback goes back to.
    run.optimizer.load_state_dict(copy.deepcopy(optimizer_state))
    for group, lr in zip(run.optimizer.param_groups, current, strict=True):
        group["lr"] = lr * ROLLBACK_LR_FACTOR
    if run.scheduler is not None and hasattr(run.scheduler, "base_lrs"):
        run.scheduler.base_lrs = [lr * ROLLBACK_LR_FACTOR for lr in run.scheduler.base_lrs]
    peak = run.lr * ROLLBACK_LR_FACTOR ** (len(run.rollbacks) + 1)
    run.rollbacks.append({"epoch": epoch + 1, "back_to": back_to, "recall": recall, "lr": peak})
    yield Progress(
        "message",
        message=f"epoch {epoch + 1}: the model stopped marking ribs on its training frames "
        f"(it marked {recall:.0%} of their rib pixels, {COLLAPSED_EPOCHS} epochs in a row); "
        f"back to the weights of epoch {back_to}, the rest at {ROLLBACK_LR_FACTOR:g} x the "
        f"learning rate (peak {peak:g})",
    )


def _eval_every(run: _Run) -> int:
    """Validate every epoch when epochs select the model; else about 20 times per run."""
    if run.config.selects_best() or run.config.early_stop_patience:
        return 1
    return max(1, run.epochs // 20)


def _validate(run: _Run, epoch: int) -> tuple[float, float]:
    """Dice and loss on the held-out frames; keeps the best epoch for ``select='best'``."""
    dices, val_loss = frame_dices(
        run.model, run.val_images, run.val_masks, run.device, run.eval_batch, run.loss_fn
    )
    run.last_dices = dices
    val_dice = mean_dice(dices)
    config = run.config
    if run.scheduler is not None and config.schedule == "plateau":
        run.scheduler.step(val_dice)
    first_trained = run.best_epoch == 0 and not config.base_is_candidate
    if first_trained or val_dice > run.best_val_dice:
        run.best_val_dice, run.best_epoch, run.since_best = val_dice, epoch + 1, 0
        if config.selects_best():
            run.best_state = _cpu_state(run.model)
            if run.out is not None and run.ddp.main:
                save_checkpoint(run.model, _card(run), run.out)
                run.checkpoint_written = True
    else:
        run.since_best += 1
    return val_dice, val_loss


def _save_state(run: _Run, epoch: int) -> None:
    if run.out is None or not run.ddp.main:
        return
    _save_resume(
        run.out,
        run.model,
        run.optimizer,
        {
            "epoch": epoch + 1,
            "config_key": run.config_key,
            "data_hash": run.data.hash,
            "base": run.base_key,
            "history": run.history,
            "best_val_dice": run.best_val_dice,
            "best_epoch": run.best_epoch,
            "since_best": run.since_best,
            "checkpoint_written": run.checkpoint_written,
            "rollbacks": run.rollbacks,
            "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
            "scaler": run.scaler.state_dict(),
            # The collapse guard's memory, so a resumed run guards as an uninterrupted one does.
            "learned": run.learned,
            "collapsed_epochs": run.collapsed_epochs,
        },
        kept={"snapshot": run.snapshot, "pending": run.pending},
    )


def _select_and_gate(run: _Run) -> Iterable[Progress]:
    """Pick the weights the config asks for and judge them against the base on held-out frames."""
    config = run.config
    if config.selects_best():
        run.model.load_state_dict(run.best_state)
        return None
    run.mix = config.effective_mix(run.base_train_dice)
    if run.mix < 1.0:
        mix_weights(run.model, run.base.model, run.mix)
        reason = config.mix_reason(run.base_train_dice)
        yield Progress(
            "message",
            message=f"new weights: the base + {run.mix:g} x the fine-tuned change"
            + (f" ({reason})" if reason else ""),
        )
    dices, _ = frame_dices(
        run.model, run.val_images, run.val_masks, run.device, run.eval_batch, run.loss_fn
    )
    report = judge(
        list(run.val.ids),
        run.base_dices,
        dices,
        min_frames=config.gate_frames,
        margin=config.gate_margin,
        groups=list(run.val.groups),
        corrected=run.val.corrected_for(run.base.card.name),
        has_rib=[bool(m.any()) for m in run.val_masks],
    )
    run.best_val_dice = mean_dice(dices)
    run.best_epoch = len(run.history)
    yield Progress(
        "message", message=("gate passed: " if report.promoted else "gate: ") + report.reason
    )
    return report


def _card(run: _Run, gate: GateReport | None = None) -> ModelCard:
    """The card of the fine-tuned model: where it came from, on what, how, and how it was judged."""
    from napari_ribseg import __version__

    base, config, train, val, data = run.base, run.config, run.train, run.val, run.data
    parent = base.card.name
    if gate is not None:
        on = (
            f"held-out corrected frames: {gate.frames} of {gate.held_out} held-out frames of "
            f"{', '.join(val.group_names)} ({data.source}), never trained on"
        )
        # One meaning of "dice" on a card: measured on named held-out corrected frames only.
        metrics = (
            [
                Metric("dice", round(gate.new_mean, 6), on),
                Metric("dice_base", round(gate.base_mean, 6), on),
            ]
            if gate.frames
            else []
        )
        verdict = ("promoted: " if gate.promoted else "NOT promoted: ") + gate.reason
        if not gate.promoted and config.select == "last":
            verdict += " (kept anyway: --select last)"
    else:
        on = f"validation: {len(val)} frames of {', '.join(val.group_names)} ({data.source})"
        metrics = [
            Metric("dice", round(run.best_val_dice, 6), on),
            Metric("dice_base", round(run.base_val_dice, 6), on),
        ]
        verdict = f"best validation epoch {run.best_epoch} (select=best, no gate)"
    return dataclasses.replace(
        base.card,
        name=run.name,
        parent=parent,
        training_data=TrainingDataSummary(frames=len(train), source=data.source, hash=data.hash),
        freeze_strategy=config.strategy,
        augmentation=config.augment,
        loss=config.loss,
        epochs=len(run.history),
        metrics=metrics,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        package_version=__version__,
        description=(
            f"{parent} fine-tuned on {len(train)} frames ({config.strategy} strategy, "
            f"{config.augment} augmentation, {config.loss} loss"
            + (f", {run.mix:g} of the fine-tuned change kept" if run.mix < 1.0 else "")
            + f"); {verdict}."
        ),
        weights_source=f"fine-tuned from {parent} ({base.path})",
        extra={
            **own_extra(base.card),
            "finetune": {
                "parent_path": str(base.path) if base.path else None,
                "config": config.to_dict(),
                "lr": run.lr,
                "mix": run.mix,
                "base_train_dice": run.base_train_dice,
                "rollbacks": run.rollbacks,
                "train_ids": train.ids,
                "val_ids": val.ids,
                "val_groups": val.group_names,
                "data_frames": len(data),
                "best_epoch": run.best_epoch,
                "stopped": run.stopped,
                "history": run.history,
                "select": config.select,
                "gate": gate.to_dict() if gate is not None else None,
            },
        },
    )


def _write(run: _Run, gate: GateReport | None) -> Path | None:
    """Write the new model when it was promoted (or asked for); returns its path or None."""
    run.model.eval()
    for param in run.model.parameters():
        param.requires_grad_(True)
    if run.out is None:
        return None
    if gate is None:
        # select="best": the base itself (best epoch 0) is no new model.
        keep = run.best_epoch > 0 or not run.config.base_is_candidate
    else:
        keep = gate.promoted or run.config.select == "last"
    if run.ddp.main:
        if keep:
            # The card is rewritten at the end so it records the whole run (epochs, stopped).
            save_checkpoint(run.model, _card(run, gate), run.out)
            if run.stopped:
                # The next run resumes this one: it may replace what this one wrote.
                bind_resume_to_output(run.out)
        if not run.stopped:
            # The folder, the name's reservation, is given back as the door ends.
            remove_resume(run.out, keep_folder=True)
    return run.out if keep else None


# ---- the job --------------------------------------------------------------------------------


def refuse_not_a_model(base: Any) -> None:
    """:class:`TypeError` when ``base`` is not a loaded model: a path given to ``finetune`` or
    ``adapt`` failed deep in the run (or after the frames were read) with "'PosixPath' object
    has no attribute 'model'"."""
    if not (hasattr(base, "model") and hasattr(base, "card")):
        raise TypeError(
            f"base must be a LoadedModel (core.models.load_model(name or path)); got "
            f"{type(base).__name__}"
        )


def refuse_base_as_out(base: Any, out: Path | None) -> None:
    """:class:`TrainingError` when ``out`` is the base model's own file: a kept result replaced
    the model it was made from (``ribseg finetune``/``adapt`` refuse ``--out`` = ``--model``)."""
    path = getattr(base, "path", None)
    if out is not None and path is not None and Path(out).resolve() == Path(path).resolve():
        raise TrainingError(f"out {out} is the base model itself; choose a new name")


def refuse_existing_out(
    out: str | Path | None,
    *,
    overwrite: bool,
    resume: bool = False,
    name: str = "out",
    ask: str = "pass overwrite=True",
) -> None:
    """:class:`TrainingError` when a model is at ``out`` and the caller did not ask to replace it.

    The one rule of every door (``ribseg finetune --overwrite``, ``finetune(overwrite=True)``): a
    run resuming an interrupted one of the same output may replace what that run wrote
    (:func:`~napari_ribseg.core.training.resume.resume_may_replace`), nothing else may.
    """
    if out is None or overwrite:
        return
    from napari_ribseg.core.training.resume import resume_may_replace

    path = model_output_path(out)  # a bare name is a model in the user model folder
    if path.exists() and not (resume and resume_may_replace(path)):
        raise TrainingError(f"{name} {path} exists; choose a new name or {ask}")


def finetune(
    base: LoadedModel,
    data: TrainingSet,
    config: FinetuneConfig | None = None,
    *,
    out: str | Path | None = None,
    stop: StopFlag | None = None,
    resume: bool = True,
    overwrite: bool = False,
    keep_resume: bool = True,
) -> Job[FinetuneResult]:
    """Fine-tune ``base`` on ``data``; yield Progress events, return a :class:`FinetuneResult`.

    ``out`` is the checkpoint to write (``.safetensors`` with its ``.json`` card beside it): a bare
    name goes to the user model folder, as ``ribseg finetune --out`` puts it
    (:func:`~napari_ribseg.core.models.paths.model_output_path`); a path is taken as given. With
    the default ``select="gated"`` it is written only when the new model beats the base on the
    held-out frames (``result.promoted``; ``result.reason`` says why or why not); a resume state
    sits in ``<stem>.resume/`` until the run finishes. Without ``out`` nothing is written. A model
    already at ``out`` is refused before any training unless ``overwrite`` (``--overwrite``) or
    this run resumes the interrupted one that wrote it. ``keep_resume=False`` removes the resume
    state however the run ends, stopped or failed too (for outputs no later run continues).
    ``stop`` (anything with ``is_set()``) is checked between batches.
    """
    # A bare name means the user model folder in every door (it wrote NAME.safetensors in the
    # working folder, where the registry never lists it).
    out = model_output_path(out) if out is not None else None
    with released_if_refused(out):
        refuse_not_a_model(base)
        config = config or FinetuneConfig()
        config.validate()
        refuse_base_as_out(base, out)
        refuse_existing_out(out, overwrite=overwrite, resume=resume)
        ddp = start_distributed(config.device)
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        return (yield from _finetune(base, data, config, out, stop, resume, ddp))
    finally:
        torch.use_deterministic_algorithms(previous_deterministic, warn_only=previous_warn_only)
        if out is not None and ddp.main and not keep_resume:
            # An output no later run continues (the widget's are named to the second): its
            # resume state goes however the run ended, here, while the name is still this run's
            # (removed after release_output, the folder could be another run's reservation).
            remove_resume(out)
        elif out is not None and ddp.main:
            # A name stamped_output reserved (an empty .resume/ folder) is given back however
            # the run ended; a resume state left to be continued stays. Only the main process
            # writes the output: another rank ending first would give back the name mid-run.
            release_output(out)
        if ddp.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _finetune(base, data, config, out, stop, resume, ddp) -> Job[FinetuneResult]:
    run = _prepare(base, data, config, out, ddp)
    yield from _measure_base(run)
    if out is not None and resume:
        yield from _restore(run)
    clock = {
        "done": run.start_epoch * len(run.loader),
        "start": time.perf_counter(),
        "run_batches": 0,
    }
    every = _eval_every(run)
    for epoch in range(run.start_epoch, run.epochs):
        epoch_start = time.perf_counter()
        lr = run.optimizer.param_groups[0]["lr"]
        trainable = run.strategy.trainable_parameters(run.model, epoch)
        train_loss = yield from _train_epoch(run, epoch, stop, clock)
        if run.stopped:
            break
        last = epoch + 1 == run.epochs
        yield from _guard_collapse(run, epoch, snapshot_now=epoch == 0 or (epoch + 1) % every == 0)
        if (epoch + 1) % every and not last:
            val_dice, val_loss = float("nan"), float("nan")
        else:
            val_dice, val_loss = _validate(run, epoch)
        run.history.append(
            {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                # The share of the training batches' rib pixels marked (the collapse guard's
                # signal); None when they had none.
                "train_recall": run.epoch_recall if math.isfinite(run.epoch_recall) else None,
                # None, not NaN, on epochs without validation: cards are strict JSON.
                "val_loss": val_loss if math.isfinite(val_loss) else None,
                "val_dice": val_dice if math.isfinite(val_dice) else None,
                "lr": lr,
                "trainable": trainable,
                "seconds": time.perf_counter() - epoch_start,
            }
        )
        patience = config.early_stop_patience
        early = bool(patience and run.since_best >= patience)
        _save_state(run, epoch)
        done, total = clock["done"], len(run.loader) * run.epochs
        eta = (time.perf_counter() - clock["start"]) / max(1, clock["run_batches"]) * (total - done)
        yield Progress(
            "loss", epoch + 1, run.epochs, values={"loss": train_loss, "val_loss": val_loss}
        )
        if math.isfinite(val_dice):
            yield Progress(
                "val_dice",
                epoch + 1,
                run.epochs,
                values={"val_dice": val_dice, "best_val_dice": run.best_val_dice},
            )
        yield Progress(
            "epoch",
            epoch + 1,
            run.epochs,
            message=f"epoch {epoch + 1}/{run.epochs}: loss {train_loss:.4f}"
            + (f", held-out Dice {val_dice:.3f}" if math.isfinite(val_dice) else ""),
            values={
                "loss": train_loss,
                "val_dice": val_dice,
                "lr": lr,
                "eta_s": eta,
                "trainable": float(trainable),
            },
        )
        if early:
            yield Progress(
                "message",
                message=f"early stop: no better validation Dice for {run.since_best} epochs",
            )
            break

    gate = yield from _select_and_gate(run)
    checkpoint = _write(run, gate)
    barrier(ddp)
    promoted = gate is None or gate.promoted
    if gate is not None:
        reason = gate.reason
    elif run.best_epoch == 0:
        reason = "no epoch beat the base model on the validation frames; the base is kept"
        promoted = False
    else:
        reason = f"best validation epoch {run.best_epoch}"
    if run.rollbacks:
        went = ", ".join(
            f"at epoch {r['epoch']} back to epoch {r['back_to']}" for r in run.rollbacks
        )
        reason += (
            f"; the network stopped marking ribs {len(run.rollbacks)} time(s) ({went}) and went "
            f"on from there at a lower learning rate (peak {run.rollbacks[-1]['lr']:g})"
        )
    result = FinetuneResult(
        checkpoint=checkpoint,
        card=_card(run, gate),
        history=run.history,
        base_val_dice=run.base_val_dice,
        best_val_dice=run.best_val_dice,
        best_epoch=run.best_epoch,
        stopped=run.stopped,
        val_ids=list(run.val.ids),
        model=run.model,
        promoted=promoted,
        reason=reason,
        gate=gate,
    )
    state = "stopped" if run.stopped else "finished"
    outcome = "new model kept" if checkpoint is not None else "no new model"
    yield Progress(
        "done",
        len(run.history),
        run.epochs,
        message=f"{state}: held-out Dice {run.base_val_dice:.3f} -> {run.best_val_dice:.3f}; "
        f"{outcome} ({reason})",
        values={"best_val_dice": run.best_val_dice, "base_val_dice": run.base_val_dice},
    )
    return result


def finetune_sync(
    base: LoadedModel,
    data: TrainingSet,
    config: FinetuneConfig | None = None,
    *,
    out: str | Path | None = None,
    stop: StopFlag | None = None,
    resume: bool = True,
    overwrite: bool = False,
    on_progress=None,
) -> FinetuneResult:
    """Run :func:`finetune` to the end and return its result (for scripts and tests)."""
    job = finetune(base, data, config, out=out, stop=stop, resume=resume, overwrite=overwrite)
    return run_job(job, on_progress)


def trainable_summary(model, strategies: Iterable[str] = tuple(FREEZE_STRATEGIES)) -> dict:
    """Trainable parameter count of each strategy at epoch 0 (for the widget and the docs)."""
    return {name: get_strategy(name).trainable_parameters(model) for name in strategies}
