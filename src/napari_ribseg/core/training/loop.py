"""The fine-tuning loop: one job (a generator of Progress events) for the GUI, the CLI and tests.

It letterboxes frames to the model's input size, measures the base model on the validation frames,
trains with a freeze strategy, keeps the best checkpoint by validation Dice (atomically, with a full
ModelCard), stops early, stops on request between batches, and can resume an interrupted run from
its last completed epoch. Under ``torchrun`` (WORLD_SIZE > 1) the same loop runs data-parallel.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
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
    letterbox,
    letterbox_tensor,
    load_checkpoint,
    save_checkpoint,
)
from napari_ribseg.core.models.checkpoint import checkpoint_paths
from napari_ribseg.core.training.augment import AUGMENT_PRESETS, Augmenter
from napari_ribseg.core.training.data import TrainingSet
from napari_ribseg.core.training.freeze import FREEZE_STRATEGIES, get_strategy
from napari_ribseg.core.training.losses import LOSSES, get_loss
from napari_ribseg.core.training.resume import (
    _load_resume,
    _remove_resume,
    _save_resume,
    _unflatten_optimizer,
)
from napari_ribseg.core.training.resume import resume_paths as resume_paths  # re-exported

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("cosine", "plateau", "none")
#: Config fields that may change between an interrupted run and its resumption.
_RESUME_FREE = ("epochs", "device", "num_workers", "early_stop_patience")


@dataclass
class FinetuneConfig:
    """How to fine-tune; defaults follow the study (Adam, flips) with Dice + BCE and cosine decay."""

    strategy: str = "all"
    epochs: int = 20
    lr: float = 1e-4
    batch_size: int = 4
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "cosine"
    loss: str = "dice_bce"
    augment: str = "flip"
    val_share: float = 0.2
    #: Epochs without a better validation Dice before stopping; 0 never stops early.
    early_stop_patience: int = 5
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    #: Mixed precision; only takes effect on CUDA.
    amp: bool = True
    #: Epochs per unfreezing step of the ``progressive`` strategy.
    progressive_step: int = 1
    #: The base model competes as "epoch 0", so fine-tuning never returns something worse than
    #: the base on the validation frames. Training from a random start (salient pre-training)
    #: turns this off: a random network that marks everything can out-score early epochs on
    #: large objects, and the "best" model would silently be the random initialisation.
    base_is_candidate: bool = True

    def validate(self) -> None:
        """Raise TrainingError naming the first bad field."""

        def bad(name: str, expected: str) -> TrainingError:
            return TrainingError(
                f"fine-tune setting {name}={getattr(self, name)!r}: expected {expected}"
            )

        if self.strategy not in FREEZE_STRATEGIES:
            raise bad("strategy", f"one of {', '.join(FREEZE_STRATEGIES)}")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"one of {', '.join(SCHEDULES)}")
        if self.loss not in LOSSES:
            raise bad("loss", f"one of {', '.join(LOSSES)}")
        if self.augment not in AUGMENT_PRESETS:
            raise bad("augment", f"one of {', '.join(AUGMENT_PRESETS)}")
        if self.epochs < 1:
            raise bad("epochs", "at least 1")
        if self.batch_size < 1:
            raise bad("batch_size", "at least 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise bad("lr", "a positive number")
        if self.weight_decay < 0:
            raise bad("weight_decay", "0 or more")
        if not 0.0 < self.val_share < 1.0:
            raise bad("val_share", "between 0 and 1")
        if self.early_stop_patience < 0:
            raise bad("early_stop_patience", "0 (off) or more")
        if self.num_workers < 0:
            raise bad("num_workers", "0 or more")
        if self.progressive_step < 1:
            raise bad("progressive_step", "at least 1")

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


@dataclass
class FinetuneResult:
    """What a fine-tuning run produced. ``model`` is the best model (None from a child process)."""

    checkpoint: Path | None
    card: ModelCard
    history: list[dict[str, float]]
    base_val_dice: float
    best_val_dice: float
    best_epoch: int
    stopped: bool
    val_ids: list[str] = field(default_factory=list)
    model: Any = None

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
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneResult:
        return cls(
            checkpoint=Path(data["checkpoint"]) if data.get("checkpoint") else None,
            card=ModelCard.from_dict(data["card"]),
            history=list(data["history"]),
            base_val_dice=float(data["base_val_dice"]),
            best_val_dice=float(data["best_val_dice"]),
            best_epoch=int(data["best_epoch"]),
            stopped=bool(data["stopped"]),
            val_ids=list(data.get("val_ids", [])),
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


def letterbox_set(data: TrainingSet, size: int) -> tuple[np.ndarray, np.ndarray]:
    """All frames and masks of ``data`` letterboxed: float32 (N, 1, S, S) and uint8 (N, 1, S, S)."""
    images = np.empty((len(data), 1, size, size), np.float32)
    masks = np.empty((len(data), 1, size, size), np.uint8)
    for i, (image, mask) in enumerate(zip(data.images, data.masks, strict=True)):
        images[i, 0] = letterbox(image[None], size)[0][0]
        masks[i, 0] = letterbox(mask[None].astype(np.float32), size)[0][0] > 0.5
    return images, masks


@torch.no_grad()
def _evaluate(
    model, images: np.ndarray, masks: np.ndarray, device, batch_size: int, loss_fn
) -> tuple[float, float]:
    """(mean per-frame Dice at probability 0.5, mean loss) on letterboxed frames."""
    was_training = model.training
    model.eval()
    dices: list[float] = []
    losses: list[float] = []
    try:
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(images[start : start + batch_size]).to(device)
            y = torch.from_numpy(masks[start : start + batch_size]).to(device).float()
            logits = model(x).float()
            losses.append(float(loss_fn(logits, y)) * len(x))
            pred = (logits > 0).float().flatten(1)
            truth = y.flatten(1)
            inter = (pred * truth).sum(1)
            total = pred.sum(1) + truth.sum(1)
            # Both empty: a correct "no rib here" counts as a perfect frame.
            dice = torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))
            dices.extend(dice.cpu().tolist())
    finally:
        model.train(was_training)
    n = max(1, len(images))
    return float(np.mean(dices)) if dices else float("nan"), float(sum(losses) / n)


def evaluate_dice(model, data: TrainingSet, *, device="cpu", batch_size: int = 8) -> float:
    """Mean per-frame Dice (probability >= 0.5) of ``model`` on ``data`` letterboxed to its input."""
    images, masks = letterbox_set(data, int(model.input_size))
    return _evaluate(model, images, masks, torch.device(device), batch_size, get_loss("dice"))[0]


# ---- distributed ----------------------------------------------------------------------------


@dataclass
class _Distributed:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def _start_distributed(device_spec: str) -> _Distributed:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Distributed()
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and not str(device_spec).startswith("cpu")
        # NCCL only moves CUDA tensors; gloo serves the CPU (and the loopback test).
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        owns = True
    return _Distributed(dist.get_world_size(), dist.get_rank(), local_rank, owns)


def _device_for(spec: str, ddp: _Distributed) -> torch.device:
    from napari_ribseg.core.devices import resolve_device

    device = resolve_device(spec)
    if ddp.world > 1 and device.type == "cuda":
        # One GPU per process, as torchrun lays them out.
        device = torch.device("cuda", ddp.local_rank)
        torch.cuda.set_device(device)
    return device


# ---- the job --------------------------------------------------------------------------------


def _make_optimizer(model, config: FinetuneConfig):
    # Every parameter is handed over, frozen ones included: their grad stays None, which torch
    # optimisers skip entirely (no step, no weight decay), and progressive unfreezing needs no
    # new parameter groups, so the optimizer state has one stable layout for resuming.
    params = list(model.parameters())
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def _make_scheduler(optimizer, config: FinetuneConfig):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=config.epochs, eta_min=config.lr * 0.01
        )
    if config.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=0.5, patience=max(1, config.early_stop_patience // 2)
        )
    return None


def _model_card(
    base: LoadedModel,
    name: str,
    config: FinetuneConfig,
    data: TrainingSet,
    train: TrainingSet,
    val: TrainingSet,
    *,
    history: list[dict],
    base_val_dice: float,
    best_val_dice: float,
    best_epoch: int,
    stopped: bool,
) -> ModelCard:
    """The card of the fine-tuned model: where it came from, on what and how it was tuned."""
    from napari_ribseg import __version__

    val_groups = ", ".join(val.group_names)
    on = f"validation: {len(val)} frames of {val_groups} ({data.source})"
    parent = base.card.name
    return dataclasses.replace(
        base.card,
        name=name,
        parent=parent,
        training_data=TrainingDataSummary(frames=len(train), source=data.source, hash=data.hash),
        freeze_strategy=config.strategy,
        augmentation=config.augment,
        loss=config.loss,
        epochs=len(history),
        metrics=[
            Metric("dice", round(best_val_dice, 6), on),
            Metric("dice_base", round(base_val_dice, 6), on),
        ],
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        package_version=__version__,
        description=(
            f"{parent} fine-tuned on {len(train)} frames ({config.strategy} strategy, "
            f"{config.augment} augmentation, {config.loss} loss); validation Dice "
            f"{base_val_dice:.3f} -> {best_val_dice:.3f} on {len(val)} frames."
        ),
        weights_source=f"fine-tuned from {parent} ({base.path})",
        extra={
            **base.card.extra,
            "finetune": {
                "parent_path": str(base.path) if base.path else None,
                "config": config.to_dict(),
                "train_ids": train.ids,
                "val_ids": val.ids,
                "val_groups": val.group_names,
                "data_frames": len(data),
                "best_epoch": best_epoch,
                "stopped": stopped,
                "history": history,
            },
        },
    )


def finetune(
    base: LoadedModel,
    data: TrainingSet,
    config: FinetuneConfig | None = None,
    *,
    out: str | Path | None = None,
    stop: StopFlag | None = None,
    resume: bool = True,
) -> Job[FinetuneResult]:
    """Fine-tune ``base`` on ``data``; yield Progress events, return a :class:`FinetuneResult`.

    ``out`` is the checkpoint to write (``.safetensors`` with its ``.json`` card beside it); the
    best epoch so far is always on disk, and a resume state sits in ``<stem>.resume/`` until the
    run finishes. Without ``out`` nothing is written and the best model is only returned.
    ``stop`` (anything with ``is_set()``) is checked between batches.
    """
    config = config or FinetuneConfig()
    config.validate()
    out = checkpoint_paths(out)[0] if out is not None else None
    ddp = _start_distributed(config.device)
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        return (yield from _finetune(base, data, config, out, stop, resume, ddp))
    finally:
        torch.use_deterministic_algorithms(previous_deterministic, warn_only=previous_warn_only)
        if ddp.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _finetune(
    base: LoadedModel,
    data: TrainingSet,
    config: FinetuneConfig,
    out: Path | None,
    stop: StopFlag | None,
    resume: bool,
    ddp: _Distributed,
) -> Job[FinetuneResult]:
    device = _device_for(config.device, ddp)
    if device.type == "cpu":
        # Bit-identical reruns on the CPU; warn_only because a few kernels have no deterministic
        # variant and a warning beats refusing to train.
        torch.use_deterministic_algorithms(True, warn_only=True)
    if config.batch_size % ddp.world:
        raise TrainingError(
            f"batch size {config.batch_size} must be a multiple of the {ddp.world} processes "
            "(each process takes an equal share of every batch)"
        )
    strategy = get_strategy(config.strategy, progressive_step=config.progressive_step)
    loss_fn = get_loss(config.loss)
    train, val = data.split(config.val_share, config.seed)
    if len(train) == 0 or len(val) == 0:
        raise TrainingError(f"training set from {data.source}: nothing left to train on")

    torch.manual_seed(config.seed)
    model = copy.deepcopy(base.model).to(device).float()
    size = int(model.input_size)
    val_images, val_masks = letterbox_set(val, size)
    eval_batch = max(config.batch_size, 8)

    base_val_dice, base_val_loss = _evaluate(
        model, val_images, val_masks, device, eval_batch, loss_fn
    )
    yield Progress(
        "message",
        message=f"base model {base.card.name}: validation Dice {base_val_dice:.3f} on "
        f"{len(val)} frames ({len(val.group_names)} clip(s)); training on {len(train)} frames",
    )
    yield Progress("val_dice", 0, config.epochs, values={"val_dice": base_val_dice})

    optimizer = _make_optimizer(model, config)
    scheduler = _make_scheduler(optimizer, config)
    use_amp = bool(config.amp and device.type == "cuda")
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    # bf16 keeps fp32's exponent range, so only fp16 needs loss scaling.
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    history: list[dict[str, float]] = []
    best_val_dice, best_epoch, since_best = base_val_dice, 0, 0
    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    checkpoint_written = False
    start_epoch = 0
    config_key = {k: v for k, v in config.to_dict().items() if k not in _RESUME_FREE}
    base_key = str(base.path) if base.path else base.card.name

    if out is not None and resume:
        saved = _load_resume(out)
        if saved is not None:
            info, tensors = saved
            if (
                info.get("config_key") == config_key
                and info.get("data_hash") == data.hash
                and info.get("base") == base_key
                and info.get("epoch", 0) < config.epochs
            ):
                model.load_state_dict(
                    {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
                )
                optimizer.load_state_dict(_unflatten_optimizer(info["optimizer"], tensors))
                if scheduler is not None and info.get("scheduler"):
                    scheduler.load_state_dict(info["scheduler"])
                if info.get("scaler"):
                    scaler.load_state_dict(info["scaler"])
                history = info["history"]
                start_epoch = int(info["epoch"])
                best_val_dice = float(info["best_val_dice"])
                best_epoch = int(info["best_epoch"])
                since_best = int(info["since_best"])
                checkpoint_written = bool(info["checkpoint_written"])
                if checkpoint_written and out.is_file():
                    best_state = load_checkpoint(out).model.state_dict()
                else:
                    checkpoint_written = False
                yield Progress(
                    "message",
                    message=f"resuming after epoch {start_epoch} (best validation Dice "
                    f"{best_val_dice:.3f} at epoch {best_epoch})",
                )
            else:
                yield Progress(
                    "message",
                    message="resume state beside the output is for another run; starting anew",
                )

    dataset = _TrainFrames(train, size, config.augment, config.seed)
    # DistributedSampler also for one process: its permutation (seed + epoch) is then the same
    # in single-process and data-parallel runs, which makes them comparable batch for batch.
    sampler = DistributedSampler(
        dataset, num_replicas=ddp.world, rank=ddp.rank, shuffle=True, seed=config.seed
    )
    local_batch = config.batch_size // ddp.world
    loader = DataLoader(
        dataset,
        batch_size=local_batch,
        sampler=sampler,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        drop_last=False,
    )
    batches_per_epoch = len(loader)
    total_batches = batches_per_epoch * config.epochs
    done_batches = start_epoch * batches_per_epoch
    run_start = time.perf_counter()
    run_batches = 0
    stopped = False
    wrapped = model
    wrapped_units: frozenset[str] | None = None
    name = out.stem if out is not None else f"{base.card.name}-finetuned"

    def card_now() -> ModelCard:
        return _model_card(
            base,
            name,
            config,
            data,
            train,
            val,
            history=history,
            base_val_dice=base_val_dice,
            best_val_dice=best_val_dice,
            best_epoch=best_epoch,
            stopped=stopped,
        )

    def stop_requested() -> bool:
        flag = bool(stop is not None and stop.is_set())
        if ddp.world > 1:
            # Every rank must leave the loop at the same batch or the next all-reduce hangs.
            import torch.distributed as dist

            t = torch.tensor([1.0 if flag else 0.0], device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item() > 0)
        return flag

    for epoch in range(start_epoch, config.epochs):
        torch.manual_seed(config.seed + epoch)
        model.train()
        strategy.apply(model, epoch)
        units = frozenset(strategy.trainable_units(model, epoch))
        if ddp.world > 1 and units != wrapped_units:
            from torch.nn.parallel import DistributedDataParallel

            # DDP registers the parameters that require grad when it is built, so a new trainable
            # set (progressive unfreezing) needs a new wrapper.
            wrapped = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
            wrapped_units = units
        trainable = strategy.trainable_parameters(model, epoch)
        sampler.set_epoch(epoch)
        dataset.epoch = epoch
        epoch_start = time.perf_counter()
        loss_sum, loss_count = 0.0, 0
        lr = optimizer.param_groups[0]["lr"]
        for batch_index, (x, y) in enumerate(loader):
            if stop_requested():
                stopped = True
                break
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                logits = wrapped(x)
            loss = loss_fn(logits, y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_value = float(loss.detach())
            loss_sum += loss_value * len(x)
            loss_count += len(x)
            done_batches += 1
            run_batches += 1
            per_batch = (time.perf_counter() - run_start) / run_batches
            yield Progress(
                "batch",
                done_batches,
                total_batches,
                message=f"epoch {epoch + 1}/{config.epochs} batch {batch_index + 1}/"
                f"{batches_per_epoch}",
                values={
                    "loss": loss_value,
                    "lr": lr,
                    "eta_s": per_batch * (total_batches - done_batches),
                },
            )
        if stopped:
            break

        val_dice, val_loss = _evaluate(model, val_images, val_masks, device, eval_batch, loss_fn)
        if scheduler is not None:
            if config.schedule == "plateau":
                scheduler.step(val_dice)
            else:
                scheduler.step()
        if ddp.world > 1:
            import torch.distributed as dist

            # Report the loss over all processes' frames, not just rank 0's share.
            totals = torch.tensor([loss_sum, float(loss_count)], dtype=torch.float64, device=device)
            dist.all_reduce(totals)
            loss_sum, loss_count = float(totals[0]), int(totals[1])
        train_loss = loss_sum / max(1, loss_count)
        record = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_dice": val_dice,
            "lr": lr,
            "trainable": trainable,
            "seconds": time.perf_counter() - epoch_start,
        }
        history.append(record)
        first_trained = best_epoch == 0 and not config.base_is_candidate
        improved = first_trained or val_dice > best_val_dice
        if improved:
            best_val_dice, best_epoch, since_best = val_dice, epoch + 1, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            if out is not None and ddp.main:
                save_checkpoint(model, card_now(), out)
                checkpoint_written = True
        else:
            since_best += 1
        early = bool(config.early_stop_patience and since_best >= config.early_stop_patience)
        if out is not None and ddp.main:
            _save_resume(
                out,
                model,
                optimizer,
                {
                    "epoch": epoch + 1,
                    "config_key": config_key,
                    "data_hash": data.hash,
                    "base": base_key,
                    "history": history,
                    "best_val_dice": best_val_dice,
                    "best_epoch": best_epoch,
                    "since_best": since_best,
                    "checkpoint_written": checkpoint_written,
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "scaler": scaler.state_dict(),
                },
            )
        per_batch = (time.perf_counter() - run_start) / max(1, run_batches)
        eta = per_batch * (total_batches - done_batches)
        yield Progress(
            "loss", epoch + 1, config.epochs, values={"loss": train_loss, "val_loss": val_loss}
        )
        yield Progress(
            "val_dice",
            epoch + 1,
            config.epochs,
            values={"val_dice": val_dice, "best_val_dice": best_val_dice},
        )
        yield Progress(
            "epoch",
            epoch + 1,
            config.epochs,
            message=f"epoch {epoch + 1}/{config.epochs}: loss {train_loss:.4f}, validation Dice "
            f"{val_dice:.3f} (best {best_val_dice:.3f})",
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
                message=f"early stop: no better validation Dice for {since_best} epochs",
            )
            break

    model.load_state_dict(best_state)
    model.eval()
    for param in model.parameters():
        param.requires_grad_(True)
    card = card_now()
    checkpoint = None
    if out is not None:
        if ddp.main:
            # The card is rewritten at the end so it records the whole run (epochs, stopped).
            save_checkpoint(model, card, out)
            if not stopped:
                _remove_resume(out)
        checkpoint = out
    if ddp.world > 1:
        import torch.distributed as dist

        dist.barrier()
    result = FinetuneResult(
        checkpoint=checkpoint,
        card=card,
        history=history,
        base_val_dice=base_val_dice,
        best_val_dice=best_val_dice,
        best_epoch=best_epoch,
        stopped=stopped,
        val_ids=list(val.ids),
        model=model,
    )
    yield Progress(
        "done",
        len(history),
        config.epochs,
        message=("stopped" if stopped else "finished")
        + f": validation Dice {base_val_dice:.3f} -> {best_val_dice:.3f} (epoch {best_epoch})",
        values={"best_val_dice": best_val_dice, "base_val_dice": base_val_dice},
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
    on_progress=None,
) -> FinetuneResult:
    """Run :func:`finetune` to the end and return its result (for scripts and tests)."""
    return run_job(finetune(base, data, config, out=out, stop=stop, resume=resume), on_progress)


def trainable_summary(model, strategies: Iterable[str] = tuple(FREEZE_STRATEGIES)) -> dict:
    """Trainable parameter count of each strategy at epoch 0 (for the widget and the docs)."""
    return {name: get_strategy(name).trainable_parameters(model) for name in strategies}
