"""``ribseg predict`` and ``ribseg evaluate`` end to end, in-process, on a tiny saved checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch

from napari_ribseg.cli import main
from napari_ribseg.core.inference import predict_stack_sync
from napari_ribseg.core.io import write_paired_dataset, write_stack_tiff
from napari_ribseg.core.metrics import dice, hd95, iou
from napari_ribseg.core.models import ModelCard, build_model, load_model, save_checkpoint
from napari_ribseg.core.postprocess import probability_to_mask


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models on a shared 2-core machine run ~30x faster on one thread than on contended two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _checkpoint(tmp_path, name: str, head_bias: float | None = None):
    torch.manual_seed(0)
    model = build_model("unet", "tiny", input_size=64, pretrained=False)
    if head_bias is not None:
        # A head with zero weights and a large bias predicts "rib" (or "no rib") everywhere, so
        # every metric of the CLI can be checked against a number computed by hand.
        with torch.no_grad():
            model.head.weight.zero_()
            model.head.bias.fill_(head_bias)
    card = ModelCard(name=name, variant="unet", preset="tiny", widths=list(model.widths))
    return save_checkpoint(model, card, tmp_path / "models" / f"{name}.safetensors")


@pytest.fixture
def everywhere_model(tmp_path):
    return _checkpoint(tmp_path, "everywhere", head_bias=10.0)


@pytest.fixture
def random_model(tmp_path):
    return _checkpoint(tmp_path, "random")


@pytest.fixture
def cine(tmp_path, rng):
    frames = rng.random((5, 50, 70), dtype=np.float32)
    return write_stack_tiff(tmp_path / "cine.tif", frames), frames


@pytest.fixture
def dataset(tmp_path):
    images, masks = [], []
    for i, shape in enumerate([(64, 64), (64, 64), (48, 80)]):
        images.append(np.full(shape, 0.25 * (i + 1), np.float32))
        mask = np.zeros(shape, np.uint8)
        mask[10 : 20 + 5 * i, 8:40] = 1
        masks.append(mask)
    root = write_paired_dataset(tmp_path / "data", images, masks, ["c1_f1", "c1_f2", "c2_f1"])
    return root, masks


def test_predict_writes_masks_and_probabilities(tmp_path, cine, random_model, capsys):
    path, frames = cine
    out, prob = tmp_path / "out" / "masks.tif", tmp_path / "out" / "prob.tif"
    argv = ["predict", str(path), "--model", str(random_model), "--out", str(out)]
    argv += ["--prob", str(prob), "--device", "cpu", "--batch-size", "2", "--min-size", "3"]
    assert main([*argv, "--threshold", "0.4"]) == 0
    masks, probs = tifffile.imread(out), tifffile.imread(prob)
    assert masks.shape == probs.shape == (5, 50, 70)
    assert masks.dtype == probs.dtype == np.uint8

    expected = predict_stack_sync(load_model(random_model), frames, device="cpu", batch_size=2)
    assert np.array_equal(probs, expected.prob)
    assert np.array_equal(masks, probability_to_mask(expected.prob, 0.4, min_size=3))
    captured = capsys.readouterr()
    assert "5 frames 50x70" in captured.out
    assert "5/5" in captured.err  # the progress bar went to stderr
    assert "pixel spacing recorded in the TIFF(s): none" in captured.out


def test_predict_masks_carry_the_stacks_spacing(tmp_path, rng, random_model, capsys):
    from napari_ribseg.core.io import read_stack

    src = write_stack_tiff(tmp_path / "mm.tif", rng.random((2, 40, 60), np.float32), (0.3, 0.2))
    for into_review in (False, True):
        out = tmp_path / f"masks{into_review}.tif"
        argv = ["predict", str(src), "--model", str(random_model), "--out", str(out)]
        argv += ["--device", "cpu"] + (["--review"] if into_review else [])
        assert main(argv) == 0
        assert read_stack(out).spacing_mm == pytest.approx((0.3, 0.2))
    assert capsys.readouterr().out.count("0.3 x 0.2 mm (row x col, from the file)") == 2


def test_predict_everywhere_model_marks_every_pixel(tmp_path, cine, everywhere_model):
    path, _ = cine
    out = tmp_path / "masks.tif"
    assert main(["predict", str(path), "--model", str(everywhere_model), "--out", str(out)]) == 0
    assert (tifffile.imread(out) == 1).all()


def test_predict_refuses_to_overwrite_its_input(cine, random_model, capsys):
    path, _ = cine
    before = path.read_bytes()
    assert main(["predict", str(path), "--model", str(random_model), "--out", str(path)]) == 2
    assert "never overwritten" in capsys.readouterr().err
    assert path.read_bytes() == before
    # A folder of frames: neither a frame nor a new file inside it (it would become a frame).
    folder = path.parent / "frames"
    folder.mkdir()
    for i in range(2):
        tifffile.imwrite(folder / f"f{i}.tif", np.zeros((50, 70), np.uint8))
    frame = (folder / "f0.tif").read_bytes()
    for target in (folder / "f0.tif", folder / "ribs.tif"):
        code = main(["predict", str(folder), "--model", str(random_model), "--out", str(target)])
        assert code == 2 and "inside the input folder of frames" in capsys.readouterr().err
    assert (folder / "f0.tif").read_bytes() == frame and not (folder / "ribs.tif").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
@pytest.mark.parametrize(("flag", "name"), [("--out", "masks.png"), ("--prob", "prob.NPY")])
def test_predict_refuses_a_non_tiff_name(tmp_path, cine, random_model, capsys, flag, name):
    """--out masks.png wrote a multi-page TIFF named masks.png."""
    path, _ = cine
    target = tmp_path / name
    argv = ["predict", str(path), "--model", str(random_model), "--out", str(tmp_path / "m.tif")]
    assert main([*argv, flag, str(target)]) == 2
    suffix = target.suffix
    assert capsys.readouterr().err == (
        f"ribseg predict: error: {flag} {target}: predict writes a TIFF; name it with .tif or "
        f".tiff, not {suffix}\n"
    )
    assert not target.exists()


@pytest.mark.parametrize("value", ["-2", "0"])
def test_batch_size_below_one_says_at_least_one(dataset, capsys, value):
    """--batch-size -2 was told 'must be >= 0' (0 is refused too)."""
    root, _ = dataset
    with pytest.raises(SystemExit):
        main(["evaluate", str(root), "--batch-size", value])
    assert f"argument --batch-size: must be >= 1; got {value}" in capsys.readouterr().err


def test_predict_on_a_truncated_tiff_is_one_line(tmp_path, random_model):
    """The streaming path let tifffile log '<tifffile.TiffPages @8> invalid page offset ...' (and
    'ImageJ series metadata invalid') to stderr before the error line. In a subprocess: pytest's
    own log capture would hide tifffile's output here."""
    import subprocess
    import sys

    from napari_ribseg.core.io import write_stack_tiff

    frames = np.random.default_rng(0).integers(0, 255, (5, 50, 70), dtype=np.uint8)
    data = write_stack_tiff(tmp_path / "cine.tif", frames).read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "masks.tif"
    argv = ["predict", str(cut), "--model", str(random_model), "--out", str(out), "--device", "cpu"]
    run = subprocess.run(
        [sys.executable, "-m", "napari_ribseg.cli", *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1, run.stderr
    assert run.stderr.startswith(f"ribseg predict: error: {cut}: file is truncated")
    assert not out.exists()


def test_predict_on_missing_gpu_is_one_line_exit_2(tmp_path, cine, random_model, capsys):
    path, _ = cine
    argv = ["predict", str(path), "--model", str(random_model), "--out", str(tmp_path / "m.tif")]
    assert main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ribseg predict: error:") and "CUDA" in err and "\n" not in err
    assert not (tmp_path / "m.tif").exists()


def test_predict_unknown_model_is_exit_2(tmp_path, cine, capsys):
    path, _ = cine
    argv = ["predict", str(path), "--model", "no-such-model", "--out", str(tmp_path / "m.tif")]
    assert main(argv) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_predict_rejects_threshold_outside_unit_interval(tmp_path, cine, random_model):
    path, _ = cine
    argv = ["predict", str(path), "--model", str(random_model), "--out", str(tmp_path / "m.tif")]
    with pytest.raises(SystemExit):
        main([*argv, "--threshold", "2"])


def test_evaluate_json_has_exact_means(tmp_path, dataset, everywhere_model, capsys):
    root, truths = dataset
    csv_path, json_path = tmp_path / "scores.csv", tmp_path / "scores.json"
    argv = ["evaluate", str(root), "--model", str(everywhere_model), "--device", "cpu"]
    argv += ["--spacing", "0.5", "0.25", "--csv", str(csv_path), "--json-out", str(json_path)]
    assert main([*argv, "--json"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out)  # one JSON object and nothing else on stdout
    assert {"dice", "iou", "hd95"} <= set(result["mean"])
    assert result["unit"] == "mm" and result["n_frames"] == 3
    everywhere = [np.ones_like(t) for t in truths]
    expected_dice = np.mean([dice(p, t) for p, t in zip(everywhere, truths, strict=True)])
    expected_iou = np.mean([iou(p, t) for p, t in zip(everywhere, truths, strict=True)])
    expected_hd95 = np.mean(
        [hd95(p, t, (0.5, 0.25)) for p, t in zip(everywhere, truths, strict=True)]
    )
    # Mask of frame 0: 10 x 32 = 320 px of 4096 -> Dice 640 / 4416.
    assert result["frames"][0]["dice"] == pytest.approx(640 / 4416)
    assert result["mean"]["dice"] == pytest.approx(expected_dice)
    assert result["mean"]["iou"] == pytest.approx(expected_iou)
    assert result["mean"]["hd95"] == pytest.approx(expected_hd95)
    assert result["mean"]["spurious_components"] == 0
    assert [f["id"] for f in result["frames"]] == ["c1_f1", "c1_f2", "c2_f1"]
    assert json.loads(json_path.read_text())["mean"] == result["mean"]
    assert len(csv_path.read_text().splitlines()) == 4


def test_evaluate_says_whether_it_averaged_with_mirror_images(dataset, random_model, capsys):
    from napari_ribseg.core.inference import FLIP_AVERAGE

    root, _ = dataset
    argv = ["evaluate", str(root), "--model", str(random_model), "--device", "cpu", "--json"]
    results = {}
    for flag in ("", "--flip-average", "--no-flip-average"):
        assert main([*argv, flag] if flag else argv) == 0
        results[flag] = json.loads(capsys.readouterr().out)
    assert results[""]["flip_average"] is FLIP_AVERAGE
    assert results["--flip-average"]["flip_average"] is True
    assert results["--no-flip-average"]["flip_average"] is False
    # A random model is lopsided, so its mirror image changes what it marks.
    dice_on = [f["dice"] for f in results["--flip-average"]["frames"]]
    dice_off = [f["dice"] for f in results["--no-flip-average"]["frames"]]
    assert dice_on != dice_off


def test_evaluate_table_in_pixels(dataset, random_model, capsys):
    root, _ = dataset
    assert main(["evaluate", str(root), "--model", str(random_model), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "hd95_px" in out and "c2_f1" in out
    assert "3 frames: Dice" in out
    assert out.splitlines()[-1].endswith("/frame")


def test_evaluate_table_marks_hd95_not_measured_and_files_stay_numbers(tmp_path, capsys):
    """The table printed "nan" in the HD95 column for a rib-free frame the model left empty (HD95
    is undefined there by design) and "HD95 nan px" in the summary; now "-" and "not measured".
    The CSV keeps nan/inf (read back as numbers by csv+float and pandas), the JSON null."""
    import csv
    import math

    nothing = _checkpoint(tmp_path, "nothing", head_bias=-10.0)
    images = [np.full((64, 64), 0.5, np.float32) for _ in range(3)]
    masks = [np.zeros((64, 64), np.uint8) for _ in range(3)]
    masks[0][10:20, 8:40] = 1  # a rib the model misses: HD95 inf; frames 1-2 rib-free: not measured
    root = write_paired_dataset(tmp_path / "data", images, masks, ["c1_f1", "c1_f2", "c1_f3"])
    csv_path, json_path = tmp_path / "eval.csv", tmp_path / "eval.json"
    argv = ["evaluate", str(root), "--model", str(nothing), "--device", "cpu", "--no-flip-average"]
    assert main([*argv, "--csv", str(csv_path), "--json-out", str(json_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines if line.startswith(("c1_", "mean"))}
    assert rows["c1_f1"][1:4] == ["0.000", "0.000", "inf"]
    assert rows["c1_f2"][1:4] == rows["c1_f3"][1:4] == ["1.000", "1.000", "-"]
    assert rows["mean"][3] == "-"
    assert not any("nan" in line for line in lines)
    assert any(
        "3 frames: Dice" in line and "HD95 - (no frame to measure)" in line for line in lines
    )
    with open(csv_path, newline="") as fh:
        hd95_column = [float(r["hd95"]) for r in csv.DictReader(fh)]
    assert hd95_column[0] == math.inf and all(math.isnan(v) for v in hd95_column[1:])
    pandas = pytest.importorskip("pandas")
    table = pandas.read_csv(csv_path)
    assert table["hd95"].dtype == np.float64
    assert np.isinf(table["hd95"][0]) and table["hd95"][1:].isna().all()
    frames = json.loads(json_path.read_text())["frames"]
    assert [f["hd95"] for f in frames] == [None, None, None]
    assert [f["dice"] for f in frames] == [0.0, 1.0, 1.0]
    # The JSON's null alone did not say which: the rib missed (HD95 inf) or nothing to measure.
    assert [f["hd95_empty"] for f in frames] == ["prediction", "both", "both"]


def test_evaluate_missing_dataset_is_exit_2(tmp_path, random_model, capsys):
    argv = ["evaluate", str(tmp_path / "nothing"), "--model", str(random_model), "--json"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("ribseg evaluate: error:")


def test_evaluate_checks_its_output_files_before_predicting(
    tmp_path, dataset, random_model, capsys, monkeypatch
):
    """--csv naming a folder failed only after every prediction, naming a temporary file; the
    same file for --csv and --json-out kept only the JSON."""
    import napari_ribseg.core.evaluation as evaluation

    def never(*args, **kwargs):
        raise AssertionError("predicted before checking the outputs")

    monkeypatch.setattr(evaluation, "evaluate_model", never)
    root, _ = dataset
    base = ["evaluate", str(root), "--model", str(random_model), "--device", "cpu"]
    assert main([*base, "--csv", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"ribseg evaluate: error: {tmp_path}: the --csv is a folder; expected a file name\n"
    )
    same = tmp_path / "scores.txt"
    assert main([*base, "--csv", str(same), "--json-out", str(same)]) == 2
    err = capsys.readouterr().err
    assert err == f"ribseg evaluate: error: --csv and --json-out name the same file {same}\n"
    assert not same.exists()


def test_predict_and_adapt_refuse_a_start_checkpoint(tmp_path, cine, capsys):
    """The salient start checkpoint never saw a rib (the widget hides it from segmenting)."""
    path, _ = cine
    out = tmp_path / "ribs.tif"
    assert main(["predict", str(path), "--model", "x-unet-compact-salient", "--out", str(out)]) == 2
    assert "is a start checkpoint" in capsys.readouterr().err and not out.exists()
    code = main(["adapt", str(path), "--model", "x-unet-compact-salient", "--out", "adapted"])
    assert code == 2 and "is a start checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["nan", "inf", "0", "-0.2", "x"])
def test_evaluate_refuses_a_spacing_that_is_no_length_before_predicting(dataset, bad, capsys):
    root, _ = dataset
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(root), "--spacing", bad, "0.2"])
    assert exit_info.value.code == 2
    assert "expected a pixel spacing in mm > 0" in capsys.readouterr().err


def test_predict_into_the_review_honours_region(tmp_path, rng, random_model, capsys):
    # --review used to ignore --region: "none" still zeroed outside a detected region, silently.
    from napari_ribseg.core.project import ReviewProject
    from napari_ribseg.core.region import detect_imaged_region

    frames = np.zeros((5, 50, 70), np.float32)
    frames[:, 10:40, 15:55] = rng.random((5, 30, 40), dtype=np.float32) * 0.6 + 0.2
    src = write_stack_tiff(tmp_path / "boxed.tif", frames)
    region = detect_imaged_region(frames)
    assert region.bbox == (10, 15, 40, 55)
    loaded = load_model(random_model)
    for choice, crop in (("none", False), ("crop", True), ("auto", None)):
        folder = tmp_path / f"review-{choice}"
        argv = ["predict", str(src), "--review", "--region", choice, "--project-folder"]
        argv += [str(folder), "--model", str(random_model), "--device", "cpu"]
        assert main(argv) == 0
        out = capsys.readouterr().out
        project, _ = ReviewProject.open(next(folder.iterdir()), 5, (50, 70), lock=False)
        expected = predict_stack_sync(
            loaded,
            frames,
            device="cpu",
            crop_to_region=crop,
            region=None if crop is False else region,
        )
        assert np.array_equal(project.probabilities, expected.prob), choice
        outside = int(np.count_nonzero(project.probabilities[:, ~region.mask]))
        if choice == "none":
            assert outside > 0
            assert "imaged region: none (--region none: whole frames" in out
        else:
            assert outside == 0
            assert "imaged region: rect (variance), rows 10-40, cols 15-55" in out


def test_evaluate_prints_warnings_as_one_line_each(tmp_path, random_model):
    """A mask that reads as empty warned as '<path>/paired.py:189: UserWarning: ...' plus the
    source line 'mask = binarize_mask(...)'. In a subprocess: pytest records warnings itself."""
    import subprocess
    import sys

    mask = np.zeros((64, 64), np.float32)
    mask[10:20, 5:50] = 0.4  # below the 0.5 cut: reads as empty, with a warning
    root = write_paired_dataset(tmp_path / "data", [np.zeros((64, 64), np.float32)], [mask], ["a"])
    tifffile.imwrite(root / "MASK" / "mask_a.tif", mask)
    argv = ["evaluate", str(root), "--model", str(random_model), "--device", "cpu", "--json"]
    run = subprocess.run(
        [sys.executable, "-m", "napari_ribseg.cli", *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    lines = [x for x in run.stderr.replace("\r", "\n").splitlines() if "arning" in x]
    assert len(lines) == 2, lines  # the empty mask, and the dataset whose masks are all empty
    assert all(x.startswith("ribseg evaluate: warning: ") for x in lines), lines
    assert "mask_a.tif: the mask has 450 non-zero pixels (largest value 0.4)" in lines[0]
