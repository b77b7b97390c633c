"""The H.264-like video codec of the simulator's display chain, and how configurations switch it on."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_ribseg.core.simulate import SimulationConfig, random_config, simulate_cine
from napari_ribseg.core.simulate.display import VideoCodec, h264_qstep


def _scene(seed: int, shape=(64, 64)) -> np.ndarray:
    """A grey ramp with speckle-sized texture, in [0, 1]."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.2, 0.7, shape[1], dtype=np.float32)[None, :]
    grain = ndimage.gaussian_filter(rng.standard_normal(shape), 0.8).astype(np.float32)
    return np.clip(ramp + 0.12 * grain, 0.0, 1.0).astype(np.float32)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10.0 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2)))


def _edge_energy_ratio(image: np.ndarray) -> float:
    """Mean squared step across 4x4 block edges / inside blocks (columns and rows together)."""
    dx = np.diff(image.astype(np.float64), axis=1) ** 2
    dy = np.diff(image.astype(np.float64), axis=0) ** 2
    at_edge = (np.arange(dx.shape[1]) % 4) == 3  # the step from column 4k+3 to 4k+4
    across = np.concatenate([dx[:, at_edge].ravel(), dy[at_edge, :].ravel()])
    inside = np.concatenate([dx[:, ~at_edge].ravel(), dy[~at_edge, :].ravel()])
    return float(across.mean() / inside.mean())


def test_qstep_doubles_every_six_qp():
    assert h264_qstep(4) == pytest.approx(1.0, rel=0.01)
    assert h264_qstep(30) / h264_qstep(24) == pytest.approx(2.0)


def test_error_grows_with_qp():
    frames = [_scene(s) for s in range(6)]
    psnr = {}
    for qp in (24, 32, 40):
        codec = VideoCodec(qp, gop=3)
        out = np.stack([codec.compress(f) for f in frames])
        psnr[qp] = _psnr(out, np.stack(frames))
    # About 6 dB per 6 QP (the step doubles); at least 8 dB between QP 24 and 40.
    assert psnr[24] > psnr[32] > psnr[40], psnr
    assert psnr[24] - psnr[40] > 8.0, psnr
    assert psnr[24] > 35.0, psnr


def test_static_scene_is_skipped_and_copied_exactly():
    scene = _scene(1)
    codec = VideoCodec(30, gop=30)
    first = codec.compress(scene)
    assert codec.frame_type == "I" and not codec.skipped.any()
    for _ in range(4):
        again = codec.compress(scene)
        assert codec.frame_type == "P"
        assert codec.skipped.all()
        assert np.array_equal(again, first)


def test_skipped_macroblocks_copy_the_previous_reconstruction():
    """Change the right half only: the left macroblocks are skipped and their pixels (away from
    the deblocked edge next to a coded macroblock) are bit-identical to the previous frame."""
    scene = _scene(2, shape=(64, 96))
    codec = VideoCodec(28, gop=30)
    previous = codec.compress(scene)
    changed = scene.copy()
    changed[:, 48:] = _scene(3, shape=(64, 96))[:, 48:]
    out = codec.compress(changed)
    skipped = codec.skipped
    assert skipped.shape == (4, 6)
    assert skipped[:, :3].all() and not skipped[:, 3:].any()
    # Columns 0-44: the skipped macroblocks but for the 3 columns the filter may touch at x = 48.
    assert np.array_equal(out[:, :45], previous[:, :45])
    assert not np.array_equal(out[:, 48:], previous[:, 48:])
    assert _psnr(out[:, 48:], changed[:, 48:]) > 30.0


def test_keyframes_every_gop_and_none_skipped_there():
    codec = VideoCodec(34, gop=4)
    types, skipped = [], []
    for i in range(10):
        codec.compress(_scene(10 + i // 3))  # the scene changes every third frame
        types.append(codec.frame_type)
        skipped.append(float(codec.skipped.mean()))
    assert "".join(types) == "IPPPIPPPIP"
    assert all(skipped[i] == 0.0 for i in (0, 4, 8))
    assert skipped[1] == 1.0 and skipped[2] == 1.0  # same scene as frame 0: frozen
    codec.reset()
    codec.compress(_scene(0))
    assert codec.frame_type == "I"


def test_blocking_at_high_qp_and_deblocking_reduces_it():
    scene = _scene(4)
    blocky = VideoCodec(42, deblock=False).compress(scene)
    smooth = VideoCodec(42, deblock=True).compress(scene)
    original = _edge_energy_ratio(scene)
    assert 0.8 < original < 1.25  # the scene itself has no grid
    assert _edge_energy_ratio(blocky) > 2.0 * original
    assert _edge_energy_ratio(smooth) < 0.3 * _edge_energy_ratio(blocky)
    # Deblocking brings the picture closer to the source, not only smoother.
    assert _psnr(smooth, scene) > _psnr(blocky, scene)


def test_codec_rejects_a_frame_of_another_size():
    codec = VideoCodec(30)
    codec.compress(_scene(0, shape=(64, 64)))
    with pytest.raises(ValueError, match="frame 1 is 48x64"):
        codec.compress(_scene(0, shape=(48, 64)))
    with pytest.raises(ValueError, match="qp"):
        VideoCodec(60)


def test_config_validation_names_the_video_fields():
    with pytest.raises(ValueError, match="video_qp"):
        SimulationConfig(video_qp=5)
    with pytest.raises(ValueError, match="video_qp"):
        SimulationConfig(video_qp=52)
    with pytest.raises(ValueError, match="video_gop"):
        SimulationConfig(video_qp=30, video_gop=0)
    assert SimulationConfig(video_qp=30).video_gop == 30


# Recorded from random_config before video_qp existed: the codec must not move any other draw.
_BEFORE = {
    0: (58, "linear", 55.3318),
    1: (0, "convex", 149.0497),
    2: (83, "convex", 162.7852),
    3: (58, "convex", 149.4907),
    4: (0, "phased", 152.076),
    5: (0, "linear", 36.3483),
    6: (57, "convex", 158.474),
    7: (42, "linear", 42.5042),
}


def test_random_config_keeps_every_earlier_draw():
    for seed, (jpeg, probe, depth) in _BEFORE.items():
        config = random_config(seed)
        assert (config.jpeg_quality, config.probe, round(config.depth_mm, 4)) == (
            jpeg,
            probe,
            depth,
        )
    # Callers that draw more from the same generator (TrainingSet.from_simulator, the hard
    # domain, `ribseg simulate`'s cine seed) see the same stream as before.
    rng = np.random.default_rng(123)
    for _ in range(4):
        random_config(rng)
    assert int(rng.integers(2**31)) == 1842533760


def test_random_config_shares_jpeg_video_and_none():
    configs = [random_config(seed, size=(64, 64)) for seed in range(400)]
    jpeg = sum(c.jpeg_quality > 0 for c in configs)
    video = [c.video_qp for c in configs if c.video_qp]
    assert not any(c.jpeg_quality and c.video_qp for c in configs)
    assert 170 <= jpeg <= 230 and 75 <= len(video) <= 125, (jpeg, len(video))
    assert min(video) >= 22 and max(video) <= 36 and len(set(video)) >= 12
    # Fixing one compression switches the other off; fixing video_qp keeps the rest of the draw.
    assert random_config(5, jpeg_quality=50).video_qp == 0
    assert random_config(0, video_qp=30).jpeg_quality == 0
    assert random_config(0, video_qp=30).depth_mm == random_config(0).depth_mm


def test_cine_with_video_freezes_blocks_and_keeps_labels():
    base = SimulationConfig(size=(64, 64), b_lines=0)
    plain = simulate_cine(5, base, seed=3)
    video = simulate_cine(5, base.replace(video_qp=36, video_gop=4), seed=3)
    assert np.array_equal(video.rib, plain.rib) and np.array_equal(video.shadow, plain.shadow)
    assert not np.array_equal(video.frames, plain.frames)
    assert _psnr(video.frames, plain.frames) > 25.0

    def frozen(frames: np.ndarray, i: int) -> float:
        """Share of whole 16x16 blocks unchanged from frame i - 1 to i (linear: all image)."""
        return float((frames[i] == frames[i - 1]).reshape(4, 16, 4, 16).all(axis=(1, 3)).mean())

    # Speckle never repeats a whole block by itself; skipped macroblocks do, until the keyframe.
    assert max(frozen(plain.frames, i) for i in range(1, 5)) == 0.0
    assert max(frozen(video.frames, i) for i in (1, 2, 3)) > 0.0
    assert frozen(video.frames, 4) <= 0.125  # the keyframe refreshes them
    # JPEG wins when both are set: an export is one or the other.
    both = simulate_cine(2, base.replace(video_qp=36, jpeg_quality=50), seed=3)
    jpeg = simulate_cine(2, base.replace(jpeg_quality=50), seed=3)
    assert np.array_equal(both.frames, jpeg.frames)
