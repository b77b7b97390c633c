"""The widget's persistent settings: device, model folder, project folder, default freeze strategy.

napari 0.9 surfaces npe2 ``contributions.configurations`` in its Preferences dialog and through
``napari.settings.get_plugin_settings``. When the installed manifest declares a ``ribseg``
configuration category, those values are used, so a user edits them in napari's Preferences. Without
it (older napari, or a manifest that does not declare one) the values live in a small JSON file,
``settings.json`` under ``$RIBSEG_CONFIG_DIR`` or the platform's user config folder. The last folder
of the open dialogs is always kept in the JSON file: it is state, not a preference.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from napari_ribseg.core.atomic import write_text_atomic

PLUGIN_NAME = "napari-ribseg"
#: The configuration key the manifest uses for this plugin's settings category.
CATEGORY = "ribseg"
#: The keys that may come from napari's plugin settings (the rest are JSON-only state).
PREFERENCE_KEYS = ("device", "model_folder", "project_folder", "default_strategy")


@dataclass
class WidgetSettings:
    """What the widget remembers between sessions. Empty strings mean "the default"."""

    device: str = "auto"
    model_folder: str = ""
    project_folder: str = ""
    default_strategy: str = ""
    last_folder: str = ""


def config_dir() -> Path:
    """Folder of the JSON settings file (``$RIBSEG_CONFIG_DIR`` wins, for tests and kiosks)."""
    env = os.environ.get("RIBSEG_CONFIG_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_config_dir(PLUGIN_NAME, appauthor=False))


def _napari_category():
    """napari's settings object for our category, or ``None`` when napari does not provide one."""
    try:
        from napari.settings import get_plugin_settings

        return getattr(get_plugin_settings(PLUGIN_NAME), CATEGORY)
    except (ImportError, KeyError, AttributeError):
        return None


def settings_backend() -> str:
    """``"napari"`` when preferences come from napari's Preferences, else ``"json"``."""
    return "napari" if _napari_category() is not None else "json"


def load_settings() -> WidgetSettings:
    """Read the settings; a missing or damaged file gives the defaults (it is rewritten on save)."""
    values: dict = {}
    path = config_dir() / "settings.json"
    with contextlib.suppress(OSError, ValueError):
        raw = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(raw, dict):
            values.update(raw)
    category = _napari_category()
    if category is not None:
        for key in PREFERENCE_KEYS:
            if hasattr(category, key):
                values[key] = getattr(category, key)
    known = {f.name for f in fields(WidgetSettings)}
    return WidgetSettings(**{k: str(v) for k, v in values.items() if k in known and v is not None})


def save_settings(settings: WidgetSettings) -> None:
    """Write the settings (napari's preferences where declared, the JSON file always)."""
    category = _napari_category()
    if category is not None:
        for key in PREFERENCE_KEYS:
            if hasattr(category, key):
                # Assignment validates against the manifest's enum; an invalid value is skipped
                # rather than losing the whole save.
                with contextlib.suppress(ValueError):
                    setattr(category, key, getattr(settings, key))
    with contextlib.suppress(OSError):
        write_text_atomic(config_dir() / "settings.json", json.dumps(asdict(settings), indent=1))


def model_dir(settings: WidgetSettings) -> Path | None:
    """The model folder the core is given explicitly (``None``: the core's default folder).

    Passed as ``model_dir=`` to the registry and the output resolver; the environment is never
    changed, so a variable the user exported and other code in the process see what they set.
    """
    return Path(settings.model_folder).expanduser() if settings.model_folder else None
