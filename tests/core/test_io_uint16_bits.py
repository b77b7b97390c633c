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
    ("maximum", "bits"), [(0, 8), (255, 8), (256, 12), (4095, 12), (4096, 16), (65535, 16)]
)
def test_uint16_bits_is_the_fewest_of_8_12_16_that_hold_the_maximum(maximum, bits):
    assert uint16_bits(maximum) == bits


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


def test_a_16_bit_paired_dataset_is_divided_by_one_depth_for_every_image(tmp_path):
    for sub in ("IMG", "MASK"):
        (tmp_path / sub).mkdir()
    for i, value in enumerate([100, 4000]):
        Image.fromarray(np.full((8, 8), value, np.uint16)).save(tmp_path / "IMG" / f"{i}.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "MASK" / f"{i}.png")
    data = read_paired_dataset(tmp_path)
    assert [float(im[0, 0]) for im in data.images] == pytest.approx([100 / 4095, 4000 / 4095])


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
