"""``build_model`` initialises from named weight sources and never starts an x-unet silently at random."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch

from napari_ribseg.core.errors import CheckpointError, TrainingError
from napari_ribseg.core.models import (
    ModelCard,
    StartWeightsWarning,
    build_model,
    model_output_path,
    save_checkpoint,
)
from napari_ribseg.core.models.factory import salient_start_path


def test_xunet_without_its_salient_start_warns_by_default_and_raises_when_asked():
    assert not salient_start_path("tiny").is_file()  # no tiny start is bundled
    with pytest.warns(StartWeightsWarning, match="x-unet tiny: no salient pre-training"):
        model = build_model("x-unet", "tiny", input_size=64)
    assert model.pretrained_source is None
    with pytest.raises(CheckpointError, match="x-unet-tiny-salient"):
        build_model("x-unet", "tiny", input_size=64, weights="salient")


def test_bundled_salient_start_is_loaded_bit_for_bit():
    from safetensors.torch import load_file

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = build_model("x-unet", "compact", input_size=64)
    stored = load_file(str(salient_start_path("compact")))
    state = model.state_dict()
    assert torch.equal(state["head.weight"], stored["head.weight"])
    assert "x-unet-compact-salient" in model.pretrained_source


def test_weight_sources_random_vgg_and_path(tmp_path):
    torch.manual_seed(0)
    random_v = build_model("v-unet", "tiny", input_size=64, weights="random")
    vgg_v = build_model("v-unet", "tiny", input_size=64, weights="vgg16-hed")
    assert random_v.pretrained_source is None
    assert "VGG16" in vgg_v.pretrained_source
    assert not torch.equal(random_v.encoder[0].convs[0].weight, vgg_v.encoder[0].convs[0].weight)
    # The old spelling maps onto the same sources.
    assert build_model("v-unet", "tiny", input_size=64, pretrained=False).pretrained_source is None

    torch.manual_seed(1)
    source = build_model("unet", "tiny", input_size=64, weights="random")
    card = ModelCard(name="start", variant="unet", preset="tiny", widths=list(source.widths))
    path = save_checkpoint(source, card, tmp_path / "start.safetensors")
    started = build_model("unet", "tiny", input_size=64, weights=path)
    for name, tensor in source.state_dict().items():
        assert torch.equal(started.state_dict()[name], tensor), name
    with pytest.raises(CheckpointError, match=r"widths \[4, 8, 16, 32, 64\] do not match"):
        build_model("unet", "compact", input_size=64, weights=path)
    with pytest.raises(ValueError, match="v-unet starts from VGG16"):
        build_model("v-unet", "tiny", weights="salient")


def test_model_output_path_refuses_a_folder_or_a_file_as_folder(tmp_path):
    """A folder named x.safetensors (or a file in the way) failed only after training, at the
    save, as '.x.safetensors.tmpXXXX.safetensors: Is a directory'."""
    from napari_ribseg.core.errors import OutputPathError

    (tmp_path / "x.safetensors").mkdir()
    with pytest.raises(OutputPathError) as info:
        model_output_path(tmp_path / "x.safetensors")
    assert (
        str(info.value)
        == f"{tmp_path / 'x.safetensors'}: the model is a folder; expected a file name"
    )
    (tmp_path / "clip.tif").write_bytes(b"x")
    with pytest.raises(OutputPathError, match=r"clip\.tif is a file, so the model cannot be made"):
        model_output_path(tmp_path / "clip.tif" / "m.safetensors")


def test_model_output_path_is_one_rule(tmp_path):
    assert model_output_path("mine", model_dir=tmp_path) == tmp_path / "mine.safetensors"
    assert model_output_path(tmp_path / "a.safetensors") == tmp_path / "a.safetensors"
    assert model_output_path(tmp_path / "a.json") == tmp_path / "a.safetensors"
    assert model_output_path(tmp_path / "sub" / "b") == tmp_path / "sub" / "b.safetensors"
    with pytest.raises(TrainingError, match="path ending in .safetensors"):
        model_output_path("models/x.pt")
    (tmp_path / "mine.safetensors").write_bytes(b"")
    with pytest.raises(TrainingError, match="exists"):
        model_output_path("mine", model_dir=tmp_path, overwrite=False)
    # A user model named like a bundled one (or a variant name) would stand in for it silently.
    for name in ("unet-compact", "v-unet-compact", "x-unet-compact-salient", "unet", "v-unet"):
        with pytest.raises(TrainingError, match=f"output name '{name}' is a bundled model's"):
            model_output_path(name, model_dir=tmp_path)
    with pytest.raises(TrainingError, match="is a bundled model's"):
        model_output_path(tmp_path / "unet-compact.safetensors", model_dir=tmp_path)
    # Elsewhere (a run folder) the bundled stem is only a file name.
    run_dir = tmp_path / "run"
    assert (
        model_output_path(run_dir / "unet-compact.safetensors", model_dir=tmp_path).parent
        == run_dir
    )


def test_variants_registry_and_paths_import_without_torch():
    code = (
        "import sys\n"
        "from napari_ribseg.core.models import VARIANTS, model_output_path, list_models\n"
        "import napari_ribseg.core.experiments.config\n"
        "list_models()\n"
        "print('torch' in sys.modules, len(VARIANTS))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "3"]


def test_variants_are_declared_once():
    from napari_ribseg.core.experiments import config
    from napari_ribseg.core.models import VARIANTS, architectures, variants

    assert config.VARIANTS is variants.VARIANTS is VARIANTS
    assert architectures.VARIANTS is VARIANTS
