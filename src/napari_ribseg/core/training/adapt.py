"""Label-free adaptation to one stack: self-training on the stack's own frames, with a check.

1. **Teacher.** The base model predicts every frame with flip averaging, on the frame as it is and
   on a contrast-stretched copy (percentiles 1-99.5 to 0-1, which lifts the dark frames of a new
   scanner into the range the model was trained on). ``teacher="best"``: the view whose
   predictions agree best with their own flipped predictions (flip consistency) on the check
   frames becomes the teacher; ``"mean"``: both views' probabilities averaged. With ``temporal``
   > 0, each frame's teacher is also averaged with its neighbours' in the cine
   (:func:`temporal_mean`; only neighbours that look like it, so a folder of unrelated frames is
   left alone).
2. **Student.** A copy of the base trains for ``steps`` steps on the *raw* frames (with flips and
   brightness jitter) to reproduce the teacher's confident pixels (probability above ``confident``
   or below ``1 - confident``; the rest are ignored): masked BCE + soft Dice. Then only ``mix`` of
   the change is kept (weights = base + mix x (student - base), as the fine-tune mixes).
3. **Check.** On held-out frames of the stack (every ``check_every``-th, never trained on) the
   student must be more flip-consistent than the base on the raw frames and must not collapse to
   an empty or exploded mask. Otherwise there is no new model, and the result says why.

No labels are used anywhere; the report says what was done and what the check measured.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from napari_ribseg.core.errors import TrainingError
from napari_ribseg.core.field_types import expected_type
from napari_ribseg.core.io.intensity import unit_divisor, unit_float
from napari_ribseg.core.jobs import Job, Progress, StopFlag, run_job

#: A check frame where the teacher marks at least this many rib pixels (model input, 256 x 256:
#: a rib line is ~100-500) must keep at least DROP_SHARE of them in the adapted model's mask; the
#: same ratio as the rib-share rule, per frame, so blanking some frames cannot pass the check.
MIN_TEACHER_PIXELS = 20
DROP_SHARE = 0.25


@dataclass
class AdaptConfig:
    """Settings of label-free adaptation (defaults measured on the hard domain)."""

    #: 40 steps gained as much as 120 (mean +0.035 vs +0.034 Dice on 2 hard-domain stacks x 2 models)
    #: in 40-46 s instead of 92-102 s on 2 CPU threads (benchmarks/bench_adapt_steps.py).
    steps: int = 40
    lr: float = 5e-4
    batch_size: int = 4
    #: A teacher pixel counts when its probability is above this or below 1 - this.
    confident: float = 0.8
    #: Every n-th frame is held out to check the result (never trained on).
    check_every: int = 5
    #: The student must beat the base's flip consistency by at least this much.
    margin: float = 0.0
    # teacher, temporal and mix (benchmarks/bench_adapt_recipe.py, docs/training.md "Label-free
    # adaptation recipe"): mean teacher + temporal 2 + mix 0.5 led on 6 hard-domain stacks
    # (seeds 75_000+) and lost on 8 others (70_000+: worst stack -0.062), so teacher and temporal
    # keep the old recipe's values. Keeping half of the change (mix 0.5), over all 14 stacks:
    # V-Unet +0.004 (all of it: +0.004), worst stack -0.017 (-0.024), 10 of 14 stacks gained (8);
    # U-Net +0.009 (+0.005), worst -0.026 (-0.028), 10 of 14 gained (7).
    #: The teacher: "best" = the view (raw or stretched) the base is most flip-consistent on;
    #: "mean" = both views' flip-averaged probabilities averaged.
    teacher: str = "best"
    #: Average each frame's teacher probabilities with those of its neighbours within this many
    #: frames (a cine's ribs move little between frames); 0 = each frame on its own.
    temporal: int = 0
    #: Share of the adapted change kept: weights = base + mix x (student - base).
    mix: float = 0.5
    max_frames: int = 200
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        """Raise TrainingError naming the first bad setting and its value."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if problem := expected_type(value, str(f.type)):
                raise TrainingError(f"adapt setting {f.name}={value!r}: expected {problem}")
        if self.steps < 1 or self.batch_size < 1 or not 0 < self.lr < 1:
            raise TrainingError(
                f"adapt settings steps={self.steps}, batch_size={self.batch_size}, lr={self.lr}: "
                "expected steps and batch_size >= 1 and 0 < lr < 1"
            )
        if self.seed < 0:
            # numpy's generators take none: it failed after the teacher, as a bare ValueError.
            raise TrainingError(f"adapt setting seed={self.seed}: expected at least 0")
        if not 0.5 < self.confident < 1.0:
            raise TrainingError(f"adapt setting confident={self.confident}: expected 0.5-1")
        if self.check_every < 2:
            raise TrainingError(f"adapt setting check_every={self.check_every}: expected >= 2")
        if self.teacher not in ("best", "mean"):
            raise TrainingError(f"adapt setting teacher={self.teacher!r}: expected best or mean")
        if self.temporal < 0 or not 0 < self.mix <= 1:
            raise TrainingError(
                f"adapt settings temporal={self.temporal}, mix={self.mix}: expected temporal >= 0 "
                "and 0 < mix <= 1"
            )


@dataclass
class AdaptResult:
    """What adaptation did: ``promoted`` and ``reason``, the check's numbers, the written model."""

    promoted: bool
    reason: str
    checkpoint: Path | None
    teacher_view: str
    base_consistency: float
    new_consistency: float
    base_area: float
    new_area: float
    teacher_area: float
    frames_trained: int
    frames_checked: int
    seconds: float
    model: Any = None
    details: dict = field(default_factory=dict)
    #: The promotion gate on the stack's curated frames, when it has enough of them (else None).
    gate: Any = None

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out.pop("model")
        out["gate"] = self.gate.to_dict() if self.gate is not None else None
        out["checkpoint"] = str(self.checkpoint) if self.checkpoint else None
        return out

    @classmethod
    def from_dict(cls, data: dict) -> AdaptResult:
        """The result :meth:`to_dict` wrote (without the model: load ``checkpoint``)."""
        from napari_ribseg.core.training.gate import GateReport

        data = dict(data)
        gate = data.pop("gate", None)
        checkpoint = data.pop("checkpoint", None)
        known = {f.name for f in dataclasses.fields(cls)} - {"model", "gate", "checkpoint"}
        return cls(
            **{k: v for k, v in data.items() if k in known},
            checkpoint=Path(checkpoint) if checkpoint else None,
            gate=GateReport.from_dict(gate) if gate is not None else None,
        )


def stretch(frames: np.ndarray) -> np.ndarray:
    """Contrast-stretch a stack: its 1st-99.5th percentiles to 0-1 (one mapping for all frames)."""
    low, high = np.percentile(frames, [1.0, 99.5])
    return np.clip((frames - low) / max(float(high - low), 1e-6), 0, 1).astype(np.float32)


#: Neighbours whose frames correlate less than this with a frame (mean-removed, 64x64) are not
#: averaged into its teacher: a folder of unrelated frames is not a cine. Consecutive frames of a
#: simulated cine correlate at 0.998-1.0, frames of different clips at about 0.66.
TEMPORAL_MIN_CORRELATION = 0.9


def temporal_mean(probs, images: np.ndarray, radius: int, usable: np.ndarray | None = None):
    """Each frame's probabilities averaged with those of the frames within ``radius`` of it whose
    image (``images``, N x 1 x H x W) correlates with its own at ``TEMPORAL_MIN_CORRELATION`` or
    more and that are ``usable`` (a bool mask; default all); returns the averaged probabilities and
    the mean number of frames averaged."""
    step = max(1, images.shape[-1] // 64)
    small = images[:, 0, ::step, ::step].reshape(len(images), -1).astype(np.float64)
    small = small - small.mean(1, keepdims=True)
    small /= np.maximum(np.linalg.norm(small, axis=1, keepdims=True), 1e-12)
    out = probs.clone()
    used = []
    for i in range(len(probs)):
        lo, hi = max(0, i - radius), min(len(probs), i + radius + 1)
        near = [
            j
            for j in range(lo, hi)
            if j == i
            or ((usable is None or usable[j]) and small[i] @ small[j] >= TEMPORAL_MIN_CORRELATION)
        ]
        out[i] = probs[near].mean(0)
        used.append(len(near))
    return out, float(np.mean(used))


def _probs(model, x, torch) -> Any:
    """Flip-averaged probabilities and the flip consistency (Dice of p>0.5 vs flipped p>0.5)."""
    with torch.no_grad():
        p = torch.sigmoid(model(x).float())
        q = torch.sigmoid(model(torch.flip(x, dims=[-1])).float()).flip(dims=[-1])
    a, b = (p > 0.5).float().flatten(1), (q > 0.5).float().flatten(1)
    total = a.sum(1) + b.sum(1)
    overlap = 2 * (a * b).sum(1)
    cons = torch.where(total > 0, overlap / total.clamp_min(1), torch.ones_like(total))
    return (p + q) / 2, cons, overlap, total


def _predict(model, images: np.ndarray, device, torch, batch: int = 8):
    """Flip-averaged probabilities, per-frame flip consistency, and the per-frame overlap and
    total (``2|a & b|``, ``|a| + |b|``) of the two masks for a pooled consistency."""
    parts: list[list] = [[], [], [], []]
    for start in range(0, len(images), batch):
        x = torch.from_numpy(images[start : start + batch]).to(device)
        for part, value in zip(parts, _probs(model, x, torch), strict=True):
            part.append(value.cpu())
    return tuple(torch.cat(part) for part in parts)


def pooled_consistency(overlap, total) -> float:
    """Flip consistency pooled over frames, ``sum(2|a & b|) / sum(|a| + |b|)``: a frame with no
    rib in either flip adds nothing (per frame it would score 1, so a model that stops marking ribs
    on some frames would look more consistent); 1.0 when no frame marks anything."""
    total_sum = float(total.sum())
    return float(overlap.sum()) / total_sum if total_sum > 0 else 1.0


def too_short(n_frames: int, config: AdaptConfig | None = None) -> str:
    """Why a stack of ``n_frames`` is too short to adapt to, or ``""``."""
    config = config or AdaptConfig()
    if n_frames >= 2 * config.check_every:
        return ""
    return (
        f"{n_frames} frames; label-free adaptation needs at least {2 * config.check_every} "
        f"(every {config.check_every}th is held out to check it)"
    )


def adapt_split(
    n_frames: int, curated: Iterable[int] = (), config: AdaptConfig | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    """(frames learned from, frames checked on, problem) of a stack of ``n_frames`` (the first
    ``max_frames``) whose ``curated`` frames judge instead: every ``check_every``-th frame is held
    out to check, curated frames are neither. ``problem`` says why adaptation cannot run, or ``""``.
    """
    config = config or AdaptConfig()
    n = min(int(n_frames), config.max_frames)
    check = np.arange(n) % config.check_every == config.check_every // 2
    judged = np.zeros(n, dtype=bool)
    judged[[int(i) for i in curated if 0 <= int(i) < n]] = True
    fit_idx, check_idx = np.flatnonzero(~check & ~judged), np.flatnonzero(check & ~judged)
    problem = too_short(n, config)
    if not problem and (len(fit_idx) == 0 or len(check_idx) == 0):
        problem = (
            f"{int(judged.sum())} of {n} frames are curated; label-free adaptation needs "
            "uncurated frames to learn from and to check on (every "
            f"{config.check_every}th frame from frame {config.check_every // 2} is checked on: "
            f"{len(check_idx)} of them uncurated, {len(fit_idx)} uncurated frames to learn from)"
        )
    return fit_idx, check_idx, problem


def adapt(
    base,
    frames: list[np.ndarray] | np.ndarray,
    config: AdaptConfig | None = None,
    *,
    out: str | Path | None = None,
    stop: StopFlag | None = None,
    source: str = "stack",
    labelled: dict[int, np.ndarray] | None = None,
    gate_frames: int | None = None,
    gate_margin: float | None = None,
    unedited: Iterable[int] = (),
    overwrite: bool = False,
) -> Job[AdaptResult]:
    """Adapt ``base`` (a LoadedModel) to ``frames`` (a ``Stack``, (N, H, W) or a list of 2-D frames:
    floats in 0-1, or raw frames divided as the readers divide the whole stack:
    ``core.io.intensity.unit_float``) without labels.

    ``labelled`` (frame index -> rib mask: the stack's curated frames, if any) turns the check
    into the fine-tune's promotion gate (:func:`~napari_ribseg.core.training.gate.judge`): those
    frames are left out of adaptation entirely and, with at least ``gate_frames`` corrected ones,
    the adapted model is kept only if it beats the base on them (``gate_frames`` and
    ``gate_margin`` default to the fine-tune's, ``FinetuneConfig``). Without them the check is
    label-free, which cannot see a small loss. ``unedited``: curated frames whose mask is the
    base's own, accepted unchanged (:func:`~napari_ribseg.core.session.unedited_frames`); the gate
    does not count them as corrections, as in a fine-tune. ``out``: a bare name goes to the user
    model folder, as ``ribseg adapt --out`` puts it; a path is taken as given. A model already at
    ``out`` is refused before any work unless ``overwrite`` (``ribseg adapt --overwrite``).
    """

    from napari_ribseg.core.models.paths import model_output_path
    from napari_ribseg.core.training.loop import (
        refuse_base_as_out,
        refuse_existing_out,
        refuse_not_a_model,
    )
    from napari_ribseg.core.training.output import release_output, released_if_refused

    # A bare name means the user model folder, as in ribseg adapt (it meant the working folder).
    out = model_output_path(out) if out is not None else None
    with released_if_refused(out):
        refuse_not_a_model(base)
        refuse_base_as_out(base, out)
        refuse_existing_out(out, overwrite=overwrite)
    try:
        return (
            yield from _adapt(
                base,
                frames,
                config,
                out,
                stop,
                source,
                labelled,
                gate_frames,
                gate_margin,
                unedited,
            )
        )
    finally:
        if out is not None:
            # A name stamped_output reserved (an empty .resume/ folder) is given back however
            # the run ended.
            release_output(out)


def _adapt(
    base, frames, config, out, stop, source, labelled, gate_frames, gate_margin, unedited
) -> Job[AdaptResult]:
    import torch

    from napari_ribseg.core.devices import resolve_device
    from napari_ribseg.core.models import letterbox, save_checkpoint
    from napari_ribseg.core.models.checkpoint import checkpoint_paths
    from napari_ribseg.core.stack import Stack

    config = config or AdaptConfig()
    config.validate()
    start_time = time.perf_counter()
    if isinstance(frames, Stack):  # read_stack's result: 'Stack' object is not iterable
        frames = frames.frames
    if isinstance(frames, np.ndarray) and frames.ndim != 3:
        # One (H, W) frame was taken as H frames of one row each ("letterbox expects ...").
        raise TrainingError(
            f"{source}: frames must be (N, H, W) or a list of 2-D frames; got shape {frames.shape}"
        )
    # One divisor for the whole stack, as the readers divide it (a raw 12-bit stack by 4095).
    # Taken once: a generator of frames read twice was empty the second time.
    frames = frames if isinstance(frames, np.ndarray) else list(frames)
    divisor = unit_divisor(frames)
    frames = list(frames)[: config.max_frames]
    if problem := too_short(len(frames), config):
        raise TrainingError(f"{source}: {problem}")
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model = copy.deepcopy(base.model).to(device).float().eval()
    if device.type == "cpu":
        # NHWC convolutions are faster on the CPU, as in the fine-tune (core.training.loop);
        # save_checkpoint writes contiguous tensors.
        model = model.to(memory_format=torch.channels_last)
    size = int(model.input_size)
    raw = np.stack([letterbox(unit_float(f, divisor)[None], size)[0][0] for f in frames])[:, None]
    views = {"raw": raw, "stretched": stretch(raw)}
    labelled = {int(i): m for i, m in (labelled or {}).items() if 0 <= int(i) < len(raw)}
    # Curated frames are never learned from, not even their pixels: they judge the result.
    fit_idx, check_idx, problem = adapt_split(len(raw), labelled, config)
    if problem:
        raise TrainingError(f"{source}: {problem}")
    check = np.zeros(len(raw), dtype=bool)
    check[check_idx] = True
    judged = np.zeros(len(raw), dtype=bool)
    judged[list(labelled)] = True
    yield Progress(
        "message",
        message=f"adapting {base.card.name} to {len(raw)} frames of {source}: "
        f"{len(fit_idx)} to learn from, {len(check_idx)} held out to check",
    )

    # 1. teacher: the view the base is most self-consistent on (and that finds something).
    scores = {}
    teacher = {}
    for name, images in views.items():
        teacher[name] = probs, cons, _overlap, _total = _predict(model, images, device, torch)
        area = float((probs > 0.5).float().mean())
        scores[name] = float(cons[check_idx].mean()) if area > 0 else 0.0
    view = max(scores, key=scores.get)
    if config.teacher == "mean":
        view = "mean"
        target = (teacher["raw"][0] + teacher["stretched"][0]) / 2
    else:
        target = teacher[view][0]
    averaged = 1.0
    if config.temporal:
        # Only frames learned from lend their teacher to a neighbour: the check frames and the
        # curated frames stay out of the training targets entirely.
        target, averaged = temporal_mean(target, raw, config.temporal, usable=~check & ~judged)
    # The base on the raw frames is the raw view's teacher pass (the model has not changed yet).
    base_probs, _base_cons, base_overlap, base_total = teacher["raw"]
    if labelled:
        # The gate's frames, scored as the fine-tune's gate scores them (frame_dices: one plain
        # prediction per frame, as predict and the widget make them, not the flip-averaged
        # teacher); the base's score now, while ``model`` is still the base.
        from napari_ribseg.core.training.evaluation import frame_dices, letterbox_mask
        from napari_ribseg.core.training.losses import get_loss

        idx = sorted(labelled)
        gate_masks = np.stack([letterbox_mask(labelled[i], size) for i in idx])[:, None]
        gate_masks = gate_masks.astype(np.float32)
        loss_fn = get_loss("dice")
        base_dice, _ = frame_dices(model, raw[idx], gate_masks, device, config.batch_size, loss_fn)
    base_consistency = pooled_consistency(base_overlap[check_idx], base_total[check_idx])
    teacher_area = float((target[fit_idx] > 0.5).float().mean())
    yield Progress(
        "message",
        message=f"teacher: {view} frames (flip consistency "
        + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
        + f"); rib share {teacher_area:.4f}"
        + (f"; averaged over {averaged:.1f} neighbouring frames" if config.temporal else ""),
    )

    # 2. student on the raw frames, confident teacher pixels only.
    conf = config.confident
    x_all = torch.from_numpy(raw[fit_idx])
    p_all = target[fit_idx]
    weight_all = ((p_all > conf) | (p_all < 1 - conf)).float()
    label_all = (p_all > 0.5).float()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    model.train()
    stopped = False
    train_start = time.perf_counter()
    for step in range(config.steps):
        if stop is not None and stop.is_set():
            stopped = True
            break
        pick = rng.choice(len(fit_idx), size=min(config.batch_size, len(fit_idx)), replace=False)
        x, y, w = x_all[pick], label_all[pick], weight_all[pick]
        if rng.random() < 0.5:
            x, y, w = x.flip(-1), y.flip(-1), w.flip(-1)
        gain = torch.from_numpy(rng.uniform(0.7, 1.4, (len(pick), 1, 1, 1)).astype(np.float32))
        x = (x * gain).clamp(0, 1).to(device)
        y, w = y.to(device), w.to(device)
        logits = model(x).float()
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
        masked = (bce * w).sum() / w.sum().clamp_min(1)
        prob = torch.sigmoid(logits) * w
        inter = (prob * y).sum()
        dice = 1 - (2 * inter + 1) / (prob.sum() + (y * w).sum() + 1)
        loss = masked + dice
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 10 == 0 or step + 1 == config.steps:
            per_step = (time.perf_counter() - train_start) / (step + 1)
            yield Progress(
                "batch",
                step + 1,
                config.steps,
                message=f"adapt step {step + 1}/{config.steps}",
                values={
                    "loss": float(loss.detach()),
                    "eta_s": per_step * (config.steps - step - 1),
                },
            )
    model.eval()
    if config.mix < 1.0:
        from napari_ribseg.core.training.loop import mix_weights

        mix_weights(model, base.model, config.mix)

    # 3. label-free check on the held-out frames.
    # Only the check frames are read: the student is judged on nothing else.
    new_probs, _new_cons, new_overlap, new_total = _predict(model, raw[check_idx], device, torch)
    new_consistency = pooled_consistency(new_overlap, new_total)
    base_area = float((base_probs[check_idx] > 0.5).float().mean())
    new_area = float((new_probs > 0.5).float().mean())
    check_teacher_area = float((target[check_idx] > 0.5).float().mean())
    # Per check frame: rib pixels the teacher marks, and those the student still marks.
    teacher_px = (target[check_idx] > 0.5).flatten(1).sum(1)
    new_px = (new_probs > 0.5).flatten(1).sum(1)
    seen = teacher_px >= MIN_TEACHER_PIXELS
    dropped = torch.nonzero(seen & (new_px < DROP_SHARE * teacher_px)).flatten().tolist()
    if stopped:
        promoted, reason = False, "stopped before the end; no new model"
    elif new_area == 0.0:
        promoted, reason = False, "the adapted model marks no rib pixel on the check frames"
    elif dropped:
        promoted = False
        frames = [int(check_idx[i]) for i in dropped]
        reason = (
            f"the adapted model drops ribs the teacher marks: under {DROP_SHARE:.0%} of them on "
            f"check frame(s) {frames}"
        )
    elif check_teacher_area > 0 and not 0.25 < new_area / check_teacher_area < 4.0:
        promoted = False
        reason = (
            f"the adapted model's rib share {new_area:.4f} is far from the teacher's "
            f"{check_teacher_area:.4f} on the check frames"
        )
    elif new_consistency <= base_consistency + config.margin:
        promoted = False
        reason = (
            f"no more self-consistent than the base on {len(check_idx)} held-out frames "
            f"(flip consistency {base_consistency:.3f} -> {new_consistency:.3f})"
        )
    else:
        promoted = True
        reason = (
            f"flip consistency {base_consistency:.3f} -> {new_consistency:.3f} on "
            f"{len(check_idx)} held-out frames; rib share {base_area:.4f} -> {new_area:.4f} "
            "(checked without labels: flip consistency rises after self-training whether or not "
            "the model got better, and models it kept scored from 0.115 Dice worse to 0.10 "
            "better on their stacks' true masks; it is offered for this stack, never made the "
            "default model; correct a few frames to judge it)"
        )
    gate = None
    if labelled:
        from napari_ribseg.core.training.config import FinetuneConfig
        from napari_ribseg.core.training.gate import judge

        accepted = {int(i) for i in unedited}

        defaults = FinetuneConfig()
        gate_frames = defaults.gate_frames if gate_frames is None else gate_frames
        gate_margin = defaults.gate_margin if gate_margin is None else gate_margin
        gate = judge(
            [f"{source}_f{i:04d}" for i in idx],
            base_dice,
            frame_dices(model, raw[idx], gate_masks, device, config.batch_size, loss_fn)[0],
            min_frames=gate_frames,
            margin=gate_margin,
            groups=[source] * len(idx),
            corrected=[False if i in accepted else None for i in idx],
            has_rib=[bool(m.any()) for m in gate_masks],
        )
        if gate.frames >= gate_frames and not stopped:
            # Labels outrank the label-free check: the gate decides, and says on what.
            promoted = gate.promoted
            reason = f"judged on the stack's curated frames: {gate.reason}"
        elif not stopped:
            reason += f" ({gate.reason}; so the check stayed label-free)"
    checkpoint = None
    if promoted and out is not None:
        from napari_ribseg import __version__
        from napari_ribseg.core.models import Metric
        from napari_ribseg.core.models.card import TrainingDataSummary, own_extra

        checkpoint = checkpoint_paths(out)[0]
        on = f"{len(check_idx)} held-out frames of {source} (label-free)"
        metrics = [
            Metric("flip_consistency", round(new_consistency, 6), on),
            Metric("flip_consistency_base", round(base_consistency, 6), on),
        ]
        if gate is not None and gate.frames >= gate_frames:
            judged = f"gate: {gate.frames} curated frames of {source} not trained on"
            metrics[:0] = [
                Metric("dice", round(gate.new_mean, 6), judged),
                Metric("dice_base", round(gate.base_mean, 6), judged),
            ]
        card = dataclasses.replace(
            base.card,
            name=checkpoint.stem,
            parent=base.card.name,
            # What this step learned from, not the base's training (the card used to keep it).
            training_data=TrainingDataSummary(
                frames=len(fit_idx), source=f"{source} (unlabelled, teacher: {view})"
            ),
            freeze_strategy=None,
            augmentation="flip+gain",
            loss="masked bce + soft dice on confident teacher pixels",
            epochs=0,
            metrics=metrics,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            package_version=__version__,
            description=f"{base.card.name} adapted without labels to {source}: {reason}.",
            weights_source=f"label-free adaptation of {base.card.name} ({base.path})",
            extra={
                **own_extra(base.card),
                "adapt": {
                    "config": dataclasses.asdict(config),
                    "teacher_view": view,
                    "steps": config.steps,
                    "frames_trained": len(fit_idx),
                    "frames_checked": len(check_idx),
                    "rib_share": {
                        "base": base_area,
                        "teacher": check_teacher_area,
                        "new": new_area,
                    },
                    "seconds": round(time.perf_counter() - start_time, 1),
                    "gate": gate.to_dict() if gate is not None else None,
                },
            },
        )
        save_checkpoint(model, card, checkpoint)
    result = AdaptResult(
        promoted=promoted,
        reason=reason,
        checkpoint=checkpoint,
        teacher_view=view,
        base_consistency=base_consistency,
        new_consistency=new_consistency,
        base_area=base_area,
        new_area=new_area,
        teacher_area=teacher_area,
        frames_trained=len(fit_idx),
        frames_checked=len(check_idx),
        seconds=time.perf_counter() - start_time,
        model=model,
        details={"view_consistency": scores, "temporal_frames": averaged},
        gate=gate,
    )
    yield Progress(
        "done",
        config.steps,
        config.steps,
        message=("adapted: " if promoted else "no new model: ") + reason,
    )
    return result


def adapt_sync(
    base,
    frames,
    config: AdaptConfig | None = None,
    *,
    out=None,
    source="stack",
    on_progress=None,
    labelled: dict[int, np.ndarray] | None = None,
    unedited: Iterable[int] = (),
    overwrite: bool = False,
) -> AdaptResult:
    """Run :func:`adapt` to the end and return its :class:`AdaptResult`."""
    job = adapt(
        base,
        frames,
        config,
        out=out,
        source=source,
        labelled=labelled,
        unedited=unedited,
        overwrite=overwrite,
    )
    return run_job(job, on_progress)
