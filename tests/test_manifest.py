"""The npe2 manifest validates and every command it names imports."""

from __future__ import annotations

import importlib
from pathlib import Path

import npe2
import pytest

import napari_ribseg

MANIFEST = Path(napari_ribseg.__file__).with_name("napari.yaml")


def test_manifest_validates_and_commands_resolve():
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert manifest.name == "napari-ribseg"
    ids = {c.id for c in manifest.contributions.commands}
    assert {"napari-ribseg.get_reader", "napari-ribseg.make_widget"} <= ids
    for command in manifest.contributions.commands:
        module, _, attr = command.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), command.python_name


def test_manifest_is_the_installed_entry_point():
    pm = npe2.PluginManager.instance()
    pm.discover()
    assert pm.get_manifest("napari-ribseg").name == "napari-ribseg"


def _reader_plugins(path: str) -> list[str]:
    """Plugins napari would offer for ``path`` with this worktree's manifest and napari's own."""
    pm = npe2.PluginManager()
    pm.register(npe2.PluginManifest.from_file(MANIFEST))
    pm.register(npe2.PluginManifest.from_distribution("napari"))
    return sorted(r.plugin_name for r in pm.iter_compatible_readers([path]))


@pytest.mark.parametrize("name", ["points.csv", "notes.txt", "data.h5", "scene.svg", "run.py"])
def test_reader_is_not_offered_for_files_it_cannot_read(name):
    """The "*" pattern offered the reader for every file: a .csv asked which plugin to use."""
    assert "napari-ribseg" not in _reader_plugins(name)


@pytest.mark.parametrize(
    "name",
    [
        "cine.tif", "cine.TIFF", "clip.dcm", "clip.dicom", "clip.mp4", "clip.avi", "clip.mov",
        "cine.mat", "cine.npy", "cine.npz", "frame.png", "frame.jpg", "frame.jpeg", "frame.bmp",
        "anim.gif", "anim.webp", "IM_0001", "US.000001.IMG", "1.2.840.113619.2.55.3.320",
        "1.2.840.113619.2.55.3.7",
    ],
)  # fmt: skip
def test_reader_is_offered_for_every_format_it_reads(name):
    assert "napari-ribseg" in _reader_plugins(name)


def test_reader_is_offered_for_folders(tmp_path):
    assert "napari-ribseg" in _reader_plugins(str(tmp_path))


def test_settings_defaults_are_the_engines():
    """napari's Preferences show the manifest's defaults; they must be the engine's own (the
    widget falls back to ``FinetuneConfig().strategy`` when the preference is unset)."""
    import yaml

    from napari_ribseg._widgets._settings import WidgetSettings
    from napari_ribseg.core.training import FREEZE_STRATEGIES
    from napari_ribseg.core.training.config import FinetuneConfig

    props = yaml.safe_load(MANIFEST.read_text())["contributions"]["configurations"]["ribseg"]
    props = props["properties"]
    assert props["default_strategy"]["default"] == FinetuneConfig().strategy
    assert props["default_strategy"]["enum"] == list(FREEZE_STRATEGIES)
    assert props["device"]["default"] == WidgetSettings().device
