"""One uint16 rule everywhere: 16-bit colour PNGs decoded exactly, paired datasets divided per clip,
the engine (inference, region, training set, adaptation) scaling raw uint16 as the readers do, and
WhiteIsZero recorded and inverted after scaling.

Before: Pillow kept the high byte of 16-bit colour PNGs (a mid-grey 12-bit frame read 0.031 instead
of 0.509); a paired dataset pooled one divisor over every clip (an 8-bit-in-16 clip next to a 12-bit
one read 0.032 instead of 0.510); raw uint16 reached the region detector divided by 65535 (a 12-bit
fan was not found: the whole frame) and the training set and adaptation unscaled or by 65535.
"""

from __future__ import annotations

import json
import struct
import zlib

import cv2
import numpy as np
import pytest
import tifffile
from test_region import _fan_cine

from napari_ribseg.core.errors import StackReadError
from napari_ribseg.core.io import read_stack, write_paired_dataset
from napari_ribseg.core.io.intensity import describe_scaling
from napari_ribseg.core.io.paired import read_paired_dataset

# --------------------------------------------------------------------------- 16-bit colour PNG


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _rows(image: np.ndarray) -> bytes:
    """PNG scanlines (filter 0) of an (H, W, samples) uint16 image, big-endian."""
    data = image.astype(">u2").reshape(image.shape[0], -1)
    return b"".join(b"\x00" + row.tobytes() for row in data)


def _png16(path, frames: list[np.ndarray], colour_type: int) -> None:
    """A 16-bit PNG (one frame) or APNG (several) written by hand: Pillow cannot write either."""
    h, w = frames[0].shape[:2]
    out = b"\x89PNG\r\n\x1a\n" + _chunk(
        b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    )
    if len(frames) > 1:
        out += _chunk(b"acTL", struct.pack(">II", len(frames), 0))
    seq = 0
    for i, frame in enumerate(frames):
        if len(frames) > 1:
            out += _chunk(b"fcTL", struct.pack(">IIIIIHHBB", seq, w, h, 0, 0, 1, 10, 0, 0))
            seq += 1
        pixels = zlib.compress(_rows(frame))
        if i == 0:
            out += _chunk(b"IDAT", pixels)
        else:
            out += _chunk(b"fdAT", struct.pack(">I", seq) + pixels)
            seq += 1
    path.write_bytes(out + _chunk(b"IEND", b""))


def _grey12() -> np.ndarray:
    grey = np.full((16, 20), 2084, np.uint16)
    grey[0, 0] = 4095
    return grey


def test_a_16_bit_rgb_png_of_a_12_bit_grey_frame_reads_its_own_values(tmp_path):
    grey = _grey12()
    cv2.imwrite(str(tmp_path / "rgb48.png"), np.stack([grey] * 3, axis=-1))
    stack = read_stack(tmp_path / "rgb48.png")
    # Pillow kept the high byte: 2084 >> 8 = 8, /255 -> mean 0.031.
    assert float(stack.frames.mean()) == pytest.approx(float((grey / 4095).mean()), abs=1e-6)
    assert float(stack.frames[0, 1, 1]) == pytest.approx(2084 / 4095, abs=1e-6)  # 0.509
    assert stack.original_dtype == "uint16"
    assert stack.metadata["intensity_scaling"]["divisor"] == 4095.0


def test_16_bit_colour_pngs_keep_red_and_blue_apart(tmp_path):
    """cv2 decodes BGR; luma weighs red 0.299 and blue 0.114, so a swap shows."""
    rgb = np.zeros((8, 10, 3), np.uint16)
    rgb[..., 0] = 4000  # red only
    rgb[0, 0, 2] = 4095  # one blue pixel sets the depth
    _png16(tmp_path / "red.png", [rgb], colour_type=2)
    frames = read_stack(tmp_path / "red.png").frames
    assert float(frames[0, 5, 5]) == pytest.approx(0.299 * 4000 / 4095, abs=1e-6)


@pytest.mark.parametrize("colour_type", [4, 6])  # grey + alpha, RGBA
def test_16_bit_pngs_with_alpha_read_their_grey_exactly(tmp_path, colour_type):
    grey = _grey12()
    alpha = np.full_like(grey, 65535)
    planes = [grey, alpha] if colour_type == 4 else [grey, grey, grey, alpha]
    _png16(tmp_path / "a.png", [np.stack(planes, axis=-1)], colour_type=colour_type)
    frames = read_stack(tmp_path / "a.png").frames
    assert float(frames[0, 1, 1]) == pytest.approx(2084 / 4095, abs=1e-6)


def test_a_folder_of_16_bit_rgb_pngs_reads_like_its_grey_tiffs(tmp_path):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 4096, (3, 12, 14), dtype=np.uint16)
    for sub in ("rgb", "grey"):
        (tmp_path / sub).mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(tmp_path / "rgb" / f"f{i}.png"), np.stack([frame] * 3, axis=-1))
        tifffile.imwrite(tmp_path / "grey" / f"f{i}.tif", frame, photometric="minisblack")
    rgb, grey = read_stack(tmp_path / "rgb").frames, read_stack(tmp_path / "grey").frames
    np.testing.assert_allclose(rgb, grey, atol=1e-6)


def test_a_16_bit_colour_animation_is_refused_not_misread(tmp_path):
    frame = np.stack([_grey12()] * 3, axis=-1)
    _png16(tmp_path / "cine.png", [frame, frame], colour_type=2)
    with pytest.raises(StackReadError, match=r"cine\.png.*16-bit colour animation"):
        read_stack(tmp_path / "cine.png")


def test_a_16_bit_grey_animation_still_reads(tmp_path):
    grey = _grey12()[..., None]
    _png16(tmp_path / "cine.png", [grey, grey], colour_type=0)
    stack = read_stack(tmp_path / "cine.png")
    assert stack.n_frames == 2
    assert float(stack.frames[1, 1, 1]) == pytest.approx(2084 / 4095, abs=1e-6)


# --------------------------------------------------------------------------- paired: one divisor a clip


def _clips_dataset(tmp_path):
    """Clip c1 is 12-bit (a dark frame, max 100, and a bright one); c2 is 8-bit data in 16 bits."""
    dark = np.full((8, 8), 100, np.uint16)
    bright = np.full((8, 8), 4000, np.uint16)
    eight = np.full((8, 8), 130, np.uint16)
    masks = [np.zeros((8, 8), np.uint8)] * 3
    masks[0] = np.eye(8, dtype=np.uint8)
    ids = ["c1_f0", "c1_f1", "c2_f0"]
    return write_paired_dataset(tmp_path / "data", [dark, bright, eight], masks, ids)


def test_paired_frames_of_a_clip_share_its_divisor_and_clips_keep_their_own(tmp_path):
    root = _clips_dataset(tmp_path)
    with pytest.warns(UserWarning, match="bit depths differ"):
        data = read_paired_dataset(root)
    values = [float(im[0, 0]) for im in data.images]
    # Pooled over the dataset, c2 read 130 / 4095 = 0.032; per image, c1's dark frame 100 / 255.
    assert values == pytest.approx([100 / 4095, 4000 / 4095, 130 / 255])
    clips = data.scaling["uint16_clips"]
    assert clips["c1"]["divisor"] == 4095.0 and clips["c1"]["significant_bits"] == 12
    assert clips["c2"]["divisor"] == 255.0 and clips["c2"]["significant_bits"] == 8
    assert describe_scaling(data.scaling) == (
        "16-bit images divided by their clip's bit depth: 4095 (12 significant bits, from the "
        "clip maximum) for 1 clip (c1), 255 (8 significant bits, from the clip maximum) for 1 "
        "clip (c2); bit depths differ between clips"
    )


def test_an_id_without_a_frame_number_is_its_own_clip(tmp_path):
    images = [np.full((8, 8), 100, np.uint16), np.full((8, 8), 4000, np.uint16)]
    masks = [np.zeros((8, 8), np.uint8)] * 2
    root = write_paired_dataset(tmp_path / "d", images, masks, ["alpha", "beta"])
    with pytest.warns(UserWarning, match="bit depths differ"):
        data = read_paired_dataset(root)
    assert [float(im[0, 0]) for im in data.images] == pytest.approx([100 / 255, 4000 / 4095])


def test_an_8_bit_paired_dataset_records_the_dtype_rule(tmp_path):
    images = [np.full((8, 8), 51, np.uint8)] * 2
    root = write_paired_dataset(
        tmp_path / "d", images, [np.zeros((8, 8), np.uint8)] * 2, ["c_f0", "c_f1"]
    )
    data = read_paired_dataset(root)
    assert data.scaling == {"method": "divide-by-dtype"}
    assert float(data.images[0][0, 0]) == pytest.approx(0.2)


@pytest.fixture
def tiny_checkpoint(tmp_path):
    import torch

    from napari_ribseg.core.models import ModelCard, build_model, save_checkpoint

    torch.manual_seed(0)
    model = build_model("unet", "tiny", input_size=64, pretrained=False)
    card = ModelCard(name="tiny", variant="unet", preset="tiny", widths=list(model.widths))
    return save_checkpoint(model, card, tmp_path / "models" / "tiny.safetensors")


def test_ribseg_evaluate_prints_and_writes_the_intensity_rule(tmp_path, tiny_checkpoint, capsys):
    from napari_ribseg.cli import main

    root = _clips_dataset(tmp_path)
    argv = ["evaluate", str(root), "--model", str(tiny_checkpoint), "--device", "cpu"]
    out_json = tmp_path / "scores.json"
    with pytest.warns(UserWarning, match="bit depths differ"):
        assert main([*argv, "--json-out", str(out_json)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("intensity:"))
    expected = (
        "16-bit images divided by their clip's bit depth: 4095 (12 significant bits, from the "
        "clip maximum) for 1 clip (c1), 255 (8 significant bits, from the clip maximum) for 1 "
        "clip (c2); bit depths differ between clips"
    )
    assert line == f"intensity: {expected}"
    written = json.loads(out_json.read_text())
    assert written["intensity"] == expected
    assert written["intensity_scaling"]["uint16_clips"]["c2"]["divisor"] == 255.0


def test_ribseg_finetune_prints_the_intensity_rule(tmp_path, tiny_checkpoint, capsys):
    from napari_ribseg.cli import main

    rng = np.random.default_rng(0)
    images, masks, ids = [], [], []
    for c in range(3):
        for f in range(2):
            images.append(rng.integers(0, 4096, (32, 32), dtype=np.uint16))
            mask = np.zeros((32, 32), np.uint8)
            mask[10:14, 4:28] = 1
            masks.append(mask)
            ids.append(f"c{c}_f{f}")
    root = write_paired_dataset(tmp_path / "paired", images, masks, ids)
    code = main(
        ["finetune", str(root), "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o.safetensors"),
         "--epochs", "1", "--batch-size", "2", "--device", "cpu", "--val-share", "0.34"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("intensity:"))
    assert line == (
        "intensity: 16-bit images divided by their clip's bit depth: 4095 (12 significant bits, "
        "from the clip maximum) for 3 clips (c0, c1, c2)"
    )


# --------------------------------------------------------------------------- the engine


@pytest.mark.parametrize(
    ("dtype", "top", "divisor"),
    [(np.uint16, 3260, 4095.0), (np.uint16, 200, 255.0), (np.uint16, 40000, 65535.0),
     (np.uint8, 200, 255.0), (bool, 1, 1.0)],
)  # fmt: skip
def test_the_one_helper_divides_as_the_readers_do(dtype, top, divisor):
    from napari_ribseg.core.io.intensity import uint16_divisor, unit_float

    array = np.zeros((2, 4, 4), dtype)
    array[1, 2, 2] = top
    if dtype is np.uint16:
        assert uint16_divisor(array) == divisor
    out = unit_float(array)
    assert out.dtype == np.float32 and float(out.max()) == pytest.approx(top / divisor)
    with pytest.raises(ValueError, match="int32"):
        unit_float(array.astype(np.int32))


def test_a_raw_12_bit_fan_is_found_as_its_read_copy_is():
    from napari_ribseg.core.region import detect_imaged_region

    frames, truth = _fan_cine(12)
    raw = np.round(frames * 4095).astype(np.uint16)
    read = detect_imaged_region(raw / np.float32(4095))
    found = detect_imaged_region(raw)
    # Divided by 65535 the fan was too dark to be found: the whole frame (100%, fan 63%).
    assert found.kind == read.kind == "fan"
    assert float(found.mask.mean()) == pytest.approx(float(truth.mean()), abs=0.01)
    np.testing.assert_array_equal(found.mask, read.mask)


@pytest.mark.parametrize("dtype", [np.int16, np.int32])
def test_a_raw_signed_fan_is_found_as_its_read_copy_is(dtype):
    """detect_imaged_region(int16 frames) raised ValueError ('cannot be scaled to [0, 1] here')
    since the one helper; until then it divided by the dtype's maximum. Min-max scaled over the
    stack, as read_stack scales an int16 file, the fan is found as on the read copy."""
    from napari_ribseg.core.region import detect_imaged_region

    frames, truth = _fan_cine(12)
    raw = np.round(frames * 4095).astype(dtype)
    read = detect_imaged_region((raw - raw.min()) / np.float32(raw.max() - raw.min()))
    found = detect_imaged_region(raw)
    assert found.kind == read.kind == "fan"
    np.testing.assert_array_equal(found.mask, read.mask)


def test_predict_stack_on_a_raw_12_bit_fan_crops_to_the_fan():
    import torch

    from napari_ribseg.core.inference import predict_stack_sync
    from napari_ribseg.core.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", "tiny", input_size=64, pretrained=False).eval()
    frames, truth = _fan_cine(4)
    raw = np.round(frames * 4095).astype(np.uint16)
    kw = {"device": "cpu", "crop_to_region": True, "flip_average": False}
    expected = predict_stack_sync(model, raw.astype(np.float32) / np.float32(4095), **kw)
    got = predict_stack_sync(model, raw, **kw)
    assert got.region is not None and got.region.kind == "fan"
    np.testing.assert_array_equal(got.region.mask, expected.region.mask)
    np.testing.assert_array_equal(got.prob, expected.prob)


def test_predict_images_divides_a_clips_raw_images_by_one_divisor():
    import torch

    from napari_ribseg.core.inference import predict_images_sync
    from napari_ribseg.core.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", "tiny", input_size=64, pretrained=False).eval()
    rng = np.random.default_rng(2)
    dark = rng.integers(0, 101, (40, 48), dtype=np.uint16)  # alone: 8 bits, /255
    bright = rng.integers(0, 4001, (40, 48), dtype=np.uint16)
    kw = {"device": "cpu", "crop_to_region": False, "flip_average": False}
    for clips in (["c", "c"], None):
        scaled = [im.astype(np.float32) / np.float32(4095) for im in (dark, bright)]
        expected = predict_images_sync(model, scaled, clips=clips, **kw)
        got = predict_images_sync(model, [dark, bright], clips=clips, **kw)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])


def test_a_training_set_from_a_raw_12_bit_stack_is_scaled_as_read():
    from napari_ribseg.core.stack import FrameStatus
    from napari_ribseg.core.training.data import TrainingSet

    rng = np.random.default_rng(3)
    raw = rng.integers(0, 3000, (3, 16, 16), dtype=np.uint16)
    raw[2, 0, 0] = 3260  # the stack's maximum lies in a frame that is not curated
    statuses = np.array([int(FrameStatus.CURATED)] * 2 + [0])
    labels = np.zeros(raw.shape, np.uint8)
    data = TrainingSet.from_stack(raw, labels, statuses)
    np.testing.assert_allclose(data.images[0], raw[0] / 4095, atol=1e-6)
    assert max(float(im.max()) for im in data.images) <= 3000 / 4095 + 1e-6


def test_adaptation_sees_a_raw_12_bit_stack_as_read(tmp_path, monkeypatch):
    """The adaptation's raw view of a 12-bit stack of max 3260: 0.05 by 65535, 0.80 as read."""
    import importlib

    from test_training_support import tiny_base

    # The package exports the function adapt under the module's name.
    adapt_module = importlib.import_module("napari_ribseg.core.training.adapt")

    seen = {}

    class Seen(Exception):
        pass

    def record(views):
        seen["raw"] = views
        raise Seen

    monkeypatch.setattr(adapt_module, "stretch", record)
    base = tiny_base(tmp_path / "base.safetensors")
    raw = np.zeros((12, 64, 64), np.uint16)
    raw[:, 20:26, 8:56] = 3260
    with pytest.raises(Seen):
        adapt_module.adapt_sync(base, raw, adapt_module.AdaptConfig(steps=1, device="cpu"))
    assert float(seen["raw"].max()) == pytest.approx(3260 / 4095, abs=1e-3)
    # Frames given one at a time (a generator) were consumed by the divisor's pass and the
    # adaptation then saw none: TrainingError 'too short' (0 frames).
    seen.clear()
    with pytest.raises(Seen):
        adapt_module.adapt_sync(
            base, (f for f in raw), adapt_module.AdaptConfig(steps=1, device="cpu")
        )
    assert float(seen["raw"].max()) == pytest.approx(3260 / 4095, abs=1e-3)


# --------------------------------------------------------------------------- WhiteIsZero


def test_a_white_is_zero_folder_records_the_inversion(tmp_path, capsys):
    from napari_ribseg.cli import main

    rng = np.random.default_rng(4)
    data = rng.integers(0, 4096, (3, 10, 12), dtype=np.uint16)
    data[0, 0, 0] = 4095
    for i, frame in enumerate(data):
        tifffile.imwrite(tmp_path / f"f{i}.tif", frame, photometric="miniswhite")
    stack = read_stack(tmp_path)
    assert stack.metadata["intensity_scaling"]["inverted"] is True
    assert main(["info", str(tmp_path)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("intensity:"))
    assert line.split(":", 1)[1].strip() == (
        "divided by 4095 (12 significant bits, from the stack maximum); inverted (low values "
        "were white)"
    )


def test_a_nearly_white_12_bit_white_is_zero_frame_stays_nearly_white_in_a_folder(tmp_path):
    """Inverted in its own bit depth (8: its max is 40), the frame read 255 - v over 4095: dark."""
    white = np.full((10, 12), 40, np.uint16)  # low values are white
    other = np.full((10, 12), 4095, np.uint16)
    for i, frame in enumerate([white, other]):
        tifffile.imwrite(tmp_path / f"f{i}.tif", frame, photometric="miniswhite")
    frames = read_stack(tmp_path).frames
    assert float(frames[0, 0, 0]) == pytest.approx(1 - 40 / 4095, abs=1e-6)
    assert float(frames[1, 0, 0]) == pytest.approx(0.0, abs=1e-6)
