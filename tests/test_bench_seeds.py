"""The fine-tune benchmarks' ``--test-seed``: a test set that would meet the run's own training,
adaptation or judge clips is refused before anything is simulated (benchmarks/bench_finetune.py,
bench_gate.py, bench_mix.py share the check)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import bench_finetune  # noqa: E402
import bench_gate  # noqa: E402
import bench_mix  # noqa: E402


def _refused(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_k_frame_blocks_are_where_replica_frames_draw():
    # replica r, K frames: ceil(K / 5) clips from offset 1_000 * (r + 1) + 10 * K.
    assert bench_finetune.k_frame_blocks([5, 20], 2) == [
        ("K=5 frames of replica 2", 3_050, 1),
        ("K=20 frames of replica 2", 3_200, 4),
    ]


def test_seed_clash_names_the_overlap_and_passes_clear_blocks():
    blocks = bench_finetune.k_frame_blocks([20], 0)  # clips 1_200-1_203
    assert bench_finetune.seed_clash(1_160, 40, blocks) is None  # 1_160-1_199, just clear
    assert bench_finetune.seed_clash(1_204, 40, blocks) is None
    clash = bench_finetune.seed_clash(1_161, 40, blocks)  # 1_161-1_200 meets clip 1_200
    assert clash == (
        "--test-seed 1161: test clips 1161-1200 meet K=20 frames of replica 0 (clips 1200-1203)"
    )
    # The defaults and the free block are clear of every replica's K frames (0-40, K <= 100).
    for replica in range(41):
        ks = bench_finetune.k_frame_blocks(list(range(1, 101)), replica)
        for seed in (bench_finetune.TEST_SEED, 85_000):
            assert bench_finetune.seed_clash(seed, 40, ks) is None


def test_bench_gate_refuses_a_test_seed_on_its_judge_clips(capsys):
    err = _refused(bench_gate.main, ["--test-seed", "60010"], capsys)
    assert (
        "--test-seed 60010: test clips 60010-60049 meet the judge clips (clips 60000-60029)" in err
    )


def test_bench_gate_refuses_a_test_seed_on_its_k_frames_and_weaker_base(capsys):
    err = _refused(bench_gate.main, ["--k", "10", "--test-seed", "1090"], capsys)
    assert "meet K=10 frames of replica 0 (clips 1100-1101)" in err
    # --pretrain-steps trains the weaker base on replica 30's 5 frames: clip 31_050.
    argv = ["--pretrain-steps", "20", "--test-seed", "31040"]
    err = _refused(bench_gate.main, argv, capsys)
    assert "meet the weaker base's 5 frames (replica 30) (clips 31050-31050)" in err


def test_bench_mix_refuses_a_test_seed_on_its_k_frames(capsys):
    err = _refused(bench_mix.main, ["--replica", "3", "--test-seed", "4200"], capsys)
    assert "--test-seed 4200: test clips 4200-4239 meet K=20 frames of replica 3" in err


def test_bench_finetune_refuses_a_test_seed_on_its_adaptation_stacks(capsys):
    err = _refused(bench_finetune.main, ["--test-seed", "69980"], capsys)
    assert "meet the adaptation stacks (clips 70000-70001)" in err


def test_the_three_benchmarks_default_to_the_reported_test_set():
    for main in (bench_finetune, bench_gate, bench_mix):
        assert "add_test_seed_argument(parser)" in Path(main.__file__).read_text()
    assert bench_finetune.TEST_SEED == 50_000


def test_bench_gate_defaults_and_the_free_block_pass():
    import argparse

    parser = argparse.ArgumentParser()
    bench_finetune.add_one_run_arguments(parser)
    bench_finetune.add_test_seed_argument(parser)
    parser.add_argument("--judge-clips", type=int, default=30)
    parser.add_argument("--pretrain-steps", type=int, default=20)
    args = parser.parse_args([])
    assert args.test_seed == 50_000
    for seed in (50_000, 85_000):
        assert bench_finetune.seed_clash(seed, 40, bench_gate.run_blocks(args)) is None


def test_the_bundled_models_hard_validation_set_meets_no_replica_at_the_ks_used():
    """bench_validate_bundled.py / bench_mask_options.py validate on hard-domain seed 530_000
    (offset 30_000, 30 clips), inside the replicas' range: clear of every replica's K frames at
    K = 3-98, met only at K 1-2 (replica 29), 99-102 (28) and 197-200 (27)."""
    validation = [("the hard validation set", 30_000, 30)]
    met = [
        (replica, k)
        for replica in range(41)
        for k in range(1, 201)
        if bench_finetune.seed_clash(
            bench_finetune.replica_seed(k, replica), bench_finetune.k_clips(k), validation
        )
    ]
    assert met == [
        *((27, k) for k in range(197, 201)),
        *((28, k) for k in range(99, 103)),
        (29, 1),
        (29, 2),
    ]
