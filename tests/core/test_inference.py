"""Inference (batching, letterboxing, stop, OOM retry) and probability-to-mask post-processing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_ribseg.core.errors import DeviceError
from napari_ribseg.core.inference import (
    Prediction,
    activation_bytes_per_frame,
    choose_batch_size,
    frame_confidence,
    predict_images_sync,
    predict_stack,
    predict_stack_sync,
)
from napari_ribseg.core.jobs import StopFlag
from napari_ribseg.core.models import build_model
from napari_ribseg.core.postprocess import probability_to_mask, threshold_probability
from napari_ribseg.core.stack import Stack


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models on a shared 2-core machine run ~30x faster on one thread than on contended two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class PointwiseNet(nn.Module):
    """logit = 40 * (x - 0.5): probabilities follow the image, so geometry errors are visible."""

    def __init__(self, input_size: int = 64, fail_above: int | None = None) -> None:
        super().__init__()
        self.input_size = input_size
        self.fail_above = fail_above
        self.batch_sizes: list[int] = []
        self.scale = nn.Parameter(torch.tensor(40.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail_above is not None and x.shape[0] > self.fail_above:
            raise torch.OutOfMemoryError(f"simulated: batch {x.shape[0]} > {self.fail_above}")
        self.batch_sizes.append(int(x.shape[0]))
        return self.scale * (x - 0.5)


@pytest.fixture(scope="module")
def tiny_unet() -> nn.Module:
    torch.manual_seed(0)
    return build_model("unet", "tiny", input_size=64, pretrained=False)


@pytest.fixture
def frames(rng) -> np.ndarray:
    return rng.random((7, 50, 70), dtype=np.float32)


# --------------------------------------------------------------------------- inference


def test_odd_sized_frames_map_back_exactly(frames):
    # Left 40 columns bright, the rest dark: after letterbox -> model -> unletterbox the probability
    # must follow the frame at its own 50x70 grid, not the 64x64 network grid.
    frames[:] = 0.0
    frames[:, :, :40] = 1.0
    pred = predict_stack_sync(PointwiseNet(), frames, device="cpu", batch_size=3)
    assert pred.prob.shape == (7, 50, 70) and pred.prob.dtype == np.uint8
    assert pred.done.all() and pred.n_done == 7 and pred.complete
    assert (pred.prob[:, :, :37] == 255).all()
    assert (pred.prob[:, :, 43:] == 0).all()
    # The pad rows of the letterbox (frame is wider than tall) never leak into the output.
    assert (pred.prob[:, [0, -1], :37] == 255).all()


def test_tall_frames_and_a_single_2d_frame():
    frame = np.zeros((90, 33), dtype=np.float32)
    frame[:45] = 1.0
    pred = predict_stack_sync(PointwiseNet(), frame, device="cpu")
    assert pred.prob.shape == (1, 90, 33)
    assert (pred.prob[0, :42] == 255).all() and (pred.prob[0, 48:] == 0).all()


def test_probabilities_are_uint8_of_the_model_sigmoid(tiny_unet, frames):
    from napari_ribseg.core.models import letterbox_tensor, unletterbox_tensor

    pred = predict_stack_sync(tiny_unet, frames, device="cpu", batch_size=7, flip_average=False)
    with torch.no_grad():
        x, box = letterbox_tensor(torch.from_numpy(frames), 64)
        ref = unletterbox_tensor(torch.sigmoid(tiny_unet(x)), box)[:, 0].numpy()
    expected = np.rint(ref * 255).astype(np.uint8)
    assert np.abs(pred.prob.astype(int) - expected).max() <= 1
    assert np.mean(pred.prob == expected) > 0.99
    assert np.allclose(pred.probability(), pred.prob / 255.0)
    # The model is left as it was: training flag and default memory layout.
    assert tiny_unet.training
    assert all(p.is_contiguous() for p in tiny_unet.parameters())


class LeftHalfNet(nn.Module):
    """Marks the left half of its input as rib, whatever the image: as lopsided as a model gets."""

    input_size = 64

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = torch.arange(x.shape[-1], device=x.device) < x.shape[-1] // 2
        return torch.where(left, 10.0, -10.0).expand_as(x) + 0 * x


def test_flip_average_is_the_mean_of_the_frame_and_its_mirror_image(frames):
    # A lopsided model: plain, the left half is rib; averaged with the mirror image, every pixel
    # is half rib (sigmoid(10) and sigmoid(-10) average to 0.5: 127.5 of 255, rounded either way
    # by float32 resizing).
    square = frames[:, :50, :50]
    plain = predict_stack_sync(
        LeftHalfNet(), square, device="cpu", crop_to_region=False, flip_average=False
    )
    assert (plain.prob[:, :, :24] == 255).all() and (plain.prob[:, :, 26:] == 0).all()
    flipped = predict_stack_sync(
        LeftHalfNet(), square, device="cpu", crop_to_region=False, flip_average=True
    )
    assert flipped.flip_average and not plain.flip_average
    assert ((flipped.prob == 127) | (flipped.prob == 128)).all()
    # A pointwise model gives the same map both ways on a lopsided, odd-sized frame: the
    # mirrored map is mirrored back before averaging, through the letterbox.
    frames[:] = 0.0
    frames[:, :, :40] = 1.0
    a = predict_stack_sync(PointwiseNet(), frames, device="cpu", flip_average=False)
    model = PointwiseNet()
    b = predict_stack_sync(model, frames, device="cpu", flip_average=True, batch_size=3)
    assert np.abs(a.prob.astype(int) - b.prob.astype(int)).max() <= 1
    # The mirrored batch runs after the plain one, not beside it: a batch's memory is one pass.
    assert model.batch_sizes == [3, 3, 3, 3, 1, 1]
    # A prediction made one way is not continued the other way.
    with pytest.raises(ValueError, match="flip_average=False with flip_average=True"):
        predict_stack_sync(PointwiseNet(), frames, device="cpu", into=a, flip_average=True)


def test_deterministic(tiny_unet, frames):
    a = predict_stack_sync(tiny_unet, frames, device="cpu", batch_size=4)
    b = predict_stack_sync(tiny_unet, frames, device="cpu", batch_size=4)
    assert np.array_equal(a.prob, b.prob)
    assert np.array_equal(a.confidence, b.confidence)


def test_accepts_a_stack_and_a_loaded_model(tiny_unet, frames):
    from napari_ribseg.core.models import ModelCard
    from napari_ribseg.core.models.checkpoint import LoadedModel

    card = ModelCard(name="tiny-test", variant="unet", preset="tiny", widths=[4, 8, 16, 32, 64])
    loaded = LoadedModel(model=tiny_unet, card=card, path=None)
    pred = predict_stack_sync(loaded, Stack(frames), device="cpu", batch_size=2)
    bare = predict_stack_sync(tiny_unet, frames, device="cpu", batch_size=2)
    assert pred.model_name == "tiny-test" and np.array_equal(pred.prob, bare.prob)


def test_stop_after_first_batch_keeps_done_frames(frames):
    stop = StopFlag()
    job = predict_stack(PointwiseNet(), frames, device="cpu", batch_size=3, stop=stop)
    events = []
    while True:
        try:
            event = next(job)
        except StopIteration as finished:
            pred = finished.value
            break
        events.append(event)
        if event.kind == "batch" and event.step > 0:
            stop.set()
    assert pred.stopped and pred.n_done == 3
    assert pred.done.tolist() == [True] * 3 + [False] * 4
    assert (pred.prob[3:] == 0).all() and np.isnan(pred.confidence[3:]).all()
    assert np.isfinite(pred.confidence[:3]).all()
    assert [(e.step, e.total) for e in events if e.kind == "batch"] == [(0, 7), (3, 7)]

    # Resuming the same Prediction runs only what is missing and completes it.
    model = PointwiseNet()
    resumed = predict_stack_sync(
        model, frames, device="cpu", batch_size=3, frame_indices=~pred.done, into=pred
    )
    assert resumed is pred and pred.complete and not pred.stopped
    assert sum(model.batch_sizes) == 4
    full = predict_stack_sync(PointwiseNet(), frames, device="cpu", batch_size=3)
    assert np.array_equal(pred.prob, full.prob)


def test_frame_indices_run_only_those_frames(frames):
    model = PointwiseNet()
    pred = predict_stack_sync(model, frames, device="cpu", batch_size=8, frame_indices=[5, 1, 5])
    assert model.batch_sizes == [2]
    assert np.flatnonzero(pred.done).tolist() == [1, 5]
    full = predict_stack_sync(PointwiseNet(), frames, device="cpu")
    assert np.array_equal(pred.prob[[1, 5]], full.prob[[1, 5]])
    assert (pred.prob[[0, 2, 3, 4, 6]] == 0).all()
    mask = np.zeros(7, dtype=bool)
    mask[[0, 6]] = True
    assert np.flatnonzero(
        predict_stack_sync(PointwiseNet(), frames, device="cpu", frame_indices=mask).done
    ).tolist() == [0, 6]
    with pytest.raises(ValueError, match="out of range"):
        predict_stack_sync(PointwiseNet(), frames, device="cpu", frame_indices=[7])


def test_float_probabilities_outside_0_1_are_refused():
    """A float copy of the stored p*255 map thresholded at 0.5 marked every pixel above 0."""
    prob = np.array([[0, 100], [200, 255]], np.uint8)
    np.testing.assert_array_equal(probability_to_mask(prob, 0.5), [[0, 0], [1, 1]])
    np.testing.assert_array_equal(probability_to_mask(prob / 255.0, 0.5), [[0, 0], [1, 1]])
    with pytest.raises(
        ValueError, match=r"float probabilities must be in \[0, 1\]; got \[0, 255\]"
    ):
        probability_to_mask(prob.astype(np.float32), 0.5)


def test_a_list_of_frames_of_different_sizes_is_named():
    """numpy's 'setting an array element with a sequence ... inhomogeneous shape' before."""
    frames = [np.zeros((32, 32), np.float32), np.zeros((40, 32), np.float32)]
    with pytest.raises(
        ValueError, match=r"frames differ in size \(32x32, 40x32\); .*predict_images$"
    ):
        predict_stack_sync(PointwiseNet(), frames, device="cpu")
    assert predict_stack_sync(PointwiseNet(), frames[:1], device="cpu").prob.shape == (1, 32, 32)


def test_fractional_frame_indices_are_refused(frames):
    """frame_indices=[1.7] ran frame 1 (astype truncated); whole floats still select frames."""
    with pytest.raises(ValueError, match=r"whole frame numbers or a bool mask; got \[1\.7\]"):
        predict_stack_sync(PointwiseNet(), frames, device="cpu", frame_indices=[1.7])
    pred = predict_stack_sync(PointwiseNet(), frames, device="cpu", frame_indices=[2.0])
    assert np.flatnonzero(pred.done).tolist() == [2]


def test_out_of_memory_halves_the_batch_and_finishes(frames):
    model = PointwiseNet(fail_above=2)
    messages = []
    pred = predict_stack_sync(
        model, frames, device="cpu", batch_size=8, on_progress=lambda e: messages.append(e.message)
    )
    assert pred.complete and pred.batch_size == 2
    assert model.batch_sizes == [2, 2, 2, 1]
    assert sum("out of memory" in m for m in messages) == 2  # 8 -> 4 -> 2
    reference = predict_stack_sync(PointwiseNet(), frames, device="cpu", batch_size=7)
    assert np.array_equal(pred.prob, reference.prob)


def test_out_of_memory_at_batch_one_is_a_device_error(frames):
    with pytest.raises(DeviceError, match="out of memory on cpu even with one 50x70 frame"):
        predict_stack_sync(PointwiseNet(fail_above=0), frames, device="cpu", batch_size=4)


def test_other_errors_propagate(frames):
    class Broken(PointwiseNet):
        def forward(self, x):
            raise RuntimeError("shape mismatch somewhere")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        predict_stack_sync(Broken(), frames, device="cpu", batch_size=2)


def test_unavailable_device_and_cpu_mixed_precision_raise(frames):
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA"):
            predict_stack_sync(PointwiseNet(), frames, device="cuda")
    with pytest.raises(DeviceError, match="mixed precision"):
        predict_stack_sync(PointwiseNet(), frames, device="cpu", mixed_precision=True)


def test_batch_size_from_memory(tiny_unet, monkeypatch):
    import napari_ribseg.core.inference as inference

    cpu = torch.device("cpu")
    per_frame = activation_bytes_per_frame(tiny_unet, 64)
    assert activation_bytes_per_frame(tiny_unet, 128) == pytest.approx(4 * per_frame, rel=0.01)
    assert activation_bytes_per_frame(tiny_unet, 64, bytes_per_value=2) == per_frame // 2
    assert 1 <= choose_batch_size(tiny_unet, cpu, 64, 100) <= inference.CPU_MAX_BATCH
    assert choose_batch_size(tiny_unet, cpu, 64, 3) <= 3
    monkeypatch.setattr(inference, "free_memory", lambda device: 10 * per_frame)
    assert choose_batch_size(tiny_unet, cpu, 64, 100) == 2  # 25% of 10 frames' worth
    monkeypatch.setattr(inference, "free_memory", lambda device: 0)
    assert choose_batch_size(tiny_unet, cpu, 64, 100) == 1
    pred = predict_stack_sync(tiny_unet, np.zeros((3, 64, 64), np.float32), device="cpu")
    assert pred.batch_size == 1 and pred.complete


def test_predict_images_of_mixed_sizes_keeps_input_order():
    images = [np.full((40, 60), 1.0, np.float32), np.zeros((64, 64), np.float32)]
    images.append(np.full((40, 60), 0.0, np.float32))
    steps = []
    probs = predict_images_sync(
        PointwiseNet(), images, device="cpu", on_progress=lambda e: steps.append(e.step)
    )
    assert [p.shape for p in probs] == [(40, 60), (64, 64), (40, 60)]
    assert (probs[0] == 255).all() and (probs[1] == 0).all() and (probs[2] == 0).all()
    assert max(steps) == 3


def test_frame_confidence_values():
    prob = np.zeros((3, 4, 4), np.uint8)
    prob[0, :2, :2] = 200  # mask of 4 pixels at p = 200/255
    prob[0, 3, 3] = 250
    prob[1, 0, 0] = 51  # no mask; most rib-like pixel 0.2 -> 0.8
    conf = frame_confidence(prob)
    assert conf[0] == pytest.approx((4 * 200 + 250) / 5 / 255)
    assert conf[1] == pytest.approx(0.8)
    assert conf[2] == pytest.approx(1.0)


def test_prediction_mask_uses_the_stored_probabilities():
    pred = Prediction.empty(2, 8, 8)
    pred.prob[0, 2:5, 2:5] = 150
    assert pred.mask(0.5).sum() == 9 and pred.mask(0.6).sum() == 0
    assert pred.mask(0.5, index=0).shape == (8, 8)


# --------------------------------------------------------------------------- post-processing


@pytest.mark.parametrize("threshold", [0.0, 0.2, 0.5, 0.501, 0.7, 1.0])
def test_uint8_threshold_equals_float_threshold(rng, threshold):
    prob = rng.integers(0, 256, (3, 32, 32)).astype(np.uint8)
    expected = (prob / 255.0) >= threshold
    assert np.array_equal(threshold_probability(prob, threshold), expected)
    assert np.array_equal(
        probability_to_mask(prob, threshold), probability_to_mask(prob / 255.0, threshold)
    )


def test_threshold_rejects_values_outside_unit_interval():
    with pytest.raises(ValueError, match="threshold"):
        probability_to_mask(np.zeros((4, 4), np.uint8), 1.5)


def test_min_size_removes_a_3_pixel_blob():
    prob = np.zeros((64, 64), np.uint8)
    prob[10:14, 10:15] = 230  # 20 pixels
    prob[40, 40:43] = 230  # 3 pixels
    mask = probability_to_mask(prob, 0.5, min_size=4)
    assert mask.dtype == np.uint8 and mask.sum() == 20 and mask[40, 41] == 0
    assert probability_to_mask(prob, 0.5).sum() == 23
    assert probability_to_mask(prob, 0.5, min_size=3).sum() == 23


def test_fill_holes_fills_a_ring_in_every_frame_but_not_an_open_arc():
    ring = np.zeros((64, 64), np.uint8)
    ring[10:17, 10:17] = 1
    ring[12:15, 12:15] = 0  # 9-pixel hole
    arc = np.zeros((64, 64), np.uint8)
    arc[30:37, 30:37] = 1
    arc[32:37, 32:35] = 0  # open at the bottom: not a hole
    stack = np.stack([ring, arc, ring])
    filled = probability_to_mask(stack.astype(np.float32), 0.5, fill_holes=True)
    assert filled[0].sum() == 49 and filled[2].sum() == 49  # first and last frames too
    assert np.array_equal(filled[1], arc)
    assert np.array_equal(probability_to_mask(ring.astype(np.float32), fill_holes=True), filled[0])


def test_keep_largest_per_frame():
    prob = np.zeros((2, 64, 64), np.float32)
    prob[0, 0:5, 0:5] = 1  # 25
    prob[0, 20:23, 20:23] = 1  # 9
    prob[0, 40:44, 40:44] = 1  # 16
    prob[1, 50:52, 50:52] = 1  # 4: the only component of frame 1
    mask = probability_to_mask(prob, keep_largest=1)
    assert mask[0].sum() == 25 and mask[1].sum() == 4
    mask = probability_to_mask(prob, keep_largest=2)
    assert mask[0].sum() == 41 and mask[0, 21, 21] == 0
    assert probability_to_mask(prob, keep_largest=5)[0].sum() == 50


def test_components_never_join_across_frames():
    # Two 3-pixel blobs at the same place in consecutive frames: 6 pixels if frames merged.
    prob = np.zeros((2, 16, 16), np.uint8)
    prob[:, 5, 5:8] = 255
    assert probability_to_mask(prob, min_size=4).sum() == 0


def test_stack_postprocessing_equals_per_frame(rng):
    prob = (rng.random((4, 48, 48)) ** 3 * 255).astype(np.uint8)
    options = {"min_size": 5, "fill_holes": True, "keep_largest": 3}
    stacked = probability_to_mask(prob, 0.3, **options)
    for i in range(4):
        assert np.array_equal(stacked[i], probability_to_mask(prob[i], 0.3, **options))


# --------------------------------------------------------------------------- what the readers give


def test_uint8_frames_are_scaled_by_their_dtype_like_the_readers(tiny_unet, rng):
    raw = rng.integers(0, 256, (3, 40, 48), dtype=np.uint8)
    scaled = raw.astype(np.float32) / 255.0  # what read_stack gives for a uint8 file
    expected = predict_stack_sync(tiny_unet, scaled, device="cpu", batch_size=2).prob
    from_raw = predict_stack_sync(tiny_unet, raw, device="cpu", batch_size=2).prob
    assert np.abs(from_raw.astype(int) - expected.astype(int)).max() <= 1
    images = predict_images_sync(tiny_unet, [raw[0], scaled[1]], device="cpu")
    assert np.abs(images[0].astype(int) - expected[0].astype(int)).max() <= 1
    assert np.abs(images[1].astype(int) - expected[1].astype(int)).max() <= 1


def test_uint8_is_not_read_as_float_intensities():
    # PointwiseNet marks pixels above 0.5: a uint8 frame of 100 (0.39 when scaled) has no rib.
    frame = np.full((64, 64), 100, dtype=np.uint8)
    (prob,) = predict_images_sync(PointwiseNet(), [frame], device="cpu")
    assert prob.max() < 128
    stack = predict_stack_sync(PointwiseNet(), np.stack([frame, frame + 100]), device="cpu")
    assert stack.prob[0].max() < 128 and stack.prob[1].min() >= 128


def test_floats_outside_unit_interval_are_refused_naming_the_frame(frames):
    bad = frames.copy()
    bad[5, 3, 3] = 255.0
    with pytest.raises(
        ValueError, match=r"frame 5: float intensities .* \[0, 1\]; got \[.*, 255\]"
    ):
        predict_stack_sync(PointwiseNet(), bad, device="cpu", batch_size=2)
    with pytest.raises(ValueError, match=r"image 1: float intensities"):
        predict_images_sync(PointwiseNet(), [frames[0], frames[1] * 255], device="cpu")
    with pytest.raises(ValueError, match="dtype int16 cannot be scaled"):
        predict_stack_sync(PointwiseNet(), frames.astype(np.int16), device="cpu")


class LazyFrames:
    """A stack that hands out copies of the requested frames only, counting what it was asked."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.requested: list[int] = []

    def __getitem__(self, index):
        self.requested.extend(np.atleast_1d(np.arange(len(self.data))[index]).tolist())
        return self.data[index].copy()


def test_streaming_hands_each_batch_to_the_sink_and_keeps_nothing(tiny_unet, rng):
    raw = rng.integers(0, 256, (5, 32, 40), dtype=np.uint8)
    expected = predict_stack_sync(tiny_unet, raw, device="cpu", batch_size=2)
    lazy = LazyFrames(raw)
    got: dict[int, np.ndarray] = {}

    def sink(indices, probs):
        got.update(zip(indices.tolist(), probs, strict=True))

    pred = predict_stack_sync(
        tiny_unet, lazy, device="cpu", batch_size=2, on_batch=sink, keep_probabilities=False
    )
    assert lazy.requested == [0, 1, 2, 3, 4]
    assert pred.prob.shape == (5, 0, 0) and pred.complete
    np.testing.assert_array_equal(np.stack([got[i] for i in range(5)]), expected.prob)
    np.testing.assert_array_equal(pred.confidence, expected.confidence)


def test_images_of_one_size_keep_their_own_clips_region():
    """``evaluate`` stacked every image of one size: a linear clip's frame made a convex frame's
    region the whole frame (found in an inference audit). With ``clips`` each clip keeps its own."""
    from test_region import _fan_cine

    fan, truth = _fan_cine(2)
    full = np.random.default_rng(3).random(fan.shape, dtype=np.float32)
    everywhere = PointwiseNet()
    with torch.no_grad():
        everywhere.scale.fill_(0.0)  # p = 0.5 everywhere: exactly the region is marked

    def marked(images, clips=None):
        probs = predict_images_sync(everywhere, images, device="cpu", clips=clips)
        return [p >= 128 for p in probs]

    (alone,) = marked([fan[0]])
    assert alone.sum() < 0.9 * alone.size and (alone & ~truth).sum() < 0.05 * truth.sum()
    mixed, _ = marked([fan[0], full[0]])  # the old grouping
    assert mixed.sum() > alone.sum()
    kept, other = marked([fan[0], full[0]], clips=["convex", "linear"])
    np.testing.assert_array_equal(kept, alone)
    assert other.all()
