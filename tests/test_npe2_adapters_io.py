"""The npe2 reader and writer adapters: thin, never raising on probe, numbers preserved."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_ribseg._reader import get_reader
from napari_ribseg._writer import write_labels
from napari_ribseg.core.errors import StackReadError
from napari_ribseg.core.io import write_stack_tiff


@pytest.fixture
def cine_path(tmp_path, rng):
    frames = rng.integers(0, 256, (3, 16, 12), dtype=np.uint8)
    return write_stack_tiff(tmp_path / "cine.tif", frames, spacing_mm=(0.2, 0.1), frame_rate=25)


def test_get_reader_returns_image_layer_with_mm_scale(cine_path):
    reader = get_reader(str(cine_path))
    assert callable(reader)
    [(data, kwargs, layer_type)] = reader(str(cine_path))
    assert layer_type == "image"
    assert data.shape == (3, 16, 12) and data.dtype == np.float32
    assert kwargs["name"] == "cine"
    assert kwargs["scale"] == pytest.approx((1.0, 0.2, 0.1))
    assert kwargs["metadata"]["frame_rate"] == pytest.approx(25.0)
    assert kwargs["metadata"]["original_dtype"] == "uint8"
    assert kwargs["metadata"]["source"] == str(cine_path)


def test_no_scale_when_spacing_unknown(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 4, 4), np.uint8))
    [(_, kwargs, _)] = get_reader(str(tmp_path / "a.npy"))(str(tmp_path / "a.npy"))
    assert "scale" not in kwargs


def test_get_reader_returns_none_for_what_it_cannot_read(tmp_path, cine_path):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "missing.tif")) is None
    assert get_reader(str(tmp_path / "empty")) is None
    assert get_reader([str(cine_path), str(tmp_path / "notes.txt")]) is None
    assert get_reader([]) is None
    assert get_reader("bad\x00name.tif") is None
    assert get_reader(None) is None  # type: ignore[arg-type]


def _frames(folder, values) -> list[str]:
    from PIL import Image

    folder.mkdir()
    for i, value in values.items():
        Image.fromarray(np.full((8, 6), value, np.uint8)).save(folder / f"frame{i}.png")
    return [str(folder / f"frame{i}.png") for i in values]


def test_napari_stack_true_gives_one_layer_of_the_frames_in_order(tmp_path):
    """viewer.open(files, stack=True) gave one single-frame layer per file (3 layers of 1 frame)."""
    from napari.components import ViewerModel
    from napari.plugins import _initialize_plugins

    _initialize_plugins()
    paths = _frames(tmp_path / "clip", {10: 30, 1: 10, 2: 20})  # handed over out of order
    layers = ViewerModel().open(paths, stack=True, plugin="napari-ribseg")
    assert [layer.name for layer in layers] == ["clip"]
    data = np.asarray(layers[0].data)
    assert data.shape == (3, 8, 6)
    assert np.round(data[:, 0, 0] * 255).tolist() == [10, 20, 30]  # frame1, frame2, frame10
    assert layers[0].metadata["files"] == ["frame1.png", "frame2.png", "frame10.png"]
    assert layers[0].metadata["reader"] == "frame-folder"
    assert layers[0].metadata["source"] == str(tmp_path / "clip")  # the review is the folder's


def test_napari_opens_a_points_csv_without_asking_which_plugin(tmp_path):
    """The "*" pattern made napari find two readers for a .csv: MultipleReaderError (in the
    viewer, a dialog asking which plugin should open it)."""
    from napari.components import ViewerModel
    from napari.plugins import _initialize_plugins

    _initialize_plugins()
    path = tmp_path / "points.csv"
    path.write_text("index,axis-0,axis-1\n0,1.0,2.0\n1,3.0,4.0\n")
    [layer] = ViewerModel().open(str(path), plugin=None)  # as File > Open and a drop do
    assert type(layer).__name__ == "Points"
    assert np.asarray(layer.data).tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_a_stack_of_cines_or_of_some_frames_is_refused_naming_why(tmp_path, cine_path):
    np.save(tmp_path / "b.npy", np.ones((2, 16, 12), np.float32))
    cines = [str(cine_path), str(tmp_path / "b.npy")]
    with pytest.raises(
        StackReadError, match=r"b\.npy: 2 files given as one stack, and this one is"
    ):
        get_reader(cines)(cines)
    paths = _frames(tmp_path / "clip", {1: 10, 2: 20, 3: 30})
    with pytest.raises(StackReadError, match=r"clip: 2 files given as one stack are 2 of the 3 "):
        get_reader(paths[:2])(paths[:2])
    other = _frames(tmp_path / "other", {4: 40})
    with pytest.raises(StackReadError, match=r"frame1\.png: 2 files given as one stack lie in 2 "):
        get_reader([paths[0], *other])([paths[0], *other])
    [(data, kwargs, _)] = get_reader(other)(other)  # one file in a list is that file
    assert data.shape == (1, 8, 6) and kwargs["name"] == "frame4"


def test_reader_function_raises_core_error_for_a_broken_file(tmp_path):
    path = tmp_path / "broken.tif"
    path.write_bytes(b"II*\x00broken")
    reader = get_reader(str(path))  # the name looks right, so a reader is offered
    with pytest.raises(StackReadError, match=r"broken\.tif"):
        reader(str(path))


def test_write_labels_uint8_atomic(tmp_path):
    labels = np.zeros((2, 8, 8), np.int32)
    labels[1, 3:5, 3:5] = 1
    written = write_labels(str(tmp_path / "ribs.tif"), labels, {"name": "ribs"})
    assert written == [str(tmp_path / "ribs.tif")]
    back = tifffile.imread(written[0])
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, labels)
    suffixed = write_labels(str(tmp_path / "noext"), labels[0], {})
    assert suffixed == [str(tmp_path / "noext.tif")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noext.tif", "ribs.tif"]


def test_write_labels_keeps_a_layers_mm_scale(tmp_path):
    from napari_ribseg.core.io import read_stack

    labels = np.zeros((2, 8, 10), np.uint8)
    labels[0, 2:4, 2:6] = 1
    mm = write_labels(str(tmp_path / "mm.tif"), labels, {"scale": (1.0, 0.2, 0.3)})
    assert read_stack(mm[0]).spacing_mm == pytest.approx((0.2, 0.3))
    np.testing.assert_array_equal(tifffile.imread(mm[0]), labels)
    px = write_labels(str(tmp_path / "px.tif"), labels, {"scale": (1.0, 1.0, 1.0)})
    assert read_stack(px[0]).spacing_mm is None


def test_manifest_points_at_these_adapters():
    import importlib
    from importlib.resources import files

    import yaml

    manifest = yaml.safe_load((files("napari_ribseg") / "napari.yaml").read_text())
    commands = {c["id"]: c["python_name"] for c in manifest["contributions"]["commands"]}
    for command, function in [
        ("napari-ribseg.get_reader", get_reader),
        ("napari-ribseg.write_labels", write_labels),
    ]:
        module, name = commands[command].split(":")
        assert getattr(importlib.import_module(module), name) is function


def test_napari_save_names_labels_that_do_not_fit_uint8(tmp_path):
    """npe2 reads a writer's ValueError as "no writer": saving instance labels up to 300 only
    warned "Given plugin 'napari-ribseg' is not a valid writer" and wrote nothing."""
    import npe2
    from napari.layers import Labels
    from napari.plugins.io import save_layers

    from napari_ribseg.core.errors import RibsegError

    npe2.PluginManager.instance().discover()  # as a viewer does at start

    labels = np.zeros((2, 8, 8), np.int32)
    labels[0, :3, :3] = 300
    target = tmp_path / "ribs.tif"
    with pytest.raises(RibsegError, match=r"ribs\.tif: cannot save these labels: .* got 0\.\.300$"):
        save_layers(str(target), [Labels(labels)], plugin="napari-ribseg")
    with pytest.raises(
        RibsegError, match=r"must be \(H, W\) or \(N, H, W\), got shape \(1, 2, 8, 8\)"
    ):
        write_labels(str(target), labels[np.newaxis] % 2, {})
    assert list(tmp_path.iterdir()) == []


def test_write_labels_onto_a_folder_is_an_output_path_error(tmp_path):
    from napari_ribseg.core.errors import OutputPathError

    (tmp_path / "ribs.tif").mkdir()
    with pytest.raises(OutputPathError, match=r"ribs\.tif: the labels file is a folder"):
        write_labels(str(tmp_path / "ribs.tif"), np.zeros((4, 4), np.uint8), {})
    assert [p.name for p in tmp_path.iterdir()] == ["ribs.tif"]


def test_a_layer_scaled_in_micrometres_is_saved_in_mm(tmp_path):
    """The scale was taken as mm whatever the layer's units: 200 um pixels were saved as 200 mm."""
    from napari.layers import Labels

    from napari_ribseg.core.io import read_stack

    layer = Labels(np.zeros((2, 8, 8), np.uint8), scale=(1, 200, 300), units=("pixel", "um", "um"))
    [path] = write_labels(str(tmp_path / "um.tif"), *layer.as_layer_data_tuple()[:2])
    assert read_stack(path).spacing_mm == pytest.approx((0.2, 0.3))
    plain = Labels(np.zeros((2, 8, 8), np.uint8), scale=(1, 0.2, 0.3))  # units pixel: read as mm
    [path] = write_labels(str(tmp_path / "px.tif"), *plain.as_layer_data_tuple()[:2])
    assert read_stack(path).spacing_mm == pytest.approx((0.2, 0.3))


def test_a_dropped_folder_holding_one_stack_tiff_says_to_open_the_file(tmp_path, cine_path):
    """The folder reader said only 'expected a single 2-D image, got shape (3, 16, 12)'."""
    folder = tmp_path / "clip folder"
    folder.mkdir()
    cine_path.rename(folder / "cine.tif")
    reader = get_reader(str(folder))
    with pytest.raises(StackReadError, match=r"cine\.tif: holds 3 frames \(a stack\); .*open the file itself"):  # fmt: skip
        reader(str(folder))
    [(data, _, _)] = get_reader(str(folder / "cine.tif"))(str(folder / "cine.tif"))
    assert data.shape == (3, 16, 12)
