"""Rib-mask reading: thresholds, label maps, palette and colour masks, empty-mask warnings.

Each test pins a defect found in review with the pixel counts it had (in the docstring) and has now.
The rib is a 20x20 square (400 px) on 64x64 frames unless said otherwise.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy import ndimage
from skimage.transform import resize

from napari_ribseg.core.errors import DatasetError, StackReadError
from napari_ribseg.core.io import binarize_mask, read_paired_dataset
from napari_ribseg.core.io.frame_folder import read_image

#: labelme's colour map for labels 0, 1, 2 (black, dark red, dark green), repeated to 256 entries.
LABELME_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0, 0, 0] * 253


def rib_square() -> np.ndarray:
    mask = np.zeros((64, 64), np.uint8)
    mask[20:40, 22:42] = 1
    return mask


def bilinear_upscaled(top: int, dtype) -> np.ndarray:
    """A 0/``top`` 10x10 square on 32x32 resized to 64x64 bilinearly: 400 px inside, grey edges."""
    small = np.zeros((32, 32))
    small[10:20, 11:21] = top
    up = resize(small, (64, 64), order=1, preserve_range=True, anti_aliasing=False)
    return np.round(up).astype(dtype)


def write_pair(root, mask_name: str, write_mask) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.full((64, 64), 90, np.uint8)).save(root / "images" / "a_1.png")
    write_mask(root / "masks" / mask_name)


def test_a_float_mask_overshooting_1_is_cut_at_half_not_at_127():
    """A 0/1 float mask shifted by cubic interpolation peaks at 1.21; it was cut at > 127.5 and
    read empty (400 px -> 0), without a word. Floats use > 0.5 up to a maximum of 127."""
    overshoot = ndimage.shift(rib_square().astype(np.float32), (0.3, 0.3), order=3)
    assert 1.0 < float(overshoot.max()) < 1.3
    assert int(binarize_mask(overshoot, "m.tif").sum()) == 400
    # 0..255 stored as float keeps > 127.5; a float 0/255 mask is not a label map.
    assert int(binarize_mask(rib_square() * np.float32(255), "m.tif").sum()) == 400
    grey = np.array([[0.0, 127.0, 128.0, 255.0]], np.float32)
    assert binarize_mask(grey, "m.tif").tolist() == [[0, 0, 1, 1]]


def test_a_mask_with_pixels_that_binarises_to_empty_warns_naming_the_file(tmp_path):
    """A float mask whose rib is 0.4 (a thin rib averaged down) read as empty, silently."""
    faint = rib_square().astype(np.float32) * np.float32(0.4)
    with pytest.warns(UserWarning, match=r"faint\.tif: the mask has 400 non-zero pixels") as rec:
        out = binarize_mask(faint, "faint.tif")
    assert int(out.sum()) == 0
    assert "reads as empty" in str(rec[0].message) and "0.5" in str(rec[0].message)
    # Through the paired reader, too.
    write_pair(tmp_path / "ds", "a_1.tif", lambda p: tifffile.imwrite(p, faint))
    with pytest.warns(UserWarning, match=r"masks/a_1\.tif: the mask has 400 non-zero pixels"):
        read_paired_dataset(tmp_path / "ds")
    # An empty mask is simply empty, and a mask that keeps pixels says nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert int(binarize_mask(np.zeros((8, 8), np.float32), "e.tif").sum()) == 0
        assert int(binarize_mask(rib_square(), "r.png").sum()) == 400


@pytest.mark.parametrize(("top", "old"), [(4095, 484), (1000, 480)])
def test_a_12_bit_mask_resampled_bilinearly_is_cut_at_half_its_maximum(top, old):
    """uint16 0/4095 (and 0/1000) resized bilinearly: cut at > 127 its grey edge counted as rib
    (400 -> 484 px; 480 for 0/1000); cut at > max // 2 it is 400 again."""
    mask = bilinear_upscaled(top, np.uint16)
    assert int((mask > 127).sum()) == old  # the old rule, for the record
    assert int(binarize_mask(mask, "m.tif").sum()) == 400


@pytest.mark.parametrize("top", [4095, 65535])
def test_a_12_or_16_bit_mask_resampled_to_float_is_cut_where_its_integer_copy_is(top):
    """skimage's resize(preserve_range=True) gives float64: a 0/4095 or 0/65535 square resized
    bilinearly was cut at > 127.5 (484 px) while its integer copy was cut at > max // 2 (400)."""
    small = np.zeros((32, 32))
    small[10:20, 11:21] = top
    up = resize(small, (64, 64), order=1, preserve_range=True, anti_aliasing=False)
    assert int(binarize_mask(np.round(up).astype(np.uint16), "m.tif").sum()) == 400
    assert int(binarize_mask(up, "m.tif").sum()) == 400


def test_8_bit_masks_in_16_bit_files_still_use_127():
    mask = bilinear_upscaled(255, np.uint16)
    assert int(binarize_mask(mask, "m.tif").sum()) == 400
    assert binarize_mask(np.array([[0, 127, 128, 255]], np.uint16)).tolist() == [[0, 0, 1, 1]]


def test_two_grey_labels_in_a_0_128_255_mask_are_refused():
    """0/128/255 with two real labels (rib 255, pleura 128) was cut at > 127: both read as rib."""
    labels = np.zeros((64, 64), np.uint8)
    labels[10:30, 5:55] = 255  # 1000 px
    labels[40:50, 5:55] = 128  # 500 px
    for dtype, name in ((np.uint8, "m.png"), (np.uint16, "m.tif"), (np.float32, "m.tif")):
        with pytest.raises(StackReadError, match=r"m\.(png|tif): the mask holds 3 label values"):
            binarize_mask(labels.astype(dtype), name)
    with pytest.raises(StackReadError, match=r"0: 2596 px, 128: 500 px, 255: 1000 px"):
        binarize_mask(labels, "m.png")
    # Saved as JPEG it is never refused: the values beside 0 and 255 are taken as ringing.
    assert int(binarize_mask(labels, "m.jpg").sum()) == 1500


def test_a_voc_mask_with_a_thick_255_outline_is_refused():
    """VOC style: object 1, a 3-px 'void' outline 255. Cut at > 127 only the outline was rib."""
    voc = np.zeros((64, 64), np.uint8)
    voc[17:43, 19:45] = 255
    voc[20:40, 22:42] = 1
    with pytest.raises(StackReadError, match=r"1: 400 px, 255: 276 px"):
        binarize_mask(voc, "voc.png")
    # A 1-px outline is refused too: the object (label 1) is the area beside the maximum (it read
    # as the 84 px of outline alone).
    thin = np.zeros((64, 64), np.uint8)
    thin[19:41, 21:43] = 255
    thin[20:40, 22:42] = 1
    with pytest.raises(StackReadError, match=r"1: 400 px, 255: 84 px\); besides 255, 1 covers"):
        binarize_mask(thin, "voc.png")


def test_a_thin_second_label_in_a_0_255_mask_is_not_detected():
    """The documented limitation: a 1-px line of another value is indistinguishable from an
    interpolated edge, so 0/255 with a 1-px pleura line of 128 reads as rib plus that line."""
    mask = rib_square() * np.uint8(255)
    mask[50, 5:60] = 128  # 55 px, a line
    assert int(binarize_mask(mask, "m.png").sum()) == 455


@pytest.mark.parametrize(
    ("mask", "name"),
    [
        (rib_square() * np.uint8(255), "clean.png"),
        (bilinear_upscaled(255, np.uint8), "bilinear.png"),
        (bilinear_upscaled(4095, np.uint16), "bilinear12.tif"),
        (rib_square().astype(np.uint16) * np.uint16(4095), "clean12.tif"),
    ],
)
def test_binary_masks_with_interpolated_edges_are_not_label_maps(mask, name):
    assert len(np.unique(mask)) in (2, 7)
    assert int(binarize_mask(mask, name).sum()) == 400


def test_a_jpeg_mask_is_never_refused():
    """JPEG ringing can leave blocks of one value beside the mask's own: never a label map."""
    mask = rib_square() * np.uint8(255)
    mask[44:54, 22:42] = 3  # 200 px of a flat ringing value
    assert int(binarize_mask(mask, "m.jpeg").sum()) == 400
    assert int(binarize_mask(mask, "m.JPG").sum()) == 400


def test_read_image_gives_palette_indices_for_masks(tmp_path):
    labels = np.zeros((64, 64), np.uint8)
    labels[20:40, 22:42] = 1
    image = Image.fromarray(labels, mode="P")
    image.putpalette(LABELME_PALETTE)
    image.save(tmp_path / "one.png")
    indices = read_image(tmp_path / "one.png", mask=True)
    assert indices.shape == (64, 64) and indices.dtype == np.uint8
    assert int(indices.max()) == 1 and int(indices.sum()) == 400
    # Frames (not masks) still read as the colours they show.
    assert read_image(tmp_path / "one.png").shape == (64, 64, 3)
    assert int(binarize_mask(indices, "one.png").sum()) == 400


def test_a_labelme_palette_mask_with_two_labels_is_refused(tmp_path):
    """A labelme label.png (palette: 1 dark red, 2 dark green) was read as RGB and merged by the
    maximum over R, G, B: 400 rib + 400 pleura px -> 800 px of rib."""
    labels = rib_square()
    labels[44:64, 22:42] = 2

    def save(path):
        image = Image.fromarray(labels, mode="P")
        image.putpalette(LABELME_PALETTE)
        image.save(path)

    write_pair(tmp_path / "ds", "a_1.png", save)
    with pytest.raises(
        DatasetError, match=r"a_1\.png: the mask holds 3 label values \(0: 3296 px, 1: 400 px, 2"
    ):
        read_paired_dataset(tmp_path / "ds")


def test_a_labelme_palette_mask_with_one_label_reads(tmp_path):
    def save(path):
        image = Image.fromarray(rib_square(), mode="P")
        image.putpalette(LABELME_PALETTE)
        image.save(path)

    write_pair(tmp_path / "ds", "a_1.png", save)
    assert int(read_paired_dataset(tmp_path / "ds").masks[0].sum()) == 400


@pytest.mark.parametrize("how", ["quantize", "white first"])
def test_a_grey_mask_saved_as_a_palette_png_reads_its_grey_levels(tmp_path, how):
    """A 0/255 mask saved indexed with white at index 0 (Pillow's quantize(2), an adaptive
    palette, ImageMagick, pngquant) was read as its indices: rib 0 and background 1, so the
    background read as rib (3696 px instead of 400) through read_paired_dataset."""
    grey = rib_square() * np.uint8(255)
    if how == "quantize":
        image = Image.fromarray(grey).quantize(2)
    else:
        image = Image.fromarray((grey == 0).astype(np.uint8), mode="P")
        image.putpalette([255, 255, 255, 0, 0, 0] + [0, 0, 0] * 254)
    assert image.getpalette()[:3] == [255, 255, 255]  # white (the rib) is index 0

    write_pair(tmp_path / "ds", "a_1.png", image.save)
    assert int(read_paired_dataset(tmp_path / "ds").masks[0].sum()) == 400


def test_an_rgba_mask_whose_transparent_background_is_white_reads_its_rib(tmp_path):
    """A red rib (opaque) on a transparent background that keeps white RGB (as many editors
    save it) was refused as a label map of two colours (white 3696 px, red 400 px); before
    today's rules its maximum over R, G, B made the whole frame rib (4096 px)."""
    rib = rib_square().astype(bool)
    rgba = np.full((64, 64, 4), 255, np.uint8)
    rgba[rib, 1:3] = 0  # red
    rgba[~rib, 3] = 0  # transparent, still white underneath

    write_pair(tmp_path / "ds", "a_1.png", Image.fromarray(rgba, mode="RGBA").save)
    assert int(read_paired_dataset(tmp_path / "ds").masks[0].sum()) == 400


@pytest.mark.parametrize("colour", [(255, 0, 0), (255, 255, 0), (0, 0, 255)])
@pytest.mark.parametrize("quality", [50, 95])
def test_a_colour_mask_that_went_through_jpeg_reads_from_a_png(colour, quality):
    """A one-colour mask once saved as JPEG, then as PNG (no .jpg suffix to excuse it): its
    near-black noise ((0, 1, 0), (0, 0, 5): 1000+ px each) counted as colours of their own, and
    254 beside 255 as a second grey label, so it was refused as a label map."""
    import cv2

    rib = np.zeros((128, 128), np.uint8)
    cv2.ellipse(rib, (64, 64), (40, 10), 15, 0, 360, 255, -1)
    cv2.ellipse(rib, (50, 100), (30, 6), -10, 0, 360, 255, -1)
    rgb = np.zeros((128, 128, 3), np.uint8)
    rgb[rib > 0] = colour
    _, jpeg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1]
    read = binarize_mask(decoded, "mask.png")
    assert abs(int(read.sum()) - int((rib > 0).sum())) <= 0.01 * int((rib > 0).sum())


def red_and_green() -> np.ndarray:
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[5:24, 5:55, 0] = 255  # red rib: 19 x 50 = 950 px
    rgb[30:49, 5:55, 1] = 255  # green pleura: 950 px
    return rgb


def test_an_rgb_mask_with_two_colours_is_refused():
    """Red rib + green pleura (950 px each) were merged by the maximum over channels: 1900 px."""
    rgb = red_and_green()
    assert int(rgb.max(axis=-1).astype(bool).sum()) == 1900
    with pytest.raises(
        StackReadError,
        match=r"m\.png: the mask holds 2 colours .*\(\(255, 0, 0\): 950 px, \(0, 255, 0\): 950 px\)",
    ) as info:
        binarize_mask(rgb, "m.png")
    assert "rib label alone" in str(info.value)
    rgba = np.concatenate([rgb, np.full((64, 64, 1), 255, np.uint8)], axis=-1)
    with pytest.raises(StackReadError, match="2 colours"):
        binarize_mask(rgba, "m.png")


def test_an_rgb_label_map_through_the_paired_reader_is_refused(tmp_path):
    write_pair(tmp_path / "ds", "a_1.png", lambda p: Image.fromarray(red_and_green()).save(p))
    with pytest.raises(DatasetError, match=r"masks/a_1\.png: the mask holds 2 colours"):
        read_paired_dataset(tmp_path / "ds")


@pytest.mark.parametrize(
    ("colour", "smoothed"),
    [((255, 0, 0), 400), ((255, 255, 255), 400), ((0, 128, 255), 400), ((60, 0, 90), 484)],
)
def test_single_colour_masks_read_with_their_anti_aliased_edges(colour, smoothed):
    """One colour with anti-aliased shades is one label. A dark colour (maximum 90, at most 127)
    keeps the ``> 0`` rule, edge included (484 px); it was refused as a 7-value label map."""
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[rib_square() > 0] = colour
    assert int(binarize_mask(rgb, "m.png").sum()) == 400
    # Bilinear resizing (a drawing tool's anti-aliasing): many shades, still one colour.
    small = np.zeros((32, 32, 3))
    small[10:20, 11:21] = colour
    smooth = np.round(
        resize(small, (64, 64, 3), order=1, preserve_range=True, anti_aliasing=False)
    ).astype(np.uint8)
    assert len(np.unique(smooth.reshape(-1, 3), axis=0)) > 4
    assert int(binarize_mask(smooth, "m.png").sum()) == smoothed


def test_a_float_colour_mask_with_nan_is_refused_before_its_colours_are_read():
    rgb = np.zeros((8, 8, 3), np.float32)
    rgb[2:6, 2:6, 0] = 1.0
    rgb[0, 0, 1] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value" RuntimeWarning from the colour check
        with pytest.raises(StackReadError, match=r"c\.tif: mask contains NaN or infinite values"):
            binarize_mask(rgb, "c.tif")


@pytest.mark.parametrize("sigma", [5, 8])
def test_a_feathered_full_range_mask_is_cut_at_half_not_refused(sigma):
    """Audit 2026-12-04: a disk blurred with sigma 5-8 px (0..255) was refused as 'a label map
    with 180 values' (a few grey levels of its smooth tail each held 5% of the labelled pixels).
    A label map's labels hold most of its labelled pixels; a soft mask's do not (top share 0.02)."""
    from scipy.ndimage import gaussian_filter

    y, x = np.mgrid[:128, :128]
    disk = ((y - 64) ** 2 + (x - 64) ** 2) < 400
    soft = np.round(gaussian_filter(disk.astype(np.float32) * 255, sigma)).astype(np.uint8)
    read = binarize_mask(soft, "soft.png")
    assert abs(int(read.sum()) - int(disk.sum())) < 0.15 * int(disk.sum())  # 1169 / 1093 of 1245


def test_a_faint_soft_mask_is_refused_as_soft_not_read_as_everything_above_0():
    """A 6-px rib blurred with sigma 5 px peaks at 115: masks up to 127 are read as > 0, which
    would take 3680 px for a 540-px rib; it is refused and the message says what it is."""
    from scipy.ndimage import gaussian_filter

    rib = np.zeros((128, 128), bool)
    rib[60:66, 20:110] = True
    soft = np.round(gaussian_filter(rib.astype(np.float32) * 255, 5)).astype(np.uint8)
    assert soft.max() == 115
    with pytest.raises(StackReadError, match="soft mask.*mask > 57.5"):
        binarize_mask(soft, "faint.png")


def test_an_imagej_binary_mask_with_an_inverting_lut_reads_its_objects(tmp_path):
    """Fiji's binary masks (Black background off) are saved WhiteIsZero with objects at 255; the
    mask reader inverted them and read the background as rib (3696 px for a 400-px rib). A
    WhiteIsZero mask from another writer is still inverted."""
    from napari_ribseg.core.io.frame_folder import read_image

    mask = np.zeros((64, 64), np.uint8)
    mask[20:30, 10:50] = 255
    tifffile.imwrite(tmp_path / "ij.tif", mask, imagej=True, photometric="miniswhite")
    assert int(binarize_mask(read_image(tmp_path / "ij.tif", mask=True), "ij.tif").sum()) == 400
    tifffile.imwrite(tmp_path / "plain.tif", 255 - mask, photometric="miniswhite")
    read = binarize_mask(read_image(tmp_path / "plain.tif", mask=True), "plain.tif")
    assert int(read.sum()) == 400


def test_a_grey_palette_tiff_mask_with_white_first_reads_its_grey_levels(tmp_path):
    """As for PNG: a 0/255 mask stored as a palette TIFF with white at index 0 was read as its
    indices, the background as rib (3696 px for a 400-px rib). A coloured palette stays indices."""
    from napari_ribseg.core.io.frame_folder import read_image

    rib = np.zeros((64, 64), np.uint8)
    rib[20:30, 10:50] = 1
    white_first = np.zeros((3, 256), np.uint16)
    white_first[:, 0] = 65535  # index 0 white, index 1 black
    tifffile.imwrite(tmp_path / "p.tif", 1 - rib, photometric="palette", colormap=white_first)
    assert int(binarize_mask(read_image(tmp_path / "p.tif", mask=True), "p.tif").sum()) == 400
    voc = np.zeros((3, 256), np.uint16)
    voc[0, 1] = 128 * 257  # label 1 dark red: a coloured palette, read as indices
    tifffile.imwrite(tmp_path / "v.tif", rib, photometric="palette", colormap=voc)
    assert read_image(tmp_path / "v.tif", mask=True).max() == 1


@pytest.mark.parametrize("dtype", [np.int8, np.int16])
def test_a_signed_mask_with_rib_minus_1_reads_its_rib(tmp_path, dtype):
    """0/-1 (true stored as all bits set; 0/255 saved as signed 8-bit) read as empty, warning
    "largest value 0 but none is above the threshold 0": 0 px of rib for 400."""
    mask = -rib_square().astype(dtype)
    write_pair(tmp_path, "a_1.tif", lambda path: tifffile.imwrite(path, mask))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset = read_paired_dataset(tmp_path)
    assert int(dataset.masks[0].sum()) == 400
    assert int(dataset.masks[0][20:40, 22:42].sum()) == 400
    # -1 beside another label is two labels, not one rib.
    labels = mask.copy()
    labels[45:55, 5:60] = 1
    with pytest.raises(StackReadError, match=r"m\.tif: the mask holds 3 label values \(-1: 400 px"):
        binarize_mask(labels, "m.tif")


@pytest.mark.parametrize("line", [1, 2])
def test_a_thin_second_label_beside_a_large_rib_is_refused(line):
    """napari Labels, rib 1 (3000 px) and pleura 2 as a 1-px line (100 px): under the 5% share
    (155 px) the line was not a label, and 3100 px read as rib. Either label may be the line."""
    labels = np.zeros((128, 128), np.uint8)
    labels[10:60, 10:70] = 3 - line
    labels[100, 10:110] = line
    rib, other = (2, 1) if line == 1 else (1, 2)
    counts = {rib: 3000, other: 100}
    with pytest.raises(StackReadError, match=rf"1: {counts[1]} px, 2: {counts[2]} px\); .*a line"):
        binarize_mask(labels, "labels.tif")
    diagonal = np.zeros((128, 128), np.uint8)
    diagonal[10:60, 10:70] = 1
    diagonal[np.arange(10, 110), np.arange(10, 110)] = 2  # across the rib: 50 px inside it
    with pytest.raises(StackReadError, match=r"1: 2950 px, 2: 100 px"):
        binarize_mask(diagonal, "labels.tif")


def test_a_resampled_or_blurred_0_2_mask_is_still_one_rib():
    """What the thin-label check must not take for a line: the 1s a resampled 0/2 mask rings its
    rib with (each beside a 2), and a small core of 2s (an area, as a blurred 0/2 mask keeps)."""
    small = np.zeros((64, 64))
    small[5:59, 4:60] = 2
    ringed = np.round(resize(small, (150, 150), order=1, preserve_range=True)).astype(np.uint8)
    ring = int((ringed == 1).sum())
    assert 20 <= ring < 0.05 * int(np.count_nonzero(ringed))  # 512 px, under the share
    assert int(binarize_mask(ringed, "m.tif").sum()) == int(np.count_nonzero(ringed))
    cored = np.zeros((128, 128), np.uint8)
    cored[10:60, 10:70] = 1
    cored[30:35, 30:35] = 2  # 25 px: an area, under the share (150 px), as before
    assert int(binarize_mask(cored, "m.tif").sum()) == 3000


# ---- a thin 0/255 rib band shrunk bilinearly: interpolation greys, not labels ------------------


def thin_band(thick: int, shape: str) -> np.ndarray:
    """A 0/255 rib band ``thick`` px wide on 128x128: a row, a column, a slanted line or an arc."""
    import cv2

    mask = np.zeros((128, 128), np.uint8)
    if shape == "horizontal":
        mask[64 : 64 + thick, 8:120] = 255
    elif shape == "vertical":
        mask[8:120, 64 : 64 + thick] = 255
    elif shape == "diagonal":
        cv2.line(mask, (8, 40), (120, 90), 255, thick)
    else:
        cv2.ellipse(mask, (64, 104), (56, 40), 0, 200, 340, 255, thick)
    return mask


def resampled(mask: np.ndarray, how: str, scale: float, width: float | None = None) -> np.ndarray:
    """``mask`` resized bilinearly by ``how``: OpenCV, Pillow, or skimage with or without its
    anti-aliasing blur, to ``scale`` times its height (and ``width`` times its width)."""
    import cv2

    h = int(round(mask.shape[0] * scale))
    w = int(round(mask.shape[1] * (scale if width is None else width)))
    if how == "cv2":
        return cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
    if how == "pil":
        return np.asarray(Image.fromarray(mask).resize((w, h), Image.BILINEAR))
    up = resize(mask.astype(float), (h, w), order=1, preserve_range=True,
                anti_aliasing=how == "skimage-aa")  # fmt: skip
    return np.round(up).astype(np.uint8)


#: The fuzz grid: band width 1 or 2 px x 4 shapes x 4 resamplers x 6 scales = 192 masks.
FUZZ_GRID = [
    (thick, shape, how, scale)
    for thick in (1, 2)
    for shape in ("horizontal", "vertical", "diagonal", "arc")
    for how in ("cv2", "pil", "skimage", "skimage-aa")
    for scale in (0.4, 0.5, 0.6, 0.75, 1.5, 2.5)
]
#: The 18 of them refused as label maps: shrunk with a blur (Pillow, skimage anti-aliased), the
#: band peaks below 128, so it is read > 0, where its ridge row and flank row each counted as a
#: label (e.g. 0: 2507 px, 19: 43 px, 85: 43 px for a 1-px row at 0.4).
SHRUNK_BAND_LABEL_MAPS = [
    (thick, shape, how, scale)
    for thick, shape, how, scale in FUZZ_GRID
    if how in ("pil", "skimage-aa")
    and (
        (thick == 1 and shape in ("horizontal", "vertical") and scale in (0.4, 0.5, 0.6))
        or (thick == 1 and shape == "diagonal" and scale == 0.5)
        or (thick == 2 and shape in ("horizontal", "vertical") and scale == 0.4)
    )
]


@pytest.mark.parametrize(("thick", "shape", "how", "scale"), SHRUNK_BAND_LABEL_MAPS)
def test_a_thin_0_255_band_shrunk_bilinearly_is_read_not_refused_as_a_label_map(
    thick, shape, how, scale
):
    mask = resampled(thin_band(thick, shape), how, scale)
    assert 0 < mask.max() <= 127 and len(np.unique(mask)) >= 4
    read = binarize_mask(mask, "m.png")  # raised "... a label map rather than a rib mask"
    # The rule for a maximum up to 127, > 0: the band with its flanks, its ridge included.
    assert int(read.sum()) == int(np.count_nonzero(mask)) > 0
    assert read[mask == mask.max()].all()


def test_the_fuzz_grid_refuses_no_thin_band_as_a_label_map():
    """All 192: none is a label map now (18 were). Two 1-px arcs halved with a blur (peaks 96 and
    114, 14-15 grey levels) are still refused, as soft masks, naming a cut."""
    outcome = {}
    for case in FUZZ_GRID:
        try:
            binarize_mask(resampled(thin_band(*case[:2]), *case[2:]), "m.png")
        except StackReadError as exc:
            outcome[case] = "soft mask" if "a soft mask" in str(exc) else str(exc)
    assert len(FUZZ_GRID) == 192 and len(SHRUNK_BAND_LABEL_MAPS) == 18
    assert outcome == {
        (1, "arc", "pil", 0.5): "soft mask",
        (1, "arc", "skimage-aa", 0.5): "soft mask",
    }


def test_a_shallow_band_whose_ridge_changes_grey_is_not_a_label_map():
    """A 1-px line rising 2 px over 240, shrunk to 0.42: its ridge is runs of one grey each
    (lines of their own, 20+ px), together a small part of the band's pixels."""
    import cv2

    mask = np.zeros((256, 256), np.uint8)
    cv2.line(mask, (8, 110), (248, 112), 255, 1)
    shrunk = resampled(mask, "pil", 0.42)
    assert shrunk.max() <= 127
    assert int(binarize_mask(shrunk, "m.png").sum()) == int(np.count_nonzero(shrunk))


@pytest.mark.parametrize(("how", "scale"), [("cv2", 1.7), ("skimage", 1.7), ("pil", 0.6)])
def test_a_label_map_resampled_bilinearly_is_still_refused(how, scale):
    """Real labels are flat levels with areas of their own: rib 1 (1000 px), pleura 2 (500 px)
    and, in a third map, a 1-px line of 2 (its own pixels: no higher neighbour) keep being
    refused after resampling, though their edges gain interpolation greys."""
    labels = np.zeros((64, 64), np.uint8)
    labels[10:30, 5:55] = 1
    labels[40:50, 5:55] = 2
    with pytest.raises(StackReadError, match="a label map rather than a rib mask"):
        binarize_mask(resampled(labels, how, scale), "labels.tif")
    line = np.zeros((128, 128), np.uint8)
    line[10:60, 10:70] = 1
    line[100, 10:110] = 2
    with pytest.raises(StackReadError, match="a label map rather than a rib mask"):
        binarize_mask(resampled(line, "cv2", 1.0, 1.3), "labels.tif")


def _napari_labels(case: str) -> np.ndarray:
    """napari labels (1, 2, 3) whose lower label is a 1-px line hugging a higher one."""
    labels = np.zeros((64, 64), np.uint8)
    if case == "pleura 1 over rib 2":
        labels[30:38, 4:60] = 2
        labels[29, 4:60] = 1
    elif case == "two touching 1-px lines":
        labels[30, 4:60] = 1
        labels[31, 4:60] = 2
    else:  # "3, 2, 1 stacked": a rib area, two 1-px lines over it
        labels[30:38, 4:60] = 3
        labels[29, 4:60] = 2
        labels[28, 4:60] = 1
    return labels


@pytest.mark.parametrize(
    "case", ["pleura 1 over rib 2", "two touching 1-px lines", "3, 2, 1 stacked"]
)
def test_napari_labels_with_a_line_hugging_a_higher_label_are_still_refused(tmp_path, case):
    """Since the thin-band rule (2026-12-05) a label needed pixels of its own (no higher
    neighbour, or in a 2x2 square): a 1-px label line drawn against a higher label has none, so
    napari labels 1 and 2 (and 1, 2, 3) were read silently as one rib mask of all of them. Small
    label numbers (a maximum up to LABEL_IDS_MAX) are counted as before: refused, from a TIFF too."""
    labels = _napari_labels(case)
    with pytest.raises(StackReadError, match="a label map rather than a rib mask"):
        binarize_mask(labels, "labels.tif")
    write_pair(tmp_path / "ds", "a_1.tif", lambda path: tifffile.imwrite(path, labels))
    with pytest.raises(DatasetError, match="a label map rather than a rib mask"):
        read_paired_dataset(tmp_path / "ds")
