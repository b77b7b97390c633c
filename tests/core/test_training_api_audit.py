"""adapt and finetune as a script calls them: a Stack, a single frame, a model path."""

from __future__ import annotations

import numpy as np
import pytest
from test_training_support import tiny_base

from napari_ribseg.core.errors import TrainingError
from napari_ribseg.core.stack import Stack
from napari_ribseg.core.training import FinetuneConfig, TrainingSet, finetune_sync
from napari_ribseg.core.training.adapt import AdaptConfig, adapt_sync


@pytest.fixture
def frames():
    frames = np.random.default_rng(0).random((10, 64, 64), dtype=np.float32) * 0.2
    frames[:, 20:26, 8:56] += 0.7
    return frames


def test_adapt_takes_a_stack_as_read_stack_gives_it(tmp_path, frames):
    """adapt(base, read_stack(path)) raised TypeError: 'Stack' object is not iterable."""
    base = tiny_base(tmp_path / "base.safetensors")
    config = AdaptConfig(steps=1, device="cpu")
    from_stack = adapt_sync(base, Stack(frames), config)
    from_array = adapt_sync(base, frames, config)
    assert from_stack.frames_trained == from_array.frames_trained == 8
    assert from_stack.reason == from_array.reason


def test_adapt_refuses_one_frame_naming_the_shape(tmp_path, frames):
    """One (64, 64) frame was read as 64 frames of one row: 'letterbox expects frames (N, H, W);
    got shape (1, 64)'."""
    base = tiny_base(tmp_path / "base.safetensors")
    with pytest.raises(TrainingError, match=r"frames must be \(N, H, W\) or a list of 2-D frames; got shape \(64, 64\)"):  # fmt: skip
        adapt_sync(base, frames[0], AdaptConfig(steps=1, device="cpu"))


def test_a_model_path_as_base_is_named(tmp_path, frames):
    """A path failed with "'PosixPath' object has no attribute 'model'"."""
    tiny_base(tmp_path / "base.safetensors")
    path = tmp_path / "base.safetensors"
    expected = (
        r"base must be a LoadedModel \(core\.models\.load_model\(name or path\)\); got PosixPath"
    )
    with pytest.raises(TypeError, match=expected):
        adapt_sync(path, frames, AdaptConfig(steps=1, device="cpu"))
    masks = np.zeros(frames.shape, np.uint8)
    masks[:, 20:26, 8:56] = 1
    data = TrainingSet.from_stack(frames, masks, np.full(10, 1))
    with pytest.raises(TypeError, match=expected):
        finetune_sync(path, data, FinetuneConfig(epochs=1, device="cpu"))


def test_out_may_not_be_the_base_models_own_file(tmp_path, frames):
    """finetune/adapt(out=<the base's file>) replaced the base with its own result when kept
    (ribseg finetune/adapt refuse --out = --model); now refused before any training."""
    base = tiny_base(tmp_path / "base.safetensors")
    before = base.path.read_bytes()
    masks = np.zeros(frames.shape, np.uint8)
    masks[:, 20:26, 8:56] = 1
    data = TrainingSet.from_stack(frames, masks, np.full(10, 1))
    message = r"out .*base\.safetensors is the base model itself; choose a new name"
    with pytest.raises(TrainingError, match=message):
        finetune_sync(base, data, FinetuneConfig(epochs=1, device="cpu"), out=base.path)
    with pytest.raises(TrainingError, match=message):
        adapt_sync(base, frames, AdaptConfig(steps=1, device="cpu"), out=tmp_path / "base")
    assert base.path.read_bytes() == before


def test_an_existing_model_at_out_is_refused_unless_overwrite(tmp_path, frames):
    """finetune/adapt/session.finetune(out=<a user's model>) replaced it in silence while
    ``ribseg finetune``/``adapt`` refuse without --overwrite; now refused before any training,
    naming the file, and replaced only with overwrite=True."""
    from napari_ribseg.core.session import ReviewSession

    base = tiny_base(tmp_path / "base.safetensors")
    mine = tmp_path / "mine.safetensors"
    mine.write_bytes(b"a user's model")
    masks = np.zeros(frames.shape, np.uint8)
    masks[:, 20:26, 8:56] = 1
    data = TrainingSet.from_stack(frames, masks, np.full(10, 1))
    config = FinetuneConfig(epochs=1, device="cpu", select="last")
    message = r"out .*mine\.safetensors exists; choose a new name or pass overwrite=True"
    with pytest.raises(TrainingError, match=message):
        finetune_sync(base, data, config, out=mine)
    with pytest.raises(TrainingError, match=message):
        finetune_sync(base, data, config, out=tmp_path / "mine", resume=False)
    with pytest.raises(TrainingError, match=message):
        adapt_sync(base, frames, AdaptConfig(steps=1, device="cpu"), out=mine)
    with ReviewSession.for_frames(frames, tmp_path / "review.ribseg") as session:
        for i in range(10):
            session.set_labels(i, masks[i])
        session.set_status(list(range(10)), 1)
        with pytest.raises(TrainingError, match=message):
            session.finetune_sync(base, config, out=mine)
    assert mine.read_bytes() == b"a user's model"
    result = finetune_sync(base, data, config, out=mine, overwrite=True)
    assert result.checkpoint == mine and mine.read_bytes() != b"a user's model"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: FinetuneConfig(batch_size=2.5),
            r"fine-tune setting batch_size=2\.5: expected a whole number",
        ),  # fmt: skip
        (
            lambda: FinetuneConfig(epochs=True),
            r"fine-tune setting epochs=True: expected a whole number",
        ),  # fmt: skip
        (
            lambda: FinetuneConfig(steps=100.0),
            r"fine-tune setting steps=100\.0: expected a whole number",
        ),  # fmt: skip
        (lambda: FinetuneConfig(seed=1.5), r"fine-tune setting seed=1\.5: expected a whole number"),
        (lambda: FinetuneConfig(lr=True), r"fine-tune setting lr=True: expected a number"),
        (lambda: FinetuneConfig(amp=1), r"fine-tune setting amp=1: expected True or False"),
        (
            lambda: AdaptConfig(batch_size=2.5),
            r"adapt setting batch_size=2\.5: expected a whole number",
        ),  # fmt: skip
        (lambda: AdaptConfig(steps=True), r"adapt setting steps=True: expected a whole number"),
        (
            lambda: AdaptConfig(temporal=1.5),
            r"adapt setting temporal=1\.5: expected a whole number",
        ),  # fmt: skip
        (lambda: AdaptConfig(seed=0.5), r"adapt setting seed=0\.5: expected a whole number"),
    ],
)
def test_whole_number_settings_refuse_fractions_and_bools(make, message):
    """epochs=True ran one epoch and steps=3.5 ran; batch_size=2.5 failed as "must be a multiple
    of the 1 processes" and AdaptConfig(steps=2.5) as a bare TypeError after reading the frames."""
    with pytest.raises(TrainingError, match=message):
        make().validate()


def test_whole_number_settings_take_numpy_integers():
    """A seed from a numpy array is a whole number (np.int64 is no Python int)."""
    FinetuneConfig(seed=np.int64(3), batch_size=np.int32(2), lr=np.float32(1e-3)).validate()
    AdaptConfig(seed=np.int64(3), steps=np.int16(5)).validate()
