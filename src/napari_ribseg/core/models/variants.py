"""The model variants and width presets: the one declaration, importable without torch.

The study config, the CLI's choices, the widget's pickers and the architectures all read these
names, so a new variant or preset is added here once.
"""

from __future__ import annotations

VARIANTS = ("unet", "v-unet", "x-unet")
PRESETS = ("paper", "compact", "tiny")

#: Channel widths of the five levels (shallow to deep; the last one is the bottleneck).
PRESET_WIDTHS: dict[str, dict[str, tuple[int, ...]]] = {
    "unet": {
        "paper": (64, 128, 256, 512, 1024),
        "compact": (16, 32, 64, 128, 256),
        "tiny": (4, 8, 16, 32, 64),
    },
    "v-unet": {
        "paper": (64, 128, 256, 512, 512),
        "compact": (16, 32, 64, 128, 128),
        "tiny": (4, 8, 16, 32, 32),
    },
}
PRESET_WIDTHS["x-unet"] = PRESET_WIDTHS["unet"]


def preset_widths(variant: str, preset: str) -> tuple[int, ...]:
    """The five level widths of ``variant`` in ``preset``."""
    if variant not in VARIANTS:
        raise ValueError(f"Unknown model variant {variant!r}; expected one of {VARIANTS}")
    if preset not in PRESET_WIDTHS[variant]:
        raise ValueError(f"Unknown preset {preset!r}; expected one of {PRESETS}")
    return PRESET_WIDTHS[variant][preset]


__all__ = ["PRESETS", "PRESET_WIDTHS", "VARIANTS", "preset_widths"]
