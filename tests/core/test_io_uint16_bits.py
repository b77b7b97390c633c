"""16-bit files whose samples use fewer bits (8-bit data saved as 16-bit, 12-bit scanner or ADC
samples) read at their bit depth, the same way in every reader and in streaming predict.

Before: every uint16 was divided by 65535, so a 12-bit cine reached the model at 1/16 of its
brightness (a near-black frame, no ribs marked) while napari's auto-contrast showed it normally."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_ribseg.core.io import read_stack
from napari_ribseg.core.io.intensity import uint16_bits
from napari_ribseg.core.io.lazy import TiffFrames, open_frames
from napari_ribseg.core.io.paired import read_paired_dataset


@pytest.mark.parametrize(
    ("maximum", "bits"),
    [(0, 8), (255, 8), (256, 10), (1023, 10), (1024, 12), (4095, 12), (4096, 14), (16383, 14)]
    + [(16384, 16), (65535, 16)],
)
def test_uint16_bits_is_the_fewest_of_8_10_12_14_16_that_hold_the_maximum(maximum, bits):
    assert uint16_bits(maximum) == bits


@pytest.mark.parametrize(("bits", "old_divisor"), [(10, 4095.0), (14, 65535.0)])
def test_10_and_14_bit_stacks_read_at_their_own_range(tmp_path, rng, bits, old_divisor):
    """10- and 14-bit samples were divided by 4095 and 65535: a full-scale pixel read 0.25."""
    full = 2**bits - 1
    eight = rng.integers(0, 256, (2, 10, 14), dtype=np.uint8)
    eight[0, 0, 0] = 255
    deep = ((eight.astype(np.int64) * full + 127) // 255).astype(np.uint16)
    tifffile.imwrite(tmp_path / "deep.tif", deep, photometric="minisblack")
    np.save(tmp_path / "deep.npy", deep)
    for name in ("deep.tif", "deep.npy"):
        stack = read_stack(tmp_path / name)
        assert float(stack.frames.max()) == pytest.approx(1.0)  # was full / old_divisor: 0.25
        assert float(np.abs(stack.frames - eight / 255).max()) < 1 / 255
        scaling = stack.metadata["intensity_scaling"]
        assert (scaling["divisor"], scaling["significant_bits"]) == (float(full), bits)
    assert full / old_divisor == pytest.approx(0.25, abs=0.001)


@pytest.mark.parametrize(("top", "divisor"), [(4000, 4095.0), (200, 255.0), (50000, 65535.0)])
def test_a_uint16_tiff_divides_by_its_bit_depth(tmp_path, rng, top, divisor):
    data = rng.integers(0, top, (3, 12, 16), dtype=np.uint16)
    data[1, 0, 0] = top
    tifffile.imwrite(tmp_path / "s.tif", data, photometric="minisblack")
    stack = read_stack(tmp_path / "s.tif")
    np.testing.assert_allclose(stack.frames, data / divisor, rtol=1e-6)
    scaling = stack.metadata["intensity_scaling"]
    assert scaling["divisor"] == divisor
    assert scaling.get("significant_bits", 16) == {4095.0: 12, 255.0: 8, 65535.0: 16}[divisor]


def test_a_12_bit_cine_reaches_the_engine_as_bright_as_its_8_bit_copy(tmp_path, rng):
    """The whole point: the same picture saved as 8-bit and as 12-bit-in-16 reads the same."""
    eight = rng.integers(0, 256, (2, 10, 14), dtype=np.uint8)
    eight[0, 0, 0] = 255
    twelve = ((eight.astype(np.int64) * 4095 + 127) // 255).astype(np.uint16)
    tifffile.imwrite(tmp_path / "8.tif", eight, photometric="minisblack")
    tifffile.imwrite(tmp_path / "12.tif", twelve, photometric="minisblack")
    a, b = read_stack(tmp_path / "8.tif").frames, read_stack(tmp_path / "12.tif").frames
    assert float(np.abs(a - b).max()) < 1 / 255


def test_a_16_bit_png_folder_is_divided_by_one_depth_for_every_frame(tmp_path):
    """One dark frame (max 100) beside bright ones (max 4000) keeps its relative brightness."""
    folder = tmp_path / "frames"
    folder.mkdir()
    dark = np.full((8, 8), 100, np.uint16)
    bright = np.full((8, 8), 4000, np.uint16)
    for i, image in enumerate([dark, bright]):
        Image.fromarray(image).save(folder / f"f{i}.png")
    stack = read_stack(folder)
    np.testing.assert_allclose(stack.frames[:, 0, 0], [100 / 4095, 4000 / 4095], rtol=1e-6)
    assert stack.metadata["intensity_scaling"]["significant_bits"] == 12


def test_a_16_bit_paired_clip_is_divided_by_one_depth_for_every_frame(tmp_path):
    """Frames of one clip (ids clip_f0, clip_f1) share the clip's divisor; clips and images whose
    id has no frame number keep their own (tests/core/test_intensity_rules.py)."""
    for sub in ("IMG", "MASK"):
        (tmp_path / sub).mkdir()
    for i, value in enumerate([100, 4000]):
        image = np.full((8, 8), value, np.uint16)
        Image.fromarray(image).save(tmp_path / "IMG" / f"clip_f{i}.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "MASK" / f"clip_f{i}.png")
    data = read_paired_dataset(tmp_path)
    assert [float(im[0, 0]) for im in data.images] == pytest.approx([100 / 4095, 4000 / 4095])
    assert data.scaling["uint16_clips"]["clip"]["divisor"] == 4095.0


@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_streaming_predict_reads_a_12_bit_tiff_as_the_reader_does(tmp_path, rng, byteorder):
    data = rng.integers(0, 4096, (5, 12, 16), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "s.tif", data, byteorder=byteorder, photometric="minisblack")
    frames, _ = open_frames(tmp_path / "s.tif")
    assert isinstance(frames, TiffFrames) and frames.dtype == np.float32
    expected = read_stack(tmp_path / "s.tif").frames
    np.testing.assert_allclose(frames[0:5], expected, atol=1e-7)
    np.testing.assert_allclose(frames[3], expected[3], atol=1e-7)
    np.testing.assert_allclose(frames[np.array([4, 1])], expected[[4, 1]], atol=1e-7)


def test_ribseg_info_says_how_the_intensities_were_scaled(tmp_path, rng, capsys):
    from napari_ribseg.cli import main

    data = rng.integers(0, 4096, (2, 12, 16), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "s.tif", data, photometric="minisblack")
    assert main(["info", str(tmp_path / "s.tif")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("intensity:"))
    assert line.split(":", 1)[1].strip() == (
        "divided by 4095 (12 significant bits, from the stack maximum)"
    )


def test_12_bit_white_is_zero_frames_read_alike_as_a_stack_and_as_a_folder(tmp_path, rng):
    data = rng.integers(0, 4096, (5, 10, 12), dtype=np.uint16)
    data[0, 0, 0], data[1, 0, 0] = 0, 4095
    tifffile.imwrite(tmp_path / "s.tif", data, photometric="miniswhite")
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(data):
        tifffile.imwrite(folder / f"f{i}.tif", frame, photometric="miniswhite")
    stack = read_stack(tmp_path / "s.tif").frames
    np.testing.assert_allclose(stack, 1 - data / 4095, atol=1e-6)
    # The folder inverted in 16 bits (65535 - v) and read every pixel near white (mean 0.97).
    np.testing.assert_allclose(read_stack(folder).frames, stack, atol=1e-6)


def test_alpha_does_not_decide_the_bit_depth_of_colour_data(tmp_path, rng):
    rgb = rng.integers(0, 4096, (4, 10, 12, 3), dtype=np.uint16)
    rgba = np.concatenate([rgb, np.full((4, 10, 12, 1), 65535, np.uint16)], axis=-1)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    a, b = read_stack(tmp_path / "rgb.tif"), read_stack(tmp_path / "rgba.tif")
    assert b.metadata["intensity_scaling"]["divisor"] == 4095.0
    np.testing.assert_allclose(a.frames, b.frames, atol=1e-6)


def test_the_engine_scales_a_raw_12_bit_array_as_the_reader_does(tmp_path, rng):
    """predict_stack and predict_images on raw uint16 divided by 65535 while the readers divide
    12-bit data by 4095 (the docstring said "exactly as the readers")."""
    import torch

    from napari_ribseg.core.inference import predict_images_sync, predict_stack_sync
    from napari_ribseg.core.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", "tiny", input_size=64, pretrained=False).eval()
    raw = rng.integers(0, 4096, (3, 40, 48), dtype=np.uint16)
    raw[0, 0, 0] = 4095
    tifffile.imwrite(tmp_path / "s.tif", raw, photometric="minisblack")
    frames = read_stack(tmp_path / "s.tif").frames
    kw = {"device": "cpu", "crop_to_region": False, "flip_average": False}
    expected = predict_stack_sync(model, frames, **kw).prob
    np.testing.assert_array_equal(predict_stack_sync(model, raw, **kw).prob, expected)
    images = predict_images_sync(model, [raw[0]], device="cpu", flip_average=False,
                                 crop_to_region=False)  # fmt: skip
    single = predict_stack_sync(model, frames[:1], **kw).prob[0]
    assert np.abs(images[0].astype(int) - single.astype(int)).max() <= 1


def test_a_review_of_a_10_bit_stack_saved_under_the_8_12_16_rule_is_recognised(tmp_path):
    """Read at 10 bits, a stack's review saved when it was read /4095 (2026-12-03 to 12-05) or
    /65535 (before) is bound to those frames' fingerprints: both are aliases."""
    from napari_ribseg.core.project import legacy_fingerprints, stack_fingerprint

    raw = np.random.default_rng(5).integers(0, 1024, (3, 8, 8), dtype=np.uint16)
    raw[0, 0, 0] = 1023
    np.save(tmp_path / "ten.npy", raw)
    stack = read_stack(tmp_path / "ten.npy")
    aliases = legacy_fingerprints(stack.frames, stack.metadata["intensity_scaling"])
    before = [stack_fingerprint(raw.astype(np.float32) / np.float32(d)) for d in (4095, 65535)]
    assert aliases == before
    # A 12-bit stack had one earlier reading only, and 16-bit data none.
    raw[0, 0, 0] = 4095
    np.save(tmp_path / "twelve.npy", raw)
    stack = read_stack(tmp_path / "twelve.npy")
    assert len(legacy_fingerprints(stack.frames, stack.metadata["intensity_scaling"])) == 1
