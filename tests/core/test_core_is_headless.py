"""The core and the CLI run on a headless server: no Qt, napari or magicgui, and torch only where used.

Every module under ``napari_ribseg.core`` and ``napari_ribseg.cli`` is found by walking the
packages, so a new module is checked without editing this file.
"""

import pkgutil
import subprocess
import sys

import napari_ribseg.cli
import napari_ribseg.core

GUI_MODULES = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt")
#: Modules that build or train networks and so import torch at import time; every other core and
#: cli module must import it lazily (inside the function that needs it).
TORCH_AT_IMPORT = (
    "napari_ribseg.core.models",
    "napari_ribseg.core.training.loop",
    "napari_ribseg.core.training.losses",
    "napari_ribseg.core.training.resume",
    "napari_ribseg.core.training.distributed",
    "napari_ribseg.core.training.evaluation",
)


def _modules() -> list[str]:
    names = []
    for package in (napari_ribseg.core, napari_ribseg.cli):
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.endswith(".__main__"):  # runs the CLI when imported
                names.append(info.name)
    return names


def _needs_torch(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in TORCH_AT_IMPORT)


def _loaded_after_import(modules: list[str], watched: tuple[str, ...]) -> list[str]:
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(','.join(w for w in {watched!r} if w in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_the_walk_finds_every_layer():
    names = _modules()
    for expected in (
        "napari_ribseg.core.io.tiff",
        "napari_ribseg.core.project",
        "napari_ribseg.core.training.data",
        "napari_ribseg.core.experiments.runner",
        "napari_ribseg.core.simulate.cine",
        "napari_ribseg.cli.cmd_predict",
    ):
        assert expected in names
    assert len(names) > 50


def test_no_core_or_cli_module_imports_qt_napari_or_magicgui():
    assert _loaded_after_import(_modules(), GUI_MODULES) == []


def test_only_the_network_modules_import_torch():
    light = [m for m in _modules() if not _needs_torch(m)]
    assert _loaded_after_import(light, ("torch",)) == []


def test_the_plugin_manifest_imports_no_torch():
    assert _loaded_after_import(["napari_ribseg"], ("torch",)) == []
