"""DICOM (grey, RGB, YBR_FULL, spacing and frame-rate sources, failures) and video files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGLSLossless,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

from napari_ribseg.core.errors import StackReadError, UnsupportedFormatError
from napari_ribseg.core.io import find_reader, read_stack


def make_dicom(
    path: Path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    *,
    multi_frame: bool = True,
    syntax=ExplicitVRLittleEndian,
    **elements,
) -> Path:
    """A minimal US DICOM file; ``pixels`` is (N, H, W[, 3]) or (H, W[, 3])."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    colour = photometric in ("RGB", "YBR_FULL", "YBR_FULL_422")
    shape = pixels.shape[:-1] if colour else pixels.shape
    if multi_frame:
        ds.NumberOfFrames = shape[0]
    ds.Rows, ds.Columns = shape[-2], shape[-1]
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    if syntax.is_compressed:
        ds.PixelData = encapsulate([b"\xff\xd8 not really jpeg-ls \xff\xd9"])
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = pixels.tobytes()
    for key, value in elements.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def ybr_full(rgb: np.ndarray) -> np.ndarray:
    """RGB -> YCbCr (DICOM YBR_FULL, BT.601 full range), rounded to uint8."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    return np.clip(np.round(np.stack([y, cb, cr], axis=-1)), 0, 255).astype(np.uint8)


def test_dicom_multiframe_grey_with_pixel_spacing_and_cine_rate(tmp_path, rng):
    pixels = rng.integers(0, 256, size=(3, 16, 20), dtype=np.uint8)
    path = make_dicom(tmp_path / "cine.dcm", pixels, PixelSpacing=[0.12, 0.15], CineRate=30)
    stack = read_stack(path)
    np.testing.assert_array_equal(stack.frames, pixels / np.float32(255))
    assert stack.spacing_mm == pytest.approx((0.12, 0.15))
    assert stack.frame_rate == pytest.approx(30.0)
    assert stack.original_dtype == "uint8"
    assert stack.metadata["spacing_source"] == "PixelSpacing"


def test_dicom_single_frame_uint16_uses_bits_stored(tmp_path):
    pixels = np.array([[0, 4095], [2048, 100]], dtype=np.uint16)
    path = make_dicom(tmp_path / "one.dcm", pixels, multi_frame=False, BitsStored=12, HighBit=11)
    frames = read_stack(path).frames
    assert frames.shape == (1, 2, 2)
    np.testing.assert_allclose(frames[0], pixels / 4095, rtol=1e-6)


def test_ribseg_info_on_a_12_bit_dicom_says_bits_stored(tmp_path, capsys):
    from napari_ribseg.cli import main

    pixels = np.array([[[0, 800], [2048, 100]]], dtype=np.uint16)
    make_dicom(tmp_path / "one.dcm", pixels, BitsStored=12, HighBit=11)
    assert main(["info", str(tmp_path / "one.dcm")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("intensity:"))
    assert line.split(":", 1)[1].strip() == (
        "divided by 4095 (12 significant bits, declared by its BitsStored)"
    )


def test_dicom_rgb_multiframe_becomes_luma(tmp_path):
    rgb = np.zeros((2, 8, 8, 3), np.uint8)
    rgb[0, ..., 0] = 255
    rgb[1, ..., 2] = 255
    path = make_dicom(tmp_path / "rgb.dcm", rgb, "RGB", FrameTime=40.0)
    stack = read_stack(path)
    assert stack.frames.shape == (2, 8, 8)
    np.testing.assert_allclose(stack.frames[0], 0.299, atol=1e-6)
    np.testing.assert_allclose(stack.frames[1], 0.114, atol=1e-6)
    assert stack.frame_rate == pytest.approx(25.0)
    assert stack.metadata["frame_rate_source"] == "FrameTime"


def test_dicom_ybr_full_converted_like_rgb(tmp_path, rng):
    rgb = rng.integers(0, 256, size=(2, 8, 8, 3), dtype=np.uint8)
    path = make_dicom(
        tmp_path / "ybr.dcm", ybr_full(rgb), "YBR_FULL", RecommendedDisplayFrameRate=15
    )
    stack = read_stack(path)
    expected = (rgb.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])) / 255
    assert stack.frames.shape == (2, 8, 8)
    # YCbCr rounding to 8 bits and back costs at most a couple of grey levels.
    assert np.abs(stack.frames - expected).max() < 2.5 / 255
    assert stack.frame_rate == pytest.approx(15.0)
    assert stack.metadata["photometric_interpretation"] == "YBR_FULL"


def test_dicom_ultrasound_region_spacing_in_cm(tmp_path):
    doppler = Dataset()
    doppler.RegionSpatialFormat = 3
    doppler.PhysicalUnitsXDirection, doppler.PhysicalUnitsYDirection = 4, 7
    doppler.PhysicalDeltaX, doppler.PhysicalDeltaY = 0.5, 0.5
    bmode = Dataset()
    bmode.RegionSpatialFormat = 1
    bmode.PhysicalUnitsXDirection, bmode.PhysicalUnitsYDirection = 3, 3
    bmode.PhysicalDeltaX, bmode.PhysicalDeltaY = 0.015, 0.02
    path = make_dicom(
        tmp_path / "us.dcm",
        np.zeros((2, 8, 8), np.uint8),
        SequenceOfUltrasoundRegions=[doppler, bmode],
    )
    stack = read_stack(path)
    assert stack.spacing_mm == pytest.approx((0.2, 0.15))
    assert stack.metadata["spacing_source"] == "SequenceOfUltrasoundRegions"
    assert stack.frame_rate is None


def test_dicom_without_extension_is_found_by_magic(tmp_path):
    path = make_dicom(tmp_path / "IM0001", np.full((2, 4, 4), 255, np.uint8))
    assert find_reader(path).name == "dicom"
    assert read_stack(path).frames.min() == 1.0


def test_dicom_monochrome1_is_inverted(tmp_path):
    path = make_dicom(tmp_path / "m1.dcm", np.array([[[0, 255]]], np.uint8), "MONOCHROME1")
    stack = read_stack(path)
    assert stack.frames[0, 0].tolist() == [1.0, 0.0]
    # Inverted after scaling, in the output: the record names the real divisor.
    assert stack.metadata["intensity_scaling"] == {
        "method": "divide",
        "divisor": 255.0,
        "inverted": True,
    }


def test_dicom_named_by_its_uid_or_img_is_found_by_magic(tmp_path):
    """PACS and storescp name files by their SOP Instance UID: pathlib sees a suffix."""
    pixels = np.full((2, 4, 4), 255, np.uint8)
    for name in ("1.2.840.113619.2.55.3.604688119.971.1234567890.123", "US.000001.IMG"):
        path = make_dicom(tmp_path / name, pixels)
        assert find_reader(path).name == "dicom", name
        assert read_stack(path).frames.min() == 1.0
    # A file of another format's extension is never sniffed as DICOM, nor a non-DICOM file.
    (tmp_path / "notes.1").write_bytes(b"\x00" * 200)
    assert find_reader(tmp_path / "notes.1") is None


def test_dicom_frame_rate_prefers_acquisition_timing(tmp_path):
    path = make_dicom(
        tmp_path / "r.dcm",
        np.zeros((2, 4, 4), np.uint8),
        FrameTime=40.0,
        RecommendedDisplayFrameRate=10,
    )
    stack = read_stack(path)
    assert stack.frame_rate == pytest.approx(25.0)
    assert stack.metadata["frame_rate_source"] == "FrameTime"


def test_dicom_compressed_without_decoder_names_package(tmp_path):
    path = make_dicom(tmp_path / "jls.dcm", np.zeros((1, 8, 8), np.uint8), syntax=JPEGLSLossless)
    with pytest.raises(UnsupportedFormatError, match=r"jls\.dcm: .*JPEG-LS.*pip install pylibjpeg"):
        read_stack(path)


def test_dicom_zero_frames_truncated_and_corrupt(tmp_path):
    path = make_dicom(tmp_path / "zero.dcm", np.zeros((1, 8, 8), np.uint8))
    from pydicom import dcmread

    ds = dcmread(path)
    ds.NumberOfFrames = 0
    ds.save_as(path)
    with pytest.raises(StackReadError, match=r"zero\.dcm: .*zero frames"):
        read_stack(path)
    cut = make_dicom(tmp_path / "cut.dcm", np.zeros((4, 16, 16), np.uint8))
    cut.write_bytes(cut.read_bytes()[:-600])
    with pytest.raises(StackReadError, match=r"cut\.dcm"):
        read_stack(cut)
    (tmp_path / "junk.dcm").write_bytes(b"\x00" * 64)
    with pytest.raises(StackReadError, match=r"junk\.dcm"):
        read_stack(tmp_path / "junk.dcm")


def test_dicom_not_changed_by_reading(tmp_path, rng):
    path = make_dicom(tmp_path / "c.dcm", rng.integers(0, 256, (2, 8, 8), dtype=np.uint8))
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    read_stack(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


# --- video ------------------------------------------------------------------------------------


def _clip() -> np.ndarray:
    frames = np.zeros((6, 64, 64, 3), np.uint8)
    for i in range(6):
        frames[i, :, :32] = 40 * i  # a left half that brightens frame by frame
        frames[i, :, 32:, 1] = 200  # a green right half: luma 0.587 * 200
    return frames


@pytest.mark.parametrize(("name", "fps"), [("clip.mp4", 12.5), ("clip.avi", 10.0)])
def test_video_roundtrip_with_fps(tmp_path, name, fps):
    clip = _clip()
    path = tmp_path / name
    iio.imwrite(path, clip, fps=fps, plugin="FFMPEG")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    stack = read_stack(path)
    assert stack.frames.shape == (6, 64, 64)
    assert stack.frame_rate == pytest.approx(fps)
    assert stack.original_dtype == "uint8"
    expected = (clip.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])) / 255
    # Lossy codec: compare the mean error and the per-frame brightness of the left half.
    assert np.abs(stack.frames - expected).mean() < 0.03
    left = stack.frames[:, 8:56, 4:28].mean(axis=(1, 2))
    np.testing.assert_allclose(left, [40 * i / 255 for i in range(6)], atol=0.03)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_corrupt_video_names_file(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    with pytest.raises(StackReadError, match=r"broken\.mp4"):
        read_stack(tmp_path / "broken.mp4")


def test_dicom_without_preamble_or_file_meta(tmp_path):
    from pydicom import dcmwrite

    path = make_dicom(tmp_path / "full.dcm", np.full((2, 4, 4), 51, np.uint8))
    from pydicom import dcmread

    ds = dcmread(path)
    del ds.file_meta
    ds.preamble = None
    bare = tmp_path / "bare.dcm"
    dcmwrite(bare, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert bare.read_bytes()[128:132] != b"DICM"
    np.testing.assert_allclose(read_stack(bare).frames, 0.2, atol=1e-6)


def test_dicom_palette_colour_goes_through_the_palette(tmp_path):
    indices = np.array([[[0, 1], [2, 0]]], np.uint8)
    lut = {
        "Red": [0, 65535, 0],
        "Green": [0, 0, 0],
        "Blue": [0, 0, 65535],
    }
    elements = {}
    for colour, values in lut.items():
        elements[f"{colour}PaletteColorLookupTableDescriptor"] = [3, 0, 16]
        elements[f"{colour}PaletteColorLookupTableData"] = np.array(values, "<u2").tobytes()
    path = make_dicom(tmp_path / "pal.dcm", indices, "PALETTE COLOR", **elements)
    frames = read_stack(path).frames
    np.testing.assert_allclose(frames[0], [[0.0, 0.299], [0.114, 0.0]], atol=1e-5)
