"""bioimage.io export: the package passes bioimageio.core's own test and predicts what we predict."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from napari_ribseg.cli import main
from napari_ribseg.core.inference import predict_stack_sync
from napari_ribseg.core.models import build_model, save_checkpoint
from napari_ribseg.core.models.card import Metric, ModelCard
from napari_ribseg.core.models.export import export_bioimageio, validate_bioimageio


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = build_model("unet", "tiny", input_size=64, pretrained=False)
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    card = ModelCard(
        name="tiny-rib",
        variant="unet",
        preset="tiny",
        widths=list(model.widths),
        input_size=64,
        metrics=[Metric("dice", 0.5, "none: random weights")],
    )
    save_checkpoint(model, card, path)
    return path


def test_cli_export_passes_bioimageio_core_test_model(checkpoint, tmp_path, capsys):
    out = tmp_path / "tiny.zip"
    assert main(["export-bioimageio", str(checkpoint), "--out", str(out)]) == 0
    assert "bioimage.io model package of tiny-rib" in capsys.readouterr().out
    names = set(zipfile.ZipFile(out).namelist())
    assert {"rdf.yaml", "weights.pt", "test_input.npy", "test_output.npy"} <= names
    summary = validate_bioimageio(out)
    assert summary.status == "passed", summary.display()


def test_cli_export_to_a_folder_is_refused_before_packing(
    checkpoint, tmp_path, capsys, monkeypatch
):
    """--out naming a folder failed after packing as '<folder>/.<name>.tmpXXXX: Is a directory'."""
    import napari_ribseg.core.models.export as export

    def never(*args, **kwargs):
        raise AssertionError("packed before checking --out")

    monkeypatch.setattr(export._ProbabilityNet, "script", never)
    assert main(["export-bioimageio", str(checkpoint), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"ribseg export-bioimageio: error: {tmp_path}: the package is a folder; expected a file name\n"
    )


def test_exported_weights_give_our_probabilities(checkpoint, tmp_path):
    from napari_ribseg.core.models import load_model

    loaded = load_model(checkpoint)
    out = export_bioimageio(loaded, tmp_path / "m.zip")
    with zipfile.ZipFile(out) as z:
        z.extract("weights.pt", tmp_path)
    scripted = torch.jit.load(str(tmp_path / "weights.pt"))
    frame = np.random.default_rng(1).random((64, 64), dtype=np.float32)
    with torch.inference_mode():
        theirs = scripted(torch.from_numpy(frame)[None, None])[0, 0].numpy()
    # The exported network is one pass; the product's mirror-image averaging is not part of it.
    ours = predict_stack_sync(loaded, frame[None], device="cpu", flip_average=False).prob[0]
    assert np.abs(np.round(theirs * 255) - ours).max() <= 1


@pytest.mark.parametrize("name", ["tiny.tar", "tiny", "tiny.rdf.yaml"])
def test_cli_export_refuses_a_package_name_that_is_not_zip(
    checkpoint, tmp_path, capsys, monkeypatch, name
):
    """--out x.tar (or no suffix) wrote a zip under that name, which tar and file managers then
    failed to open; refused before packing, naming the .zip to use."""
    import napari_ribseg.core.models.export as export

    def never(*args, **kwargs):
        raise AssertionError("packed before checking --out")

    monkeypatch.setattr(export._ProbabilityNet, "script", never)
    out = tmp_path / name
    assert main(["export-bioimageio", str(checkpoint), "--out", str(out)]) == 2
    stem = name.split(".")[0] if name != "tiny.rdf.yaml" else "tiny.rdf"
    assert capsys.readouterr().err == (
        f"ribseg export-bioimageio: error: {out}: a bioimage.io model package is a .zip file; "
        f"name it {stem}.zip\n"
    )
    assert not out.exists()


def test_the_default_bundled_model_exports(tmp_path, capsys):
    """bioimage.io refuses a test output below 1e-4 everywhere: the test frame must hold ribs the
    bundled rib models mark (they marked nothing on striped noise and could not be exported)."""
    from napari_ribseg.core.models import default_model

    name = default_model().name
    assert main(["export-bioimageio", name, "--out", str(tmp_path / "default.zip")]) == 0
    with zipfile.ZipFile(tmp_path / "default.zip") as z:
        z.extract("test_output.npy", tmp_path)
    assert np.load(tmp_path / "test_output.npy").max() > 0.5
    assert "TracerWarning" not in capsys.readouterr().err
