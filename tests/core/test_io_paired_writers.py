"""Paired image/mask datasets, mask binarisation, clip groups and the label/stack writers."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_ribseg.core.errors import DatasetError, StackReadError
from napari_ribseg.core.io import (
    binarize_mask,
    clip_id,
    read_paired_dataset,
    read_stack,
    write_label_tiff,
    write_paired_dataset,
    write_png_sequence,
    write_stack_tiff,
)


@pytest.fixture
def pairs(rng):
    images = [rng.random((12, 16), dtype=np.float32) for _ in range(3)]
    images.append(rng.integers(0, 256, (12, 16), dtype=np.uint8))
    masks = [(rng.random((12, 16)) > 0.5).astype(np.uint8) for _ in range(4)]
    ids = ["c003_f0002", "c003_f0010", "clipA_17", "0005"]
    return images, masks, ids


@pytest.mark.parametrize("layout", ["IMG/MASK", "images/masks"])
def test_paired_dataset_roundtrip_is_exact(tmp_path, pairs, layout):
    images, masks, ids = pairs
    root = write_paired_dataset(tmp_path / "ds", images, masks, ids, layout=layout)
    image_dir, mask_dir = layout.split("/")
    assert sorted(p.name for p in root.iterdir()) == sorted([image_dir, mask_dir])
    if layout == "IMG/MASK":
        assert (root / "IMG" / "img_clipA_17.tif").is_file()
        assert (root / "MASK" / "mask_clipA_17.tif").is_file()
    disk_mask = tifffile.imread(next((root / mask_dir).iterdir()))
    assert disk_mask.dtype == np.uint8 and set(np.unique(disk_mask)) <= {0, 255}
    ds = read_paired_dataset(root)
    assert ds.ids == ["0005", "c003_f0002", "c003_f0010", "clipA_17"]  # natural order
    assert ds.groups == ["0005", "c003", "c003", "clipA"]
    assert ds.root == root
    assert len(ds) == 4
    by_id = dict(zip(ids, zip(images, masks, strict=True), strict=True))
    for sample_id, image, mask in zip(ds.ids, ds.images, ds.masks, strict=True):
        want_image, want_mask = by_id[sample_id]
        expected = want_image / np.float32(255) if want_image.dtype == np.uint8 else want_image
        assert image.dtype == np.float32 and image.shape == (12, 16)
        np.testing.assert_array_equal(image, expected)
        assert mask.dtype == np.uint8
        np.testing.assert_array_equal(mask, want_mask)


def test_write_paired_dataset_refuses_to_overwrite(tmp_path, pairs):
    images, masks, ids = pairs
    root = tmp_path / "ds"
    root.mkdir()
    (root / "precious.txt").write_text("keep me")
    with pytest.raises(DatasetError, match=r"ds: already exists and is not an empty folder"):
        write_paired_dataset(root, images, masks, ids)
    assert (root / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary folder left


def test_write_paired_dataset_validates_input(tmp_path, pairs):
    images, masks, ids = pairs
    with pytest.raises(
        DatasetError, match=r"image 'clipA_17' is \(12, 16\) but its mask is \(3, 3\)"
    ):
        write_paired_dataset(tmp_path / "a", images, [*masks[:2], np.zeros((3, 3)), masks[3]], ids)
    with pytest.raises(DatasetError, match="unique"):
        write_paired_dataset(tmp_path / "b", images, masks, ["a", "A", "b", "c"])
    with pytest.raises(DatasetError, match="plain file names"):
        write_paired_dataset(tmp_path / "c", images, masks, ["a", "../b", "c", "d"])
    with pytest.raises(DatasetError, match="layout"):
        write_paired_dataset(tmp_path / "d", images, masks, ids, layout="x/y")
    assert list(tmp_path.iterdir()) == []


def _reference_layout(root, ids, size=(8, 8)):
    (root / "IMG").mkdir(parents=True)
    (root / "MASK").mkdir()
    for i in ids:
        tifffile.imwrite(root / "IMG" / f"img_{i}.tif", np.zeros(size, np.uint8))
        tifffile.imwrite(root / "MASK" / f"mask_{i}.tif", np.zeros(size, np.uint8))


def test_unmatched_files_are_listed(tmp_path):
    root = tmp_path / "study"
    _reference_layout(root, ["1", "2"])
    tifffile.imwrite(root / "IMG" / "img_3.tif", np.zeros((8, 8), np.uint8))
    tifffile.imwrite(root / "MASK" / "mask_9.tif", np.zeros((8, 8), np.uint8))
    tifffile.imwrite(root / "MASK" / "mask_10.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(DatasetError) as info:
        read_paired_dataset(root)
    message = str(info.value)
    assert "study: unmatched files" in message
    assert "images without a mask in IMG/: img_3.tif" in message
    assert "masks without an image in MASK/: mask_9.tif, mask_10.tif" in message


def test_size_mismatch_names_both_files(tmp_path):
    root = tmp_path / "study"
    _reference_layout(root, ["1"])
    tifffile.imwrite(root / "MASK" / "mask_1.tif", np.zeros((8, 9), np.uint8))
    with pytest.raises(DatasetError, match=r"image img_1\.tif is 8x8 but mask mask_1\.tif is 8x9"):
        read_paired_dataset(root)


def test_missing_layout_and_empty_dataset(tmp_path):
    (tmp_path / "other").mkdir()
    with pytest.raises(DatasetError, match=r"expected subfolders IMG/ and MASK/.*'other'"):
        read_paired_dataset(tmp_path)
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    with pytest.raises(DatasetError, match="contain no image files"):
        read_paired_dataset(empty)
    with pytest.raises(DatasetError, match="not a folder"):
        read_paired_dataset(tmp_path / "nope")


def test_generic_layout_mixed_extensions_and_lossy_masks(tmp_path):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(root / "images" / "a_1.png")
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(root / "images" / "a_2.jpg", quality=95)
    mask = np.zeros((8, 8), np.uint8)
    mask[:, 4:] = 255
    Image.fromarray(mask).save(root / "masks" / "a_1.jpg", quality=60)  # lossy: grey edges
    Image.fromarray(mask // 255).save(root / "masks" / "a_2.png")  # 0/1 mask
    ds = read_paired_dataset(root)
    assert ds.ids == ["a_1", "a_2"] and ds.groups == ["a", "a"]
    assert ds.images[0][0, 0] == pytest.approx(0.299, abs=1e-6)
    assert ds.images[1].mean() == pytest.approx(128 / 255, abs=2 / 255)
    expected = (mask > 0).astype(np.uint8)
    np.testing.assert_array_equal(ds.masks[0], expected)
    np.testing.assert_array_equal(ds.masks[1], expected)


def test_binarize_mask_rule():
    lossy = np.array([[0, 3, 120, 128, 250, 255]], np.uint8)
    assert binarize_mask(lossy).tolist() == [[0, 0, 0, 1, 1, 1]]
    assert binarize_mask(np.array([[0, 1, 1]], np.uint8)).tolist() == [[0, 1, 1]]  # 0/1
    assert binarize_mask(np.array([[0, 3, 3]], np.uint8)).tolist() == [[0, 1, 1]]  # one label
    assert binarize_mask(np.array([[0, 65535, 30000]], np.uint16)).tolist() == [[0, 1, 0]]
    assert binarize_mask(np.array([[0.0, 0.4, 0.6]])).tolist() == [[0, 0, 1]]
    assert binarize_mask(np.array([[True, False]])).tolist() == [[1, 0]]
    colour = np.zeros((1, 2, 4), np.uint8)
    colour[0, 1, 1] = 255  # green pixel; alpha channel ignored
    colour[0, 0, 3] = 255
    assert binarize_mask(colour).tolist() == [[0, 1]]


@pytest.mark.parametrize(
    ("sample_id", "clip"),
    [
        ("c003_f0012", "c003"),
        ("clipA_17", "clipA"),
        ("patient1_clip2_frame0005", "patient1_clip2"),
        ("scan-3", "scan"),
        ("c003", "c003"),
        ("0012", "0012"),
        ("_12", "_12"),
        ("frame_7", "frame_7"),
        # A frame word straight after the clip's number, or after a separator: one clip, not one
        # clip per frame (folds "by clip" put frames of one clip on both sides).
        ("clip1f001", "clip1"),
        ("clip1frame001", "clip1"),
        ("P1_t0001", "P1"),
        ("scan2_img0005", "scan2"),
        ("img_0001", "img_0001"),
        ("case12", "case12"),
        ("shaft12", "shaft12"),
    ],
)
def test_clip_id(sample_id, clip):
    assert clip_id(sample_id) == clip


def test_write_label_tiff_roundtrip(tmp_path):
    labels = np.zeros((3, 8, 8), np.int64)
    labels[1, 2:4, 2:4] = 1
    labels[2, 0, 0] = 2
    path = write_label_tiff(tmp_path / "out" / "labels.tif", labels)
    back = tifffile.imread(path)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, labels)
    assert [p.name for p in path.parent.iterdir()] == ["labels.tif"]  # no temporary left
    single = write_label_tiff(tmp_path / "one.tif", labels[1].astype(bool))
    assert tifffile.imread(single).shape == (8, 8)
    with pytest.raises(ValueError, match=r"0\.\.255"):
        write_label_tiff(tmp_path / "bad.tif", np.full((2, 2), 300))
    assert not (tmp_path / "bad.tif").exists()


def test_write_png_sequence_zero_padded(tmp_path):
    labels = np.zeros((11, 4, 4), np.uint8)
    labels[10] = 1
    paths = write_png_sequence(tmp_path / "pngs", labels)
    assert [p.name for p in paths][:2] == ["mask_0000.png", "mask_0001.png"]
    assert paths[-1].name == "mask_0010.png"
    np.testing.assert_array_equal(np.asarray(Image.open(paths[-1])), labels[10])
    other = write_png_sequence(tmp_path / "one", labels[0], prefix="rib_")
    assert [p.name for p in other] == ["rib_0000.png"]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_write_stack_tiff_roundtrip(tmp_path, rng, dtype):
    if dtype == np.float32:
        frames = rng.random((3, 8, 10), dtype=np.float32)
    else:
        frames = rng.integers(0, np.iinfo(dtype).max, (3, 8, 10), dtype=dtype)
    path = write_stack_tiff(tmp_path / "s.tif", frames, spacing_mm=(0.3, 0.07), frame_rate=49.5)
    stack = read_stack(path)
    scale = 1.0 if dtype == np.float32 else np.iinfo(dtype).max
    np.testing.assert_allclose(stack.frames, frames / np.float32(scale), rtol=1e-6)
    assert stack.spacing_mm == pytest.approx((0.3, 0.07))
    assert stack.frame_rate == pytest.approx(49.5)
    assert stack.original_dtype == np.dtype(dtype).name
    plain = read_stack(write_stack_tiff(tmp_path / "p.tif", frames[0]))
    assert plain.spacing_mm is None and plain.frame_rate is None and plain.n_frames == 1


def test_a_label_map_mask_is_refused_not_merged_into_rib():
    """A napari-style label map (1 rib, 2 pleura, 3 shadow) was read as one rib mask."""
    labels = np.zeros((32, 32), np.uint8)
    labels[2:4, :20], labels[10, :] = 1, 2
    labels[20:26, 4:10] = 3
    with pytest.raises(
        StackReadError,
        match=r"m\.png: the mask holds 4 label values \(0: 916 px, 1: 40 px, 2: 32 px, 3: 36 px\)",
    ):
        binarize_mask(labels, "m.png")
    with pytest.raises(StackReadError, match="labels == 1"):
        binarize_mask(labels.astype(np.uint16), "m.tif")
    with pytest.raises(StackReadError, match="4 label values"):
        binarize_mask(labels.astype(np.float32), "m.tif")
    # A JPEG-saved 0/255 mask has many values from ringing: still thresholded at half range.
    jpeg = np.array([[0, 2, 5, 9, 120, 131, 247, 251, 255]], np.uint8)
    assert binarize_mask(jpeg).tolist() == [[0, 0, 0, 0, 0, 1, 1, 1, 1]]


def test_binary_masks_with_stray_values_are_not_label_maps():
    """Found by a review: 0/1 masks saved as JPEG (ringing leaves a few 2s), a 0/1 mask with a few
    2s from resampling and 8-bit 0/255 anti-aliased masks in a 16-bit file were refused."""
    mask = np.zeros((32, 32), np.uint8)
    mask[8:14, 2:30] = 1
    ringing = mask.copy()
    ringing[8, 2:30:3] = 2  # 10 px: ringing along one edge
    assert binarize_mask(ringing, "m.png").sum() == mask.sum()
    # In a JPEG any number of them is ringing, never a label.
    ringing[13, 2:30] = 2
    assert binarize_mask(ringing, "m.jpg").sum() == mask.sum()
    with pytest.raises(StackReadError, match="3 label values"):
        binarize_mask(ringing, "m.png")  # 28 px of 2s in a lossless file: a second label
    # 0/255 with anti-aliased edges in a uint16 file: the 8-bit rule (> 127), not > 0.
    smooth = (mask * 255).astype(np.uint16)
    smooth[7, 2:30], smooth[14, 2:30] = 100, 180
    assert binarize_mask(smooth, "m.tif").sum() == mask.sum() + 28


def test_an_rgba_mask_labelled_only_in_alpha_reads_its_alpha():
    """An RGBA mask whose RGB is constant and whose label is in alpha read as empty."""
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[1:3, 1:3, 3] = 255
    assert int(binarize_mask(rgba).sum()) == 4
    grey_alpha = np.zeros((4, 4, 2), np.uint8)
    grey_alpha[0, :, 1] = 255
    assert binarize_mask(grey_alpha)[0].tolist() == [1, 1, 1, 1]
    # An empty black mask, opaque but for one transparent pixel, stays empty (it read as all rib).
    black = np.zeros((4, 4, 4), np.uint8)
    black[..., 3] = 255
    black[0, 0, 3] = 0
    assert int(binarize_mask(black).sum()) == 0
    # White RGB with opaque alpha everywhere: the colour is the mask (constant alpha).
    white = np.full((4, 4, 4), 255, np.uint8)
    assert int(binarize_mask(white).sum()) == 16


def test_reading_a_paired_set_whose_masks_are_all_empty_warns(tmp_path):
    images = [np.full((8, 8), 100, np.uint8)] * 2
    masks = [np.zeros((8, 8), np.uint8)] * 2
    write_paired_dataset(tmp_path / "ds", images, masks, ["a_1", "a_2"])
    with pytest.warns(UserWarning, match=r"every mask of the 2 samples in MASK/ is empty"):
        ds = read_paired_dataset(tmp_path / "ds")
    assert sum(int(m.sum()) for m in ds.masks) == 0


def test_write_png_sequence_refuses_frames_of_another_sequence(tmp_path):
    """A shorter sequence written over a longer one left its last frames: 3 frames read back."""
    labels = np.zeros((3, 8, 8), np.uint8)
    write_png_sequence(tmp_path / "pngs", labels)
    write_png_sequence(tmp_path / "pngs", labels + 1)  # the same frames again: replaced
    from napari_ribseg.core.errors import OutputPathError

    with pytest.raises(OutputPathError) as info:
        write_png_sequence(tmp_path / "pngs", labels[:1])
    assert str(info.value) == (
        f"{tmp_path / 'pngs'}: already holds mask_0001.png and 1 more of another sequence (this "
        "one has 1 frames); write into an empty folder or remove them"
    )
    assert read_stack(tmp_path / "pngs").n_frames == 3


def test_write_paired_dataset_names_a_file_in_the_way(tmp_path):
    """export-curated --out ribs.tif (a file) said 'is not an empty folder'."""
    taken = tmp_path / "ribs.tif"
    taken.write_bytes(b"keep")
    with pytest.raises(DatasetError) as info:
        write_paired_dataset(taken, [np.zeros((4, 4), np.float32)], [np.zeros((4, 4))], ["a"])
    assert (
        str(info.value) == f"{taken}: already exists and is a file; expected a new or empty folder"
    )
    assert taken.read_bytes() == b"keep"
