"""Shared builders for the fine-tuning tests (no tests here): synthetic clips and a tiny base model.

The synthetic frames look like a cine loop: per clip, a few bright rib bands with an acoustic shadow
below them, speckle everywhere and a small per-frame jitter, so neighbouring frames are near-duplicates
as in real cine data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_ribseg.core.training.data import TrainingSet


def synthetic_set(
    n_clips: int = 4, frames_per_clip: int = 6, size: int = 64, seed: int = 0, gain: float = 1.0
) -> TrainingSet:
    """Synthetic rib clips; ``gain`` scales the brightness (a crude domain shift)."""
    rng = np.random.default_rng(seed)
    images, masks, groups = [], [], []
    for clip in range(n_clips):
        ribs = [(int(rng.integers(10, 40)), int(rng.integers(0, size // 2))) for _ in range(2)]
        for _ in range(frames_per_clip):
            image = rng.random((size, size)).astype(np.float32) * 0.25 + 0.1
            mask = np.zeros((size, size), np.uint8)
            for row, col in ribs:
                row += int(rng.integers(-1, 2))
                mask[row : row + 4, col : col + size // 2 - 4] = 1
                image[row + 4 :, col : col + size // 2 - 4] *= 0.3  # acoustic shadow
            image[mask == 1] = 0.75 + 0.2 * rng.random(int(mask.sum()))
            images.append(np.clip(image * gain, 0, 1).astype(np.float32))
            masks.append(mask)
            groups.append(f"c{clip:03d}")
    return TrainingSet(images, masks, groups, source=f"synthetic:seed={seed}")


def tiny_base(path: Path, variant: str = "unet", seed: int = 0, head_bias: float | None = None):
    """Save an untrained tiny model (64x64 input) with a card and load it back as a LoadedModel.

    ``head_bias`` sets the output bias: -5 makes a model that marks nothing and that no
    vanishingly small weight change can move (an untrained head sits near logit 0, where a
    change of 1e-9 flips whole regions).
    """
    import torch

    from napari_ribseg.core.models import ModelCard, build_model, load_checkpoint, save_checkpoint

    torch.manual_seed(seed)
    model = build_model(variant, "tiny", input_size=64, pretrained=False)
    if head_bias is not None:
        with torch.no_grad():
            model.head.bias.fill_(head_bias)
    card = ModelCard(
        name=Path(path).stem,
        variant=variant,
        preset="tiny",
        widths=list(model.widths),
        input_size=64,
        description="untrained tiny model for tests",
    )
    save_checkpoint(model, card, path)
    return load_checkpoint(path)


def state_equal(a: dict, b: dict) -> bool:
    """Every tensor of ``a`` is byte-for-byte equal to the one of the same name in ``b``."""
    return set(a) == set(b) and all(
        a[k].detach().cpu().numpy().tobytes() == b[k].detach().cpu().numpy().tobytes() for k in a
    )
