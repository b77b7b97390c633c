"""Study results: the CSV (one row per cell x fold), the summary tables, the plots and overlays.

Everything here reads and writes plain files so a report can be rebuilt from a CSV alone
(``write_report(csv_path, out_dir)``), e.g. after a resumed or merged run. Plots use matplotlib's Agg
backend (no display needed).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_ribseg.core.atomic import atomic_path, write_text_atomic
from napari_ribseg.core.metrics import csv_number

#: The grid coordinates of one row; a row is uniquely (cell, fold).
KEY_COLUMNS = ("variant", "strategy", "size", "augment", "fold")
#: CSV columns in order.
RESULT_COLUMNS = (
    *KEY_COLUMNS,
    "n_train",
    "n_val",
    "n_test",
    "init",
    "dice_pre",
    "iou_pre",
    "hd95_pre",
    "dice",
    "iou",
    "hd95",
    "dice_frame_sd",
    "hd95_undefined",
    "base_val_dice",
    "best_val_dice",
    "best_epoch",
    "epochs_run",
    "trainable_params",
    "seconds",
)
_INT_COLUMNS = {
    "size",
    "fold",
    "n_train",
    "n_val",
    "n_test",
    "hd95_undefined",
    "best_epoch",
    "epochs_run",
    "trainable_params",
}
_STR_COLUMNS = {"variant", "strategy", "augment", "init"}
#: Metrics where a smaller value is the better one.
LOWER_IS_BETTER = frozenset({"hd95"})


def row_key(row: dict[str, Any]) -> tuple:
    """(variant, strategy, size, augment, fold) of a row, typed."""
    return (
        str(row["variant"]),
        str(row["strategy"]),
        int(row["size"]),
        str(row["augment"]),
        int(row["fold"]),
    )


def _parse(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in _STR_COLUMNS:
            out[key] = value
        elif key in _INT_COLUMNS:
            out[key] = int(float(value)) if value not in ("", None) else 0
        else:
            try:
                out[key] = float(value) if value not in ("", None) else math.nan
            except ValueError:
                out[key] = value
    return out


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a results CSV (numbers parsed; empty list when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return [_parse(r) for r in csv.DictReader(fh)]


def write_results(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write all rows atomically, sorted by their grid key (a crash never leaves half a CSV)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=list(RESULT_COLUMNS), lineterminator="\n", extrasaction="ignore"
    )
    writer.writeheader()
    for row in sorted(rows, key=row_key):
        # Numbers as ribseg evaluate --csv writes them (it wrote nan as "nan", this file as an
        # empty cell, and 6 significant digits): one spelling, read back to the same value.
        writer.writerow({k: csv_number(row.get(k, "")) for k in RESULT_COLUMNS})
    write_text_atomic(path, buffer.getvalue())


# --------------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------------


def _finite(values: Iterable[float]) -> np.ndarray:
    arr = np.asarray([float(v) for v in values], dtype=np.float64)
    return arr[np.isfinite(arr)]


def mean_sd(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; 0 for one value) and count of the finite values."""
    arr = _finite(values)
    if arr.size == 0:
        return math.nan, math.nan, 0
    sd = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return float(arr.mean()), sd, int(arr.size)


def _pm(values: Iterable[float], digits: int = 3) -> str:
    mean, sd, n = mean_sd(values)
    if n == 0:
        return "n/a"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per (variant, strategy, size, augment): fold count and mean/sd of the metrics."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row_key(row)[:4]].append(row)
    out = []
    for key in sorted(groups):
        cell = groups[key]
        entry: dict[str, Any] = dict(zip(KEY_COLUMNS[:4], key, strict=True))
        entry["folds"] = len(cell)
        entry["n_train"] = int(np.mean([r["n_train"] for r in cell]))
        for metric in ("dice", "iou", "hd95", "dice_pre"):
            entry[f"{metric}_mean"], entry[f"{metric}_sd"], _ = mean_sd(r[metric] for r in cell)
        out.append(entry)
    return out


def paired_effect(
    rows: Sequence[dict[str, Any]], factor: str, a: Any, b: Any, metric: str = "dice"
) -> dict[str, Any] | None:
    """Mean difference ``a - b`` of ``metric`` over rows that match in every other grid coordinate.

    ``wins``, ``losses`` and ``ties`` count the pairs where ``a`` was better, worse and equal
    (better is higher for Dice and IoU, lower for HD95).

    Pairing removes the fold-to-fold and cell-to-cell spread, which is much larger than most
    effects in a small study. Returns None when no pair exists.
    """
    index = KEY_COLUMNS.index(factor)
    by_key = {row_key(r): r for r in rows}
    diffs = []
    for key, row in by_key.items():
        if key[index] != a:
            continue
        other = (*key[:index], b, *key[index + 1 :])
        if other in by_key:
            diffs.append(float(row[metric]) - float(by_key[other][metric]))
    arr = _finite(diffs)
    if arr.size == 0:
        return None
    return {
        "factor": factor,
        "a": a,
        "b": b,
        "metric": metric,
        "pairs": int(arr.size),
        "mean": float(arr.mean()),
        "sd": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        # Which side is better depends on the metric (HD95: lower); ties belong to neither.
        "wins": int(np.sum(arr < 0 if metric in LOWER_IS_BETTER else arr > 0)),
        "losses": int(np.sum(arr > 0 if metric in LOWER_IS_BETTER else arr < 0)),
        "ties": int(np.sum(arr == 0)),
    }


def study_effects(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The paired comparisons the paper's findings are about, where the grid has both sides."""
    present = {f: sorted({row_key(r)[KEY_COLUMNS.index(f)] for r in rows}) for f in KEY_COLUMNS}
    wanted: list[tuple[str, Any, Any]] = []
    if {"v-unet", "x-unet"} <= set(present["variant"]):
        wanted.append(("variant", "v-unet", "x-unet"))
    for variant in ("v-unet", "x-unet"):
        if {variant, "unet"} <= set(present["variant"]):
            wanted.append(("variant", variant, "unet"))
    for other in present["strategy"]:
        if other != "all" and "all" in present["strategy"]:
            wanted.append(("strategy", "all", other))
    for other in present["augment"]:
        if other != "none" and "none" in present["augment"]:
            wanted.append(("augment", other, "none"))
    sizes = present["size"]
    if len(sizes) > 1:
        wanted.append(("size", sizes[-1], sizes[0]))
    effects = []
    for factor, a, b in wanted:
        for metric in ("dice", "hd95"):
            effect = paired_effect(rows, factor, a, b, metric)
            if effect is not None:
                effects.append(effect)
    return effects


# --------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------


def _markdown_table(header: Sequence[str], body: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def study_table(rows: Sequence[dict[str, Any]]) -> str:
    """The study's table: mean ± sd across folds per variant x strategy x size x augmentation."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row_key(row)[:4]].append(row)
    body = []
    for key in sorted(groups):
        cell = groups[key]
        body.append(
            [
                *key,
                len(cell),
                _pm(r["dice"] for r in cell),
                _pm(r["iou"] for r in cell),
                _pm((r["hd95"] for r in cell), 1),
            ]
        )
    header = ["variant", "strategy", "frames", "augment", "folds", "Dice", "IoU", "HD95 (px)"]
    return _markdown_table(header, body)


def pre_post_table(rows: Sequence[dict[str, Any]]) -> str:
    """Dice on the test frames before fine-tuning (the initialisation) and after, per variant/size.

    The "before" value depends only on variant and fold, so it is taken once per (variant, fold);
    "after" is averaged over strategies and augmentations within a fold first.
    """
    before: dict[str, dict[int, float]] = defaultdict(dict)
    after: dict[tuple[str, int], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        before[row["variant"]][int(row["fold"])] = float(row["dice_pre"])
        after[(row["variant"], int(row["size"]))][int(row["fold"])].append(float(row["dice"]))
    body = []
    for variant, size in sorted(after):
        folds = after[(variant, size)]
        post = [float(np.mean(v)) for v in folds.values()]
        pre = [before[variant][f] for f in folds]
        gains = [b - a for a, b in zip(pre, post, strict=True)]
        init = next((r["init"] for r in rows if r["variant"] == variant), "")
        body.append([variant, size, _pm(pre), _pm(post), _pm(gains), init])
    header = ["variant", "frames", "Dice before", "Dice after", "gain", "initialisation"]
    return _markdown_table(header, body)


def effects_table(effects: Sequence[dict[str, Any]]) -> str:
    """Paired differences (a - b) with their spread and how often a beat b, lost, or tied."""
    body = []
    for e in effects:
        better = "lower" if e["metric"] in LOWER_IS_BETTER else "higher"
        body.append(
            [
                e["factor"],
                f"{e['a']} - {e['b']}",
                e["metric"],
                f"{e['mean']:+.3f} ± {e['sd']:.3f}",
                e["pairs"],
                f"{e['wins']}/{e['pairs']} ({better} is better)",
                e["losses"],
                e["ties"],
            ]
        )
    return _markdown_table(
        ["factor", "difference", "metric", "mean ± sd", "pairs", "a better", "b better", "ties"],
        body,
    )


# --------------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


_COLORS = {"unet": "tab:gray", "v-unet": "tab:blue", "x-unet": "tab:orange"}
_STYLES = ["-", "--", ":", "-."]


def plot_dice_vs_size(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Dice vs training-set size: one panel per strategy, a line per variant x augmentation."""
    plt = _pyplot()
    summary = summarise(rows)
    strategies = sorted({s["strategy"] for s in summary})
    augments = sorted({s["augment"] for s in summary})
    fig, axes = plt.subplots(
        1, len(strategies), figsize=(4.5 * len(strategies), 3.6), sharey=True, squeeze=False
    )
    for ax, strategy in zip(axes[0], strategies, strict=True):
        for variant in sorted({s["variant"] for s in summary}):
            for j, augment in enumerate(augments):
                pts = sorted(
                    (s["size"], s["dice_mean"], s["dice_sd"])
                    for s in summary
                    if s["variant"] == variant
                    and s["strategy"] == strategy
                    and s["augment"] == augment
                )
                if not pts:
                    continue
                x, y, e = (np.array(v, dtype=float) for v in zip(*pts, strict=True))
                ax.errorbar(
                    x,
                    y,
                    yerr=e,
                    capsize=3,
                    marker="o",
                    linestyle=_STYLES[j % 4],
                    color=_COLORS.get(variant),
                    label=f"{variant}, aug {augment}",
                )
        ax.set_xscale("log")
        ax.minorticks_off()  # the log scale's minor labels (2x10^1 ...) would hide the sizes
        ax.set_xticks(sorted({s["size"] for s in summary}))
        ax.set_xticklabels([str(v) for v in sorted({s["size"] for s in summary})])
        ax.set_title(f"strategy: {strategy}")
        ax.set_xlabel("training frames")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test Dice (mean ± sd over folds)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def plot_strategy_bars(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Bars of Dice per variant and strategy at the largest size (augmentations averaged per fold)."""
    plt = _pyplot()
    largest = max(int(r["size"]) for r in rows)
    per: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if int(r["size"]) == largest:
            per[(r["variant"], r["strategy"])][int(r["fold"])].append(float(r["dice"]))
    variants = sorted({v for v, _ in per})
    strategies = sorted({s for _, s in per})
    width = 0.8 / max(1, len(strategies))
    fig, ax = plt.subplots(figsize=(1.6 + 1.6 * len(variants), 3.4))
    for j, strategy in enumerate(strategies):
        means, sds = [], []
        for variant in variants:
            mean, sd, _ = mean_sd(np.mean(v) for v in per[(variant, strategy)].values())
            means.append(mean)
            sds.append(sd)
        xs = np.arange(len(variants)) + (j - (len(strategies) - 1) / 2) * width
        ax.bar(xs, means, width, yerr=sds, capsize=3, label=strategy)
    ax.set_xticks(np.arange(len(variants)))
    ax.set_xticklabels(variants)
    ax.set_ylabel(f"test Dice at {largest} frames")
    ax.set_title("fine-tune strategy")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def save_overlay(
    images: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    preds: Sequence[np.ndarray],
    path: str | Path,
    title: str = "",
    ids: Sequence[str] | None = None,
) -> Path:
    """A row of frames with the true rib outline (green) and the prediction filled (yellow)."""
    plt = _pyplot()
    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(2.4 * n, 2.6), squeeze=False)
    for i, ax in enumerate(axes[0]):
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=1)
        pred = np.asarray(preds[i], dtype=float)
        ax.imshow(np.ma.masked_where(pred == 0, pred), cmap="spring", alpha=0.35, vmin=0, vmax=1)
        if np.any(truths[i]):
            ax.contour(
                np.asarray(truths[i], dtype=float), levels=[0.5], colors="lime", linewidths=0.8
            )
        if ids is not None:
            ax.set_title(ids[i], fontsize=7)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------


def write_report(
    csv_path: str | Path,
    out_dir: str | Path,
    *,
    title: str = "Study report",
    preamble: str = "",
    overlays: Sequence[str | Path] = (),
    rows: Sequence[dict[str, Any]] | None = None,
    threshold: float = 0.5,
) -> Path:
    """Write ``report.md``, ``dice_vs_size.png`` and ``strategy_bars.png`` into ``out_dir``.

    ``rows`` replaces the CSV's rows (a study reports only its grid's); ``threshold`` is the
    cut-off the test masks were made with.
    """
    out_dir = Path(out_dir)
    rows = read_results(csv_path) if rows is None else list(rows)
    parts = [f"# {title}", ""]
    if preamble:
        parts += [preamble.strip(), ""]
    if not rows:
        parts.append("No results yet.")
        path = out_dir / "report.md"
        write_text_atomic(path, "\n".join(parts) + "\n")
        return path
    plot_dice_vs_size(rows, out_dir / "dice_vs_size.png")
    plot_strategy_bars(rows, out_dir / "strategy_bars.png")
    parts += [
        "## Test metrics per cell (mean ± sd across folds)",
        "",
        (
            f"Dice and IoU at threshold {threshold:g} on the fold's held-out clips, averaged over"
            " its frames; HD95 in pixels of the frame; frames where exactly one of prediction and"
            " truth is empty are left out of its mean (counted in the CSV column"
            " `hd95_undefined`), and so are frames where both are (nothing to measure; their Dice"
            " is 1)."
        ),
        "",
        study_table(rows),
        "",
        "## Before and after fine-tuning",
        "",
        (
            "Dice of the initialisation on the same test frames (before) and after fine-tuning,"
            " averaged over strategies and augmentations; sd across folds."
        ),
        "",
        pre_post_table(rows),
        "",
        "## Paired effects",
        "",
        (
            "Differences between two levels of one factor, paired on every other grid coordinate"
            " (variant, strategy, size, augmentation, fold)."
        ),
        "",
        effects_table(study_effects(rows)),
        "",
        "## Plots",
        "",
        "![Dice vs training-set size](dice_vs_size.png)",
        "",
        "![Dice per fine-tune strategy](strategy_bars.png)",
        "",
    ]
    if overlays:
        parts += ["## Prediction overlays (green: truth outline, yellow: prediction)", ""]
        for overlay in overlays:
            rel = Path(overlay)
            with contextlib.suppress(ValueError):
                rel = rel.relative_to(out_dir)
            parts += [f"![{rel.stem}]({rel.as_posix()})", ""]
    path = out_dir / "report.md"
    write_text_atomic(path, "\n".join(parts) + "\n")
    return path
