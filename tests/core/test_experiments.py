"""The study runner: configuration, a tiny smoke study end to end, resume, stop, and the report."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from napari_ribseg.core.experiments import (
    RESULT_COLUMNS,
    StudyConfigError,
    load_study_config,
    merge_config,
    paired_effect,
    read_results,
    study_effects,
    write_report,
)
from napari_ribseg.core.experiments.report import row_key, write_results
from napari_ribseg.core.experiments.runner import _finished_pretraining, cell_epochs
from napari_ribseg.core.jobs import StopFlag
from napari_ribseg.core.training.salient import SYNTHETIC_STATEMENT

#: A smoke study small enough for a test: 3 variants x 2 strategies x 1 size x 1 augment x 2 folds.
TINY = {
    "variants": ["unet", "v-unet", "x-unet"],
    "strategies": ["all", "bottleneck"],
    "sizes": [4],
    "augments": ["flip"],
    "folds": 2,
    "preset": "tiny",
    "input_size": 64,
    "finetune": {"epochs": 1, "device": "cpu"},
    "salient": {"synthetic": 8, "epochs": 1},
    "data": {"n_clips": 4, "frames_per_clip": 3, "overrides": {"size": [64, 64]}},
    "overlays": 2,
    # Tests share two busy cores with other jobs: one thread avoids OpenMP spinning.
    "torch_threads": 1,
}
N_CELLS = 3 * 2 * 1 * 1 * 2


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The tiny study run once through the CLI (YAML file based on the smoke preset)."""
    import yaml

    from napari_ribseg.cli import main

    root = tmp_path_factory.mktemp("study")
    config_path = root / "tiny.yaml"
    config_path.write_text(yaml.safe_dump({"base": "smoke", **TINY}), encoding="utf-8")
    out = root / "out"
    assert main(["experiment", str(config_path), "--out", str(out)]) == 0
    return config_path, out


def test_presets_and_yaml(tmp_path):
    paper = load_study_config("paper")
    assert paper.preset == "paper" and paper.input_size == 256 and paper.folds == 5
    assert max(paper.sizes) == 400 and paper.variants == ["unet", "v-unet", "x-unet"]
    # The paper's training pool per fold must hold the largest size.
    assert paper.data.n_clips * paper.data.frames_per_clip * (1 - 1 / paper.folds) >= 400
    smoke = load_study_config("smoke")
    assert smoke.preset == "tiny" and smoke.input_size == 64

    path = tmp_path / "mine.yaml"
    path.write_text("base: smoke\nsizes: [5, 9]\ndata: {n_clips: 5}\n", encoding="utf-8")
    mine = load_study_config(path)
    assert mine.name == "mine" and mine.sizes == [5, 9]
    assert mine.data.n_clips == 5 and mine.data.frames_per_clip == smoke.data.frames_per_clip

    with pytest.raises(StudyConfigError, match="unknown key"):
        merge_config(smoke, {"sizez": [3]})
    with pytest.raises(StudyConfigError, match="variants"):
        merge_config(smoke, {"variants": ["resnet"]})
    with pytest.raises(StudyConfigError, match="multiple of 16"):
        merge_config(smoke, {"input_size": 60})
    with pytest.raises(StudyConfigError, match="folds must be a whole number; got 'two'"):
        merge_config(smoke, {"folds": "two"})
    with pytest.raises(StudyConfigError, match=r"sizes must be whole numbers; got \[5, 'ten'\]"):
        merge_config(smoke, {"sizes": [5, "ten"]})
    with pytest.raises(StudyConfigError, match="threshold must be a number"):
        merge_config(smoke, {"threshold": "high"})
    with pytest.raises(StudyConfigError, match="neither a preset"):
        load_study_config(tmp_path / "missing.yaml")


def test_min_steps_equalises_optimiser_steps():
    config = merge_config(
        load_study_config("smoke"), {"min_steps": 40, "finetune": {"batch_size": 4}}
    )
    # 8 training frames -> 2 batches/epoch -> 20 epochs; 32 -> 8 batches -> 5 epochs.
    assert cell_epochs(config, 8) == 20 and cell_epochs(config, 32) == 5
    assert cell_epochs(config, 9) == 14  # 3 batches: 42 >= 40 steps
    assert cell_epochs(merge_config(config, {"min_steps": 0}), 10) == config.finetune.epochs
    # epochs 0 means FinetuneConfig's steps over the frames: 240 steps of batch 4 on 8 frames.
    auto = merge_config(config, {"min_steps": 0, "finetune": {"epochs": 0}})
    assert cell_epochs(auto, 8) == 120


def test_study_nests_the_one_finetune_config():
    import dataclasses

    from napari_ribseg.core.experiments import StudyConfig
    from napari_ribseg.core.experiments.config import PER_CELL_KEYS
    from napari_ribseg.core.training import FinetuneConfig

    study_fields = {f.name for f in dataclasses.fields(StudyConfig)}
    finetune_fields = {f.name for f in dataclasses.fields(FinetuneConfig)}
    # No fine-tune setting is declared again by the study; its seed is the study's own (it also
    # draws the data and folds) and sets each cell's seed.
    assert study_fields & finetune_fields == {"seed"} and "seed" in PER_CELL_KEYS
    default = StudyConfig().finetune
    for f in dataclasses.fields(FinetuneConfig):
        assert getattr(default, f.name) == f.default, f.name
    assert default == FinetuneConfig()

    smoke = load_study_config("smoke")
    # The presets replicate the paper's recipe, not the product's gated one.
    assert (smoke.finetune.select, smoke.finetune.loss, smoke.finetune.warmup_share) == (
        "best",
        "dice",
        0.0,
    )
    cell = smoke.cell_finetune("bottleneck", "none", fold=2, epochs=7)
    assert (cell.strategy, cell.augment, cell.seed, cell.epochs) == ("bottleneck", "none", 2, 7)
    assert cell.lr == smoke.finetune.lr and cell.select == "best"
    # The report's recipe line names weight mixing where it applies (final weights), not for best.
    from napari_ribseg.core.experiments.runner import _recipe_line

    assert "change kept auto (0.5 for a base" in _recipe_line(StudyConfig())
    assert "change kept" not in _recipe_line(smoke)


def test_legacy_flat_finetune_keys_and_their_errors():
    smoke = load_study_config("smoke")
    flat = merge_config(smoke, {"lr": 0.01, "epochs": 3, "device": "cpu", "loss": "tversky"})
    nested = merge_config(
        smoke, {"finetune": {"lr": 0.01, "epochs": 3, "device": "cpu", "loss": "tversky"}}
    )
    assert flat == nested and flat.finetune.lr == 0.01 and flat.finetune.epochs == 3
    # Keys not given keep the base preset's values (merged key by key).
    assert flat.finetune.select == "best" and flat.finetune.val_share == smoke.finetune.val_share

    with pytest.raises(StudyConfigError, match=r"\['lr'\] given both"):
        merge_config(smoke, {"lr": 0.01, "finetune": {"lr": 0.02}})
    with pytest.raises(StudyConfigError, match=r"config.finetune: unknown key\(s\) \['lrr'\]"):
        merge_config(smoke, {"finetune": {"lrr": 0.01}})
    with pytest.raises(StudyConfigError, match=r"finetune.strategy: set per cell.*strategies"):
        merge_config(smoke, {"finetune": {"strategy": "all"}})
    # A FinetuneConfig field that was never a flat study key points at finetune:.
    with pytest.raises(StudyConfigError, match=r"\['select'\] belong under finetune:"):
        merge_config(smoke, {"select": "gated"})
    with pytest.raises(StudyConfigError, match="lr=5.0: expected at most 0.1"):
        merge_config(smoke, {"finetune": {"lr": 5.0}})
    with pytest.raises(StudyConfigError, match="strategy='everything'"):
        merge_config(smoke, {"strategies": ["everything"]})
    # Where a cell runs does not change its numbers: the device is not in the fingerprint.
    assert merge_config(smoke, {"device": "cuda"}).fingerprint() == smoke.fingerprint()
    assert merge_config(smoke, {"lr": 0.01}).fingerprint() != smoke.fingerprint()


def test_tiny_study_writes_csv_report_plots_and_overlays(study):
    _, out = study
    rows = read_results(out / "results.csv")
    assert len(rows) == N_CELLS
    with (out / "results.csv").open() as fh:
        assert next(csv.reader(fh)) == list(RESULT_COLUMNS)
    assert {(r["variant"], r["strategy"], r["fold"]) for r in rows} == {
        (v, s, f) for v in TINY["variants"] for s in TINY["strategies"] for f in (0, 1)
    }
    for row in rows:
        assert 0.0 <= row["dice"] <= 1.0 and 0.0 <= row["dice_pre"] <= 1.0
        assert 0.0 <= row["iou"] <= row["dice"] + 1e-9  # IoU never exceeds Dice
        # 2 of 4 clips x 3 frames are the fold's test frames; the loop validates on 1 of the 4.
        assert row["n_train"] + row["n_val"] == 4 and row["n_val"] >= 1 and row["n_test"] == 6
        assert row["epochs_run"] == 1
    frozen = {r["variant"]: r["trainable_params"] for r in rows if r["strategy"] == "bottleneck"}
    full = {r["variant"]: r["trainable_params"] for r in rows if r["strategy"] == "all"}
    assert all(frozen[v] < full[v] for v in full)
    x_init = {r["init"] for r in rows if r["variant"] == "x-unet"}
    assert len(x_init) == 1 and SYNTHETIC_STATEMENT in x_init.pop()

    report = (out / "report.md").read_text()
    assert "| variant | strategy | frames | augment | folds | Dice | IoU | HD95 (px) |" in report
    assert "Before and after fine-tuning" in report and "±" in report
    for name in ("dice_vs_size.png", "strategy_bars.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    overlays = sorted((out / "overlays").glob("*.png"))
    assert len(overlays) == 6  # fold 0 at the largest size: 3 variants x 2 strategies
    assert f"overlays/{overlays[0].name}" in report
    assert _finished_pretraining(out / "init" / "x-unet-salient.safetensors")


def test_a_half_written_pretraining_is_not_reused(tmp_path):
    from napari_ribseg.core.models import ModelCard, build_model, save_checkpoint

    model = build_model("x-unet", "tiny", input_size=32, pretrained=False)
    card = ModelCard(name="x", variant="x-unet", preset="tiny", widths=list(model.widths))
    # What the fine-tuning loop leaves mid-run: a checkpoint without the final pre-training card.
    save_checkpoint(model, card, tmp_path / "mid.safetensors")
    assert not _finished_pretraining(tmp_path / "mid.safetensors")
    card.extra = {"salient_pretraining": {"stopped": True}}
    save_checkpoint(model, card, tmp_path / "stopped.safetensors")
    assert not _finished_pretraining(tmp_path / "stopped.safetensors")
    assert not _finished_pretraining(tmp_path / "missing.safetensors")


def test_resume_skips_done_cells_and_reruns_missing_ones(study):
    from napari_ribseg.core.experiments import run_study_sync

    config_path, out = study
    config = load_study_config(config_path)
    again = run_study_sync(config, out)
    assert again.completed == 0 and again.skipped == N_CELLS and not again.stopped

    rows = read_results(out / "results.csv")
    dropped = [r for r in rows if not (r["variant"] == "unet" and r["fold"] == 1)]
    write_results(out / "results.csv", dropped)
    kinds = []
    resumed = run_study_sync(config, out, on_progress=lambda e: kinds.append(e.kind))
    assert resumed.completed == 2 and resumed.skipped == N_CELLS - 2
    assert kinds.count("cell") == 2
    rerun = {
        (r["strategy"], r["fold"]): r["dice"]
        for r in read_results(out / "results.csv")
        if r["variant"] == "unet"
    }
    before = {(r["strategy"], r["fold"]): r["dice"] for r in rows if r["variant"] == "unet"}
    # Same seeds, same data: the re-run cells reproduce their numbers on the CPU.
    assert rerun == pytest.approx(before, abs=1e-6)

    changed = merge_config(config, {"finetune": {"epochs": 2}})
    with pytest.raises(StudyConfigError, match="another configuration"):
        run_study_sync(changed, out)


def test_stop_between_cells_keeps_finished_rows(tmp_path):
    from napari_ribseg.core.experiments import run_study
    from napari_ribseg.core.training import TrainingSet

    rng = np.random.default_rng(0)
    images = [rng.random((32, 32), dtype=np.float32) for _ in range(8)]
    masks = [(im > 0.7).astype(np.uint8) for im in images]
    data = TrainingSet(images, masks, groups=[f"c{i // 2}" for i in range(8)])
    config = merge_config(
        load_study_config("smoke"),
        {**TINY, "variants": ["unet"], "input_size": 32, "sizes": [3], "overlays": 0},
    )
    import torch

    threads = torch.get_num_threads()
    stop = StopFlag()
    job = run_study(config, tmp_path, stop=stop, data=data)
    cells = 0
    while True:
        try:
            event = next(job)
        except StopIteration as done:
            result = done.value
            break
        if event.kind == "cell":
            cells += 1
            stop.set()
    assert cells == 1 and result.stopped and result.completed == 1
    assert len(read_results(tmp_path / "results.csv")) == 1
    assert torch.get_num_threads() == threads  # the study gives the thread count back


def _fake_rows() -> list[dict]:
    rows = []
    for variant, base in (("v-unet", 0.8), ("x-unet", 0.7)):
        for strategy, bonus in (("all", 0.02), ("bottleneck", 0.0)):
            for size, more in ((10, 0.0), (40, 0.1)):
                for augment, flip in (("none", 0.0), ("flip", 0.01)):
                    for fold in range(3):
                        dice = base + bonus + more + flip - 0.01 * fold
                        rows.append(
                            {
                                "variant": variant,
                                "strategy": strategy,
                                "size": size,
                                "augment": augment,
                                "fold": fold,
                                "n_train": size,
                                "n_val": 2,
                                "n_test": 8,
                                "init": "init",
                                "dice_pre": 0.1,
                                "iou_pre": 0.05,
                                "hd95_pre": math.inf,
                                "dice": dice,
                                "iou": dice - 0.1,
                                "hd95": 10.0 - 10 * dice,
                                "seconds": 1.0,
                            }
                        )
    return rows


def test_report_from_csv_pairs_the_effects(tmp_path):
    rows = _fake_rows()
    write_results(tmp_path / "results.csv", rows)
    parsed = read_results(tmp_path / "results.csv")
    assert len(parsed) == len(rows) and math.isinf(parsed[0]["hd95_pre"])
    effect = paired_effect(parsed, "variant", "v-unet", "x-unet")
    assert effect["pairs"] == 24 and effect["mean"] == pytest.approx(0.1) and effect["wins"] == 24
    assert paired_effect(parsed, "strategy", "all", "bottleneck")["mean"] == pytest.approx(0.02)
    assert paired_effect(parsed, "size", 40, 10)["mean"] == pytest.approx(0.1)
    flip = paired_effect(parsed, "augment", "flip", "none", metric="hd95")
    assert flip["mean"] == pytest.approx(-0.1)
    factors = {(e["factor"], e["metric"]) for e in study_effects(parsed)}
    assert ("variant", "dice") in factors and ("size", "hd95") in factors

    report = write_report(tmp_path / "results.csv", tmp_path, title="fake").read_text()
    # v-unet, all, 40 frames, flip: 0.8 + 0.02 + 0.1 + 0.01 - {0, 0.01, 0.02} -> 0.920 ± 0.010
    assert "| v-unet | all | 40 | flip | 3 | 0.920 ± 0.010 |" in report
    assert "| x-unet | 10 | 0.100 ± 0.000 |" in report
    assert (tmp_path / "dice_vs_size.png").is_file() and (tmp_path / "strategy_bars.png").is_file()


def test_cli_report_only(study, capsys):
    from napari_ribseg.cli import main

    config_path, out = study
    (out / "report.md").unlink()
    assert main(["experiment", str(config_path), "--out", str(out), "--report-only"]) == 0
    assert (out / "report.md").is_file() and "report:" in capsys.readouterr().out


def test_report_only_refuses_a_folder_without_results(tmp_path, capsys):
    """A mistyped --out was created with a report of 'No results yet.', exit 0."""
    from napari_ribseg.cli import main

    typo = tmp_path / "runs" / "smokee"
    assert main(["experiment", "smoke", "--out", str(typo), "--report-only"]) == 2
    assert capsys.readouterr().err == (
        f"ribseg experiment: error: {typo}: no results.csv to report on; run the study into it "
        "first (without --report-only)\n"
    )
    assert not typo.exists()


def test_a_missing_device_is_refused_before_the_study_folder_is_made(tmp_path, capsys):
    """--device cuda on a machine without CUDA failed after writing --out/study.json."""
    import torch

    from napari_ribseg.cli import main

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    out = tmp_path / "runs"
    assert main(["experiment", "smoke", "--out", str(out), "--device", "cuda"]) == 2
    assert "ribseg experiment: error: device 'cuda' requested but CUDA is not available" in (
        capsys.readouterr().err
    )
    assert not out.exists()


def test_out_naming_a_file_is_named(tmp_path, capsys):
    """--out clip.tif failed as 'clip.tif: File exists'."""
    from napari_ribseg.cli import main

    taken = tmp_path / "clip.tif"
    taken.write_bytes(b"keep")
    assert main(["experiment", "smoke", "--out", str(taken)]) == 2
    assert capsys.readouterr().err == (
        f"ribseg experiment: error: {taken}: is a file; --out takes a folder (new, or a study's "
        "to resume)\n"
    )
    assert taken.read_bytes() == b"keep"


def test_a_size_larger_than_a_folds_pool_is_refused_not_run_smaller(tmp_path):
    """sizes: [100] on 12 frames ran cells of 6 frames reported as size 100."""
    from napari_ribseg.core.experiments import run_study
    from napari_ribseg.core.training import TrainingSet

    rng = np.random.default_rng(0)
    images = [rng.random((32, 32), dtype=np.float32) for _ in range(8)]
    data = TrainingSet(
        images, [(im > 0.7).astype(np.uint8) for im in images], [f"c{i // 2}" for i in range(8)]
    )
    config = merge_config(
        load_study_config("smoke"),
        {**TINY, "variants": ["unet"], "input_size": 32, "sizes": [3, 100], "overlays": 0},
    )
    job = run_study(config, tmp_path, data=data)
    with pytest.raises(StudyConfigError, match=r"sizes \[3, 100\] exceed the \d+ frames a fold"):
        while True:
            next(job)


def _small_data(seed: int = 0, n: int = 8, per_clip: int = 2):
    from napari_ribseg.core.training import TrainingSet

    rng = np.random.default_rng(seed)
    images = [rng.random((32, 32), dtype=np.float32) for _ in range(n)]
    masks = [(im > 0.7).astype(np.uint8) for im in images]
    return TrainingSet(images, masks, groups=[f"c{i // per_clip}" for i in range(n)])


def _small_config(**overrides):
    return merge_config(
        load_study_config("smoke"),
        {**TINY, "variants": ["unet"], "input_size": 32, "sizes": [3], "overlays": 0, **overrides},
    )


def test_resume_refuses_data_whose_contents_or_folds_changed(tmp_path):
    """A paired folder that gained clips under the same path was resumed into one results.csv."""
    from napari_ribseg.core.experiments import run_study_sync

    config = _small_config(strategies=["all"], augments=["none"])
    first = run_study_sync(config, tmp_path, data=_small_data(0))
    assert first.completed == 2
    recorded = json.loads((tmp_path / "study.json").read_text())["inputs"]
    assert recorded["frames"] == 8 and recorded["clips"] == 4
    assert len(recorded["fold_test_ids_sha256"]) == 2
    # Same settings, same path, other pixels (e.g. re-annotated masks or added frames).
    with pytest.raises(StudyConfigError, match=r"other data: changed the frames' pixels"):
        run_study_sync(config, tmp_path, data=_small_data(1))
    # Same pixels, other clip ids: the folds hold other test frames.
    regrouped = _small_data(0, per_clip=1)
    with pytest.raises(StudyConfigError, match=r"test frames of folds"):
        run_study_sync(config, tmp_path, data=regrouped)
    assert len(read_results(tmp_path / "results.csv")) == 2
    # The same data resumes: nothing to run.
    assert run_study_sync(config, tmp_path, data=_small_data(0)).skipped == 2


def test_no_resume_keeps_old_rows_until_the_data_is_read(tmp_path):
    """--no-resume with a typo in data.path truncated results.csv before the data was read."""
    from napari_ribseg.core.experiments import run_study_sync

    config = _small_config(strategies=["all"], augments=["none"], overlays=2)
    run_study_sync(config, tmp_path, data=_small_data(0))
    before = (tmp_path / "results.csv").read_text()
    assert len(read_results(tmp_path / "results.csv")) == 2
    broken = merge_config(
        config, {"data": {"source": "paired", "path": str(tmp_path / "no-such-folder")}}
    )
    with pytest.raises(Exception, match="no-such-folder"):
        run_study_sync(broken, tmp_path, resume=False)
    assert (tmp_path / "results.csv").read_text() == before
    # A real --no-resume: the old CSV moves aside, the report lists each overlay once.
    again = run_study_sync(config, tmp_path, data=_small_data(0), resume=False)
    assert again.completed == 2 and again.skipped == 0
    assert (tmp_path / "results.csv.bak").read_text() == before
    report = (tmp_path / "report.md").read_text()
    assert report.count("](overlays/unet_all_3_none_fold0.png)") == 1
    assert len(again.overlays) == 1


def test_report_is_of_the_current_grid_and_threshold(tmp_path):
    """A shrunk grid reported its old rows; the text said threshold 0.5 whatever the study's."""
    from napari_ribseg.core.experiments import run_study_sync

    config = _small_config(strategies=["all"], augments=["none"], sizes=[2, 3], threshold=0.3)
    run_study_sync(config, tmp_path, data=_small_data(0))
    assert len(read_results(tmp_path / "results.csv")) == 4
    shrunk = merge_config(config, {"sizes": [2]})
    result = run_study_sync(shrunk, tmp_path, data=_small_data(0))
    assert result.skipped == 2 and result.completed == 0
    report = (tmp_path / "report.md").read_text()
    assert "| unet | all | 2 | none | 2 |" in report
    assert "| unet | all | 3 | none |" not in report
    assert (
        "left out: 2 rows of results.csv belong to cells outside this grid (unet/all/3/none)"
        in (report)
    )
    assert "Dice and IoU at threshold 0.3 " in report and "threshold 0.5" not in report
    assert "x-unet initialisation" not in report  # x-unet is not in the grid
    assert len(read_results(tmp_path / "results.csv")) == 4  # the CSV keeps every row


def test_report_only_refuses_another_config(study):
    """--report-only with another YAML rewrote the report under settings the rows never had."""
    import yaml

    from napari_ribseg.cli import main

    config_path, out = study
    other = config_path.with_name("other.yaml")
    other.write_text(yaml.safe_dump({"base": "smoke", **TINY, "threshold": 0.7}), encoding="utf-8")
    before = (out / "report.md").read_text()
    assert main(["experiment", str(other), "--out", str(out), "--report-only"]) != 0
    assert (out / "report.md").read_text() == before


def test_report_only_rebuilds_a_study_written_by_an_earlier_version(study, tmp_path):
    """A study.json of an earlier version (flat fine-tune keys, no finetune section, fewer salient
    fields) was refused by --report-only with the very config it records: its report could not be
    rebuilt without rerunning every cell. Settings it records must still agree."""
    import json
    import shutil

    import yaml

    from napari_ribseg.cli import main
    from napari_ribseg.core.experiments.config import LEGACY_FINETUNE_KEYS

    config_path, src = study
    out = tmp_path / "old"
    shutil.copytree(src, out)
    recorded = json.loads((out / "study.json").read_text())

    def flatten(section):  # the earlier layout: fine-tune keys at the top, no newer fields
        section = dict(section)
        finetune = section.pop("finetune")
        section.update({k: finetune[k] for k in LEGACY_FINETUNE_KEYS if k in finetune})
        section["salient"] = {k: v for k, v in section["salient"].items() if k != "loss"}
        return section

    old = {"config": flatten(recorded["config"]), "fingerprint": flatten(recorded["fingerprint"])}
    (out / "study.json").write_text(json.dumps(old))
    (out / "report.md").unlink()
    assert main(["experiment", str(config_path), "--out", str(out), "--report-only"]) == 0
    assert "| unet | all | 4 | flip | 2 |" in (out / "report.md").read_text()
    # A setting the old study records differently is still refused.
    other = tmp_path / "other.yaml"
    changed = {**TINY, "finetune": {**TINY["finetune"], "lr": 0.5}}
    other.write_text(yaml.safe_dump({"base": "smoke", **changed}), encoding="utf-8")
    (out / "report.md").unlink()
    assert main(["experiment", str(other), "--out", str(out), "--report-only"]) != 0
    assert not (out / "report.md").exists()


def test_paired_effects_count_ties_apart_for_dice_and_hd95(tmp_path):
    """HD95 ties (e.g. both inf-free and equal) were counted as wins of a: pairs - (a > b)."""
    rows = _fake_rows()
    for row in rows:
        if row["variant"] == "x-unet":
            twin = next(
                r for r in rows if r["variant"] == "v-unet" and row_key(r)[1:] == row_key(row)[1:]
            )
            # x-unet equals v-unet on fold 0, is worse (lower Dice, higher HD95) elsewhere.
            row["dice"] = twin["dice"] - (0.0 if row["fold"] == 0 else 0.1)
            row["hd95"] = twin["hd95"] + (0.0 if row["fold"] == 0 else 2.0)
    dice = paired_effect(rows, "variant", "v-unet", "x-unet", "dice")
    hd95 = paired_effect(rows, "variant", "v-unet", "x-unet", "hd95")
    for effect in (dice, hd95):
        assert effect["pairs"] == 24
        assert (effect["wins"], effect["losses"], effect["ties"]) == (16, 0, 8)
    write_results(tmp_path / "results.csv", rows)
    report = write_report(tmp_path / "results.csv", tmp_path).read_text()
    assert "| a better | b better | ties |" in report
    assert "| 24 | 16/24 (lower is better) | 0 | 8 |" in report
    assert "| 24 | 16/24 (higher is better) | 0 | 8 |" in report


def test_a_study_warns_when_most_clips_hold_one_frame(tmp_path):
    """Names without a recognised frame number made one clip per frame: folds by clip leaked."""
    from napari_ribseg.core.experiments import run_study_sync

    messages = []
    config = _small_config(strategies=["all"], augments=["none"])
    run_study_sync(
        config,
        tmp_path,
        data=_small_data(0, per_clip=1),
        on_progress=lambda e: messages.append(e.message or ""),
    )
    warning = "WARNING: 8 of 8 clips hold a single frame"
    assert any(m.startswith(warning) for m in messages)
    assert warning in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "study.json").read_text())["inputs"]["single_frame_clips"] == 8
    # Two frames per clip: no warning.
    run_study_sync(config, tmp_path / "ok", data=_small_data(0, per_clip=2))
    assert "WARNING" not in (tmp_path / "ok" / "report.md").read_text()


def test_config_checks_threshold_range_and_nested_types_before_any_work():
    """threshold: 50 passed and failed after the salient pre-training; n_clips: six a bare TypeError."""
    smoke = load_study_config("smoke")
    with pytest.raises(StudyConfigError, match=r"threshold must lie in \[0, 1\].*got 50"):
        merge_config(smoke, {"threshold": 50})
    with pytest.raises(StudyConfigError, match=r"threshold must lie in \[0, 1\].*got -0.1"):
        merge_config(smoke, {"threshold": -0.1})
    assert merge_config(smoke, {"threshold": 0.3}).threshold == 0.3
    with pytest.raises(StudyConfigError, match="data.n_clips must be a whole number; got 'six'"):
        merge_config(smoke, {"data": {"n_clips": "six"}})
    with pytest.raises(StudyConfigError, match="data.frames_per_clip must be >= 1; got 0"):
        merge_config(smoke, {"data": {"frames_per_clip": 0}})
    with pytest.raises(StudyConfigError, match="data.overrides must be a mapping"):
        merge_config(smoke, {"data": {"overrides": [64, 64]}})
    with pytest.raises(StudyConfigError, match="salient.epochs must be a whole number; got 1.5"):
        merge_config(smoke, {"salient": {"epochs": 1.5}})
    with pytest.raises(StudyConfigError, match="salient.lr must be > 0; got 0"):
        merge_config(smoke, {"salient": {"lr": 0}})
    with pytest.raises(StudyConfigError, match="salient.data must be a text; got 3"):
        merge_config(smoke, {"salient": {"data": 3}})
    # YAML 1.1 reads 1e-4 (no dot) as text: taken as the number it says (a review found finetune's
    # passed as text and crashed the first cell, after the salient pre-training).
    config = merge_config(smoke, {"finetune": {"lr": "1e-4"}, "salient": {"lr": "3e-4"}})
    assert (config.finetune.lr, config.salient.lr) == (1e-4, 3e-4)
    with pytest.raises(StudyConfigError, match="finetune.lr must be a number; got 'fast'"):
        merge_config(smoke, {"finetune": {"lr": "fast"}})


def test_results_csv_writes_numbers_as_evaluate_csv_does(tmp_path):
    """A study's results.csv wrote a nan metric (HD95 of a test set with no measurable frame) as an
    empty cell and other numbers to 6 digits, while ribseg evaluate --csv (Evaluation.to_csv)
    wrote "nan" and every digit: both now write what csv_number writes, and read back the same."""
    from napari_ribseg.core.metrics import csv_number, evaluate_masks

    row = {**_fake_rows()[0], "hd95": math.nan, "dice": 2 / 3, "seconds": 12.3456789012}
    write_results(tmp_path / "results.csv", [row])
    with open(tmp_path / "results.csv", newline="") as fh:
        cells = next(csv.DictReader(fh))
    assert (cells["hd95"], cells["hd95_pre"]) == ("nan", "inf")
    assert (cells["dice"], cells["seconds"]) == ("0.6666666666666666", "12.3456789012")
    back = read_results(tmp_path / "results.csv")[0]
    assert math.isnan(back["hd95"]) and back["dice"] == 2 / 3 and back["seconds"] == 12.3456789012

    blank = np.zeros((16, 16), np.uint8)
    third = np.zeros((16, 16), np.uint8)
    third[:3, :3] = 1
    ev = evaluate_masks([blank, third], [blank, blank])  # both empty: nan; one: inf
    ev.to_csv(tmp_path / "eval.csv")
    with open(tmp_path / "eval.csv", newline="") as fh:
        frames = list(csv.DictReader(fh))
    assert [f["hd95"] for f in frames] == ["nan", "inf"]
    assert [csv_number(v) for v in (math.nan, math.inf, -math.inf, np.float64(0.1), 7)] == [
        "nan",
        "inf",
        "-inf",
        "0.1",
        7,
    ]
