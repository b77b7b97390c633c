"""How often does the promotion gate promote a model that is better, or worse, on other patients?

The gate (``core.training.gate.judge``) decides on the frames of one held-out clip (5 frames at
K = 10 or 20) whether a fine-tuned model replaces its base. This benchmark measures how that
decision relates to what the user gets: the model's Dice gain on other clips (``truth``: the 40
test frames of bench_finetune.py and the judge clips' frames together). ``--test-seed`` moves the
test clips as bench_finetune.py's does (default 50000, the reported set; 85000 is free); a run whose
test clips would meet its K frames, judge clips or weaker base's frames is refused.

One fine-tune per call (every default except ``mix=1``, ``select=last``), then models at several
shares of the fine-tuned change (``mix_weights``: base + a x (trained - base)), which gives models
of different true gains from one run. Each is judged by the product's gate on each of ``--judge-
clips`` clips it never saw (5 frames each, the held-out clip's shape at K = 10 and 20), scored as
the gate scores (``frame_dices``), at each margin in ``--margins``. Every judge clip is a draw of
the held-out clip the gate could have had, so the share of clips that promote is the chance that a
fine-tune with that true gain is promoted.

    python benchmarks/bench_gate.py --model v-unet-compact --json /tmp/gate-v0.json
    python benchmarks/bench_gate.py --summarise /tmp/gate-*.json
    python benchmarks/bench_gate.py --summarise benchmarks/results/gate/*.json  # the docs' runs

``--summarise`` pools the runs: for each margin, the promotion rate of the models that lost on
other patients (false promotions), of those that gained, and the mean Dice gain the user keeps
(a promoted model's true gain, a refused one's 0), per fine-tune. This is the measurement behind
``FinetuneConfig.gate_margin`` (docs/training.md, "Calibrating the gate").
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

from bench_finetune import (
    add_one_run_arguments,
    add_test_seed_argument,
    check_test_seed,
    hard_domain_set,
    k_frame_blocks,
    replica_frames,
    replica_seed,
)

#: Judge clips: offset above HARD_DOMAIN_SEED, clear of the K-frame (1_000-41_000), test (50_000)
#: and adaptation (70_000) clips of bench_finetune.py.
JUDGE_SEED = 60_000
#: The test set: one frame of each of 40 clips, as bench_finetune.py's and bench_mix.py's
#: (``--test-seed`` moves them).
TEST_CLIPS = 40
#: ``--pretrain-steps``: the weaker base is trained on 5 frames of this replica's clips.
PRETRAIN_REPLICA = 30
SHARES = (0.25, 0.5, 0.75, 1.0)
MARGINS = (0.0, 0.005, 0.01, 0.015, 0.02, 0.03)


def run_blocks(args) -> list[tuple[str, int, int]]:
    """The clips a run fine-tunes and judges on, which its test clips must not meet."""
    blocks = k_frame_blocks([args.k], args.replica)
    blocks.append(("the judge clips", JUDGE_SEED, args.judge_clips))
    if args.pretrain_steps:
        blocks.append(
            (
                f"the weaker base's 5 frames (replica {PRETRAIN_REPLICA})",
                replica_seed(5, PRETRAIN_REPLICA),
                1,
            )
        )
    return blocks


def run(args) -> dict:
    from napari_ribseg.core.devices import flush_denormals

    flush_denormals()  # as the ribseg training commands and the widget's fine-tune child do
    import torch

    from napari_ribseg.core.evaluation import evaluate_model
    from napari_ribseg.core.models import load_model
    from napari_ribseg.core.training import FinetuneConfig, finetune_sync
    from napari_ribseg.core.training.evaluation import frame_dices, letterbox_set
    from napari_ribseg.core.training.gate import judge
    from napari_ribseg.core.training.loop import mix_weights
    from napari_ribseg.core.training.losses import get_loss

    torch.set_num_threads(args.threads)
    size = (args.height, args.width)
    t0 = time.perf_counter()
    test = hard_domain_set(TEST_CLIPS, 1, args.test_seed, size, stride=3, scanner=args.scanner)
    judges = hard_domain_set(args.judge_clips, 5, JUDGE_SEED, size, stride=3, scanner=args.scanner)
    print(
        f"simulated {len(test)} test and {len(judges)} judge frames in "
        f"{time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    base = load_model(args.model, device="cpu")
    if args.pretrain_steps:
        # A base of intermediate strength (docs/training.md, "Weight mixing against base
        # strength"): the model after a few steps on 5 frames of other clips (replica 30).
        first = finetune_sync(
            base,
            replica_frames(5, PRETRAIN_REPLICA, size, args.scanner),
            FinetuneConfig(
                device="cpu",
                select="last",
                mix=1.0,
                lr=1e-3,
                steps=args.pretrain_steps,
                val_share=0.4,
            ),
            out=Path(tempfile.mkdtemp()) / "weaker-base.safetensors",
        )
        base = load_model(first.checkpoint, device="cpu")  # as saved, the way it was measured
    frames = replica_frames(args.k, args.replica, size, args.scanner)
    # --steps: a quick check of the script; the measurement uses the default schedule.
    schedule = {"steps": args.steps} if args.steps else {}
    config = FinetuneConfig(device="cpu", select="last", mix=1.0, **schedule)
    t0 = time.perf_counter()
    result = finetune_sync(base, frames, config)
    wall = time.perf_counter() - t0
    print(
        f"base Dice on its training frames {result.card.extra['finetune'].get('base_train_dice')}; "
        f"fine-tuned in {wall:.0f} s; the run's own gate on the trained weights: {result.reason}",
        flush=True,
    )

    device = torch.device("cpu")
    images, masks = letterbox_set(judges, int(base.model.input_size))
    loss = get_loss("dice")
    groups = list(judges.groups)
    clips = sorted(set(groups), key=groups.index)

    def per_clip(model) -> dict[str, list[float]]:
        dices, _ = frame_dices(model, images, masks, device, 8, loss)
        return {c: [d for d, g in zip(dices, groups, strict=True) if g == c] for c in clips}

    base_test = float(evaluate_model(base.model, test, device="cpu").mean["dice"])
    base_clips = per_clip(base.model)
    models = []
    for share in SHARES:
        model = copy.deepcopy(result.model)
        mix_weights(model, base.model, share)
        on_test = float(evaluate_model(model, test, device="cpu").mean["dice"])
        new_clips = per_clip(model)
        verdicts: dict[str, list[bool]] = {}
        clip_gains = []
        for c in clips:
            b, n = base_clips[c], new_clips[c]
            clip_gains.append(sum(n) / len(n) - sum(b) / len(b))
        for margin in args.margins:
            verdicts[f"{margin:g}"] = [
                judge(
                    [f"{c}:{i}" for i in range(len(base_clips[c]))],
                    base_clips[c],
                    new_clips[c],
                    margin=margin,
                    groups=[c] * len(base_clips[c]),
                ).promoted
                for c in clips
            ]
        models.append(
            {
                "share": share,
                "test_gain": on_test - base_test,
                "test_dice": on_test,
                "clip_gains": clip_gains,
                "promoted": verdicts,
                "clip_dice": [new_clips[c] for c in clips],
            }
        )
        rates = "  ".join(f"{m}: {sum(v)}/{len(v)}" for m, v in verdicts.items())
        mean_gain = sum(clip_gains) / len(clip_gains)
        print(
            f"share {share:g}: test {base_test:.3f} -> {on_test:.3f} ({on_test - base_test:+.3f}); "
            f"mean gain on a judge clip {mean_gain:+.3f}; promoted at margin {rates}",
            flush=True,
        )
    return {
        "model": args.model,
        "k": args.k,
        "replica": args.replica,
        "scanner": args.scanner,
        "test_seed": args.test_seed,
        "lr": result.card.extra["finetune"]["lr"],
        "base_train_dice": result.card.extra["finetune"].get("base_train_dice"),
        "wall_s": wall,
        "base_test_dice": base_test,
        "judge_clips": len(clips),
        "base_clip_dice": [base_clips[c] for c in clips],
        "models": models,
    }


def truth(model: dict) -> float:
    """A model's gain on other patients: its mean Dice gain on the 40 test frames and the judge
    clips' frames together (190 frames of 70 clips at the defaults)."""
    n_test = TEST_CLIPS
    clip_gains = model["clip_gains"]
    n_judge = 5 * len(clip_gains)
    pooled = sum(clip_gains) / len(clip_gains)
    return (n_test * model["test_gain"] + n_judge * pooled) / (n_test + n_judge)


def summarise(paths: list[str]) -> None:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    margins = list(runs[0]["models"][0]["promoted"])
    names = ", ".join(f"{r['model']} K={r['k']} r{r['replica']} {r['scanner']}" for r in runs)
    print(f"{len(runs)} fine-tunes, {sum(len(r['models']) for r in runs)} models ({names})")
    print()
    print(
        "| run | share | gain, 40 test frames | gain, all 190 frames | "
        + " | ".join(f"P(promote), margin {m}" for m in margins)
        + " |"
    )
    print("|---|---|---|---|" + "---|" * len(margins))
    for r in runs:
        for m in r["models"]:
            rates = [sum(m["promoted"][k]) / len(m["promoted"][k]) for k in margins]
            print(
                f"| {r['model']} K={r['k']} r{r['replica']} {r['scanner']} | {m['share']:g} | "
                f"{m['test_gain']:+.3f} | {truth(m):+.3f} | "
                + " | ".join(f"{x:.2f}" for x in rates)
                + " |"
            )
    everything = [m for r in runs for m in r["models"]]
    for label, pool in (
        ("all models", everything),
        ("scanner each", [m for r in runs if r["scanner"] == "each" for m in r["models"]]),
        ("scanner shared", [m for r in runs if r["scanner"] == "shared" for m in r["models"]]),
        (
            "the product's models (share 0.5, the auto mix of a strong base)",
            [m for m in everything if m["share"] == 0.5],
        ),
    ):
        if not pool:  # e.g. no run of that scanner
            continue
        losers = [m for m in pool if truth(m) < 0]
        idle = [m for m in pool if 0 <= truth(m) < 0.005]
        winners = [m for m in pool if truth(m) >= 0.01]
        print()
        print(
            f"{label}: {len(pool)} models; {len(losers)} lose on other patients (gain over all "
            f"190 frames < 0), {len(idle)} change little (0 to 0.005), {len(winners)} gain >= 0.01"
        )
        print()
        print(
            "| margin | P(promote), losers | P(promote), little change | P(promote), gain >= 0.01 "
            "| kept gain per fine-tune |"
        )
        print("|---|---|---|---|---|")
        for k in margins:

            def rate(ms, k=k):
                votes = [v for m in ms for v in m["promoted"][k]]
                return f"{sum(votes) / len(votes):.2f}" if votes else "-"

            kept = [truth(m) * sum(m["promoted"][k]) / len(m["promoted"][k]) for m in pool]
            print(
                f"| {k} | {rate(losers)} | {rate(idle)} | {rate(winners)} | "
                f"{sum(kept) / len(kept):+.4f} |"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_one_run_arguments(parser)
    add_test_seed_argument(parser)
    parser.add_argument("--judge-clips", type=int, default=30)
    parser.add_argument("--margins", type=float, nargs="*", default=list(MARGINS))
    parser.add_argument("--steps", type=int, default=0, help="0: the default schedule")
    parser.add_argument(
        "--pretrain-steps",
        type=int,
        default=0,
        help="first train the base this many steps on 5 frames of other clips (a weaker base "
        "from one that marks no rib: the pre-issue-8 V-Unet and 20 steps give 0.22)",
    )
    parser.add_argument("--json", help="write the run's numbers here (for --summarise)")
    parser.add_argument("--summarise", nargs="*", help="pool these --json files instead")
    args = parser.parse_args(argv)
    if args.summarise:
        summarise(args.summarise)
        return 0
    check_test_seed(parser, args, TEST_CLIPS, run_blocks(args))
    out = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
