"""A 16-bit file that declares its bit depth (a PNG's sBIT chunk, a TIFF's MaxSampleValue) is read
at that depth, not at the one guessed from its maximum.

Before: a dark 12-bit frame (brightest pixel 800) was divided by 1023, the 10-bit guess, and read
4 times too bright (0.78 instead of 0.195)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image, PngImagePlugin

from napari_ribseg.core.io import read_stack
from napari_ribseg.core.io.bit_depth import declared_bits
from napari_ribseg.core.io.lazy import TiffFrames, open_frames
from napari_ribseg.core.io.paired import read_paired_dataset


def _dark(top: int = 800) -> np.ndarray:
    image = np.full((8, 10), 100, np.uint16)
    image[0, 0] = top
    return image


def _png(path, image, sbit: int | None) -> None:
    info = PngImagePlugin.PngInfo()
    if sbit is not None:
        info.add(b"sBIT", bytes([sbit]))
    Image.fromarray(image).save(path, pnginfo=info)


def _tiff(path, data, max_sample: int | None) -> None:
    extra = [] if max_sample is None else [(281, "H", 1, max_sample, True)]
    tifffile.imwrite(path, data, photometric="minisblack", extratags=extra)


def test_a_dark_12_bit_png_with_sbit_12_reads_at_12_bits(tmp_path):
    _png(tmp_path / "f.png", _dark(), 12)
    assert declared_bits(tmp_path / "f.png") == (12, "sBIT")
    stack = read_stack(tmp_path / "f.png")
    assert float(stack.frames[0, 0, 0]) == pytest.approx(800 / 4095)  # was 800 / 1023 = 0.78
    scaling = stack.metadata["intensity_scaling"]
    assert (scaling["divisor"], scaling["significant_bits"], scaling["bits_from"]) == (
        4095.0,
        12,
        "sBIT",
    )


@pytest.mark.parametrize("lazy", [False, True])
def test_a_dark_12_bit_tiff_with_max_sample_value_4095_reads_at_12_bits(tmp_path, lazy):
    data = np.stack([_dark(), _dark(300)])
    _tiff(tmp_path / "s.tif", data, 4095)
    stack = read_stack(tmp_path / "s.tif")
    np.testing.assert_allclose(stack.frames, data / 4095, rtol=1e-6)  # was / 1023
    assert stack.metadata["intensity_scaling"]["bits_from"] == "MaxSampleValue"
    # Streaming predict (a lazy TIFF) divides as the reader does.
    frames, _ = open_frames(tmp_path / "s.tif")
    assert isinstance(frames, TiffFrames)
    np.testing.assert_allclose(frames[0:2], stack.frames, atol=1e-7)


def test_files_without_a_declared_depth_keep_the_guess(tmp_path):
    _png(tmp_path / "f.png", _dark(), None)
    _tiff(tmp_path / "s.tif", _dark()[None], None)
    for name in ("f.png", "s.tif"):
        assert declared_bits(tmp_path / name) is None
        scaling = read_stack(tmp_path / name).metadata["intensity_scaling"]
        assert (scaling["divisor"], scaling["bits_from"]) == (1023.0, "stack maximum")


def test_data_above_the_declared_depth_warn_and_keep_the_guess(tmp_path):
    _png(tmp_path / "f.png", _dark(3000), 10)
    with pytest.warns(UserWarning, match=r"f\.png: its sBIT declares 10-bit samples"):
        scaling = read_stack(tmp_path / "f.png").metadata["intensity_scaling"]
    assert (scaling["divisor"], scaling["bits_from"]) == (4095.0, "stack maximum")


def test_a_folder_uses_the_depth_all_frames_declare_and_else_guesses(tmp_path):
    agree, differ = tmp_path / "agree", tmp_path / "differ"
    for folder in (agree, differ):
        folder.mkdir()
    for i in range(2):
        _png(agree / f"f{i}.png", _dark(), 12)
        _png(differ / f"f{i}.png", _dark(), 12 if i == 0 else None)
    scaling = read_stack(agree).metadata["intensity_scaling"]
    assert (scaling["divisor"], scaling["bits_from"]) == (4095.0, "sBIT")
    scaling = read_stack(differ).metadata["intensity_scaling"]
    assert (scaling["divisor"], scaling["bits_from"]) == (1023.0, "stack maximum")
    assert scaling["bits_note"] == (
        "declared bit depths not used, the files do not agree: 12 (sBIT) in 1 file, none in 1 file"
    )


def test_a_paired_clip_uses_the_depth_its_images_declare(tmp_path):
    for sub in ("IMG", "MASK"):
        (tmp_path / sub).mkdir()
    for i in range(2):
        _png(tmp_path / "IMG" / f"clip_f{i}.png", _dark(), 12)
        Image.fromarray(np.zeros((8, 10), np.uint8)).save(tmp_path / "MASK" / f"clip_f{i}.png")
    data = read_paired_dataset(tmp_path)
    assert float(data.images[0][0, 0]) == pytest.approx(800 / 4095)  # was 800 / 1023
    record = data.scaling["uint16_clips"]["clip"]
    assert (record["divisor"], record["bits_from"]) == (4095.0, "sBIT")


def test_ribseg_info_says_the_depth_was_declared(tmp_path, capsys):
    from napari_ribseg.cli import main

    _png(tmp_path / "f.png", _dark(), 12)
    assert main(["info", str(tmp_path / "f.png")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("intensity:"))
    assert line.split(":", 1)[1].strip() == (
        "divided by 4095 (12 significant bits, declared by its sBIT)"
    )
