"""A 16-bit file that declares its bit depth (a PNG's sBIT chunk, a TIFF's MaxSampleValue) is read
at that depth, not at the one guessed from its maximum.

Before: a dark 12-bit frame (brightest pixel 800) was divided by 1023, the 10-bit guess, and read
4 times too bright (0.78 instead of 0.195)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image, PngImagePlugin

from napari_ribseg.core.io import read_stack
from napari_ribseg.core.io.bit_depth import declared_bits
from napari_ribseg.core.io.intensity import describe_scaling
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
    assert declared_bits(tmp_path / "f.png") == (12, "sBIT", 4095)
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


# ---- a MaxSampleValue that is not 2**n - 1 is the white point the file declares -----------------


@pytest.mark.parametrize("lazy", [False, True])
def test_a_max_sample_value_of_5000_is_the_white_point_not_13_bits(tmp_path, lazy):
    """A detector that saturates at 5000 declares it: its brightest allowed sample reads 1.0.

    Before: the tag gave ``5000 .bit_length()`` = 13 bits, and the stack was divided by 8191
    (5000 read 0.61, though the file says no sample goes above 5000)."""
    data = np.stack([_dark(5000), _dark(2500)])
    _tiff(tmp_path / "s.tif", data, 5000)
    assert declared_bits(tmp_path / "s.tif") == (13, "MaxSampleValue", 5000)
    stack = read_stack(tmp_path / "s.tif")
    assert float(stack.frames[0, 0, 0]) == 1.0  # was 5000 / 8191 = 0.610
    np.testing.assert_allclose(stack.frames, data / 5000, rtol=1e-6)
    scaling = stack.metadata["intensity_scaling"]
    assert (scaling["divisor"], scaling["significant_bits"], scaling["bits_from"]) == (
        5000.0,
        13,
        "MaxSampleValue",
    )
    assert (
        describe_scaling(scaling) == "divided by 5000 (white point declared by its MaxSampleValue)"
    )
    if lazy:  # streaming predict divides as the reader does
        frames, _ = open_frames(tmp_path / "s.tif")
        assert isinstance(frames, TiffFrames)
        np.testing.assert_allclose(frames[0:2], stack.frames, atol=1e-7)


def test_max_sample_values_of_2n_minus_1_keep_their_bits(tmp_path):
    for top, bits in ((255, 8), (1023, 10), (4095, 12), (16383, 14)):
        _tiff(tmp_path / f"s{bits}.tif", _dark(min(top, 200))[None], top)
        scaling = read_stack(tmp_path / f"s{bits}.tif").metadata["intensity_scaling"]
        assert (scaling["divisor"], scaling["significant_bits"]) == (float(top), bits)
        assert describe_scaling(scaling) == (
            f"divided by {top} ({bits} significant bits, declared by its MaxSampleValue)"
        )


def test_data_above_a_declared_white_point_warn_and_keep_the_guess(tmp_path):
    """6000 above a declared 5000 is not the file's rule: guessed (before: 6000 < 8191 fit the
    13 bits and read silently 0.73)."""
    _tiff(tmp_path / "s.tif", _dark(6000)[None], 5000)
    with pytest.warns(UserWarning, match=r"s\.tif: its MaxSampleValue declares a maximum sample "
                      r"value of 5000, but its largest value is 6000"):  # fmt: skip
        scaling = read_stack(tmp_path / "s.tif").metadata["intensity_scaling"]
    assert (scaling["divisor"], scaling["bits_from"]) == (16383.0, "stack maximum")


def test_pages_of_one_tiff_that_declare_other_white_points_guess_and_warn(tmp_path):
    """Only the first page's MaxSampleValue was read: a page declaring 65535 (2500 on it reads
    0.04) was divided by the first page's 5000 and read 0.5, twelve times too bright, without a
    word. A value on the first page only (tifffile, ImageJ) still declares the whole file."""
    with tifffile.TiffWriter(tmp_path / "two.tif") as tif:
        for data, top in ((_dark(5000), 5000), (_dark(2500), 65535)):
            tif.write(
                data, photometric="minisblack", metadata=None, extratags=[(281, "H", 1, top, True)]
            )
    with pytest.warns(
        UserWarning,
        match=r"two\.tif: its pages declare different MaxSampleValue \(5000 on the first, 65535",
    ):
        assert declared_bits(tmp_path / "two.tif") is None
    with pytest.warns(UserWarning, match="pages declare different MaxSampleValue"):
        scaling = read_stack(tmp_path / "two.tif").metadata["intensity_scaling"]
    assert (scaling["divisor"], scaling["bits_from"]) == (16383.0, "stack maximum")
    tifffile.imwrite(
        tmp_path / "first.tif",
        np.stack([_dark(5000), _dark(2500)]),
        photometric="minisblack",
        extratags=[(281, "H", 1, 5000, True)],
    )
    assert declared_bits(tmp_path / "first.tif") == (13, "MaxSampleValue", 5000)


def test_a_folder_of_tiffs_with_other_white_points_guesses_and_says_why(tmp_path):
    for i, top in enumerate((5000, 4095)):
        _tiff(tmp_path / f"f{i}.tif", _dark()[None], top)
    scaling = read_stack(tmp_path).metadata["intensity_scaling"]
    assert (scaling["divisor"], scaling["bits_from"]) == (1023.0, "stack maximum")
    assert scaling["bits_note"] == (
        "declared bit depths not used, the files do not agree: white point 5000 "
        "(MaxSampleValue) in 1 file, 12 (MaxSampleValue) in 1 file"
    )


# ---- the per-clip intensity line says where each clip's depth came from -------------------------


def _paired(root, clips: dict[str, int | None], top: int = 800) -> None:
    """``clips``: clip -> the sBIT its two PNG images declare (``None``: none)."""
    for sub in ("IMG", "MASK"):
        (root / sub).mkdir(parents=True)
    for clip, sbit in clips.items():
        for i in range(2):
            _png(root / "IMG" / f"{clip}_f{i}.png", _dark(top), sbit)
            mask = np.zeros((8, 10), np.uint8)
            Image.fromarray(mask).save(root / "MASK" / f"{clip}_f{i}.png")


def test_the_per_clip_line_says_declared_or_guessed_as_the_json_does(tmp_path):
    """Before: ``4095 (12 significant bits) for 1 clip (a), 1023 (10 significant bits) for 1
    clip (b)``: which clip's depth was declared only the JSON record said."""
    _paired(tmp_path, {"a": 12, "b": None})
    with pytest.warns(UserWarning, match="bit depths differ"):
        data = read_paired_dataset(tmp_path)
    clips = data.scaling["uint16_clips"]
    assert (clips["a"]["bits_from"], clips["b"]["bits_from"]) == ("sBIT", "clip maximum")
    assert describe_scaling(data.scaling) == (
        "16-bit images divided by their clip's bit depth: 4095 (12 significant bits, declared by "
        "their sBIT) for 1 clip (a), 1023 (10 significant bits, from the clip maximum) for 1 clip "
        "(b); bit depths differ between clips"
    )


def test_clips_of_one_divisor_but_another_origin_are_named_apart(tmp_path):
    """A clip whose 12 bits were declared and one whose 12 bits were guessed share the divisor
    4095 but not its origin: two parts, not one (and no "bit depths differ")."""
    _paired(tmp_path, {"a": 12, "b": None}, top=3000)
    data = read_paired_dataset(tmp_path)
    assert describe_scaling(data.scaling) == (
        "16-bit images divided by their clip's bit depth: 4095 (12 significant bits, declared by "
        "their sBIT) for 1 clip (a), 4095 (12 significant bits, from the clip maximum) for 1 clip "
        "(b)"
    )


def test_the_per_clip_line_names_a_clip_whose_declared_depths_were_not_used(tmp_path):
    _paired(tmp_path, {"a": 12})
    _png(tmp_path / "IMG" / "a_f1.png", _dark(), None)  # one image of clip a declares nothing
    data = read_paired_dataset(tmp_path)
    note = data.scaling["uint16_clips"]["a"]["bits_note"]
    assert describe_scaling(data.scaling) == (
        "16-bit images divided by their clip's bit depth: 1023 (10 significant bits, from the clip "
        f"maximum) for 1 clip (a); clip a: {note}"
    )
    assert note == (
        "declared bit depths not used, the files do not agree: 12 (sBIT) in 1 file, none in 1 file"
    )


# ---- a review saved before depths were declared still opens -------------------------------------


def _legacy_review(source, frames_then) -> np.ndarray:
    """A review of ``source`` as saved before 2026-12-04: bound to the frames read then, with no
    source signature (so no "same file on disk" rebinding); returns its labels."""
    from napari_ribseg.core.project import ReviewProject, project_dir_for
    from napari_ribseg.core.stack import FrameStatus

    folder = project_dir_for(source)
    project, _ = ReviewProject.open(
        folder, frames_then.shape[0], frames_then.shape[1:], source=source, frames=frames_then
    )
    project.labels[0, 2:5, 3:8] = 1  # 15 pixels of rib drawn by hand
    project.set_status(0, FrameStatus.CURATED)
    project.source_signature = None  # the old format: a content fingerprint only
    assert project.save()
    project.close()
    saved = json.loads((project_dir_for(source) / "v000001" / "project.json").read_text())
    assert saved["source_signature"] is None
    return project.labels.copy()


@pytest.mark.parametrize(
    ("name", "top", "declared", "then"),
    [
        ("dark.tif", 200, 4095, 255.0),  # MaxSampleValue 4095, brightest 200: the 8-bit guess
        ("white.tif", 3000, 5000, 4095.0),  # a white point 5000, brightest 3000: 12-bit guess
        # sBIT 10, brightest 900: /4095 by the 8/12/16 rule (an alias before too: kept as a check)
        ("ten.png", 900, 10, 4095.0),
    ],
)
def test_a_review_saved_before_declared_depths_reopens_with_its_labels(
    tmp_path, name, top, declared, then
):
    """A review saved when the file's declared depth was not read (its frames divided by the
    guess from the maximum) is the same file's: it reopens with its labels (masks do not depend on
    the intensity scale) and is bound to today's reading at its next save.

    Before: today's reading was not among the review's earlier fingerprints, and with no signature
    to show the file unchanged the review was refused ("this review belongs to ...")."""
    from napari_ribseg.core.project import project_dir_for, review_exists, stack_fingerprint
    from napari_ribseg.core.session import ReviewSession

    raw = np.stack([_dark(top), _dark(top // 2)])
    path = tmp_path / name
    if name.endswith(".png"):
        _png(path, raw[0], declared)
        raw = raw[:1]
    else:
        _tiff(path, raw, declared)
    labels = _legacy_review(path, raw.astype(np.float32) / np.float32(then))
    stack = read_stack(path)
    scaling = stack.metadata["intensity_scaling"]
    assert scaling["bits_from"] in ("sBIT", "MaxSampleValue") and scaling["divisor"] != then
    assert review_exists(
        project_dir_for(path), stack.frames, stack.source, scaling, stack.metadata.get("variable")
    )
    session = ReviewSession.open(path, existing=True)
    try:
        np.testing.assert_array_equal(session.project.labels, labels)
        assert int(session.project.labels.sum()) == 15
        assert session.project.fingerprint == stack_fingerprint(stack.frames)  # rebound
        assert session.project.save()
    finally:
        session.close()
    saved = json.loads((project_dir_for(path) / "v000002" / "project.json").read_text())
    assert saved["fingerprint"] == stack_fingerprint(stack.frames)
    assert saved["source_signature"] is not None


@pytest.mark.parametrize("white_is_zero", [False, True])
def test_the_earlier_readings_of_a_declared_white_point_are_all_aliases(tmp_path, white_is_zero):
    """MaxSampleValue 5000, brightest 3000: read /4095 by the guess (before declarations, and by
    the 8/12/16 rule), /8191 by the white point's 13 bits (2026-12-05, with a signature) and
    /65535 before 2026-12-03. A record without ``maximum`` recovers it from the frames."""
    from napari_ribseg.core.project import legacy_fingerprints, stack_fingerprint

    raw = np.stack([_dark(3000), _dark(1500)])
    extra = [(281, "H", 1, 5000, True)]
    photometric = "miniswhite" if white_is_zero else "minisblack"
    tifffile.imwrite(tmp_path / "w.tif", raw, photometric=photometric, extratags=extra)
    stack = read_stack(tmp_path / "w.tif")
    scaling = stack.metadata["intensity_scaling"]
    assert (scaling["divisor"], scaling["maximum"], scaling.get("inverted", False)) == (
        5000.0,
        3000,
        white_is_zero,
    )

    def then(divisor: int) -> dict:
        v = raw.astype(np.float32) / np.float32(divisor)
        return stack_fingerprint(np.float32(1) - v if white_is_zero else v)

    expected = [then(4095), then(8191), then(65535)]
    assert legacy_fingerprints(stack.frames, scaling) == expected
    without = {k: v for k, v in scaling.items() if k != "maximum"}
    assert legacy_fingerprints(stack.frames, without) == expected
