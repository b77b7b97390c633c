"""Variant names resolve to bundled rib models; start checkpoints are marked; single images open."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from napari_ribseg.core.io import find_reader, read_stack
from napari_ribseg.core.models.registry import list_models, resolve_model


@pytest.mark.parametrize(
    ("name", "expected"),
    [("unet", "unet-compact"), ("v-unet", "v-unet-compact"), ("x-unet", "x-unet-compact")],
)
def test_variant_names_resolve_to_best_bundled_rib_model(name, expected):
    assert resolve_model(name).stem == expected


def test_salient_start_checkpoint_is_marked_and_never_a_variant_pick():
    roles = {e.name: e.is_start for e in list_models() if e.source == "bundled"}
    assert roles["x-unet-compact-salient"] is True
    assert roles["x-unet-compact"] is False
    assert roles["unet-compact"] is False


def test_models_cli_marks_start_checkpoints(capsys):
    from napari_ribseg.cli import main

    assert main(["models"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "salient" in ln)
    assert "start checkpoint" in line


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".gif", ".webp"])
def test_single_image_opens_as_one_frame_stack(tmp_path, suffix):
    grey = np.zeros((40, 48), np.uint8)
    grey[10:20, 5:40] = 200
    path = tmp_path / f"frame{suffix}"
    extra = {"lossless": True} if suffix == ".webp" else {}
    Image.fromarray(grey).convert("RGB" if suffix == ".jpg" else "L").save(path, **extra)
    assert find_reader(path).name == "image"
    stack = read_stack(path)
    assert stack.frames.shape == (1, 40, 48)
    assert stack.frames.dtype == np.float32
    # Lossless formats keep the value exactly; JPEG within its compression error.
    assert abs(float(stack.frames[0, 15, 20]) - 200 / 255) < (0.03 if suffix == ".jpg" else 1e-6)
    assert float(stack.frames[0, 30, 20]) < 0.03


def test_broken_image_names_the_file(tmp_path):
    from napari_ribseg.core.errors import StackReadError

    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG not really")
    with pytest.raises(StackReadError, match="broken.png"):
        read_stack(path)
