"""Regenerate the committed demo stack ``sample_data/demo_linear.tif``, its rib mask, and the
montage ``docs/img/simulator_examples.png`` that lets a person judge the simulator's realism.

Deterministic: the same code gives the same stack bytes. Run ``python scripts/make_sample_data.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from napari_ribseg.core.io import write_label_tiff, write_stack_tiff
from napari_ribseg.core.simulate import SimulationConfig, random_config, simulate_cine

ROOT = Path(__file__).resolve().parents[1] / "sample_data"
MONTAGE = ROOT.parent / "docs" / "img" / "simulator_examples.png"
N_FRAMES = 16


def main() -> int:
    """Simulate 16 frames of the linear sample (256 x 256); write the uint8 stack and its ribs."""
    from napari_ribseg._sample_data import LINEAR_SEED, sample_config

    cine = simulate_cine(N_FRAMES, sample_config("linear"), LINEAR_SEED)
    frames = np.rint(cine.frames * 255.0).astype(np.uint8)
    stack_path = write_stack_tiff(
        ROOT / "demo_linear.tif", frames, spacing_mm=cine.spacing_mm, frame_rate=cine.frame_rate
    )
    mask_path = write_label_tiff(ROOT / "demo_linear_ribs.tif", cine.rib)
    for path in (stack_path, mask_path):
        path.chmod(0o644)  # atomic writes create private temporary files; these are shared data
        print(f"{path.relative_to(ROOT.parent)}: {path.stat().st_size / 1e6:.2f} MB")
    print(
        f"spacing {cine.spacing_mm} mm, {cine.frame_rate} fps, rib fraction {cine.rib.mean():.3f}"
    )
    write_montage(MONTAGE)
    print(f"{MONTAGE.relative_to(ROOT.parent)}")
    return 0


def write_montage(path: Path) -> None:
    """Four linear and four convex frames; bottom half of each panel outlines the ground truth."""
    import io

    import matplotlib
    from PIL import Image

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from napari_ribseg.core.atomic import atomic_path

    rng = np.random.default_rng(7)
    configs = [
        SimulationConfig(b_lines=0),  # the clean physics model, without a scanner's display
        random_config(rng, probe="linear"),
        random_config(rng, probe="linear"),
        random_config(rng, probe="phased"),
        SimulationConfig(probe="convex", frequency_mhz=3.5, depth_mm=100.0, b_lines=2),
        random_config(rng, probe="convex"),
        random_config(rng, probe="convex"),
        random_config(rng, probe="convex"),
    ]
    fig, axes = plt.subplots(4, 4, figsize=(13, 14))
    for k, config in enumerate(configs):
        cine = simulate_cine(1, config, seed=k)
        plain, outlined = axes[2 * (k // 4), k % 4], axes[2 * (k // 4) + 1, k % 4]
        for ax in (plain, outlined):
            ax.imshow(cine.frames[0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_axis_off()
        outlined.contour(cine.rib[0], [0.5], colors="red", linewidths=0.8)
        outlined.contour(cine.pleura[0], [0.5], colors="lime", linewidths=0.6)
        outlined.contour(cine.shadow[0], [0.5], colors="deepskyblue", linewidths=0.6)
        plain.set_title(
            f"{config.probe} {config.frequency_mhz:.1f} MHz, {config.depth_mm:.0f} mm, "
            f"{config.b_lines} B-lines",
            fontsize=10,
        )
        outlined.set_title("rib (red), pleura (green), shadow (blue)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=64, format="png")
    plt.close(fig)
    buffer.seek(0)
    # A 256-colour palette keeps the committed PNG small; the frames are grey plus three outlines.
    image = Image.open(buffer).convert("RGB").quantize(colors=256, dither=Image.Dither.NONE)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    path.chmod(0o644)


if __name__ == "__main__":
    sys.exit(main())
