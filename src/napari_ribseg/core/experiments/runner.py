"""The study runner: every cell of variants x strategies x sizes x augmentations x folds.

For each cell the variant's initialisation (v-unet: VGG16 encoder; x-unet: salient-object
pre-training; unet: random) is fine-tuned with :func:`napari_ribseg.core.training.finetune` on
``size`` frames of the fold's training clips and evaluated on the fold's held-out clips with
:func:`napari_ribseg.core.evaluation.evaluate_model`. Each finished cell x fold is one row of
``results.csv``, rewritten atomically, so a stopped or crashed study resumes where it was: cells whose
rows exist are skipped. The job follows the one progress/cancel protocol of ``core.jobs``.

Folds come first in the loop order: a study stopped half-way has a complete grid for its first
folds rather than scattered cells, which is what a partial report can use.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_ribseg.core.atomic import write_text_atomic
from napari_ribseg.core.experiments.config import StudyConfig, StudyConfigError, merge_config
from napari_ribseg.core.experiments.report import (
    read_results,
    row_key,
    save_overlay,
    write_report,
    write_results,
)
from napari_ribseg.core.jobs import Progress, StopFlag, run_job

if TYPE_CHECKING:
    from collections.abc import Callable

    from napari_ribseg.core.jobs import Job
    from napari_ribseg.core.models import LoadedModel
    from napari_ribseg.core.training import TrainingSet

log = logging.getLogger(__name__)

RESULTS_CSV = "results.csv"
STUDY_JSON = "study.json"


@dataclass
class StudyResult:
    """Where a study's files are and how far it got."""

    out: Path
    csv: Path
    report: Path | None
    rows: list[dict[str, Any]]
    completed: int
    skipped: int
    stopped: bool
    overlays: list[Path] = field(default_factory=list)


@dataclass
class _Init:
    """One variant's starting point: the model to copy per cell and a line saying what it is."""

    loaded: LoadedModel
    description: str


def load_study_data(config: StudyConfig) -> TrainingSet:
    """The frames of a study: simulated clips (one group per clip) or a paired folder."""
    from napari_ribseg.core.training import TrainingSet

    data = config.data
    if data.source == "paired":
        from napari_ribseg.core.io import read_paired_dataset

        return TrainingSet.from_paired(read_paired_dataset(data.path))
    # YAML gives lists; SimulationConfig wants tuples for (H, W).
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in data.overrides.items()}
    return TrainingSet.from_simulator(
        data.n_clips,
        data.frames_per_clip,
        np.random.default_rng(data.seed),
        seed=data.seed,
        **overrides,
    )


def _widths(config: StudyConfig, variant: str) -> list[int] | None:
    return list(config.widths[variant]) if variant in config.widths else None


def _wrap(model, name: str, description: str) -> LoadedModel:
    """A freshly built model as a LoadedModel, so finetune sees the same type as a loaded file."""
    from napari_ribseg.core.models import LoadedModel, ModelCard

    card = ModelCard(
        name=name,
        variant=model.variant,
        preset=model.preset,
        widths=list(model.widths),
        input_size=model.input_size,
        description=description,
        weights_source=description,
    )
    return LoadedModel(model=model.eval(), card=card, path=Path(f"<{name}>"))


def _initial_models(config: StudyConfig, out: Path, stop: StopFlag) -> Job[dict[str, _Init] | None]:
    """Build (or pre-train, for x-unet) each variant's initialisation; None when stopped."""
    import torch

    from napari_ribseg.core.models import build_model

    inits: dict[str, _Init] = {}
    for variant in config.variants:
        widths = _widths(config, variant)
        if variant == "x-unet":
            loaded = yield from _xunet_init(config, out, stop)
            if loaded is None:
                return None
            inits[variant] = _Init(loaded, loaded.card.description or loaded.card.weights_source)
            continue
        # The random initialisations are part of the result: seed them.
        torch.manual_seed(config.seed)
        model = build_model(
            variant,
            config.preset,
            input_size=config.input_size,
            pretrained=variant == "v-unet",
            widths=widths,
        )
        if variant == "v-unet":
            description = "VGG16 (HED/BSDS500) encoder"
            if tuple(model.widths) != (64, 128, 256, 512, 512):
                description += f", channel-pruned to {list(model.widths)}"
        else:
            description = "random (He) initialisation"
        inits[variant] = _Init(_wrap(model, f"{variant}-init", description), description)
        yield Progress("message", message=f"{variant}: {description}")
    return inits


def _xunet_init(config: StudyConfig, out: Path, stop: StopFlag) -> Job[LoadedModel | None]:
    """The X-Unet start: a named checkpoint, the bundled one, or a salient pre-training kept in out."""
    import torch

    from napari_ribseg.core.errors import CheckpointError
    from napari_ribseg.core.models import build_model, load_model

    init = config.x_unet_init
    if init == "bundled":
        torch.manual_seed(config.seed)
        try:
            model = build_model(
                "x-unet", config.preset, input_size=config.input_size, weights="salient"
            )
        except CheckpointError as exc:
            raise StudyConfigError(
                f"x_unet_init 'bundled': {exc}; use x_unet_init: pretrain or a checkpoint path"
            ) from exc
        yield Progress("message", message=f"x-unet: {model.pretrained_source}")
        return _wrap(model, "x-unet-init", model.pretrained_source)
    if init != "pretrain":
        loaded = load_model(init)
        if loaded.card.variant not in ("x-unet", "unet"):
            raise StudyConfigError(
                f"x_unet_init {init!r} is a {loaded.card.variant} checkpoint; expected x-unet"
            )
        yield Progress("message", message=f"x-unet: starting from {loaded.path}")
        return loaded
    path = out / "init" / "x-unet-salient.safetensors"
    if _finished_pretraining(path):  # the slowest single step of a study: never redo it
        yield Progress("message", message=f"x-unet: reusing salient pre-training {path}")
        return load_model(path)
    from napari_ribseg.core.training.salient import pretrain_salient

    sal = config.salient
    yield Progress(
        "message",
        message=(
            f"x-unet: salient pre-training on "
            f"{sal.data or f'{sal.synthetic} synthetic images'} for {sal.epochs} epochs"
        ),
    )
    result = yield from pretrain_salient(
        sal.data,
        synthetic=sal.synthetic if sal.data is None else 0,
        preset=config.preset,
        widths=_widths(config, "x-unet"),
        size=sal.size or config.input_size,
        epochs=sal.epochs,
        lr=sal.lr,
        batch_size=sal.batch_size,
        loss=sal.loss,
        seed=sal.seed,
        device=config.finetune.device,
        out=path,
        stop=stop,
        # The study's own file: a stopped pre-training is redone, never a user's model.
        overwrite=True,
    )
    if result.stopped:
        return None
    return load_model(result.checkpoint)


def _finished_pretraining(path: Path) -> bool:
    """Whether ``path`` holds a salient pre-training that ran to its end.

    The loop writes its best epoch to the same file while it trains, so a file from a stopped study
    can be half-trained; only the card written at the very end marks it finished (and a rerun
    then continues from the loop's resume state).
    """
    from napari_ribseg.core.models.checkpoint import read_card

    if not path.is_file():
        return False
    info = read_card(path).extra.get("salient_pretraining")
    return bool(info) and not info.get("stopped", True)


def _evaluate(model, test: TrainingSet, threshold: float) -> tuple[dict[str, float], list]:
    from napari_ribseg.core.evaluation import evaluate_model

    # Batch 8 as the study has always scored; the batch size does not change the masks.
    ev = evaluate_model(model, test, threshold=threshold, batch_size=8)
    metrics = {
        "dice": ev.mean["dice"],
        "iou": ev.mean["iou"],
        "hd95": ev.mean["hd95"],
        "dice_frame_sd": ev.std["dice"],
        "hd95_undefined": ev.hd95_undefined,
    }
    return metrics, ev.masks


def _train_indices(n_pool: int, size: int, seed: int, fold: int) -> list[int]:
    """The first ``size`` of one fixed permutation per fold: smaller sets nest in larger ones.

    Nesting makes the size comparison about the amount of data, not about which frames were drawn.
    """
    order = np.random.default_rng([seed, fold, 7919]).permutation(n_pool)
    return sorted(int(i) for i in order[: min(size, n_pool)])


def cell_epochs(config: StudyConfig, n_train: int) -> int:
    """Epochs of a cell: ``finetune``'s epochs (or its ``steps`` over ``n_train`` frames when
    ``epochs`` is 0), raised so that it runs at least ``min_steps`` batches.

    ``n_train`` is the number of frames the loop trains on, i.e. after it has held out its
    validation clips (see :func:`_split_sizes`).
    """
    epochs = config.finetune.effective_epochs(n_train)
    if config.min_steps <= 0:
        return epochs
    batches = math.ceil(max(1, n_train) / config.finetune.batch_size)
    return max(epochs, math.ceil(config.min_steps / batches))


def _split_sizes(config: StudyConfig, train: TrainingSet, seed: int) -> tuple[int, int]:
    """(training, validation) frame counts of the fine-tuning loop's own split of ``train``.

    The loop holds out whole clips, so the counts are not ``val_share`` of the frames; the same
    deterministic split is repeated here (the loop's own function, so a gated recipe's larger
    held-out share is counted too) so the step budget is exact.
    """
    from napari_ribseg.core.training.loop import split_for_gate

    fit, val = split_for_gate(train, dataclasses.replace(config.finetune, seed=seed))
    return len(fit), len(val)


def _read_study_json(out: Path) -> dict[str, Any] | None:
    """The study.json of ``out`` (None when absent)."""
    path = out / STUDY_JSON
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StudyConfigError(
            f"{path}: cannot be read ({exc}); move it away and run with --no-resume to start fresh"
        ) from exc


def check_config_fingerprint(config: StudyConfig, out: str | Path) -> None:
    """Refuse ``config`` when ``out/study.json`` records a study made with other settings."""
    out = Path(out)
    previous = _read_study_json(out)
    if previous is None:
        return
    fingerprint = json.loads(json.dumps(config.fingerprint()))
    old = previous.get("fingerprint") or {}
    if old != fingerprint:
        changed = sorted(k for k in fingerprint if old.get(k) != fingerprint[k])
        raise StudyConfigError(
            f"{out}: results.csv was made with another configuration (changed: {changed}); "
            "use a new --out folder or --no-resume"
        )


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def input_fingerprint(
    config: StudyConfig, data: TrainingSet, folds: list[tuple[TrainingSet, TrainingSet]]
) -> dict[str, Any]:
    """What the study's numbers rest on beyond its settings: the frames, the folds, the X-Unet start.

    The settings' fingerprint holds only the data *path*; a paired folder whose files changed under
    the same path would otherwise be resumed into the same results.csv.
    """
    per_clip = Counter(data.groups)
    record: dict[str, Any] = {
        "frames": len(data),
        "clips": len(per_clip),
        "single_frame_clips": sum(1 for n in per_clip.values() if n == 1),
        "pixels_sha256": data.hash,
        "fold_test_ids_sha256": [
            hashlib.sha256("\n".join(sorted(test.ids)).encode("utf-8")).hexdigest()
            for _, test in folds
        ],
    }
    init = config.x_unet_init
    if "x-unet" in config.variants and init not in ("pretrain", "bundled") and Path(init).is_file():
        record["x_unet_init_sha256"] = _sha256_file(Path(init))
    return record


def _check_inputs(out: Path, old: dict[str, Any] | None, new: dict[str, Any]) -> str | None:
    """Raise when the recorded inputs differ from ``new``; a note when none were recorded."""
    if old is None:
        return (
            "study.json records no data fingerprint (an older study); "
            "recording it now, the rows already in results.csv could not be checked"
        )
    changed = []
    if old.get("pixels_sha256") != new["pixels_sha256"]:
        changed.append(
            f"the frames' pixels or masks ({old.get('frames')} frames in {old.get('clips')} clips "
            f"then, {new['frames']} in {new['clips']} now)"
        )
    folds = [
        k
        for k, (a, b) in enumerate(
            zip(old.get("fold_test_ids_sha256") or [], new["fold_test_ids_sha256"], strict=False)
        )
        if a != b
    ]
    if folds or len(old.get("fold_test_ids_sha256") or []) != len(new["fold_test_ids_sha256"]):
        changed.append(f"the test frames of folds {folds or 'all'}")
    if old.get("x_unet_init_sha256") != new.get("x_unet_init_sha256"):
        changed.append("the contents of the x_unet_init checkpoint")
    if changed:
        raise StudyConfigError(
            f"{out}: results.csv was made from other data: changed {'; '.join(changed)}. "
            "Mixing them would average two datasets in one table; use a new --out folder, or "
            "--no-resume to start afresh there (results.csv is kept as results.csv.bak)"
        )
    return None


def _single_frame_warning(inputs: dict[str, Any]) -> str | None:
    """A warning when most clips hold one frame: their names probably carry no clip id."""
    clips, single = inputs.get("clips", 0), inputs.get("single_frame_clips", 0)
    if clips > 1 and 2 * single > clips:
        return (
            f"WARNING: {single} of {clips} clips hold a single frame, so the folds 'by clip' are "
            "folds by frame and frames of one recording can be in both training and test sets; "
            "name files <clip>_<frame number> (e.g. c003_f0012) so clips are recognised "
            "(docs/formats.md)"
        )
    return None


def _set_aside(path: Path) -> None:
    """Move ``path`` (a file or folder) to ``path.bak``, replacing an older ``.bak``."""
    if not path.exists():
        return
    backup = path.with_name(path.name + ".bak")
    if backup.is_dir():
        shutil.rmtree(backup)
    os.replace(path, backup)


def run_study(
    config: StudyConfig,
    out: str | Path,
    *,
    stop: StopFlag | None = None,
    resume: bool = True,
    data: TrainingSet | None = None,
) -> Job[StudyResult]:
    """The study as a job: yields ``message`` and ``cell`` Progress events, returns StudyResult.

    ``data`` replaces the configured data source (tests, notebooks). With ``resume`` the rows already
    in ``out/results.csv`` are kept and their cells skipped; without it the CSV starts empty.
    """
    import torch

    previous_threads = torch.get_num_threads()
    if config.torch_threads > 0:
        torch.set_num_threads(config.torch_threads)
    try:
        return (yield from _run_study(config, Path(out), stop, resume, data))
    finally:
        # The thread count is process-wide: give the caller (a GUI, a test session) its own back.
        torch.set_num_threads(previous_threads)


def _run_study(
    config: StudyConfig,
    out: Path,
    stop: StopFlag | None,
    resume: bool,
    data: TrainingSet | None,
) -> Job[StudyResult]:
    from napari_ribseg.core.training import finetune

    config.validate()
    stop = stop if stop is not None else StopFlag()
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / RESULTS_CSV
    previous = _read_study_json(out) if resume and csv_path.is_file() else None
    if previous is not None:
        # Settings first: refused before any data is read.
        check_config_fingerprint(config, out)

    if data is None:
        yield Progress("message", message="simulating / reading the study frames")
        data = load_study_data(config)
    folds = list(data.folds(config.folds, seed=config.seed))
    pool = min(len(train_pool) for train_pool, _ in folds)
    if max(config.sizes) > pool:
        # A cell cannot train on more frames than its fold holds; it would run on fewer and be
        # reported under a size it never had.
        raise StudyConfigError(
            f"study {config.name!r}: sizes {sorted(config.sizes)} exceed the {pool} frames a fold "
            f"trains from ({len(data)} frames in {len(data.group_names)} clips, {config.folds} "
            "folds); lower the sizes or give the study more data"
        )
    inputs = input_fingerprint(config, data, folds)
    if previous is not None:
        note = _check_inputs(out, previous.get("inputs"), inputs)
        if note:
            yield Progress("message", message=note)
    payload = {
        "config": config.to_dict(),
        "fingerprint": json.loads(json.dumps(config.fingerprint())),
        "inputs": inputs,
    }
    if not resume:
        # Only now that the data is read and checked: a typo in the config never costs old rows.
        _set_aside(csv_path)
        _set_aside(out / "overlays")
    write_text_atomic(out / STUDY_JSON, json.dumps(payload, indent=2) + "\n")
    rows = read_results(csv_path) if resume else []
    done = {row_key(r) for r in rows}
    if not resume:
        write_results(csv_path, rows)
    yield Progress(
        "message",
        message=f"{len(data)} frames in {len(data.group_names)} clips, {config.folds} folds by clip",
    )
    warning = _single_frame_warning(inputs)
    if warning:
        log.warning(warning)
        yield Progress("message", message=warning)

    grid = study_grid(config)
    todo = [cell for cell in grid if cell not in done]
    skipped = len(grid) - len(todo)
    if skipped:
        yield Progress("message", message=f"resuming: {skipped} of {len(grid)} cells already done")
    overlays = grid_overlays(config, out)
    if not todo:
        report = write_study_report(config, csv_path, out, overlays)
        return StudyResult(out, csv_path, report, rows, 0, skipped, False, overlays)

    variants_needed = [v for v in config.variants if any(c[0] == v for c in todo)]
    sub = copy.copy(config)
    sub.variants = variants_needed
    inits = yield from _initial_models(sub, out, stop)
    if inits is None:
        return StudyResult(out, csv_path, None, rows, 0, skipped, True, overlays)

    pre_cache: dict[tuple[str, int], tuple[dict[str, float], list]] = {}
    largest = max(config.sizes)
    completed = 0
    stopped = False
    for step, (variant, strategy, size, augment, fold) in enumerate(todo, 1):
        if stop.is_set():
            stopped = True
            break
        train_pool, test = folds[fold]
        init = inits[variant]
        if (variant, fold) not in pre_cache:
            pre_cache[(variant, fold)] = _evaluate(init.loaded.model, test, config.threshold)
        pre, _ = pre_cache[(variant, fold)]
        train = train_pool.subset(
            _train_indices(len(train_pool), size, config.seed, fold),
            source=f"{train_pool.source} fold {fold}",
        )
        n_fit, n_val = _split_sizes(config, train, config.seed + fold)
        cfg = config.cell_finetune(strategy, augment, fold, cell_epochs(config, n_fit))
        label = f"{variant}/{strategy}/{size}/{augment}/fold{fold}"
        start = time.perf_counter()
        result = yield from _quiet(
            finetune(init.loaded, train, cfg, out=None, stop=stop, resume=False)
        )
        if result.stopped:
            stopped = True
            break
        post, preds = _evaluate(result.model, test, config.threshold)
        seconds = time.perf_counter() - start
        row = {
            "variant": variant,
            "strategy": strategy,
            "size": size,
            "augment": augment,
            "fold": fold,
            "n_train": n_fit,
            "n_val": n_val,
            "n_test": len(test),
            "init": init.description,
            "dice_pre": pre["dice"],
            "iou_pre": pre["iou"],
            "hd95_pre": pre["hd95"],
            **post,
            "base_val_dice": result.base_val_dice,
            "best_val_dice": result.best_val_dice,
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "trainable_params": _trainable(result),
            "seconds": seconds,
        }
        rows.append(row)
        write_results(csv_path, rows)
        completed += 1
        if fold == 0 and size == largest and config.overlays > 0:
            _overlay(out, label, test, preds, config.overlays)
        yield Progress(
            "cell",
            step=step,
            total=len(todo),
            message=label,
            values={
                "dice": float(post["dice"]),
                "dice_pre": float(pre["dice"]),
                "seconds": float(seconds),
            },
        )
    overlays = grid_overlays(config, out)
    report = write_study_report(config, csv_path, out, overlays)
    return StudyResult(out, csv_path, report, rows, completed, skipped, stopped, overlays)


def _quiet(job: Job[Any]) -> Job[Any]:
    """Pass a fine-tune job through, keeping only its messages (the cell events give the pace)."""
    while True:
        try:
            event = next(job)
        except StopIteration as done:
            return done.value
        if event.kind == "message":
            yield event


def _trainable(result) -> int:
    history = getattr(result, "history", None) or []
    if history and "trainable" in history[0]:
        return int(history[0]["trainable"])
    model = getattr(result, "model", None)
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad)) if model else 0


def _overlay(out: Path, label: str, test: TrainingSet, preds: list, n: int) -> Path:
    # Spread the shown frames over the test set so more than one clip appears.
    idx = np.linspace(0, len(test) - 1, num=min(n, len(test))).round().astype(int)
    name = label.replace("/", "_") + ".png"
    return save_overlay(
        [test.images[i] for i in idx],
        [test.masks[i] for i in idx],
        [preds[i] for i in idx],
        out / "overlays" / name,
        title=label,
        ids=[test.ids[i] for i in idx],
    )


def study_grid(config: StudyConfig) -> list[tuple[str, str, int, str, int]]:
    """Every (variant, strategy, size, augment, fold) of the study, folds first."""
    return [
        (variant, strategy, int(size), augment, fold)
        for fold in range(config.folds)
        for variant in config.variants
        for strategy in config.strategies
        for size in config.sizes
        for augment in config.augments
    ]


def grid_overlays(config: StudyConfig, out: str | Path) -> list[Path]:
    """The overlay files of this grid's cells (fold 0 at the largest size) that exist, in grid order.

    Built from the grid rather than a folder listing, so an overlay is listed once and one left
    by a cell no longer in the grid is not shown.
    """
    if config.overlays <= 0:
        return []
    largest = max(config.sizes)
    names = [
        f"{variant}_{strategy}_{size}_{augment}_fold{fold}.png"
        for variant, strategy, size, augment, fold in study_grid(config)
        if fold == 0 and size == largest
    ]
    folder = Path(out) / "overlays"
    return [folder / name for name in names if (folder / name).is_file()]


def report_study(config: StudyConfig, out: str | Path) -> Path:
    """Rebuild the report of the study in ``out`` with ``config``; refused when ``out/study.json``
    says the results were made with other settings (``--report-only``)."""
    out = Path(out)
    if not (out / RESULTS_CSV).is_file():
        # A mistyped --out made that folder and a report of "No results yet.", exit 0.
        raise StudyConfigError(
            f"{out}: no {RESULTS_CSV} to report on; run the study into it first (without "
            "--report-only)"
        )
    try:
        check_config_fingerprint(config, out)
    except StudyConfigError as exc:
        if not _recorded_settings_agree(config, out):
            raise StudyConfigError(
                f"{exc}. --report-only needs the study's own config (its settings are in "
                f"{out / STUDY_JSON})"
            ) from exc
    return write_study_report(config, out / RESULTS_CSV, out)


def _recorded_settings_agree(config: StudyConfig, out: Path) -> bool:
    """True when every setting ``out/study.json`` recorded equals ``config``'s: a study written by
    an earlier version (flat fine-tune keys, fewer fields) whose fingerprint differs only in how it
    was written. Fields the old study did not record take ``config``'s values, so only a recorded
    difference refuses."""
    recorded = (_read_study_json(out) or {}).get("config")
    if not isinstance(recorded, dict):
        return False
    try:
        as_recorded = merge_config(config, recorded, str(out / STUDY_JSON))
    except StudyConfigError:
        return False
    return as_recorded.fingerprint() == config.fingerprint()


def write_study_report(
    config: StudyConfig, csv_path: Path, out: Path, overlays: list[Path] | None = None
) -> Path:
    """Rebuild ``report.md`` and the plots of a study from its CSV (overlays found in ``out``).

    Only the rows of ``config``'s grid are reported; rows of cells outside it (a grid that shrank
    since they ran) stay in the CSV and the preamble says how many were left out.
    """
    out = Path(out)
    if overlays is None:
        overlays = grid_overlays(config, out)
    grid = set(study_grid(config))
    all_rows = read_results(csv_path)
    rows = [r for r in all_rows if row_key(r) in grid]
    widths = {v: config.widths.get(v, config.preset) for v in config.variants}
    data = config.data
    source = (
        f"simulator, {data.n_clips} clips x {data.frames_per_clip} frames, random_config per clip "
        f"(seed {data.seed}, overrides {data.overrides})"
        if data.source == "simulator"
        else f"paired folder {data.path}"
    )
    lines = [
        (
            f"Study `{config.name}`: variants {config.variants}, strategies {config.strategies}, "
            f"training sizes {config.sizes}, augmentation {config.augments}, {config.folds} folds "
            "by clip."
        ),
        "",
        f"- data: {source}",
    ]
    inputs = ((_read_study_json(out) or {}).get("inputs")) or {}
    if inputs:
        lines.append(f"- data read: {inputs['frames']} frames in {inputs['clips']} clips")
        warning = _single_frame_warning(inputs)
        if warning:
            lines.append(f"- **{warning}**")
    lines += [
        f"- models: widths {widths}, input {config.input_size}x{config.input_size}",
        _recipe_line(config),
    ]
    if "x-unet" in config.variants:
        lines.append(
            f"- x-unet initialisation: {config.x_unet_init}"
            + (
                f" ({config.salient.data or f'{config.salient.synthetic} synthetic salient images'},"
                f" {config.salient.epochs} epochs)"
                if config.x_unet_init == "pretrain"
                else ""
            )
        )
    if len(rows) < len(all_rows):
        outside = sorted({row_key(r)[:4] for r in all_rows if row_key(r) not in grid})
        shown = ", ".join("/".join(str(v) for v in key) for key in outside[:6])
        more = f" and {len(outside) - 6} more" if len(outside) > 6 else ""
        lines.append(
            f"- left out: {len(all_rows) - len(rows)} rows of {csv_path.name} belong to cells "
            f"outside this grid ({shown}{more}); they stay in the CSV"
        )
    return write_report(
        csv_path,
        out,
        title=f"Study report: {config.name}",
        preamble="\n".join(lines),
        overlays=overlays,
        rows=rows,
        threshold=config.threshold,
    )


_SELECTION_TEXT = {
    "best": "best validation epoch kept",
    "gated": "final weights kept only when they beat the start on held-out frames",
    "last": "final weights kept",
}


def _recipe_line(config: StudyConfig) -> str:
    """The report's one line on how the cells fine-tuned, from the nested FinetuneConfig."""
    from napari_ribseg.core.training.config import STRONG_BASE_MIX_RULE, STRONG_BASE_RULE

    ft = config.finetune
    epochs = f"{ft.epochs} epochs" if ft.epochs else f"{ft.steps} steps"
    lr = (
        f"lr {ft.lr}"
        if ft.lr
        else f"lr auto ({ft.effective_lr()} for '{ft.strategy}', {STRONG_BASE_RULE})"
    )
    # Weight mixing applies to the final weights (gated, last), not to a chosen best epoch.
    mix = ""
    if not ft.selects_best():
        mix = (
            f", change kept {ft.mix:g}"
            if ft.mix
            else f", change kept auto ({STRONG_BASE_MIX_RULE})"
        )
    return (
        f"- fine-tuning: {epochs}"
        + (f" (at least {config.min_steps} batches)" if config.min_steps else "")
        + f", {ft.optimizer} {lr}, batch {ft.batch_size}, loss {ft.loss}, schedule {ft.schedule}"
        + (f" after {ft.warmup_share:.0%} warm-up" if ft.warmup_share else "")
        + f", validation share {ft.val_share} ({_SELECTION_TEXT[ft.select]}{mix}), "
        f"threshold {config.threshold}"
    )


def run_study_sync(
    config: StudyConfig,
    out: str | Path,
    *,
    on_progress: Callable[[Progress], Any] | None = None,
    **kwargs: Any,
) -> StudyResult:
    """Run :func:`run_study` to the end in this thread."""
    return run_job(run_study(config, out, **kwargs), on_progress)
