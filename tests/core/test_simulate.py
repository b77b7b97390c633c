"""The simulator checked against the physics of B-mode lung ultrasound, not only shapes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from napari_ribseg.core.jobs import StopFlag
from napari_ribseg.core.simulate import (
    RAYLEIGH_MEAN_STD_RATIO,
    SimulationConfig,
    envelope_homogeneous,
    random_config,
    simulate_cine,
    simulate_cine_job,
    simulate_frame,
)

LINEAR = SimulationConfig(size=(128, 128), b_lines=0)
CONVEX = SimulationConfig(
    probe="convex", size=(128, 128), frequency_mhz=3.5, depth_mm=100.0, b_lines=0
)


def _intercostal_columns(cine) -> np.ndarray:
    """Columns with visible pleura in every frame and no rib shadow, away from the shadow edges."""
    clear = (cine.pleura.any(axis=1).all(axis=0)) & ~(cine.shadow.any(axis=1).any(axis=0))
    clear = np.convolve(clear, np.ones(9), mode="same") >= 9  # 4 columns from any edge
    return np.flatnonzero(clear)


@pytest.mark.parametrize("config", [LINEAR, CONVEX], ids=["linear", "convex"])
def test_homogeneous_speckle_is_rayleigh(config):
    env = envelope_homogeneous(config, seed=3).astype(np.float64)
    ratio = env.mean() / env.std()
    assert ratio == pytest.approx(RAYLEIGH_MEAN_STD_RATIO, rel=0.05)
    # Unit-energy PSF: unit-variance scatterers give unit mean power whatever the beam width.
    assert np.mean(env**2) == pytest.approx(1.0, rel=0.1)


def test_simulator_envelope_in_tissue_is_speckle():
    frame = simulate_frame(LINEAR.replace(noise=0.0), seed=5, return_envelope=True)
    assert frame.envelope is not None
    assert frame.envelope.shape == LINEAR.size
    # Muscle between fascia and rib level: speckle modulated by fibre striations, so at most as
    # regular as pure Rayleigh speckle (a heterogeneous medium lowers mean/std) but not far below.
    rows = slice(int(9.0 / frame.spacing_mm[0]), int(11.5 / frame.spacing_mm[0]))
    patch = frame.envelope[rows].astype(np.float64)
    assert 1.2 < patch.mean() / patch.std() < 1.05 * RAYLEIGH_MEAN_STD_RATIO


def test_shadow_under_rib_is_far_darker_than_intercostal_space():
    cine = simulate_cine(3, LINEAR, seed=11)
    dr = cine.spacing_mm[0]
    pleura_top = np.flatnonzero(cine.pleura.any(axis=(0, 2))).min()
    # Depth band just above the pleura: intercostal muscle between ribs, shadow under them.
    band = np.zeros(cine.frames.shape[1:], dtype=bool)
    band[pleura_top - int(3.0 / dr) : pleura_top - int(0.8 / dr)] = True
    band &= ~cine.rib.any(axis=0)
    shadow = cine.shadow.all(axis=0) & band
    inter = np.zeros_like(band)
    inter[:, _intercostal_columns(cine)] = True
    inter &= band
    assert shadow.sum() > 50 and inter.sum() > 50
    ratio = cine.frames[:, shadow].mean() / cine.frames[:, inter].mean()
    assert ratio < 0.3
    # The shadow runs to the bottom and hides the lung artefacts: no A-line under a rib.
    assert cine.shadow[:, -1].any(axis=1).all()
    cols = _intercostal_columns(cine)
    pleura_row = np.flatnonzero(cine.pleura[0][:, cols].any(axis=1)).mean()
    a_rows = slice(int(2 * pleura_row) - 3, int(2 * pleura_row) + 4)
    shadow_cols = np.flatnonzero(cine.shadow[:, a_rows].all(axis=(0, 1)))
    a_line_between = cine.frames[:, a_rows][:, :, cols].mean()
    assert cine.frames[:, a_rows][:, :, shadow_cols].mean() < 0.3 * a_line_between


def test_a_lines_repeat_the_skin_to_pleura_distance():
    config = SimulationConfig(
        size=(256, 160),
        depth_mm=60.0,
        rib_depth_mm=12.0,
        pleura_offset_mm=5.0,
        pleura_irregularity_mm=0.05,
        a_line_decay_db=5.0,
        jitter_mm=0.0,
        breathing_mm=0.0,
        noise=0.01,
        b_lines=0,
    )
    cine = simulate_cine(4, config, seed=2)
    dr = cine.spacing_mm[0]
    cols = _intercostal_columns(cine)
    assert cols.size >= 10
    profile = cine.frames[:, :, cols].mean(axis=(0, 2))
    profile = np.convolve(profile, np.ones(3) / 3, mode="same")
    peaks, _ = signal.find_peaks(profile, prominence=0.08, distance=int(5.0 / dr))

    def refine(i: int) -> float:  # parabolic sub-sample peak position, in mm
        a, b, c = profile[i - 1 : i + 2]
        return (i + 0.5 * (a - c) / (a - 2 * b + c)) * dr

    depths = [refine(i) for i in peaks if i * dr > 10.0]
    assert len(depths) >= 3, depths  # pleura, A1, A2
    pleura, a1, a2 = depths[:3]
    assert abs(pleura - config.pleura_depth_mm) < 1.0
    assert abs((a1 - pleura) - pleura) < 0.5  # A-line spacing = skin-pleura distance
    assert abs((a2 - a1) - pleura) < 0.5
    # Reverberations fade with depth.
    heights = profile[[i for i in peaks if i * dr > 10.0][:3]]
    assert heights[0] > heights[1] > heights[2]


@pytest.mark.parametrize("config", [LINEAR, CONVEX], ids=["linear", "convex"])
def test_same_seed_same_bytes_other_seed_differs(config):
    small = config.replace(size=(64, 64))
    a, b, c = (simulate_cine(3, small, seed=s) for s in (7, 7, 8))
    for name in ("frames", "rib", "pleura", "shadow"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes()
    assert a.frames.tobytes() != c.frames.tobytes()


def test_outputs_types_ranges_and_spacing():
    cine = simulate_cine(2, LINEAR.replace(size=(64, 80)), seed=1)
    assert cine.frames.shape == (2, 64, 80) and cine.frames.dtype == np.float32
    assert cine.frames.min() >= 0.0 and cine.frames.max() <= 1.0
    # 8-bit grey levels, as a scanner stores them.
    assert np.allclose(cine.frames * 255, np.round(cine.frames * 255), atol=1e-3)
    for name in ("rib", "pleura", "shadow"):
        lab = getattr(cine, name)
        assert lab.dtype == np.uint8 and lab.shape == (2, 64, 80) and set(np.unique(lab)) <= {0, 1}
    assert cine.spacing_mm == pytest.approx((50.0 / 64, 40.0 / 80))
    assert cine.frame_rate == 30.0
    stack = cine.to_stack()
    assert stack.n_frames == 2 and stack.spacing_mm == cine.spacing_mm


def test_convex_is_black_outside_the_fan_with_radial_shadows():
    cine = simulate_cine(2, CONVEX, seed=4)
    fan = cine.fan
    assert 0.3 < fan.mean() < 0.95
    assert np.all(cine.frames[:, ~fan] == 0.0)
    for lab in (cine.rib, cine.pleura, cine.shadow):
        assert not lab[:, ~fan].any()
    assert cine.frames[:, fan].mean() > 0.05
    assert cine.spacing_mm[0] == cine.spacing_mm[1]
    # Shadows follow the beams: a shadow widens with depth.
    sh = cine.shadow[0]
    rows = np.flatnonzero(sh.any(axis=1))
    widths = sh[rows].sum(axis=1)
    assert widths[-5:].mean() > 1.3 * widths[:5].mean()


def test_labels_are_separate_small_and_coherent_across_frames():
    cine = simulate_cine(6, LINEAR, seed=21)
    rib_fraction = cine.rib.mean()
    assert 0.005 < rib_fraction < 0.08
    assert 0.003 < cine.pleura.mean() < 0.06
    assert 0.05 < cine.shadow.mean() < 0.6
    # Separate classes: the rib arc is not the pleura, and lies above its own shadow.
    overlap = np.logical_and(cine.rib, cine.pleura).sum() / cine.rib.sum()
    assert overlap < 0.02
    ious = []
    for a, b in zip(cine.rib[:-1], cine.rib[1:], strict=True):
        ious.append(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())
    assert min(ious) > 0.7 and np.mean(ious) > 0.8
    # The cortex is bright: rib label pixels far brighter than the image mean.
    assert cine.frames[cine.rib > 0].mean() > 1.5 * cine.frames.mean()


def test_lung_sliding_moves_the_lung_but_not_the_chest_wall():
    config = LINEAR.replace(sliding_mm=3.0, breathing_mm=0.0, jitter_mm=0.0, frame_rate=15.0)
    cine = simulate_cine(4, config, seed=9)
    dr = cine.spacing_mm[0]
    cols = _intercostal_columns(cine)
    wall = cine.frames[:, int(3.0 / dr) : int(10.0 / dr), :]
    pleura_row = np.flatnonzero(cine.pleura[0][:, cols].any(axis=1)).max()
    lung = cine.frames[:, pleura_row + 3 : pleura_row + int(8.0 / dr)][:, :, cols]

    def corr(x: np.ndarray) -> float:
        a, b = x[0].ravel(), x[-1].ravel()
        return float(np.corrcoef(a, b)[0, 1])

    assert corr(wall) > 0.85
    assert corr(lung) < corr(wall) - 0.2


def test_b_lines_run_from_pleura_to_bottom():
    base = LINEAR.replace(sliding_mm=0.0, b_lines=0)
    plain = simulate_cine(1, base, seed=6)
    with_b = simulate_cine(1, base.replace(b_lines=3), seed=6)
    cols = _intercostal_columns(plain)
    deep = slice(-30, None)
    assert with_b.frames[0, deep][:, cols].mean() > 1.5 * plain.frames[0, deep][:, cols].mean()
    assert with_b.metadata["b_lines_mm"] and not plain.metadata["b_lines_mm"]


def test_random_config_is_varied_realistic_and_overridable():
    rng = np.random.default_rng(0)
    configs = [random_config(rng, size=(64, 64)) for _ in range(60)]
    probes = [c.probe for c in configs]
    assert set(probes) == {"linear", "convex", "phased"}
    # Most bedside lung scans are convex.
    assert probes.count("convex") > probes.count("linear") > probes.count("phased")
    for c in configs:
        if c.probe == "linear":
            assert 5.0 <= c.frequency_mhz <= 13.0 and 35.0 <= c.depth_mm <= 70.0
        else:
            assert 1.5 <= c.frequency_mhz <= 6.0 and 80.0 <= c.depth_mm <= 180.0
        if c.probe == "phased":
            assert c.convex_radius_mm < 15.0
        # Linear frames get a 12 dB narrower display range (docs/simulator.md).
        assert 28.0 <= c.dynamic_range_db <= 70.0
        assert 15.0 <= c.rib_spacing_mm <= 25.0 and 9.0 <= c.rib_depth_mm <= 22.0
        assert c.size == (64, 64)
    assert len({round(c.gain_db, 3) for c in configs}) == len(configs)
    fixed = random_config(1, probe="convex", b_lines=2)
    assert fixed.probe == "convex" and fixed.b_lines == 2
    assert random_config(5) == random_config(5)
    with pytest.raises(TypeError, match="unknown"):
        random_config(0, not_a_field=1)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="probe"):
        SimulationConfig(probe="sector")
    with pytest.raises(ValueError, match="image_region"):
        SimulationConfig(image_region=(0.5, 0.0, 0.4, 1.0))
    with pytest.raises(ValueError, match="persistence"):
        SimulationConfig(persistence=1.0)
    with pytest.raises(ValueError, match="jpeg_quality"):
        SimulationConfig(jpeg_quality=2)
    with pytest.raises(ValueError, match="shadow_fill_db"):
        SimulationConfig(shadow_fill_db=20.0)
    with pytest.raises(ValueError, match="size"):
        SimulationConfig(size=(8, 8))
    with pytest.raises(ValueError, match="pleura"):
        SimulationConfig(depth_mm=15.0)


def test_config_refuses_fractions_and_bools_for_whole_numbers():
    """size=(64.5, 64) was floored to 64 and b_lines=2.5 to 2 (or True taken as 1), in silence."""
    cases = [
        (
            {"size": (64.5, 64)},
            r"SimulationConfig\.size must be 2 whole numbers; got \(64\.5, 64\)",
        ),
        ({"b_lines": 2.5}, r"SimulationConfig\.b_lines must be a whole number; got 2\.5"),
        ({"b_lines": True}, r"SimulationConfig\.b_lines must be a whole number; got True"),
        ({"video_gop": 30.5}, r"SimulationConfig\.video_gop must be a whole number; got 30\.5"),
        ({"noise": True}, r"SimulationConfig\.noise must be a number; got True"),
        ({"overlays": 1}, r"SimulationConfig\.overlays must be True or False; got 1"),
    ]
    for changes, message in cases:
        with pytest.raises(ValueError, match=message):
            SimulationConfig(**changes)
    config = SimulationConfig(size=(np.int64(64), 80), b_lines=np.int32(1), noise=np.float32(0.1))
    assert config.size == (64, 80) and config.b_lines == 1


def test_job_reports_progress_and_stops_cooperatively():
    stop = StopFlag()
    job = simulate_cine_job(6, LINEAR.replace(size=(32, 32)), seed=0, stop=stop)
    events = []
    try:
        while True:
            event = next(job)
            events.append(event)
            if event.step >= 2:
                stop.set()
    except StopIteration as done:
        cine = done.value
    assert events[0].kind == "batch" and events[0].total == 6
    assert 2 <= cine.n_frames < 6
    with pytest.raises(ValueError, match="n_frames"):
        simulate_cine(0, LINEAR)


def test_cli_writes_paired_dataset(tmp_path):
    from napari_ribseg.cli import main
    from napari_ribseg.core.io import read_paired_dataset

    out = tmp_path / "sim"
    argv = ["simulate", "--frames", "3", "--size", "48", "64", "--probe", "convex"]
    argv += ["--seed", "4", "--clips", "2", "--out", str(out), "--labels", "rib,shadow"]
    assert main(argv) == 0
    data = read_paired_dataset(out)
    assert len(data) == 6
    assert data.ids[0] == "c000_f0000" and sorted(set(data.groups)) == ["c000", "c001"]
    assert data.images[0].shape == (48, 64)
    assert (out / "MASK_shadow" / "mask_c001_f0002.tif").is_file()
    again = tmp_path / "again"
    assert main([*argv[:-4], "--out", str(again), "--labels", "rib,shadow"]) == 0
    assert np.array_equal(read_paired_dataset(again).images[5], data.images[5])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--size", "0", "5"],
            "argument --size: expected a frame side of 16..8192 pixels; got '0'",
        ),
        (["--size", "64", "9000"], "expected a frame side of 16..8192 pixels; got '9000'"),
        (["--seed", "-1"], "argument --seed: expected a whole number >= 0; got '-1'"),
    ],
)
def test_cli_names_a_bad_size_or_seed(tmp_path, capsys, args, message):
    """--size 0 5 ended in 'unexpected ZeroDivisionError', --seed -1 in 'ValueError: expected
    non-negative integer' naming no option."""
    from napari_ribseg.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--frames", "1", *args, "--out", str(tmp_path / "s")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_cli_refuses_an_existing_out_before_simulating(tmp_path, capsys, monkeypatch):
    """An existing file or non-empty folder was refused only after every clip was simulated."""
    import napari_ribseg.core.simulate as simulate
    from napari_ribseg.cli import main

    def never(*args, **kwargs):
        raise AssertionError("simulated before checking --out")

    monkeypatch.setattr(simulate, "simulate_cine_job", never)
    taken = tmp_path / "taken.tif"
    taken.write_bytes(b"x")
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("keep")
    argv = ["simulate", "--frames", "1", "--size", "32", "32", "--out"]
    assert main([*argv, str(taken)]) == 2
    assert capsys.readouterr().err == (
        f"ribseg simulate: error: {taken}: already exists and is a file; --out takes a new or "
        "empty folder\n"
    )
    assert main([*argv, str(full)]) == 2
    assert "full: already exists and is not an empty folder" in capsys.readouterr().err
    assert taken.read_bytes() == b"x" and [p.name for p in full.iterdir()] == ["notes.txt"]


def test_cli_extra_labels_are_part_of_the_atomic_dataset(tmp_path, capsys, monkeypatch):
    """MASK_<label>/ was written after IMG/ + MASK/ had appeared at --out: a failure there left a
    dataset without it at --out."""
    import contextlib

    import napari_ribseg.core.atomic as atomic
    from napari_ribseg.cli import main

    @contextlib.contextmanager
    def disk_full(target):
        raise OSError(28, "No space left on device")
        yield  # pragma: no cover

    monkeypatch.setattr(atomic, "atomic_path", disk_full)
    out = tmp_path / "sim"
    argv = ["simulate", "--frames", "1", "--size", "32", "32", "--labels", "rib,shadow"]
    assert main([*argv, "--out", str(out)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert main([*argv, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["IMG", "MASK", "MASK_shadow"]


def test_time_gain_compensation_keeps_tissue_brightness_even_with_depth():
    config = LINEAR.replace(
        size=(160, 128), rib_depth_mm=22.0, fat_mm=2.0, depth_mm=45.0, attenuation_db_cm_mhz=1.0
    )
    cine = simulate_cine(2, config, seed=12)
    dr = cine.spacing_mm[0]
    cols = _intercostal_columns(cine)
    upper = cine.frames[:, int(6.0 / dr) : int(12.0 / dr)][:, :, cols].mean()
    lower = cine.frames[:, int(14.0 / dr) : int(20.0 / dr)][:, :, cols].mean()
    # 1 dB/cm/MHz over 8 mm at 7.5 MHz would be 12 dB round trip (0.2 of the grey scale) uncorrected.
    assert abs(upper - lower) < 0.06


# ---- the scanner display chain, calibrated against real convex scans -----------------------


def _fan_stats(cine) -> tuple[float, float, float]:
    """(fan share of the frame, median grey in the fan (0-255), shadow / lit lung below the ribs)."""
    frame, fan = cine.frames[-1] * 255.0, cine.fan
    rows = np.flatnonzero(cine.rib[-1].any(axis=1))
    height = frame.shape[0]
    band = np.zeros_like(fan)
    band[rows.max() + int(0.05 * height) : rows.max() + int(0.25 * height)] = True
    shadow = band & (cine.shadow[-1] > 0)
    lit = band & fan & (cine.shadow[-1] == 0)
    return (
        float(fan.mean()),
        float(np.median(frame[fan])),
        float(frame[shadow].mean() / frame[lit].mean()),
    )


def test_random_convex_frames_look_like_real_scans():
    """Medians of 6 clips against the real scans' 10th-90th range (docs/simulator.md)."""
    rng = np.random.default_rng(3)
    stats = []
    for seed in range(6):
        config = random_config(rng, probe="convex", size=(128, 128), overlays=False)
        stats.append(_fan_stats(simulate_cine(2, config, seed=seed)))
    sector, p50, shadow = np.median(np.array(stats), axis=0)
    # Real: the fan fills 55-75 % of the frame, median grey 10-33, shadow/lung 0.67-1.03.
    assert 0.55 <= sector <= 0.8, sector
    assert 10.0 <= p50 <= 33.0, p50
    assert 0.6 <= shadow <= 1.03, shadow


def test_random_linear_frames_have_real_grey_levels_and_contrasts():
    """Linear frames held to the real convex scans' grey levels, rib and shadow contrast.

    Medians of 16 one-frame clips at 256 x 256 (the fingerprint's size: its ring is 4 pixels)
    against the real 10th-90th range of docs/simulator.md; fan geometry does not apply.
    """
    from scipy import ndimage

    rng = np.random.default_rng(3)
    stats = []
    for seed in range(16):
        config = random_config(rng, probe="linear", size=(256, 256), overlays=False)
        cine = simulate_cine(1, config, seed=seed)
        frame, rib, shadow = cine.frames[0] * 255.0, cine.rib[0] > 0, cine.shadow[0] > 0
        ring = ndimage.binary_dilation(rib, iterations=4) & ~rib
        bottom, height = int(np.flatnonzero(rib.any(axis=1)).max()), frame.shape[0]
        band = np.zeros_like(rib)
        band[bottom + int(0.05 * height) : bottom + int(0.25 * height)] = True
        stats.append(
            (
                np.median(frame),
                np.percentile(frame, 95),
                frame[rib].mean() / frame[ring].mean(),
                frame[band & shadow & ~rib].mean() / frame[band & ~shadow].mean(),
            )
        )
    p50, p95, rib_vs_ring, shadow_vs_intercostal = np.median(np.array(stats), axis=0)
    assert 10.0 <= p50 <= 33.0, p50
    assert 122.0 <= p95 <= 157.0, p95
    assert 1.22 <= rib_vs_ring <= 1.48, rib_vs_ring
    assert 0.666 <= shadow_vs_intercostal <= 1.03, shadow_vs_intercostal


def test_overlays_and_compression_change_pixels_never_labels_inside_the_image():
    base = random_config(4, probe="convex", size=(96, 128), overlays=False, jpeg_quality=0)
    plain = simulate_cine(2, base, seed=5)
    dressed = simulate_cine(2, base.replace(overlays=True, jpeg_quality=40), seed=5)
    overlay = dressed.frames[0] != plain.frames[0]
    assert overlay.any()
    # JPEG moves pixels everywhere a little; overlays paint some outright.
    for name in ("rib", "shadow", "pleura"):
        a, b = getattr(plain, name), getattr(dressed, name)
        assert not (b & ~a).any()  # nothing labelled that was not
        assert not b[:, ~dressed.fan].any()
    renderer_overlay = dressed.frames[0][~dressed.fan]
    assert renderer_overlay.max() > 0.5  # text / ruler / logo outside the fan
    # Overlay pixels are never rib: where a label was dropped, the overlay painted the pixel.
    dropped = plain.rib.astype(bool) & ~dressed.rib.astype(bool)
    assert dropped.sum() <= 0.2 * plain.rib.sum()


def test_jpeg_quantisation_is_blocky_and_near_identity_at_high_quality():
    from napari_ribseg.core.simulate.display import jpeg_compress

    rng = np.random.default_rng(0)
    image = rng.random((64, 72)).astype(np.float32)
    assert np.abs(jpeg_compress(image, 100) - image).max() < 2.5 / 255
    smooth = np.repeat(np.linspace(0.2, 0.8, 9), 8)[None, :].repeat(64, axis=0).astype(np.float32)
    noisy = np.clip(smooth + 0.05 * image, 0, 1)
    coarse = jpeg_compress(noisy, 10)

    def in_block_std(x):
        return float(x.reshape(8, 8, 9, 8).std(axis=(1, 3)).mean())

    # Low quality drops the fine texture: little variation is left inside each 8x8 block.
    assert in_block_std(coarse) < 0.6 * in_block_std(noisy)
    # ... but keeps the block means.
    assert np.abs(coarse - noisy).mean() < 0.03


def test_hard_domain_is_dark_wide_overlaid_compressed_and_seeded_apart():
    from napari_ribseg.core.simulate import HARD_DOMAIN_SEED, hard_domain_config, hard_domain_set

    config = hard_domain_config(HARD_DOMAIN_SEED)
    assert config.size == (820, 1124) and config.probe == "convex"
    assert config.overlays and 30 <= config.jpeg_quality <= 60 and config.fov_deg >= 70
    assert HARD_DOMAIN_SEED >= 500_000
    small = hard_domain_set(2, 2, size=(96, 128))
    assert len(small) == 4 and small.group_names == ["hard500000", "hard500001"]
    assert small.images[0].shape == (96, 128) and set(np.unique(small.masks[0])) <= {0, 1}
    again = hard_domain_set(1, 2, size=(96, 128))
    assert np.array_equal(again.images[1], small.images[1])


def test_hard_domain_set_strides_through_clips_and_can_share_one_scanner():
    from napari_ribseg.core.simulate import (
        HARD_DOMAIN_SEED,
        hard_domain_config,
        hard_domain_set,
        same_scanner,
    )
    from napari_ribseg.core.training import TrainingSet

    size = (96, 128)
    whole = hard_domain_set(2, 6, size=size)
    strided = hard_domain_set(2, 2, stride=3, size=size)
    assert [i.rsplit("_", 1)[1] for i in strided.ids] == ["f0000", "f0003"] * 2
    assert strided.group_names == ["hard500000", "hard500001"]
    for frame, index in zip(strided.images, (0, 3, 6, 9), strict=True):
        assert np.array_equal(frame, whole.images[index])
    scanner_seed = HARD_DOMAIN_SEED + 90_000
    shared = hard_domain_set(2, 1, scanner_seed=scanner_seed, size=size, shadow_fill_db=5.0)
    machine = hard_domain_config(scanner_seed, size=size, shadow_fill_db=5.0)
    own = hard_domain_set(2, 1, size=size, shadow_fill_db=5.0)  # each clip its own scanner
    for clip in range(2):
        seed = HARD_DOMAIN_SEED + clip
        subject = hard_domain_config(seed, size=size, shadow_fill_db=5.0)
        expected = TrainingSet.from_cines([(same_scanner(machine, subject), seed)], 1)
        assert np.array_equal(shared.images[clip], expected.images[0])
        assert not np.array_equal(shared.images[clip], own.images[clip])
    assert "stride=3" in strided.source and f"scanner={scanner_seed}" in shared.source
    with pytest.raises(ValueError, match="stride must be >= 1; got 1, 1, 0"):
        hard_domain_set(1, 1, stride=0, size=size)


def test_edge_domain_redraws_only_the_scanner_edges():
    """edge_config is random_config with the shadow fill, speckle smoothing and clutter redrawn in
    EDGE_RANGES (a linear probe keeps its fill and halves the smoothing); overrides win."""
    import dataclasses

    from napari_ribseg.core.simulate import EDGE_RANGES, domain_config, edge_config

    probes = set()
    for seed in range(12):
        edge, plain = edge_config(seed), random_config(seed)
        probes.add(plain.probe)
        for field in dataclasses.fields(plain):
            if field.name not in EDGE_RANGES:
                assert getattr(edge, field.name) == getattr(plain, field.name), field.name
        lo, hi = EDGE_RANGES["clutter_db"]
        assert lo <= edge.clutter_db <= hi
        lo, hi = EDGE_RANGES["speckle_reduction"]
        if plain.probe == "linear":
            assert edge.shadow_fill_db == plain.shadow_fill_db
            assert 0.5 * lo <= edge.speckle_reduction <= 0.5 * hi
        else:
            assert lo <= edge.speckle_reduction <= hi
            assert EDGE_RANGES["shadow_fill_db"][0] <= edge.shadow_fill_db
            assert edge.shadow_fill_db <= EDGE_RANGES["shadow_fill_db"][1]
    assert probes == {"linear", "convex", "phased"}
    assert edge_config(3, shadow_fill_db=-2.0).shadow_fill_db == -2.0
    assert edge_config(3, shadow_fill_db=-2.0).clutter_db == edge_config(3).clutter_db
    assert domain_config("edge", 4) == edge_config(4)


def test_shadow_fill_brightens_the_shadow_towards_the_lung_beside_it():
    """The edge domain's knob: 6 dB of fill brings the shadow near the lit lung (real scans:
    shadow / intercostal 0.67-1.03), -4 dB leaves it clearly darker."""
    base = random_config(
        5, probe="convex", size=(128, 128), overlays=False, jpeg_quality=0, video_qp=0
    )
    dark = _fan_stats(simulate_cine(2, base.replace(shadow_fill_db=-4.0), seed=5))[2]
    filled = _fan_stats(simulate_cine(2, base.replace(shadow_fill_db=6.0), seed=5))[2]
    assert filled > dark + 0.1, (dark, filled)
    assert 0.8 < filled < 1.1, filled


def test_cli_simulates_the_edge_domain(tmp_path):
    from napari_ribseg.cli import main
    from napari_ribseg.core.io import read_paired_dataset

    argv = ["simulate", "--frames", "1", "--size", "64", "64", "--seed", "3", "--clips", "2"]
    assert main([*argv, "--out", str(tmp_path / "plain")]) == 0
    for run in ("edge", "again"):
        assert main([*argv, "--domain", "edge", "--out", str(tmp_path / run)]) == 0
    plain, edge = read_paired_dataset(tmp_path / "plain"), read_paired_dataset(tmp_path / "edge")
    again = read_paired_dataset(tmp_path / "again")
    assert len(edge) == 2 and all(m.any() for m in edge.masks)
    assert not np.array_equal(plain.images[0], edge.images[0])
    assert all(np.array_equal(a, b) for a, b in zip(edge.images, again.images, strict=True))


def test_phased_array_is_a_narrow_sector_from_a_small_apex():
    config = random_config(
        2, probe="phased", size=(96, 96), overlays=False, image_region=(0, 0, 1, 1)
    )
    cine = simulate_cine(1, config, seed=2)
    top_row = np.flatnonzero(cine.fan.any(axis=1))[0]
    # The sector starts narrow: its first rows are a small share of the width.
    assert cine.fan[top_row : top_row + 3].sum(axis=1).max() < 0.3 * cine.fan.shape[1]
    assert cine.rib.any() and not cine.rib[0][~cine.fan].any()


def test_render_rows_keeps_the_rib_band_and_grain_share_of_a_large_export():
    """A large export is a ~320-row scanner image interpolated up: the rib band keeps its share
    of the frame height (real 820x1124 scans: 0.018 [0.0135-0.0234]); rendered at full size it
    was half that. Frames no taller than render_rows come out byte-identical."""
    base = random_config(
        5, probe="convex", size=(480, 660), overlays=False, jpeg_quality=0, video_qp=0
    )

    def band(config):
        cine = simulate_cine(1, config, seed=5)
        rib = cine.rib[0]
        cols = rib.any(axis=0).sum()
        return rib.sum() / max(cols, 1) / rib.shape[0], cine

    full, full_cine = band(base.replace(render_rows=0))
    scanner, cine = band(base.replace(render_rows=160))
    assert cine.frames.shape == full_cine.frames.shape == (1, 480, 660)
    assert cine.spacing_mm == full_cine.spacing_mm
    assert scanner > 1.6 * full  # thin at full size, as thick as at 160 rows when scaled up
    assert 0.012 < scanner < 0.03
    # The fan edge is the output geometry's: nothing outside it, labels inside it.
    assert not cine.frames[0][~cine.fan].any() and not cine.rib[0][~cine.fan].any()
    small = random_config(5, probe="convex", size=(128, 160))
    a = simulate_cine(2, small.replace(render_rows=0), seed=1)
    b = simulate_cine(2, small.replace(render_rows=128), seed=1)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.rib, b.rib)
    with pytest.raises(ValueError, match="render_rows"):
        SimulationConfig(render_rows=10)


def test_same_scanner_keeps_the_machine_and_changes_only_the_subject():
    import dataclasses

    from napari_ribseg.core.simulate import SUBJECT_FIELDS, hard_domain_config, same_scanner

    scanner, subject = hard_domain_config(500_001), hard_domain_config(500_002)
    mixed = same_scanner(scanner, subject)
    names = {f.name for f in dataclasses.fields(mixed)}
    assert set(SUBJECT_FIELDS) < names
    for name in names:
        source = subject if name in SUBJECT_FIELDS else scanner
        assert getattr(mixed, name) == getattr(source, name), name
    # The two draws differ in both kinds of field, so the mix is neither of them.
    assert mixed.rib_spacing_mm != scanner.rib_spacing_mm
    assert mixed.gain_db != subject.gain_db
    frames = simulate_cine(2, mixed.replace(size=(96, 128)), seed=3).frames
    assert frames.shape == (2, 96, 128) and float(frames.max()) > 0


@pytest.mark.parametrize("probe", ["linear", "convex", "phased"])
def test_transverse_view_has_the_pleura_across_and_no_rib(probe):
    """A probe turned along the ribs, in one intercostal space: no rib, no shadow, the pleural
    line across the whole sector, B-lines anywhere; the same seed's longitudinal view has ribs."""
    config = random_config(3, probe=probe, size=(128, 160), b_lines=2)
    across = simulate_cine(2, config.replace(view="transverse"), seed=3)
    along = simulate_cine(2, config, seed=3)
    assert across.rib.sum() == 0 and across.shadow.sum() == 0
    assert along.rib.sum() > 0 and along.shadow.sum() > 0
    covered = across.pleura.any(axis=1).all(axis=0)  # columns with pleura in every frame
    # Columns where the longitudinal view shows the pleura or a rib: the sector's width at the
    # pleura's depth.
    reach = (along.pleura.any(axis=1) | along.rib.any(axis=1)).any(axis=0)
    assert covered[reach].mean() > 0.8
    assert len(across.metadata["b_lines_mm"]) == 2
    with pytest.raises(ValueError, match="view must be one of"):
        config.replace(view="oblique")


def test_cli_simulates_a_transverse_view(tmp_path):
    from napari_ribseg.cli import main
    from napari_ribseg.core.io import read_paired_dataset

    out = tmp_path / "sim"
    argv = ["simulate", "--frames", "2", "--size", "64", "64", "--view", "transverse"]
    assert main([*argv, "--seed", "1", "--out", str(out)]) == 0
    data = read_paired_dataset(out)
    assert len(data) == 2 and all(m.sum() == 0 for m in data.masks)


def test_cli_mixed_views_keep_each_clips_draws(tmp_path):
    """--view mixed makes some clips transverse (no rib) and leaves every other clip identical to
    the plain longitudinal run."""
    from napari_ribseg.cli import main
    from napari_ribseg.core.io import read_paired_dataset

    common = ["simulate", "--frames", "1", "--size", "48", "48", "--clips", "30", "--seed", "2"]
    assert main([*common, "--out", str(tmp_path / "plain")]) == 0
    assert main([*common, "--view", "mixed", "--out", str(tmp_path / "mixed")]) == 0
    plain, mixed = read_paired_dataset(tmp_path / "plain"), read_paired_dataset(tmp_path / "mixed")
    empty = [i for i, m in enumerate(mixed.masks) if m.sum() == 0 and plain.masks[i].sum() > 0]
    assert 1 <= len(empty) <= 8  # about 3 of 30 at the real share of 10 %
    same = [i for i in range(30) if i not in empty]
    assert all(np.array_equal(mixed.images[i], plain.images[i]) for i in same)


def test_frame_size_is_refused_outside_what_the_readers_accept():
    """A 20000 x 20000 frame was killed by the kernel (exit 137) instead of being refused."""
    from napari_ribseg.core.simulate import SimulationConfig

    for size in ((20000, 20000), (8193, 64), (15, 64)):
        with pytest.raises(ValueError, match=r"both in 16\.\.8192"):
            SimulationConfig(size=size)
    assert SimulationConfig(size=(8192, 16)).size == (8192, 16)


def test_tiny_frames_in_the_accepted_range_keep_a_valid_image_region():
    """--size 16..19 passed the CLI check, then a drawn margin left under 16 pixels of image."""
    from napari_ribseg.core.simulate import domain_config
    from napari_ribseg.core.simulate.config import fit_region

    for domain in ("standard", "hard", "edge"):
        for size in (16, 17, 18, 19):
            for seed in range(12):
                rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
                config = domain_config(domain, rng, size=(size, size), view="longitudinal")
                top, left, bottom, right = config.image_region
                assert (bottom - top) * size >= 16 and (right - left) * size >= 16
    # Regions that already span 16 pixels are unchanged: larger frames keep their draws.
    assert fit_region((0.05, 0.07, 0.96, 0.92), (64, 64)) == (0.05, 0.07, 0.96, 0.92)
    # On 16 pixels the margins shrink to nothing; on 18 to one pixel's worth, in their ratio.
    assert fit_region((0.05, 0.0, 0.95, 1.0), (16, 16)) == pytest.approx((0, 0, 1, 1), abs=1e-6)
    top, _, bottom, _ = fit_region((0.1, 0.0, 0.95, 1.0), (18, 18))
    assert (bottom - top) * 18 == pytest.approx(16, abs=1e-5)
    assert top / (1 - bottom) == pytest.approx(2.0)


def test_cli_simulates_the_smallest_accepted_frame(tmp_path):
    from napari_ribseg.cli import main
    from napari_ribseg.core.io import read_paired_dataset

    out = tmp_path / "tiny"
    argv = ["simulate", "--frames", "1", "--clips", "4", "--size", "16", "17", "--seed", "0"]
    assert main([*argv, "--out", str(out)]) == 0
    assert [im.shape for im in read_paired_dataset(out).images] == [(16, 17)] * 4
