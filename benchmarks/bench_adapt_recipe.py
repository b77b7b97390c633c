"""Which label-free adaptation recipe gains on stacks of a new scanner? (``AdaptConfig``'s defaults.)

Each hard-domain stack (``bench_finetune.hard_domain_set``: one clip of a new scanner, consecutive
cine frames, never trained on; seeds 75_000+ above ``HARD_DOMAIN_SEED``, a block no reported number
uses, so the defaults are not chosen on the frames ``bench_finetune.py`` reports) is adapted to
with each recipe; the adapted model and the base are scored on every frame of the stack with the
product's chain (``evaluate_model``), labels used only to score. A recipe is ``name:key=value,...``
of ``AdaptConfig`` fields; ``default`` is ``AdaptConfig()``.

    python benchmarks/bench_adapt_recipe.py --models v-unet-compact,unet-compact --stacks 6 \\
        --recipes default mean:teacher=mean temporal2:temporal=2 half:mix=0.5 --json out.json
    python benchmarks/bench_adapt_recipe.py --summarise out.json ...

The table: per base and recipe, the mean Dice gain over the stacks (trained model, whatever the
check said), the worst stack, how many stacks gained, how many the check kept, and the mean gain
of what the user keeps (the adapted model where the check passed, else the base).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections import defaultdict

#: Stacks to choose the defaults on: offset above HARD_DOMAIN_SEED, clear of bench_finetune's
#: adaptation stacks (70_000), K frames (1_000-41_000), test (50_000) and judge clips (60_000).
RECIPE_SEED = 75_000


def parse_recipe(text: str):
    """``name:key=value,...`` -> (name, AdaptConfig)."""
    from napari_ribseg.core.training.adapt import AdaptConfig

    name, _, items = text.partition(":")
    fields = {f.name: f.type for f in dataclasses.fields(AdaptConfig)}
    values = {}
    for item in filter(None, items.split(",")):
        key, _, value = item.partition("=")
        if key not in fields:
            raise SystemExit(f"recipe {text!r}: AdaptConfig has no field {key!r}")
        kind = {"int": int, "float": float, "str": str}[str(fields[key])]
        values[key] = kind(value)
    return name, AdaptConfig(device="cpu", **values)


def summarise(rows: list[dict]) -> None:
    groups = defaultdict(list)
    for row in rows:
        groups[(row["model"], row["recipe"])].append(row)
    print(
        "| base | recipe | stacks | base Dice | mean gain | worst | gained | kept by check | "
        "gain kept | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (model, recipe), rs in groups.items():
        gains = [r["trained"] - r["before"] for r in rs]
        kept = [(r["trained"] - r["before"]) if r["promoted"] else 0.0 for r in rs]
        n = len(rs)
        print(
            f"| {model} | {recipe} | {n} | {sum(r['before'] for r in rs) / n:.3f} | "
            f"{sum(gains) / n:+.4f} | {min(gains):+.3f} | {sum(g > 0 for g in gains)} | "
            f"{sum(r['promoted'] for r in rs)} | {sum(kept) / n:+.4f} | "
            f"{sum(r['wall'] for r in rs) / n:.0f} |"
        )


def teacher_dices(base, stack) -> dict[str, float]:
    """Mean Dice, against the labels, of the base's plain prediction and of each teacher the
    recipes can build (view x temporal radius), on the letterboxed frames."""
    import torch

    from napari_ribseg.core.training.adapt import _predict, stretch, temporal_mean
    from napari_ribseg.core.training.evaluation import letterbox_set

    model = base.model.float().eval()
    images, masks = letterbox_set(stack, int(model.input_size))
    truth = torch.from_numpy(masks).float().flatten(1)

    def dice(probs) -> float:
        pred = (probs > 0.5).float().flatten(1)
        total = pred.sum(1) + truth.sum(1)
        d = torch.where(total > 0, 2 * (pred * truth).sum(1) / total.clamp_min(1), 1.0)
        return float(d.mean())

    with torch.no_grad():
        plain = torch.cat(
            [
                torch.sigmoid(model(torch.from_numpy(images[i : i + 8])))
                for i in range(0, len(images), 8)
            ]
        )
    out = {"plain": dice(plain)}
    raw = _predict(model, images, torch.device("cpu"), torch)[0]
    stretched = _predict(model, stretch(images), torch.device("cpu"), torch)[0]
    for view, probs in (("raw", raw), ("stretched", stretched), ("mean", (raw + stretched) / 2)):
        for radius in (0, 2, 4, 8):
            p = temporal_mean(probs, images, radius)[0] if radius else probs
            out[f"{view} t{radius}"] = dice(p)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="v-unet-compact,unet-compact")
    p.add_argument("--recipes", nargs="+", default=["default"])
    p.add_argument("--stacks", type=int, default=6)
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--seed", type=int, default=RECIPE_SEED)
    p.add_argument("--height", type=int, default=820)
    p.add_argument("--width", type=int, default=1124)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write the rows here")
    p.add_argument(
        "--teachers", action="store_true", help="only score the candidate teachers (no training)"
    )
    p.add_argument("--summarise", nargs="+", metavar="JSON", help="only print the table of runs")
    args = p.parse_args(argv)
    if args.summarise:
        rows = []
        for path in args.summarise:
            with open(path) as f:
                rows += json.load(f)
        summarise(rows)
        return 0

    import torch

    from bench_finetune import hard_domain_set
    from napari_ribseg.core.devices import flush_denormals
    from napari_ribseg.core.evaluation import evaluate_model
    from napari_ribseg.core.models import load_model
    from napari_ribseg.core.training.adapt import adapt_sync

    flush_denormals()  # as the ribseg training commands do
    torch.set_num_threads(args.threads)
    recipes = [parse_recipe(r) for r in args.recipes]
    data = hard_domain_set(args.stacks, args.frames, args.seed, (args.height, args.width))
    stacks = [
        (g, data.subset([i for i, x in enumerate(data.groups) if x == g])) for g in data.group_names
    ]
    rows = []
    if args.teachers:
        import numpy as np

        for model_name in args.models.split(","):
            base = load_model(model_name, device="cpu")
            scores = [teacher_dices(base, stack) for _, stack in stacks]
            print(
                f"| {model_name} | "
                + " | ".join(f"{k} {np.mean([s[k] for s in scores]):.3f}" for k in scores[0]),
                flush=True,
            )
        return 0
    for model_name in args.models.split(","):
        base = load_model(model_name, device="cpu")
        for g, stack in stacks:
            before = float(evaluate_model(base, stack, device="cpu").mean["dice"])
            for name, config in recipes:
                t0 = time.perf_counter()
                res = adapt_sync(base, stack.images, dataclasses.replace(config), source=g)
                wall = time.perf_counter() - t0
                trained = float(evaluate_model(res.model, stack, device="cpu").mean["dice"])
                rows.append(
                    {
                        "model": model_name,
                        "recipe": name,
                        "config": dataclasses.asdict(config),
                        "stack": g,
                        "before": before,
                        "trained": trained,
                        "promoted": bool(res.promoted),
                        "teacher": res.teacher_view,
                        "consistency": [res.base_consistency, res.new_consistency],
                        "wall": wall,
                    }
                )
                print(
                    f"{model_name} {g} {name}: {before:.3f} -> {trained:.3f} "
                    f"{'kept' if res.promoted else 'refused'} ({res.teacher_view}, {wall:.0f}s)",
                    flush=True,
                )
                if args.json:
                    with open(args.json, "w") as f:
                        json.dump(rows, f, indent=1)
    print()
    summarise(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
