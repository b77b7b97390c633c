"""Streaming ``ribseg predict``: lazy frames in, label pages out, same result as the whole stack."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_ribseg.core.errors import StackReadError
from napari_ribseg.core.inference import predict_stack_sync
from napari_ribseg.core.io import read_stack
from napari_ribseg.core.io.lazy import LabelTiffStream, TiffFrames, open_frames
from napari_ribseg.core.jobs import run_job
from napari_ribseg.core.models import build_model
from napari_ribseg.core.postprocess import probability_to_mask
from napari_ribseg.core.streaming import segment_file


@pytest.fixture(scope="module")
def tiny_unet():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    return build_model("unet", "tiny", input_size=64, pretrained=False)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tiff_frames_are_read_lazily_and_equal_the_file(tmp_path, rng, dtype):
    data = rng.integers(0, np.iinfo(dtype).max, (6, 20, 24), dtype=dtype)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, data)
    frames, spacing = open_frames(path)
    assert isinstance(frames, TiffFrames) and frames.shape == (6, 20, 24)
    assert spacing is None
    np.testing.assert_array_equal(frames[np.array([0, 1, 2, 4])], data[[0, 1, 2, 4]])
    np.testing.assert_array_equal(frames[3], data[3])
    np.testing.assert_array_equal(frames[2:6], data[2:6])


def test_compressed_or_float_tiffs_fall_back_to_the_reader(tmp_path, rng):
    data = rng.random((3, 16, 16), dtype=np.float32)
    tifffile.imwrite(tmp_path / "f.tif", data, photometric="minisblack")
    tifffile.imwrite(
        tmp_path / "z.tif",
        (data * 255).astype(np.uint8),
        compression="zlib",
        photometric="minisblack",
    )
    assert isinstance(open_frames(tmp_path / "f.tif")[0], np.ndarray)
    assert isinstance(open_frames(tmp_path / "z.tif")[0], np.ndarray)


def test_the_lazy_path_reads_a_tiff_as_the_reader_does(tmp_path, rng):
    """Found by an inference audit: big-endian uint16 (ImageJ's default) came back byte-swapped,
    WhiteIsZero was not inverted and a time x channel stack became interleaved frames, so
    ``ribseg predict --out`` segmented another image than ``--review`` and the widget."""
    data = rng.integers(0, 23000, (4, 20, 24), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "be.tif", data, byteorder=">", photometric="minisblack")
    frames, _ = open_frames(tmp_path / "be.tif")
    assert isinstance(frames, TiffFrames) and frames.dtype == np.dtype("=u2")
    np.testing.assert_array_equal(frames[0:4], data)
    stack = read_stack(tmp_path / "be.tif")
    assert stack.metadata["intensity_scaling"] == {"method": "divide", "divisor": 65535.0}
    np.testing.assert_allclose(stack.frames, data / 65535.0, atol=1e-7)

    tifffile.imwrite(tmp_path / "w.tif", data.astype(np.uint8), photometric="miniswhite")
    frames, _ = open_frames(tmp_path / "w.tif")
    np.testing.assert_allclose(frames, read_stack(tmp_path / "w.tif").frames)  # inverted once

    tifffile.imwrite(
        tmp_path / "tc.tif", data.reshape(2, 2, 20, 24), imagej=True, metadata={"axes": "TCYX"}
    )
    with pytest.raises(StackReadError, match="cannot read an array of shape"):
        open_frames(tmp_path / "tc.tif")


def test_segment_file_equals_predict_then_threshold(tmp_path, rng, tiny_unet):
    data = rng.integers(0, 256, (5, 40, 48), dtype=np.uint8)
    src = tmp_path / "clip.tif"
    tifffile.imwrite(src, data)
    done = run_job(
        segment_file(
            tiny_unet,
            src,
            tmp_path / "m.tif",
            prob_path=tmp_path / "p.tif",
            threshold=0.5,
            min_size=3,
            device="cpu",
            batch_size=2,
        )
    )
    whole = predict_stack_sync(tiny_unet, read_stack(src).frames, device="cpu", batch_size=2)
    masks = probability_to_mask(whole.prob, 0.5, min_size=3)
    written = tifffile.imread(tmp_path / "m.tif")
    assert written.shape == (5, 40, 48) and 0 < masks.sum() < masks.size
    np.testing.assert_array_equal(written, masks)
    assert np.abs(tifffile.imread(tmp_path / "p.tif").astype(int) - whole.prob).max() <= 1
    assert done.rib_fraction == pytest.approx(masks.mean())
    assert done.prediction.n_done == 5 and done.frame_shape == (40, 48)


def test_segment_file_masks_keep_the_stacks_pixel_spacing(tmp_path, rng, tiny_unet):
    from napari_ribseg.core.io import write_stack_tiff

    src = write_stack_tiff(
        tmp_path / "clip.tif",
        rng.integers(0, 256, (3, 40, 48), dtype=np.uint8),
        spacing_mm=(0.25, 0.4),
    )
    assert open_frames(src)[1] == pytest.approx((0.25, 0.4))
    done = run_job(
        segment_file(tiny_unet, src, tmp_path / "m.tif", prob_path=tmp_path / "p.tif", device="cpu")
    )
    assert done.spacing_mm == pytest.approx((0.25, 0.4))
    for out in ("m.tif", "p.tif"):
        back = read_stack(tmp_path / out)
        assert back.n_frames == 3 and back.spacing_mm == pytest.approx((0.25, 0.4))


def test_segment_file_refuses_a_threshold_of_50_before_the_first_batch(tmp_path, rng, tiny_unet):
    """threshold=50 failed in the first batch's masks, after the model had run on it."""
    from napari_ribseg.core.io import write_stack_tiff

    src = write_stack_tiff(tmp_path / "c.tif", rng.integers(0, 256, (2, 32, 32), dtype=np.uint8))
    events = []
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]; got 50"):
        run_job(
            segment_file(tiny_unet, src, tmp_path / "m.tif", threshold=50, device="cpu"),
            events.append,
        )
    assert events == [] and not (tmp_path / "m.tif").exists()


def test_a_stream_refuses_a_spacing_that_is_not_positive(tmp_path):
    with pytest.raises(ValueError, match="spacing_mm must be positive"):
        LabelTiffStream(tmp_path / "m.tif", 1, (0.0, 0.3))


def test_an_unfinished_stream_leaves_the_target_untouched(tmp_path):
    target = tmp_path / "m.tif"
    target.write_bytes(b"old")
    with (
        pytest.raises(ValueError, match="1 of 3 frames written"),
        LabelTiffStream(target, 3) as out,
    ):
        out.write(np.zeros((1, 8, 8), np.uint8))
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.tif"]


def test_a_truncated_imagej_stack_is_refused_not_streamed_as_its_first_frame(tmp_path):
    """Cut in half, a 5-frame ImageJ TIFF whose first frame survives was streamed as 1 frame
    (ribseg predict wrote a 1-frame mask, exit 0) while read_stack called it truncated."""
    from napari_ribseg.core.io import write_stack_tiff

    frames = np.random.default_rng(0).integers(0, 255, (5, 50, 70), dtype=np.uint8)
    data = write_stack_tiff(tmp_path / "cine.tif", frames).read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        StackReadError, match=r"cut\.tif: file is truncated: ImageJ header announces 5"
    ):
        open_frames(cut)
    assert len(open_frames(tmp_path / "cine.tif")[0]) == 5
