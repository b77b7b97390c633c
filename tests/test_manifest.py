"""The npe2 manifest validates and every command it names imports."""

from __future__ import annotations

import importlib
from pathlib import Path

import npe2

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
