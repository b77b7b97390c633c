"""The model-folder setting reaches the core as an argument, and the segment worker gives threads back."""

from __future__ import annotations

import os

import numpy as np
import torch

from napari_ribseg._widgets._settings import WidgetSettings, model_dir


def _save_tiny(folder, name: str) -> None:
    from napari_ribseg.core.models import ModelCard, build_model, save_checkpoint

    torch.manual_seed(0)
    model = build_model("unet", "tiny", input_size=64, weights="random")
    card = ModelCard(name=name, variant="unet", preset="tiny", widths=list(model.widths))
    save_checkpoint(model, card, folder / f"{name}.safetensors")


def test_settings_adapter_passes_the_folder_without_touching_the_environment(tmp_path):
    before = dict(os.environ)
    assert model_dir(WidgetSettings()) is None
    assert model_dir(WidgetSettings(model_folder=str(tmp_path))) == tmp_path
    assert dict(os.environ) == before


def test_set_model_folder_lists_its_models_and_leaves_the_environment(docked, tmp_path):
    _viewer, widget = docked
    env_before = os.environ.get("RIBSEG_MODEL_DIR")
    folder = tmp_path / "chosen"
    folder.mkdir()
    _save_tiny(folder, "in-chosen-folder")
    widget.load_section.set_model_folder(folder)
    assert os.environ.get("RIBSEG_MODEL_DIR") == env_before
    names = [
        widget.segment_section.model_combo.itemText(i).split(" ")[0]
        for i in range(widget.segment_section.model_combo.count())
    ]
    assert "in-chosen-folder" in names
    assert widget.load_section.model_folder_label.text() == str(folder)


def test_the_segment_worker_restores_the_torch_thread_count(docked, tiny_model, stack_file, qtbot):
    _viewer, widget = docked
    before = torch.get_num_threads()
    # Never the worker's own choice (cores - 1), so a missing restore shows.
    mine = (os.cpu_count() or 2) + 1
    torch.set_num_threads(mine)
    try:
        widget.load(stack_file)
        assert widget.segment_section.select_model(tiny_model)
        widget.segment("all")
        qtbot.waitUntil(lambda: widget.segment_section.worker is None, timeout=60_000)
        assert torch.get_num_threads() == mine
        assert np.asarray(widget.session.project.labels).shape == (6, 64, 64)
    finally:
        torch.set_num_threads(before)
