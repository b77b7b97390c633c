"""Where a new model goes: the one resolver for fine-tune, adaptation and pre-training outputs.

Torch-free, so the CLI can check ``--out`` before it loads anything.
"""

from __future__ import annotations

import os
from pathlib import Path

from napari_ribseg.core.errors import TrainingError


def model_output_path(
    name_or_path: str | os.PathLike,
    *,
    overwrite: bool = True,
    model_dir: str | os.PathLike | None = None,
) -> Path:
    """A model name -> ``<model folder>/NAME.safetensors``; a ``.safetensors`` path stays as is.

    ``model_dir`` is the user model folder (``None``: :func:`~.registry.user_model_dir`). A path
    with a folder but no suffix gets ``.safetensors``; any other suffix raises
    :class:`TrainingError`, as does an existing file when ``overwrite`` is false.
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    has_folder = "/" in text or os.sep in text
    if path.suffix == ".safetensors":
        target = path
    elif path.suffix == ".json":  # the card beside the weights names the same model
        target = path.with_suffix(".safetensors")
    elif path.suffix or not text.strip():
        raise TrainingError(
            f"output {text!r}: expected a model name (no folder, no suffix) or a path ending in "
            ".safetensors"
        )
    elif has_folder:
        target = path.with_name(path.name + ".safetensors")
    else:
        from napari_ribseg.core.models.registry import user_model_dir

        target = user_model_dir(model_dir) / f"{text}.safetensors"
    from napari_ribseg.core.models.registry import (
        best_model_of_variant,
        bundled_model_dir,
        user_model_dir,
    )

    in_user_folder = target.parent.resolve() == user_model_dir(model_dir).resolve()
    stem = target.stem
    if in_user_folder and (
        (bundled_model_dir() / f"{stem}.safetensors").exists()
        or best_model_of_variant(stem) is not None
    ):
        # resolve_model looks in the user folder first: the new model would hide the bundled one.
        raise TrainingError(
            f"output name {stem!r} is a bundled model's (or selects one, as a variant name): a "
            f"user model of that name would stand in for it wherever {stem!r} is asked for; "
            "choose another name"
        )
    if not overwrite and target.exists():
        raise TrainingError(f"output {target} exists; choose a new name or allow overwriting it")
    from napari_ribseg.core.atomic import check_writable

    # Before the training: a folder of that name failed only at the save, naming a temporary file.
    return check_writable(target, "model")


__all__ = ["model_output_path"]
