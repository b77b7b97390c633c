"""``evaluate_model``: the one predict -> mask -> score chain gives the numbers the old copies gave."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from napari_ribseg.core.evaluation import evaluate_model, predict_masks
from napari_ribseg.core.inference import predict_images_sync
from napari_ribseg.core.metrics import evaluate_masks
from napari_ribseg.core.models import build_model
from napari_ribseg.core.postprocess import probability_to_mask

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def model():
    torch.manual_seed(0)
    net = build_model("unet", "tiny", input_size=64, pretrained=False)
    with torch.no_grad():
        # A head that follows the brightness of the last decoder features gives masks that are
        # neither empty nor full, so the metrics differ from frame to frame.
        net.head.bias.fill_(0.0)
    return net.eval()


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    images, masks = [], []
    for shape in ((64, 64), (48, 80), (64, 64)):
        image = rng.random(shape, dtype=np.float32)
        images.append(image)
        masks.append((image > 0.5).astype(np.uint8))
    return SimpleNamespace(images=images, masks=masks, ids=["a_f0", "b_f0", "a_f1"])


def test_evaluate_model_matches_the_old_chain(model, data):
    probs = predict_images_sync(model, data.images, device="cpu", batch_size=2)
    old_masks = [probability_to_mask(p, 0.45, min_size=3, fill_holes=True) for p in probs]
    old = evaluate_masks(old_masks, data.masks, spacing=(0.5, 0.25), ids=data.ids)

    new = evaluate_model(
        model,
        data,
        threshold=0.45,
        postprocess={"min_size": 3, "fill_holes": True},
        device="cpu",
        batch_size=2,
        spacing=(0.5, 0.25),
    )

    assert new.rows == old.rows
    assert new.mean == old.mean
    assert new.unit == "mm"
    assert [r["id"] for r in new.rows] == ["a_f0", "b_f0", "a_f1"]
    assert [m.shape for m in new.masks] == [(64, 64), (48, 80), (64, 64)]
    for got, want in zip(new.masks, old_masks, strict=True):
        assert np.array_equal(got, want)
    assert new.extra["threshold"] == pytest.approx(0.45)


def test_a_model_that_marks_everything_scores_the_rib_share(data):
    net = build_model("unet", "tiny", input_size=64, pretrained=False)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.fill_(10.0)
    ev = evaluate_model(net, data, region=False)
    # Everything predicted: Dice = 2|T| / (|T| + |frame|) per frame.
    expected = [2 * m.sum() / (m.sum() + m.size) for m in data.masks]
    assert [r["dice"] for r in ev.rows] == pytest.approx(expected)
    assert ev.unit == "px"
    assert all(m.all() for m in ev.masks)


def test_unknown_postprocess_option_is_named(model, data):
    with pytest.raises(ValueError, match="min_sise"):
        predict_masks(model, data.images, postprocess={"min_sise": 3})


def test_bad_threshold_and_spacing_are_named_before_any_image_is_predicted(model, data):
    """threshold=50 and spacing=0.2 failed only after every image had been predicted."""
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]; got 50"):
        evaluate_model(model, data, threshold=50, device="cpu")
    with pytest.raises(ValueError, match=r"min_size and keep_largest must be >= 0; got -2 and 0"):
        predict_masks(model, data.images, postprocess={"min_size": -2}, device="cpu")
    with pytest.raises(ValueError, match=r"spacing must be two positive numbers .*; got 0\.2$"):
        evaluate_model(model, data, spacing=0.2, device="cpu")
    assert calls == []
    assert evaluate_model(model, data, spacing=[0.5, 0.5], device="cpu").spacing_mm == (0.5, 0.5)
