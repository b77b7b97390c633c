"""How much of the fine-tuned change should a new model keep? Dice of base + a x (trained - base).

One fine-tune per call (the defaults, with the whole change kept: ``mix=1``, ``select=last``),
then the weights mixed with the base's at a = 0, 0.25, 0.5, 0.75, 1 (``core.training.loop.
mix_weights``, the product's own) and each scored through the product's predict chain on the
benchmark's 40 test frames of other clips and on the run's held-out (gate) frames. This is the
measurement behind ``FinetuneConfig.mix`` 'auto' (docs/training.md, "Weight mixing"):

    python benchmarks/bench_mix.py --model v-unet-compact --k 20 --scanner each --threads 2

``--test-seed`` moves the 40 test clips as bench_finetune.py's does (default 50000, the reported
set; 85000 is free); a run whose test clips would meet its K frames is refused.
"""

from __future__ import annotations

import argparse
import copy
import time

from bench_finetune import (
    add_one_run_arguments,
    add_test_seed_argument,
    check_test_seed,
    hard_domain_set,
    k_frame_blocks,
    replica_frames,
)

SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
#: One frame of each of 40 clips, bench_finetune.py's test set (``--test-seed`` moves them).
TEST_CLIPS = 40


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_one_run_arguments(parser)
    add_test_seed_argument(parser)
    args = parser.parse_args(argv)
    check_test_seed(parser, args, TEST_CLIPS, k_frame_blocks([args.k], args.replica))

    from napari_ribseg.core.devices import flush_denormals

    flush_denormals()  # as the ribseg training commands and the widget's fine-tune child do
    import torch

    from napari_ribseg.core.evaluation import evaluate_model
    from napari_ribseg.core.models import load_model
    from napari_ribseg.core.training import FinetuneConfig, finetune_sync
    from napari_ribseg.core.training.loop import mix_weights

    torch.set_num_threads(args.threads)
    size = (args.height, args.width)
    test = hard_domain_set(TEST_CLIPS, 1, args.test_seed, size, stride=3, scanner=args.scanner)
    base = load_model(args.model, device="cpu")
    frames = replica_frames(args.k, args.replica, size, args.scanner)
    config = FinetuneConfig(device="cpu", select="last", mix=1.0)
    t0 = time.perf_counter()
    result = finetune_sync(base, frames, config)
    wall = time.perf_counter() - t0
    held_out = frames.subset([frames.ids.index(i) for i in result.val_ids])
    tuned = result.card.extra["finetune"]
    base_dice = tuned.get("base_train_dice")
    print(
        f"{args.model}, K={args.k}, replica {args.replica}, scanner {args.scanner}, test seed "
        f"{args.test_seed}: lr "
        f"{tuned['lr']:g}, base Dice on its training frames "
        + (f"{base_dice:.3f}" if base_dice is not None else "not measured")
        + f"; trained in {wall:.0f} s; gate on the trained weights: {result.reason}"
    )
    print()
    print(f"| share kept | Dice, {len(test)} test frames | Dice, {len(held_out)} held-out frames |")
    print("|---|---|---|")
    for share in SHARES:
        model = copy.deepcopy(result.model)
        mix_weights(model, base.model, share)
        on_test = float(evaluate_model(model, test, device="cpu").mean["dice"])
        on_held = float(evaluate_model(model, held_out, device="cpu").mean["dice"])
        print(f"| {share:g} | {on_test:.3f} | {on_held:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
