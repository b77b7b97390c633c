"""Metrics on hand-made masks whose Dice, IoU and HD95 are known exactly."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from napari_ribseg.core.errors import DatasetError
from napari_ribseg.core.metrics import (
    FRAME_COLUMNS,
    component_count,
    dice,
    evaluate_masks,
    hd95,
    iou,
    spurious_components,
)


def blank(shape=(64, 64)) -> np.ndarray:
    return np.zeros(shape, dtype=np.uint8)


def two_squares():
    """100-px squares overlapping in a 10x5 band: |A∩B| = 50, |A∪B| = 150."""
    a, b = blank(), blank()
    a[10:20, 10:20] = 1
    b[10:20, 15:25] = 1
    return a, b


def test_dice_and_iou_of_overlapping_squares():
    a, b = two_squares()
    assert dice(a, b) == pytest.approx(0.5)
    assert iou(a, b) == pytest.approx(1 / 3)
    assert dice(a, a) == 1.0 and iou(a, a) == 1.0
    assert dice(a, blank()) == 0.0 and iou(a, blank()) == 0.0


def test_both_empty_is_perfect_agreement_with_no_hd95():
    assert dice(blank(), blank()) == 1.0
    assert iou(blank(), blank()) == 1.0
    assert math.isnan(hd95(blank(), blank()))  # no surface in either: nothing to measure


def test_both_empty_frames_are_left_out_of_the_hd95_mean_and_counted(tmp_path, capsys):
    """A both-empty frame scored HD95 0 and pulled the mean down: 2 frames at 5 px and 2 rib-free
    frames left empty averaged 2.5 px. Now they are left out (5 px) and counted, as MONAI leaves
    them undefined (nan); their Dice stays 1 and counts."""
    import torch
    from monai import metrics as monai_metrics

    from napari_ribseg.cli.cmd_evaluate import _print_table

    a, b = two_squares()
    ev = evaluate_masks([a, a, blank(), blank()], [b, b, blank(), blank()])
    assert ev.rows[0]["hd95"] == pytest.approx(5.0)
    assert math.isnan(ev.rows[2]["hd95"]) and math.isnan(ev.rows[3]["hd95"])
    assert ev.mean["hd95"] == pytest.approx(5.0) and ev.std["hd95"] == pytest.approx(0.0)
    assert ev.hd95_both_empty == 2 and ev.hd95_undefined == 0
    assert ev.mean["dice"] == pytest.approx((0.5 + 0.5 + 1 + 1) / 4)
    ref = monai_metrics.compute_hausdorff_distance(
        torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64), include_background=True, percentile=95
    )
    assert math.isnan(float(ref[0, 0]))
    data = ev.to_dict()
    assert data["hd95_both_empty"] == 2 and data["frames"][2]["hd95"] is None
    ev.to_json(tmp_path / "eval.json")
    assert json.loads((tmp_path / "eval.json").read_text())["mean"]["hd95"] == pytest.approx(5.0)
    ev.to_csv(tmp_path / "eval.csv")
    with open(tmp_path / "eval.csv", newline="") as fh:
        assert [r["hd95"] for r in csv.DictReader(fh)][2:] == ["nan", "nan"]
    _print_table(ev)
    assert (
        "HD95 not measured (no rib in prediction or truth; shown as '-') in 2 frame(s); the mean "
        "skips them (their Dice is 1)" in capsys.readouterr().out
    )


def test_hd95_one_empty_is_inf():
    a, _ = two_squares()
    assert hd95(a, blank()) == math.inf
    assert hd95(blank(), a) == math.inf


def test_hd95_parallel_lines_in_pixels_and_anisotropic_mm():
    a, b = blank(), blank()
    a[10, 10:30] = 1
    b[14, 10:30] = 1  # every surface pixel is exactly 4 rows from the other line
    assert hd95(a, b) == pytest.approx(4.0)
    assert hd95(a, b, spacing=(0.25, 1.0)) == pytest.approx(1.0)  # 4 rows x 0.25 mm
    c = blank()
    c[10, 16:36] = 1  # 6 columns to the right: the end pixels decide
    assert hd95(a, c, spacing=(0.25, 2.0)) == pytest.approx(
        float(np.percentile(np.maximum(16 - np.arange(10, 30), 0) * 2.0, 95))
    )


def test_hd95_single_pixels_use_row_and_column_spacing():
    a, b, c = blank(), blank(), blank()
    a[5, 5] = 1
    b[5, 9] = 1  # 4 columns apart
    c[8, 5] = 1  # 3 rows apart
    assert hd95(a, b) == pytest.approx(4.0)
    assert hd95(a, b, spacing=(0.5, 2.0)) == pytest.approx(8.0)
    assert hd95(a, c, spacing=(0.5, 2.0)) == pytest.approx(1.5)
    d = blank()
    d[8, 9] = 1
    assert hd95(a, d, spacing=(0.5, 2.0)) == pytest.approx(math.hypot(1.5, 8.0))


def test_hd95_ignores_a_one_percent_outlier_that_hausdorff_would_not():
    a = blank()
    a[5, 2:62] = 1  # 60 surface pixels
    b = a.copy()
    b[60, 30] = 1  # one stray pixel 55 rows away: 1 of 61 surface pixels
    assert hd95(a, b) == 0.0
    b[50:60, 30] = 1  # now 11 of 71 are far: the 95th percentile sees them
    assert hd95(a, b) > 40


def test_hd95_rejects_bad_spacing_and_shapes():
    a, b = two_squares()
    with pytest.raises(ValueError, match="spacing"):
        hd95(a, b, spacing=(0.0, 1.0))
    with pytest.raises(ValueError, match="shape"):
        dice(a, blank((64, 65)))


def test_a_bad_spacing_is_named_whatever_the_masks():
    """A scalar spacing raised "TypeError: 'float' object is not iterable"; with empty masks any
    spacing passed, and evaluate_masks reported unit mm with spacing_mm (0.2,)."""
    a, b = two_squares()
    empty = blank(a.shape)
    message = r"spacing must be two positive numbers \(row, column\) in mm; got "
    with pytest.raises(ValueError, match=message + r"0\.2$"):
        hd95(a, b, spacing=0.2)
    with pytest.raises(ValueError, match=message + r"\(-1\.0, 1\.0\)$"):
        hd95(empty, empty, spacing=(-1.0, 1.0))
    with pytest.raises(ValueError, match=message + r"\(0\.2,\)$"):
        evaluate_masks([empty], [empty], spacing=(0.2,))
    assert evaluate_masks([a], [b], spacing=[0.5, 0.25]).spacing_mm == (0.5, 0.25)


def _blobs(rng, seeds: float, grow: int) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_dilation(rng.random((64, 64)) < seeds, iterations=grow)


@pytest.mark.parametrize("spacing", [None, (1.0, 1.0), (0.5, 0.25)])
def test_hd95_equals_monai_compute_hausdorff_distance(spacing):
    """Ours is MONAI's directed-max convention, on masks that touch the image edge too."""
    import torch
    from monai import metrics as monai_metrics  # the testing extra installs it

    rng = np.random.default_rng(7)
    pairs = [(_blobs(rng, 0.01, int(g)), _blobs(rng, 0.006, int(g) + 1)) for g in (1, 2, 3, 4) * 3]
    ours, theirs = [], []
    for a, b in pairs:
        ours.append(hd95(a, b, spacing))
        ref = monai_metrics.compute_hausdorff_distance(
            torch.from_numpy(a[None, None]).float(),
            torch.from_numpy(b[None, None]).float(),
            include_background=True,
            percentile=95,
            spacing=spacing,
        )
        theirs.append(float(ref[0, 0]))
    assert any(a[0].any() or a[:, -1].any() for a, _ in pairs)  # edge pixels are exercised
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)  # MONAI computes in float32


def test_hd95_is_not_medpys_pooled_percentile():
    """MedPy pools both directions' distances: smaller than ours when one direction is far."""
    from scipy import ndimage

    a = np.zeros((64, 64), bool)
    a[10:12, 5:60] = True
    b = a.copy()
    b[40, 5:13] = True  # far: 7% of b's surface pixels (above 5%), 3.5% of both pooled
    surf = [m & ~ndimage.binary_erosion(m) for m in (a, b)]
    d_ab = ndimage.distance_transform_edt(~surf[1])[surf[0]]
    d_ba = ndimage.distance_transform_edt(~surf[0])[surf[1]]
    medpy = float(np.percentile(np.hstack([d_ab, d_ba]), 95))
    assert hd95(a, b) == pytest.approx(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)))
    assert hd95(a, b) > medpy + 5


def test_component_count_uses_8_connectivity():
    m = blank()
    m[5:8, 5:8] = 1
    m[20, 20] = 1
    m[21, 21] = 1  # diagonal neighbour: same component
    m[40:45, 40] = 1
    assert component_count(m) == 3
    assert component_count(blank()) == 0


def test_spurious_components_are_those_sharing_no_pixel_with_truth():
    truth = blank()
    truth[10:20, 10:20] = 1
    pred = blank()
    pred[15:25, 15:25] = 1  # overlaps the truth
    pred[40:42, 40:42] = 1  # spurious
    pred[50, 5:9] = 1  # spurious
    pred[20, 30] = 1  # touches nothing: spurious
    assert spurious_components(pred, truth) == 3
    assert spurious_components(truth, truth) == 0
    assert spurious_components(blank(), truth) == 0


def test_evaluate_masks_rows_means_and_writers(tmp_path):
    a, b = two_squares()
    preds = [a, a, a]
    truths = [b, a, blank()]
    ev = evaluate_masks(preds, truths, spacing=(0.5, 0.5), ids=["c1_f1", "c1_f2", "c2_f1"])
    assert ev.unit == "mm" and ev.n_frames == 3
    assert [r["id"] for r in ev.rows] == ["c1_f1", "c1_f2", "c2_f1"]
    assert [r["dice"] for r in ev.rows] == pytest.approx([0.5, 1.0, 0.0])
    assert ev.mean["dice"] == pytest.approx(0.5)
    assert ev.std["dice"] == pytest.approx(np.std([0.5, 1.0, 0.0]))
    assert ev.mean["iou"] == pytest.approx((1 / 3 + 1) / 3)
    # HD95 is inf for the third frame (empty truth): the mean is over the two finite frames.
    assert ev.rows[2]["hd95"] == math.inf and ev.hd95_undefined == 1
    assert ev.mean["hd95"] == pytest.approx((ev.rows[0]["hd95"] + 0.0) / 2)
    assert ev.rows[0]["hd95"] == pytest.approx(hd95(a, b) * 0.5)
    assert ev.rows[2]["spurious_components"] == 1

    ev.to_json(tmp_path / "eval.json")
    data = json.loads((tmp_path / "eval.json").read_text())
    assert data["mean"]["dice"] == pytest.approx(0.5)
    assert data["frames"][2]["hd95"] is None  # JSON has no inf
    assert data["unit"] == "mm" and data["hd95_undefined"] == 1

    ev.to_csv(tmp_path / "eval.csv")
    with open(tmp_path / "eval.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and list(rows[0]) == list(FRAME_COLUMNS)
    assert float(rows[0]["dice"]) == pytest.approx(0.5) and rows[2]["hd95"] == "inf"
    ev.to_csv(tmp_path / "summary.csv", summary=True)
    assert (tmp_path / "summary.csv").read_text().splitlines()[-2].startswith("mean,0.5")
    assert not list(tmp_path.glob(".*"))  # atomic writes leave no temporary files


def test_evaluate_masks_accepts_stacks_and_reports_pixels_without_spacing():
    a, b = two_squares()
    ev = evaluate_masks(np.stack([a, b]), np.stack([b, b]))
    assert ev.unit == "px" and [r["id"] for r in ev.rows] == ["0", "1"]
    assert ev.rows[0]["pred_pixels"] == 100 and ev.rows[1]["dice"] == 1.0


def test_evaluate_masks_names_the_frame_on_shape_mismatch():
    with pytest.raises(DatasetError, match="frame f7"):
        evaluate_masks([blank()], [blank((64, 70))], ids=["f7"])
    with pytest.raises(DatasetError, match="2 predicted masks but 1"):
        evaluate_masks([blank(), blank()], [blank()])


def test_an_evaluation_written_onto_a_folder_names_the_folder_and_leaves_nothing(tmp_path):
    """Evaluation.to_json/to_csv onto a folder raised IsADirectoryError naming the temporary file
    ('.out.tmpXXXX: Is a directory'), after the work; the atomic writer now names the target."""
    a = np.zeros((8, 8), np.uint8)
    a[2:4, 2:6] = 1
    evaluation = evaluate_masks([a], [a])
    folder = tmp_path / "out"
    folder.mkdir()
    for write in (evaluation.to_json, evaluation.to_csv):
        with pytest.raises(IsADirectoryError) as caught:
            write(folder)
        assert caught.value.filename == str(folder)
        assert caught.value.strerror == "is a folder; expected a file name"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert list(folder.iterdir()) == []


def test_json_tells_one_empty_mask_from_both_empty():
    """JSON wrote HD95 null both where one mask is empty (inf: a rib missed, or marked where there
    is none) and where both are (nan: nothing to measure); each frame now says which mask is
    empty in ``hd95_empty`` (null where HD95 is measured), and the CSV keeps inf and nan."""
    a, b = two_squares()
    ev = evaluate_masks([a, blank(), a, blank()], [b, b, blank(), blank()], ids=list("wxyz"))
    frames = json.loads(json.dumps(ev.to_dict(), allow_nan=False))["frames"]
    assert [f["hd95"] for f in frames] == [pytest.approx(ev.rows[0]["hd95"]), None, None, None]
    assert [f["hd95_empty"] for f in frames] == [None, "prediction", "truth", "both"]
    assert list(frames[0])[:5] == ["id", "dice", "iou", "hd95", "hd95_empty"]
    assert (ev.hd95_undefined, ev.hd95_both_empty) == (2, 1)
    assert sum(f["hd95_empty"] in ("prediction", "truth") for f in frames) == ev.hd95_undefined
    assert "hd95_empty" not in ev.rows[0]  # the rows (and the CSV's columns) are unchanged
