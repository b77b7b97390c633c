"""The promotion gate's rule and label-free adaptation's report, on small known inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_training_support import tiny_base

from napari_ribseg.core.errors import TrainingError
from napari_ribseg.core.training.adapt import AdaptConfig, adapt_sync
from napari_ribseg.core.training.gate import judge, sign_test_p

torch.set_num_threads(1)


def test_gate_promotes_only_a_clear_majority_win_on_enough_corrected_frames():
    ids = ["a", "b", "c", "d"]
    win = judge(ids, [0.5, 0.6, 0.4, 1.0], [0.7, 0.7, 0.6, 0.2], min_frames=3, margin=0.02)
    # "d" was accepted as the base predicted it (Dice 1.0): not a corrected frame, not judged.
    assert win.promoted and win.frame_ids == ["a", "b", "c"] and win.held_out == 4
    assert win.wins == 3 and win.mean_gain == pytest.approx(0.5 / 3)
    assert win.sign_test_p == pytest.approx(0.125)
    # A big gain on one frame and losses on two: the mean is up, the majority is not.
    lone = judge(ids[:3], [0.5, 0.6, 0.4], [0.9, 0.55, 0.35], min_frames=3)
    assert not lone.promoted and "not better on most frames" in lone.reason
    tie = judge(ids[:3], [0.5, 0.6, 0.4], [0.51, 0.6, 0.41], min_frames=3)
    assert not tie.promoted and "no clear improvement" in tie.reason
    few = judge(ids[:2], [0.1, 0.2], [0.9, 0.9], min_frames=3)
    assert not few.promoted and "too few held-out corrected frames to judge" in few.reason
    assert sign_test_p(0, 0) == 1.0 and sign_test_p(5, 0) == pytest.approx(1 / 32)
    # The verdict says how many stacks it rests on; a win on one stack is said to be that stack's.
    one = judge(ids[:3], [0.5, 0.6, 0.4], [0.7, 0.7, 0.6], groups=["s1", "s1", "s1"])
    assert one.promoted and one.stacks == 1
    assert "of 1 stack," in one.reason and "not for others" in one.reason
    two = judge(ids, [0.5, 0.6, 0.4, 1.0], [0.7, 0.7, 0.6, 0.2], groups=["s1", "s1", "s2", "s3"])
    assert two.stacks == 2 and "of 2 stacks" in two.reason and "not for others" not in two.reason


def test_what_the_review_knows_of_a_label_decides_whether_the_gate_judges_on_it():
    """At frame sizes other than the model's input the base's own mask, resampled, scores it
    0.8-0.95: the Dice rule alone would call an accepted frame corrected. The review decides."""
    ids = ["a", "b", "c", "d", "e"]
    base, new = [0.93, 0.91, 0.95, 0.60, 0.995], [0.80, 0.85, 0.97, 0.90, 0.999]
    alone = judge(ids, base, new, min_frames=3)
    assert alone.frame_ids == ["a", "b", "c", "d"]
    # a, b, c accepted unchanged from the base, d and e edited by hand: a, b, c are out, and e
    # (edited by a few pixels, reproduced by the base to 0.995) does not count either.
    known = judge(ids, base, new, min_frames=3, corrected=[False, False, False, True, True])
    assert known.frame_ids == ["d"] and not known.promoted
    assert "1 of 5 held-out frames differ from the base model's own prediction" in known.reason
    # Unknown frames (another model's mask accepted) keep the Dice rule.
    mixed = judge(ids, base, new, min_frames=3, corrected=[None, False, None, True, None])
    assert mixed.frame_ids == ["a", "c", "d"]


def test_frames_with_no_rib_in_view_cannot_promote_a_model_that_marks_nothing():
    """Found in a training-engine audit: a held-out clip of 3 frames without ribs (the base marks
    a speck: Dice 0) and 2 with ribs promoted a model that marks nothing (0 -> 1 on the three)."""
    ids = ["e1", "e2", "e3", "r1", "r2"]
    base, nothing = [0.0, 0.0, 0.0, 0.85, 0.80], [1.0, 1.0, 1.0, 0.0, 0.0]
    assert judge(ids, base, nothing, min_frames=2).promoted  # without knowing which show ribs
    report = judge(ids, base, nothing, min_frames=2, has_rib=[False] * 3 + [True] * 2)
    assert not report.promoted and report.frame_ids == ["r1", "r2"]
    assert "3 corrected frame(s) with no rib in view not judged" in report.reason
    few = judge(ids, base, nothing, min_frames=3, has_rib=[False] * 3 + [True] * 2)
    assert "too few held-out corrected frames to judge: 2 of 5" in few.reason


def test_the_gate_margin_is_the_calibrated_one_everywhere():
    """One margin (gate.GATE_MARGIN, measured by benchmarks/bench_gate.py) for judge() and the
    fine-tune's and adaptation's defaults: a +0.0155 mean gain on 5 frames (3 better) now promotes,
    as in the U-Net run the 0.02 margin refused; +0.008 does not."""
    from napari_ribseg.core.training import FinetuneConfig
    from napari_ribseg.core.training.gate import GATE_FRAMES, GATE_MARGIN

    assert GATE_MARGIN == 0.01 and GATE_FRAMES == 3
    assert FinetuneConfig().gate_margin == GATE_MARGIN
    assert FinetuneConfig().gate_frames == GATE_FRAMES
    ids = list("abcde")
    base = [0.80, 0.85, 0.82, 0.88, 0.79]
    clear = judge(ids, base, [0.83, 0.88, 0.85, 0.875, 0.7825])
    assert clear.mean_gain == pytest.approx(0.0155) and clear.wins == 3
    assert clear.promoted and "better than the base" in clear.reason
    small = judge(ids, base, [0.81, 0.86, 0.83, 0.88, 0.80])
    assert small.mean_gain == pytest.approx(0.008) and small.wins == 4
    assert not small.promoted and "a gain above 0.010 is needed" in small.reason


def test_adaptation_reports_what_it_did_and_writes_nothing_when_the_check_fails(tmp_path):
    base = tiny_base(tmp_path / "base.safetensors")
    rng = np.random.default_rng(0)
    frames = rng.random((12, 64, 64), dtype=np.float32) * 0.2
    frames[:, 20:26, 8:56] += 0.7
    out = tmp_path / "adapted.safetensors"
    result = adapt_sync(base, frames, AdaptConfig(steps=3, device="cpu"), out=out)
    assert result.frames_trained == 10 and result.frames_checked == 2
    assert result.teacher_view in ("raw", "stretched") and result.reason
    assert set(result.details["view_consistency"]) == {"raw", "stretched"}
    # The mean teacher averages both views; 12 near-identical frames are a cine, so with
    # temporal=2 each frame's teacher also averages its neighbours within 2 frames, except the
    # check frames 2 and 7, which lend nobody their teacher: 2+3+5+4+4+4+4+5+4+4+4+3 = 46 / 12.
    config = AdaptConfig(steps=1, device="cpu", teacher="mean", temporal=2)
    mean = adapt_sync(base, frames, config)
    assert mean.teacher_view == "mean"
    assert mean.details["temporal_frames"] == pytest.approx(46 / 12)
    assert (result.checkpoint is not None) == result.promoted == out.exists()
    with pytest.raises(TrainingError, match="needs at least 10"):
        adapt_sync(base, frames[:6], AdaptConfig(steps=1, device="cpu"))


def test_adaptation_with_curated_frames_is_judged_by_the_gate_on_them(tmp_path):
    """Curated frames are left out of adaptation and judge it; too few leave the check label-free."""
    from napari_ribseg.core.models import is_label_free, load_checkpoint

    base = tiny_base(tmp_path / "base.safetensors")
    rng = np.random.default_rng(0)
    frames = rng.random((12, 64, 64), dtype=np.float32) * 0.2
    frames[:, 20:26, 8:56] += 0.7
    band = np.zeros((64, 64), np.uint8)
    band[20:26, 8:56] = 1
    out = tmp_path / "adapted.safetensors"
    config = AdaptConfig(steps=3, device="cpu")
    result = adapt_sync(base, frames, config, out=out, labelled={0: band, 5: band, 10: band})
    # 12 frames: 2 held out for the label-free check (2, 7), 3 curated (0, 5, 10), 7 learned from.
    assert result.frames_trained == 7 and result.frames_checked == 2
    assert result.gate is not None and result.gate.frames == 3
    assert result.gate.frame_ids == ["stack_f0000", "stack_f0005", "stack_f0010"]
    assert "judged on the stack's curated frames" in result.reason
    assert result.promoted == result.gate.promoted == out.exists()
    if out.exists():
        assert not is_label_free(load_checkpoint(out).card)
    few = adapt_sync(base, frames, config, labelled={0: band, 5: band})
    assert few.gate.frames == 2 and "so the check stayed label-free" in few.reason
    # Frame 5's label is the base's own mask accepted unchanged: not a correction to judge on.
    known = adapt_sync(base, frames, config, labelled={0: band, 5: band, 10: band}, unedited=[5])
    assert known.gate.frame_ids == ["stack_f0000", "stack_f0010"]
    assert "so the check stayed label-free" in known.reason


def test_unedited_frames_are_the_models_own_masks_accepted_unchanged(tmp_path):
    from napari_ribseg.core.project import ReviewProject
    from napari_ribseg.core.session import unedited_frames

    project = ReviewProject.new(tmp_path / "p.ribseg", 4, (8, 8))
    masks = np.zeros((3, 8, 8), np.uint8)
    project.apply_prediction([0, 1, 2], masks, [0.9, 0.9, 0.9])
    project.model_name = "v-unet-compact"
    project.labels[1, 0, 0] = 1  # edited
    for f in range(4):  # frame 3 was never predicted: drawn (here: left empty) by hand
        project.set_status(f, 1)
    assert unedited_frames(project, "v-unet-compact") == [0, 2]
    assert unedited_frames(project, "unet-compact") == []


def test_temporal_teacher_averages_only_neighbours_that_look_alike():
    """A cine's neighbouring frames are averaged into each frame's teacher; an unrelated frame is
    not (a folder of different scans is not a cine)."""
    from napari_ribseg.core.training.adapt import temporal_mean

    rng = np.random.default_rng(1)
    scene = rng.random((64, 64), dtype=np.float32)
    cine = np.stack([scene + 0.01 * rng.random((64, 64), dtype=np.float32) for _ in range(5)])
    images = np.concatenate([cine, rng.random((1, 64, 64), dtype=np.float32)])[:, None]
    probs = torch.arange(6, dtype=torch.float32).reshape(6, 1, 1, 1).expand(6, 1, 4, 4).clone()
    out, mean_used = temporal_mean(probs, images, radius=1)
    # Frame 2 averages frames 1-3; frame 0 has one neighbour; frame 4's neighbour 5 is unrelated.
    assert out[2, 0, 0, 0].item() == pytest.approx(2.0)
    assert out[0, 0, 0, 0].item() == pytest.approx(0.5)
    assert out[4, 0, 0, 0].item() == pytest.approx(3.5)
    assert out[5, 0, 0, 0].item() == pytest.approx(5.0)
    # Frames used: 2, 3, 3, 3, 2 (4 averages 3 and 4), 1 (5 alone).
    assert mean_used == pytest.approx(14 / 6)
    # A frame that is not usable (held out) lends its teacher to no neighbour, but keeps its own.
    usable = np.array([True, True, False, True, True, True])
    out, _ = temporal_mean(probs, images, radius=1, usable=usable)
    assert out[1, 0, 0, 0].item() == pytest.approx(0.5)  # frames 0 and 1, not 2
    assert out[2, 0, 0, 0].item() == pytest.approx(2.0)  # frames 1, 2 and 3


def test_adaptation_keeps_only_the_mixed_share_of_its_change(tmp_path):
    """mix=0.5 leaves the weights halfway between the base and the student of the same run."""
    base = tiny_base(tmp_path / "base.safetensors")
    rng = np.random.default_rng(0)
    frames = rng.random((12, 64, 64), dtype=np.float32) * 0.2
    frames[:, 20:26, 8:56] += 0.7
    # confident=0.501: an untrained model's teacher sits near 0.5, so every pixel must count for
    # the student to move at all.
    runs = {
        mix: adapt_sync(
            base,
            frames,
            AdaptConfig(
                steps=3, device="cpu", mix=mix, teacher="mean", temporal=2, confident=0.501
            ),
        )
        for mix in (1.0, 0.5)
    }
    assert runs[1.0].teacher_view == "mean" and runs[1.0].details["temporal_frames"] > 1
    for name, start in base.model.state_dict().items():
        full = runs[1.0].model.state_dict()[name]
        half = runs[0.5].model.state_dict()[name]
        assert torch.allclose(half, start + 0.5 * (full - start), atol=1e-6), name
    moved = sum(
        float((runs[1.0].model.state_dict()[k] - v).abs().sum())
        for k, v in base.model.state_dict().items()
    )
    assert moved > 0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("teacher", "median", "expected best or mean"),
        ("mix", 0.0, "0 < mix <= 1"),
        ("temporal", -1, "temporal >= 0"),
        # A negative seed failed after the teacher as "ValueError: expected non-negative integer".
        ("seed", -1, r"^adapt setting seed=-1: expected at least 0$"),
        # Named, not the whole AdaptConfig(...) dumped.
        ("steps", 0, r"^adapt settings steps=0, batch_size=4, lr=0.0005: expected steps and"),
    ],
)
def test_adapt_settings_out_of_range_are_named(field, value, message):
    with pytest.raises(TrainingError, match=message):
        AdaptConfig(**{field: value}).validate()


def test_flip_consistency_is_pooled_so_blank_frames_add_nothing():
    from napari_ribseg.core.training.adapt import pooled_consistency

    overlap, total = torch.tensor([0.0, 2.0]), torch.tensor([0.0, 4.0])
    # Per frame the blank one scored 1.0 and the mean was 0.75; pooled it adds nothing.
    assert pooled_consistency(overlap, total) == pytest.approx(0.5)
    assert pooled_consistency(torch.zeros(3), torch.zeros(3)) == 1.0


def test_a_student_that_blanks_frames_is_refused(tmp_path, monkeypatch):
    """Found by an adaptation audit: blanking half of the frames raised the per-frame flip
    consistency (an empty frame scored 1.0) and the check promoted the model."""
    from napari_ribseg.core.training import loop

    base = tiny_base(tmp_path / "base.safetensors", head_bias=5.0)  # marks every pixel

    def base_but_blank_every_second_frame(model, base_model, mix):
        model.load_state_dict(base_model.state_dict())

        def blank(_module, _inputs, out):
            out = out.clone()
            out[1::2] = -20.0
            return out

        model.register_forward_hook(blank)

    monkeypatch.setattr(loop, "mix_weights", base_but_blank_every_second_frame)
    frames = np.random.default_rng(0).random((12, 64, 64), dtype=np.float32)
    result = adapt_sync(base, frames, AdaptConfig(steps=1, device="cpu"), out=tmp_path / "a")
    assert not result.promoted and not (tmp_path / "a.safetensors").exists()
    assert "drops ribs the teacher marks: under 25% of them on check frame(s) [7]" in result.reason


def test_an_adapted_models_card_says_what_the_adaptation_did(tmp_path):
    """The card described the base's training (its frames, loss, epochs and whole fine-tune
    record) instead of the adaptation."""
    from napari_ribseg.core.models import load_checkpoint, save_checkpoint

    path = tmp_path / "base.safetensors"
    loaded = tiny_base(path, head_bias=5.0)
    loaded.card.extra = {"finetune": {"gate": {"promoted": False}}, "note": "kept"}
    save_checkpoint(loaded.model, loaded.card, path, overwrite=True)
    base = load_checkpoint(path)
    frames = np.random.default_rng(0).random((12, 64, 64), dtype=np.float32)
    out = tmp_path / "adapted.safetensors"
    result = adapt_sync(base, frames, AdaptConfig(steps=1, device="cpu", margin=-1.0), out=out)
    assert result.promoted, result.reason
    card = load_checkpoint(out).card
    assert "finetune" not in card.extra and card.extra["note"] == "kept"
    record = card.extra["adapt"]
    assert (record["frames_trained"], record["frames_checked"], record["steps"]) == (10, 2, 1)
    assert record["seconds"] > 0 and set(record["rib_share"]) == {"base", "teacher", "new"}
    assert card.training_data.frames == 10 and "unlabelled" in card.training_data.source
    assert card.epochs == 0 and card.augmentation == "flip+gain"
