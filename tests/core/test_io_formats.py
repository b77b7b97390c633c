"""Reading TIFF, frame folders, NumPy and MATLAB files through the one registry."""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import tifffile
from PIL import Image

from napari_ribseg.core.errors import StackReadError, UnsupportedFormatError
from napari_ribseg.core.io import (
    LUMA_601,
    find_reader,
    intensity,
    natural_key,
    read_stack,
    write_stack_tiff,
)


def digest(path: Path) -> str:
    if path.is_dir():
        return "".join(digest(p) for p in sorted(path.iterdir()))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def cine(rng) -> np.ndarray:
    return rng.integers(0, 256, size=(4, 24, 32), dtype=np.uint8)


# --- TIFF -------------------------------------------------------------------------------------


def test_tiff_uint8_roundtrip_with_spacing_and_rate(tmp_path, cine):
    path = write_stack_tiff(tmp_path / "cine.tif", cine, spacing_mm=(0.1, 0.25), frame_rate=20.0)
    stack = read_stack(path)
    assert stack.frames.dtype == np.float32
    assert stack.frames.shape == (4, 24, 32)
    np.testing.assert_array_equal(stack.frames, cine.astype(np.float32) / 255)
    assert stack.spacing_mm == pytest.approx((0.1, 0.25))
    assert stack.frame_rate == pytest.approx(20.0)
    assert stack.original_dtype == "uint8"
    assert stack.source == path
    assert stack.metadata["reader"] == "tiff"
    assert stack.metadata["source_memory_mapped"] is True


def test_tiff_uint16_divides_by_65535(tmp_path):
    data = np.array([[[0, 65535], [32768, 1000]]], dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tiff", data, photometric="minisblack")
    frames = read_stack(tmp_path / "a.tiff").frames
    np.testing.assert_allclose(frames[0], [[0, 1], [32768 / 65535, 1000 / 65535]], rtol=1e-6)


def test_tiff_float_in_unit_range_stays_memory_mapped(tmp_path, rng):
    data = rng.random((3, 16, 16), dtype=np.float32)
    write_stack_tiff(tmp_path / "f.tif", data)
    stack = read_stack(tmp_path / "f.tif")
    assert isinstance(stack.frames, np.memmap)
    assert not stack.frames.flags.writeable
    np.testing.assert_array_equal(stack.frames, data)
    assert stack.metadata["intensity_scaling"] == {"method": "none"}


def test_tiff_float_outside_unit_range_is_minmax_scaled_globally(tmp_path):
    data = np.stack([np.full((8, 8), -2.0), np.full((8, 8), 2.0), np.full((8, 8), 0.0)])
    data = data.astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", data, photometric="minisblack")
    stack = read_stack(tmp_path / "f.tif")
    assert stack.frames[:, 0, 0].tolist() == [0.0, 1.0, 0.5]
    assert stack.metadata["intensity_scaling"] == {"method": "minmax", "min": -2.0, "max": 2.0}


def test_chunked_conversion_matches_single_pass(tmp_path, rng, monkeypatch):
    data = (rng.random((7, 8, 8)) * 10 - 3).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", data, photometric="minisblack")
    whole = read_stack(tmp_path / "f.tif").frames
    monkeypatch.setattr(intensity, "_CHUNK_BYTES", 8 * 8 * 4 * 2)  # two frames per chunk
    chunked = read_stack(tmp_path / "f.tif").frames
    np.testing.assert_array_equal(whole, chunked)
    expected = (data - data.min()) / (data.max() - data.min())
    np.testing.assert_allclose(chunked, expected, atol=1e-6)


def test_tiff_nan_names_file_and_frame(tmp_path):
    data = np.zeros((3, 8, 8), dtype=np.float32)
    data[2, 4, 4] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", data, photometric="minisblack")
    with pytest.raises(StackReadError, match=r"nan\.tif: frame 2 contains NaN"):
        read_stack(tmp_path / "nan.tif")


def test_tiff_rgb_becomes_bt601_luma(tmp_path):
    rgb = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    rgb[0, ..., 0] = 255  # red
    rgb[1, ..., 1] = 255  # green
    rgb[1, :4, :, 2] = 255  # blue on top of green
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    frames = read_stack(tmp_path / "rgb.tif").frames
    assert frames.shape == (2, 8, 8)
    assert frames[0, 0, 0] == pytest.approx(0.299, abs=1e-6)
    assert frames[1, 7, 0] == pytest.approx(0.587, abs=1e-6)
    assert frames[1, 0, 0] == pytest.approx(0.701, abs=1e-6)
    assert LUMA_601.tolist() == pytest.approx([0.299, 0.587, 0.114])


def test_tiff_rgba_ignores_alpha(tmp_path):
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 2] = 255
    rgba[..., 3] = 17
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    frames = read_stack(tmp_path / "rgba.tif").frames
    assert frames.shape == (1, 8, 8)
    np.testing.assert_allclose(frames, 0.114, atol=1e-6)


def test_ome_tiff_spacing_and_time_increment(tmp_path, cine):
    path = tmp_path / "cine.ome.tif"
    tifffile.imwrite(
        path,
        cine,
        photometric="minisblack",
        metadata={
            "axes": "TYX",
            "PhysicalSizeX": 150.0,
            "PhysicalSizeY": 200.0,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeYUnit": "µm",
            "TimeIncrement": 0.04,
            "TimeIncrementUnit": "s",
        },
    )
    stack = read_stack(path)
    assert stack.spacing_mm == pytest.approx((0.2, 0.15))
    assert stack.frame_rate == pytest.approx(25.0)
    assert stack.n_frames == 4


def test_compressed_tiff_is_decoded(tmp_path, cine):
    tifffile.imwrite(tmp_path / "z.tif", cine, photometric="minisblack", compression="zlib")
    stack = read_stack(tmp_path / "z.tif")
    np.testing.assert_array_equal(stack.frames, cine / np.float32(255))
    assert stack.metadata["source_memory_mapped"] is False


def test_truncated_tiff_raises_naming_file(tmp_path, cine):
    path = tmp_path / "cut.tif"
    write_stack_tiff(path, cine)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(StackReadError, match=r"cut\.tif.*truncated"):
        read_stack(path)


def test_corrupt_tiff_raises_naming_file(tmp_path):
    (tmp_path / "junk.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(StackReadError, match=r"junk\.tif"):
        read_stack(tmp_path / "junk.tif")


# --- frame folders -----------------------------------------------------------------------------


def test_frame_folder_natural_order_and_formats(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    # Each frame's value is its number, so the order shows in the data.
    for n, ext in [(1, "png"), (2, "bmp"), (10, "png"), (3, "tif")]:
        img = np.full((6, 9), n * 10, dtype=np.uint8)
        if ext == "tif":
            tifffile.imwrite(folder / f"frame{n}.{ext}", img)
        else:
            Image.fromarray(img).save(folder / f"frame{n}.{ext}")
    (folder / "notes.txt").write_text("ignored")
    (folder / ".hidden.png").write_bytes(b"not an image")
    stack = read_stack(folder)
    assert stack.frames.shape == (4, 6, 9)
    assert (stack.frames[:, 0, 0] * 255).round().tolist() == [10, 20, 30, 100]
    assert stack.metadata["files"] == ["frame1.png", "frame2.bmp", "frame3.tif", "frame10.png"]
    assert stack.metadata["reader"] == "frame-folder"


def test_natural_key_sorts_digit_runs_as_numbers():
    names = ["frame10.png", "frame2.png", "Frame1.png", "frame2b.png", "frame9.png"]
    assert sorted(names, key=natural_key) == [
        "Frame1.png",
        "frame2.png",
        "frame2b.png",
        "frame9.png",
        "frame10.png",
    ]
    # "²" is a digit to str.isdigit but not a number int() reads: it sorts as text.
    assert sorted(["roi_5²1.png", "roi_5.png"], key=natural_key) == ["roi_5.png", "roi_5²1.png"]


def test_frame_folder_mixes_grey_rgb_and_jpeg(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(folder / "a1.png")
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(folder / "a2.png")
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(folder / "a3.jpg", quality=95)
    frames = read_stack(folder).frames
    assert frames[0, 0, 0] == pytest.approx(200 / 255)
    assert frames[1, 0, 0] == pytest.approx(0.299, abs=1e-6)
    assert frames[2].mean() == pytest.approx(100 / 255, abs=2 / 255)


def test_frame_folder_size_mismatch_names_odd_frame(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "f1.png")
    Image.fromarray(np.zeros((8, 9), np.uint8)).save(folder / "f2.png")
    with pytest.raises(StackReadError, match=r"f2\.png: frame 1 is 8x9.*f1\.png is 8x8"):
        read_stack(folder)


def test_folder_without_images(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "readme.txt").write_text("x")
    assert find_reader(folder) is None
    with pytest.raises(StackReadError, match=r"empty: folder contains no image frames"):
        read_stack(folder)


def test_corrupt_frame_names_file(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "f1.png")
    (folder / "f2.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(StackReadError, match=r"f2\.png"):
        read_stack(folder)


# --- NumPy ------------------------------------------------------------------------------------


def test_npy_uint16_and_2d(tmp_path):
    data = np.arange(2 * 4 * 5, dtype=np.uint16).reshape(2, 4, 5) * 1000
    np.save(tmp_path / "a.npy", data)
    stack = read_stack(tmp_path / "a.npy")
    np.testing.assert_allclose(stack.frames, data / 65535, rtol=1e-6)
    assert stack.original_dtype == "uint16"
    np.save(tmp_path / "b.npy", np.ones((4, 5), dtype=bool))
    single = read_stack(tmp_path / "b.npy")
    assert single.frames.shape == (1, 4, 5)
    assert single.frames.min() == 1.0


def test_npy_colour_singletons_and_bad_shapes(tmp_path):
    rgb = np.zeros((2, 8, 8, 3), np.uint8)
    rgb[..., 1] = 255
    np.save(tmp_path / "rgb.npy", rgb)
    np.testing.assert_allclose(read_stack(tmp_path / "rgb.npy").frames, 0.587, atol=1e-6)
    np.save(tmp_path / "s.npy", np.zeros((1, 3, 1, 8, 8), np.uint8))
    assert read_stack(tmp_path / "s.npy").frames.shape == (3, 8, 8)
    np.save(tmp_path / "five.npy", np.zeros((1, 2, 8, 8, 4), np.uint8))
    assert read_stack(tmp_path / "five.npy").frames.shape == (2, 8, 8)
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(
        StackReadError, match=r"bad\.npy: cannot read an array of shape \(2, 3, 8, 8\)"
    ):
        read_stack(tmp_path / "bad.npy")
    np.save(tmp_path / "bad5.npy", np.zeros((2, 2, 3, 8, 8), np.uint8))
    with pytest.raises(StackReadError, match=r"shape \(2, 2, 3, 8, 8\)"):
        read_stack(tmp_path / "bad5.npy")


def test_npy_zero_frames_and_truncation(tmp_path):
    np.save(tmp_path / "zero.npy", np.zeros((0, 8, 8), np.uint8))
    with pytest.raises(StackReadError, match=r"zero\.npy: contains zero frames"):
        read_stack(tmp_path / "zero.npy")
    np.save(tmp_path / "cut.npy", np.zeros((4, 8, 8), np.uint8))
    raw = (tmp_path / "cut.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(raw[:-100])
    with pytest.raises(StackReadError, match=r"cut\.npy.*truncated"):
        read_stack(tmp_path / "cut.npy")


def test_npy_inf_names_frame(tmp_path):
    data = np.zeros((3, 4, 4))
    data[1, 0, 0] = np.inf
    np.save(tmp_path / "inf.npy", data)
    with pytest.raises(StackReadError, match=r"inf\.npy: frame 1 contains NaN or infinite"):
        read_stack(tmp_path / "inf.npy")


def test_npz_named_and_largest(tmp_path):
    big = np.full((3, 8, 8), 51, np.uint8)
    small = np.full((8, 8), 1.0, np.float32)
    np.savez(tmp_path / "d.npz", small=small, big=big, label=np.array([1, 2, 3]))
    assert read_stack(tmp_path / "d.npz").frames.shape == (3, 8, 8)
    assert read_stack(tmp_path / "d.npz").metadata["variable"] == "big"
    named = read_stack(tmp_path / "d.npz", variable="small")
    assert named.frames.shape == (1, 8, 8)
    with pytest.raises(StackReadError, match=r"d\.npz: no variable 'nope'.*big \(3, 8, 8\)"):
        read_stack(tmp_path / "d.npz", variable="nope")


# --- MATLAB -----------------------------------------------------------------------------------


def test_mat_v5_h_w_n_puts_frames_first(tmp_path, rng):
    hwn = rng.integers(0, 256, size=(20, 16, 5), dtype=np.uint8)
    scipy.io.savemat(tmp_path / "c.mat", {"cine": hwn, "tiny": np.eye(3)})
    stack = read_stack(tmp_path / "c.mat")
    assert stack.metadata["variable"] == "cine"
    assert stack.frames.shape == (5, 20, 16)
    np.testing.assert_array_equal(stack.frames, np.moveaxis(hwn, 2, 0) / np.float32(255))
    tiny = read_stack(tmp_path / "c.mat", variable="tiny")
    assert tiny.frames.shape == (1, 3, 3)
    assert tiny.original_dtype == "float64"


def test_mat_frame_axis_rule(tmp_path):
    nhw = np.zeros((5, 20, 16), np.float32)
    nhw[3] = 1.0
    tie = np.zeros((8, 12, 8), np.float32)  # smallest size shared: MATLAB H x W x N assumed
    tie[..., 6] = 1.0
    rgb = np.zeros((12, 10, 3), np.uint8)
    rgb[..., 0] = 255
    video = np.zeros((12, 10, 3, 2), np.uint8)  # MATLAB RGB video: H x W x 3 x N
    video[:, :, 2, 1] = 255
    scipy.io.savemat(
        tmp_path / "m.mat",
        {"nhw": nhw, "tie": tie, "rgb": rgb, "video": video, "four": np.zeros((12, 10, 4))},
    )
    frames = read_stack(tmp_path / "m.mat", variable="nhw").frames
    assert frames.shape == (5, 20, 16) and frames[3].min() == 1.0 and frames[2].max() == 0.0
    frames = read_stack(tmp_path / "m.mat", variable="tie").frames
    assert frames.shape == (8, 8, 12) and frames[6].min() == 1.0
    frames = read_stack(tmp_path / "m.mat", variable="four").frames
    assert frames.shape == (4, 12, 10)  # a trailing 4 is frames: MATLAB keeps alpha apart
    frames = read_stack(tmp_path / "m.mat", variable="rgb").frames
    assert frames.shape == (1, 12, 10)
    np.testing.assert_allclose(frames, 0.299, atol=1e-6)
    frames = read_stack(tmp_path / "m.mat", variable="video").frames
    assert frames.shape == (2, 12, 10)
    np.testing.assert_allclose(frames[1], 0.114, atol=1e-6)


def _write_mat73(
    path: Path, arrays: dict[str, np.ndarray], *, matlab_class: str | None = None, **dataset_kwargs
) -> None:
    """An HDF5 file laid out like MATLAB -v7.3: 512-byte text header, arrays stored transposed."""
    with h5py.File(path, "w", userblock_size=512) as fh:
        for name, array in arrays.items():
            dset = fh.create_dataset(name, data=array.T, **dataset_kwargs)
            dset.attrs["MATLAB_class"] = np.bytes_(matlab_class or str(array.dtype))
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 ."
    header = header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as fh:
        fh.write(header)


@pytest.mark.parametrize("compressed", [False, True])
def test_mat_v73_transposed_back(tmp_path, rng, compressed):
    hwn = rng.integers(0, 65536, size=(20, 16, 4), dtype=np.uint16)
    kwargs = {"compression": "gzip", "chunks": True} if compressed else {}
    _write_mat73(tmp_path / "v73.mat", {"cine": hwn, "small": np.ones((3, 3))}, **kwargs)
    stack = read_stack(tmp_path / "v73.mat")
    assert stack.metadata["matlab_version"] == "7.3"
    assert stack.metadata["variable"] == "cine"
    assert stack.frames.shape == (4, 20, 16)
    np.testing.assert_allclose(stack.frames, np.moveaxis(hwn, 2, 0) / 65535, rtol=1e-6)


def test_mat_without_usable_array(tmp_path):
    scipy.io.savemat(tmp_path / "v.mat", {"name": "abc", "empty": np.zeros((0, 0))})
    with pytest.raises(StackReadError, match=r"v\.mat: no numeric array with 2 to 5 dimensions"):
        read_stack(tmp_path / "v.mat")


def test_truncated_mat(tmp_path, rng):
    scipy.io.savemat(tmp_path / "t.mat", {"cine": rng.random((16, 16, 4))})
    raw = (tmp_path / "t.mat").read_bytes()
    (tmp_path / "t.mat").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(StackReadError, match=r"t\.mat"):
        read_stack(tmp_path / "t.mat")


# --- registry ---------------------------------------------------------------------------------


def test_unknown_and_missing_paths(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert find_reader(tmp_path / "notes.txt") is None
    assert find_reader(tmp_path / "missing.tif") is None
    with pytest.raises(UnsupportedFormatError, match=r"notes\.txt: unsupported format '\.txt'"):
        read_stack(tmp_path / "notes.txt")
    with pytest.raises(StackReadError, match=r"missing\.tif: no such file"):
        read_stack(tmp_path / "missing.tif")


def test_variable_rejected_for_single_array_formats(tmp_path, cine):
    write_stack_tiff(tmp_path / "c.tif", cine)
    with pytest.raises(StackReadError, match=r"c\.tif: variable='x' only applies"):
        read_stack(tmp_path / "c.tif", variable="x")


def test_a_paired_dataset_read_as_a_stack_points_to_its_images(tmp_path):
    """ribseg predict sim/ (simulate's output) said only 'folder contains no image frames'."""
    (tmp_path / "sim" / "IMG").mkdir(parents=True)
    (tmp_path / "sim" / "MASK").mkdir()
    with pytest.raises(StackReadError) as info:
        read_stack(tmp_path / "sim")
    assert str(info.value).endswith(
        f"; it is a paired dataset (IMG/ + MASK/): its images are in {tmp_path / 'sim' / 'IMG'}"
    )


def test_variable_rejected_for_npy(tmp_path, cine):
    """A .npy holds one unnamed array: ``variable`` (``--variable``) was silently ignored."""
    np.save(tmp_path / "c.npy", cine)
    with pytest.raises(StackReadError, match=r"c\.npy: variable='x' only applies.*one unnamed"):
        read_stack(tmp_path / "c.npy", variable="x")
    assert read_stack(tmp_path / "c.npy").n_frames == len(cine)


def test_reading_never_changes_inputs(tmp_path, rng, cine):
    write_stack_tiff(tmp_path / "a.tif", cine)
    write_stack_tiff(tmp_path / "f.tif", rng.random((2, 8, 8), dtype=np.float32))
    np.save(tmp_path / "b.npy", cine)
    np.savez(tmp_path / "c.npz", x=cine)
    scipy.io.savemat(tmp_path / "d.mat", {"x": np.moveaxis(cine, 0, 2)})
    _write_mat73(tmp_path / "e.mat", {"x": np.moveaxis(cine, 0, 2)})
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(cine):
        Image.fromarray(frame).save(folder / f"f{i}.png")
    paths = list(tmp_path.iterdir())
    before = {p: (digest(p), p.stat().st_mtime_ns) for p in paths}
    for p in paths:
        frames = read_stack(p).frames
        if frames.flags.writeable:
            frames[...] = 0.5  # a writable result must be a private copy, not the file
    assert {p: (digest(p), p.stat().st_mtime_ns) for p in paths} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


@pytest.mark.parametrize("ext,options", [("gif", {}), ("png", {}), ("webp", {"lossless": True})])
def test_animated_image_reads_every_frame_with_its_rate(tmp_path, ext, options):
    """Animated GIF, APNG and WebP cines: every frame, in order, rate from the frame durations."""
    levels = [0, 40, 80, 120, 160, 200, 240]
    images = [Image.fromarray(np.full((12, 20), v, np.uint8)) for v in levels]
    path = tmp_path / f"clip.{ext}"
    images[0].save(path, save_all=True, append_images=images[1:], duration=40, **options)
    stack = read_stack(path)
    assert stack.frames.shape == (7, 12, 20)
    np.testing.assert_allclose(stack.frames[:, 6, 10], np.array(levels) / 255, atol=1.5 / 255)
    assert stack.frame_rate == pytest.approx(25.0)
    # A still image is one frame with no rate.
    images[0].save(tmp_path / "still.png")
    still = read_stack(tmp_path / "still.png")
    assert still.n_frames == 1 and still.frame_rate is None
    # In a frame folder an animation is refused by name, never cut to its first frame.
    folder = tmp_path / "frames"
    folder.mkdir()
    images[0].save(folder / "a.png")
    path.replace(folder / f"b.{'png' if ext == 'png' else ext}")
    if ext == "png":
        with pytest.raises(StackReadError, match=r"b\.png: holds 7 frames"):
            read_stack(folder)


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_mat_h_w_1_n_and_logical(tmp_path, version):
    """MATLAB's greyscale multi-frame layout H x W x 1 x N (N = 3 is frames, not colour) and
    logical arrays (stored as uint8) read as 0/1."""
    for n in (5, 3):
        x = np.zeros((12, 20, 1, n), np.uint8)
        for k in range(n):
            x[2:6, 2 : 2 + 2 * (k + 1), 0, k] = 255
        path = tmp_path / f"hw1n_{n}_{version}.mat"
        if version == "5":
            scipy.io.savemat(path, {"X": x})
        else:
            _write_mat73(path, {"X": x})
        stack = read_stack(path)
        assert stack.frames.shape == (n, 12, 20), n
        assert [int((f[3] > 0.5).sum()) for f in stack.frames] == [2 * (k + 1) for k in range(n)]
    mask = np.zeros((12, 20, 4), bool)
    mask[3:6, 3:9] = True
    path = tmp_path / f"mask_{version}.mat"
    if version == "5":
        scipy.io.savemat(path, {"mask": mask})
    else:
        _write_mat73(path, {"mask": mask.astype(np.uint8)}, matlab_class="logical")
    stack = read_stack(path)
    assert stack.original_dtype == "bool"
    assert stack.frames.max() == 1.0 and int(stack.frames.sum()) == 4 * 18


def test_tiff_white_is_zero_is_inverted(tmp_path):
    """TIFF PhotometricInterpretation 0 (WhiteIsZero): low values are white; bright must be echo."""
    data = np.zeros((2, 8, 12), np.uint8)
    data[:, :, :4] = 255
    tifffile.imwrite(tmp_path / "w.tif", data, photometric="miniswhite")
    stack = read_stack(tmp_path / "w.tif")
    assert stack.frames[0, 0, 0] == 0.0 and stack.frames[0, 0, -1] == 1.0
    assert stack.metadata["intensity_scaling"]["inverted"] is True
    folder = tmp_path / "f"
    folder.mkdir()
    tifffile.imwrite(folder / "0.tif", data[0], photometric="miniswhite")
    tifffile.imwrite(folder / "1.tif", 255 - data[0], photometric="minisblack")
    frames = read_stack(folder).frames
    assert frames[0, 0, 0] == 0.0 and frames[0, 0, -1] == 1.0
    np.testing.assert_array_equal(frames[0], frames[1])


@pytest.mark.parametrize(
    "tunit,rate", [(None, 1 / 0.04), ("ms", 25.0), ("sec", 1 / 0.04), ("min", 1 / 2.4)]
)
def test_imagej_frame_interval_in_its_time_unit(tmp_path, tunit, rate):
    """ImageJ writes ``finterval`` in ``tunit`` and leaves ``tunit`` out when it is seconds."""
    finterval = 40 if tunit == "ms" else 0.04
    metadata = {"axes": "TYX", "finterval": finterval}
    if tunit:
        metadata["tunit"] = tunit
    tifffile.imwrite(
        tmp_path / "t.tif", np.zeros((3, 8, 8), np.uint8), imagej=True, metadata=metadata
    )
    assert read_stack(tmp_path / "t.tif").frame_rate == pytest.approx(rate)


def test_mat_from_matlab_keeps_frames_last_however_many(tmp_path):
    """A cine with more frames than rows (a 12 x 20 crop of 30 frames): MATLAB's H x W x N when
    MATLAB or Octave wrote the file; from Python the smallest-axis rule stands (documented)."""
    cine = np.zeros((12, 20, 30), np.uint8)
    cine[:, :, 7] = 255
    path = tmp_path / "crop.mat"
    scipy.io.savemat(path, {"cine": cine})
    python_made = read_stack(path)
    assert python_made.frames.shape == (12, 20, 30)
    assert python_made.metadata["written_by_matlab"] is False
    for writer in (b"Platform: GLNXA64", b"Platform: PCWIN64", b"written by Octave 8.4.0"):
        header = b"MATLAB 5.0 MAT-file, " + writer + b", Created on: Thu Dec  3 10:00:00 2026"
        data = bytearray(path.read_bytes())
        data[:116] = header.ljust(116, b" ")
        path.write_bytes(bytes(data))
        stack = read_stack(path)
        assert stack.frames.shape == (30, 12, 20), writer
        assert stack.frames[7].min() == 1.0 and stack.frames[6].max() == 0.0
    _write_mat73(tmp_path / "crop73.mat", {"cine": cine})  # header: Platform GLNXA64
    assert read_stack(tmp_path / "crop73.mat").frames.shape == (30, 12, 20)
