"""Pixel spacing from the scanner's imaging depth: the rule, its errors, ``ribseg info/evaluate``."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from napari_ribseg.cli import main
from napari_ribseg.core.io import write_paired_dataset, write_stack_tiff
from napari_ribseg.core.region import (
    ImagedRegion,
    RegionError,
    depth_spacing,
    detect_imaged_region,
    frames_spacing_from_depth,
    stack_with_depth,
)
from napari_ribseg.core.stack import Stack

# The synthetic fan cine of test_region.py (radii 34..118 px: 84 px deep), loaded by path.
_spec = importlib.util.spec_from_file_location(
    "core_test_region_fan", Path(__file__).parent / "test_region.py"
)
_core = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_core)
_fan_cine = _core._fan_cine
FAN_DEPTH_PX = _core.RADII[1] - _core.RADII[0]


def _simulated(probe: str, seed: int = 2):
    from napari_ribseg.core.simulate import random_config, simulate_cine

    # The fan drawn whole with square pixels, as a scanner's screen shows it: the depth the
    # scanner prints spans the image's height.
    config = random_config(
        seed, probe=probe, size=(128, 128), fan_zoom=1.0, pixel_aspect=1.0, persistence=0.0
    )
    return config, simulate_cine(12, config, seed=seed)


@pytest.mark.parametrize("probe", ["convex", "linear"])
def test_depth_over_the_outlined_image_gives_the_simulators_spacing(probe) -> None:
    config, cine = _simulated(probe)
    # The region as the widget reads it back: the image's outline, redrawn as a polygon.
    outline = ImagedRegion.from_mask(cine.fan).polygon()
    region = ImagedRegion.from_polygon(outline, cine.fan.shape)
    derived = depth_spacing(region, config.depth_mm)
    assert derived.spacing_mm[0] == derived.spacing_mm[1]
    assert derived.spacing_mm[0] == pytest.approx(cine.spacing_mm[0], rel=0.03)


def test_depth_over_the_detected_fan_of_a_simulated_convex_cine() -> None:
    config, cine = _simulated("convex")
    region = detect_imaged_region(cine.frames)
    assert region.kind == "fan"
    derived = depth_spacing(region, config.depth_mm)
    assert derived.depth_px == pytest.approx(region.radii[1] - region.radii[0])
    assert derived.spacing_mm[0] == pytest.approx(cine.spacing_mm[0], rel=0.05)


def test_a_redrawn_fan_is_as_deep_as_the_fitted_one() -> None:
    # A hull has no radii: its depth is the middle column, not the box (which adds the inner
    # arc's sag, 7% on this 70 degree fan).
    truth = _core.fan_mask(_core.SHAPE, _core.APEX, _core.ANGLES, _core.RADII)
    hull = ImagedRegion.from_polygon(ImagedRegion.from_mask(truth).polygon(), _core.SHAPE)
    assert hull.radii is None
    assert hull.depth_px == pytest.approx(FAN_DEPTH_PX, abs=1.5)
    assert hull.bbox[2] - hull.bbox[0] > 1.05 * FAN_DEPTH_PX


def test_stack_with_depth_sets_the_spacing_and_says_where_it_came_from() -> None:
    frames, _ = _fan_cine(6)
    stack = Stack(frames, source=Path("clip.png"))
    with_depth, derived = stack_with_depth(stack, 84.0)
    assert stack.spacing_mm is None  # the input is left as it was
    assert with_depth.spacing_mm == derived.spacing_mm
    assert derived.region == "fan"
    assert derived.spacing_mm[0] == pytest.approx(84.0 / FAN_DEPTH_PX, rel=0.03)
    assert with_depth.metadata["imaging_depth_mm"] == 84.0
    assert "84 mm imaging depth" in with_depth.metadata["spacing_source"]


def test_a_spacing_the_file_records_is_kept_unless_replacing_is_asked_for() -> None:
    frames, _ = _fan_cine(6)
    stack = Stack(frames, source=Path("clip.dcm"), spacing_mm=(0.3, 0.3))
    with pytest.raises(RegionError, match=r"'clip.dcm' already records .* 0.3 x 0.3 mm.*explicit"):
        stack_with_depth(stack, 84.0)
    replaced, derived = stack_with_depth(stack, 84.0, replace=True)
    assert replaced.spacing_mm == derived.spacing_mm != (0.3, 0.3)


@pytest.mark.parametrize(
    ("depth", "message"),
    [
        (0.0, "must be a positive number of millimetres"),
        (-160.0, "must be a positive number of millimetres"),
        (float("nan"), "must be a positive number of millimetres"),
        (16.0 / 2, r"outside the 20-400 mm .* \(in cm\? 8 cm is 80 mm\)"),
        (1600.0, "outside the 20-400 mm"),
    ],
)
def test_depths_no_scanner_shows_are_refused(depth, message) -> None:
    region = ImagedRegion.full((64, 64))
    with pytest.raises(RegionError, match=message):
        depth_spacing(region, depth)


def test_no_region_is_an_error_that_says_what_is_missing() -> None:
    with pytest.raises(RegionError, match="no imaged region in 'x'.*height in pixels"):
        depth_spacing(None, 160.0, what="'x'")
    blank = Stack(np.zeros((3, 64, 64), np.float32), source=Path("blank.png"))
    with pytest.raises(
        RegionError, match="no imaged region was found in the frames of 'blank.png'"
    ):
        stack_with_depth(blank, 160.0)
    frames, _ = _fan_cine(3)
    with pytest.raises(RegionError, match="for 64x64 frames but 'clip.png' has 96x128"):
        stack_with_depth(Stack(frames, source=Path("clip.png")), 84.0, ImagedRegion.full((64, 64)))


def test_clips_of_two_depth_settings_cannot_share_one_depth() -> None:
    a, _ = _fan_cine(6, seed=0)
    b, _ = _fan_cine(6, seed=1)
    images = [*a, *b]
    same = frames_spacing_from_depth(images, ["a"] * 6 + ["b"] * 6, 84.0)
    assert same.spacing_mm[0] == pytest.approx(84.0 / FAN_DEPTH_PX, rel=0.03)
    shallow = np.zeros_like(b)
    shallow[:, :48] = b[:, :48]  # the same fan cut at half the depth: another depth setting
    with pytest.raises(RegionError, match=r"different spacings in the data set: clip a .* clip b"):
        frames_spacing_from_depth([*a, *shallow], ["a"] * 6 + ["b"] * 6, 84.0)


# --------------------------------------------------------------------------- CLI


def test_info_prints_the_spacing_the_depth_gives(tmp_path, capsys) -> None:
    frames, _ = _fan_cine(6)
    path = tmp_path / "fan.npy"
    np.save(path, frames)
    assert main(["info", str(path), "--depth-mm", "84"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("spacing:"))
    mm = float(line.split()[1])
    assert mm == pytest.approx(84.0 / FAN_DEPTH_PX, rel=0.03)
    assert "from 84 mm imaging depth over" in line and "(fan)" in line
    assert main(["info", str(path), "--depth-mm", "84", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["spacing_mm"][0] == pytest.approx(mm, rel=1e-3)
    assert info["spacing_from_depth"]["depth_mm"] == 84.0
    assert main(["info", str(path)]) == 0
    assert "spacing:     unknown" in capsys.readouterr().out


def test_info_depth_errors_are_one_line_and_exit_2(tmp_path, capsys) -> None:
    frames, _ = _fan_cine(6)
    tif = write_stack_tiff(tmp_path / "fan.tif", frames, spacing_mm=(0.5, 0.5))
    assert main(["info", str(tif), "--depth-mm", "84"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ribseg info: error:") and "already records" in err
    assert "--replace-spacing" in err and len(err.strip().splitlines()) == 1
    assert main(["info", str(tif), "--depth-mm", "84", "--replace-spacing"]) == 0
    assert "from 84 mm imaging depth" in capsys.readouterr().out
    assert main(["info", str(tif), "--depth-mm", "16"]) == 2
    assert "in cm? 16 cm is 160 mm" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["info", str(tif), "--depth-mm", "-5"])
    assert exit_info.value.code == 2


@pytest.fixture
def fan_dataset(tmp_path):
    frames, truth = _fan_cine(4)
    masks = [np.zeros(truth.shape, np.uint8) for _ in frames]
    for mask in masks:
        mask[40:46, 40:90] = 1
    ids = [f"c1_f{i}" for i in range(4)]
    return write_paired_dataset(tmp_path / "data", list(frames), masks, ids)


def test_evaluate_gives_hd95_in_mm_from_the_depth(tmp_path, fan_dataset, capsys) -> None:
    import torch

    from napari_ribseg.core.models import ModelCard, build_model, save_checkpoint

    torch.manual_seed(0)
    model = build_model("unet", "tiny", input_size=64, pretrained=False)
    with torch.no_grad():  # "rib" everywhere (inside the region): HD95 is defined on every frame
        model.head.weight.zero_()
        model.head.bias.fill_(10.0)
    card = ModelCard(name="everywhere", variant="unet", preset="tiny", widths=list(model.widths))
    ckpt = save_checkpoint(model, card, tmp_path / "models" / "everywhere.safetensors")
    argv = ["evaluate", str(fan_dataset), "--model", str(ckpt), "--device", "cpu", "--json"]
    torch.set_num_threads(1)
    assert main(argv) == 0
    in_px = json.loads(capsys.readouterr().out)
    assert main([*argv, "--depth-mm", "84"]) == 0
    in_mm = json.loads(capsys.readouterr().out)
    assert in_px["unit"] == "px" and in_mm["unit"] == "mm"
    mm = in_mm["spacing_from_depth"]["spacing_mm"][0]
    assert mm == pytest.approx(84.0 / FAN_DEPTH_PX, rel=0.03)
    assert in_px["mean"]["hd95"] > 10
    assert in_mm["mean"]["hd95"] == pytest.approx(in_px["mean"]["hd95"] * mm, rel=1e-6)
    assert in_mm["mean"]["dice"] == in_px["mean"]["dice"]
    with pytest.raises(SystemExit):  # one physical size, not two
        main([*argv, "--depth-mm", "84", "--spacing", "1", "1"])


@pytest.mark.parametrize("review", [False, True])
def test_predict_records_the_spacing_the_depth_gives(tmp_path, capsys, monkeypatch, review):
    """``ribseg predict --depth-mm`` (it had none: a PNG/JPEG/video export's masks carried no mm)."""
    import tifffile
    import torch

    from napari_ribseg.core.io import read_stack
    from napari_ribseg.core.models import ModelCard, build_model, save_checkpoint

    torch.manual_seed(0)
    model = build_model("unet", "tiny", input_size=64, pretrained=False)
    card = ModelCard(name="tiny", variant="unet", preset="tiny", widths=list(model.widths))
    ckpt = save_checkpoint(model, card, tmp_path / "models" / "tiny.safetensors")
    frames, _ = _fan_cine(6)
    path = tmp_path / "fan.npy"
    np.save(path, frames)
    out = tmp_path / "masks.tif"
    argv = ["predict", str(path), "--model", str(ckpt), "--out", str(out), "--device", "cpu"]
    argv += ["--depth-mm", "84"] + (["--review"] if review else [])
    assert main(argv) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "spacing recorded" in x)
    assert "from 84 mm imaging depth over" in line and "(fan)" in line
    spacing = read_stack(out).spacing_mm
    assert spacing[0] == pytest.approx(84.0 / FAN_DEPTH_PX, rel=0.03)
    assert tifffile.imread(out).shape == frames.shape
    # A spacing the file records wins unless --replace-spacing, refused before the model runs.
    tif = write_stack_tiff(tmp_path / "fan.tif", frames, spacing_mm=(0.5, 0.5))
    argv[1], argv[5] = str(tif), str(tmp_path / "m2.tif")
    assert main(argv) == 2
    assert "--replace-spacing" in capsys.readouterr().err
    assert not (tmp_path / "m2.tif").exists()
    assert main([*argv, "--replace-spacing"]) == 0
    assert read_stack(tmp_path / "m2.tif").spacing_mm == pytest.approx(spacing)


def test_predict_refuses_spacing_flags_that_would_do_nothing(tmp_path, capsys):
    """Audit 2026-12-04: --replace-spacing without --depth-mm, and --review --depth-mm without
    --out/--prob, exited 0 and recorded no spacing anywhere, silently."""
    path = tmp_path / "fan.npy"
    np.save(path, _fan_cine(3)[0])
    argv = ["predict", str(path), "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "m.tif"), "--replace-spacing"]) == 2
    assert "add --depth-mm" in capsys.readouterr().err
    assert main([*argv, "--review", "--depth-mm", "84"]) == 2
    assert "a review stores none; add --out" in capsys.readouterr().err
    assert not (tmp_path / "m.tif").exists() and not (tmp_path / "fan.npy.ribseg").exists()
