"""GUI fixtures: a docked Rib Segmentation widget and a tiny model in the user model folder."""

from __future__ import annotations

import numpy as np
import pytest

TINY_MODEL = "tiny-test"


def pytest_collection_modifyitems(items):
    """Every test in this folder needs a display (run under Xvfb)."""
    for item in items:
        if "tests/gui/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.gui)


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory, monkeypatch):
    """Keep the widget's settings and sourceless projects out of the real config folder."""
    monkeypatch.setenv("RIBSEG_CONFIG_DIR", str(tmp_path_factory.mktemp("ribseg-config")))
    # napari keeps plugin preferences in a process-wide settings object: reset ours to the
    # manifest's defaults so one test's chosen project folder cannot leak into the next.
    from napari_ribseg._widgets._settings import PREFERENCE_KEYS, _napari_category

    category = _napari_category()
    if category is not None:
        defaults = type(category)()
        for key in PREFERENCE_KEYS:
            monkeypatch.setattr(category, key, getattr(defaults, key), raising=False)


@pytest.fixture
def tiny_model() -> str:
    """Save an untrained tiny U-Net as a user model (RIBSEG_MODEL_DIR is per test); its name."""
    import torch

    from napari_ribseg.core.models import ModelCard, build_model, save_checkpoint, user_model_dir

    torch.manual_seed(0)
    model = build_model("unet", preset="tiny", input_size=64, pretrained=False)
    card = ModelCard(name=TINY_MODEL, variant="unet", preset="tiny", widths=list(model.widths))
    save_checkpoint(model, card, user_model_dir() / f"{TINY_MODEL}.safetensors")
    return TINY_MODEL


@pytest.fixture
def stack_file(tmp_path) -> str:
    """A 6-frame 64x64 stack with bright horizontal 'ribs', saved as .npy."""
    rng = np.random.default_rng(0)
    frames = rng.random((6, 64, 64), dtype=np.float32) * 0.2
    frames[:, 20:26, 8:56] += 0.7
    path = tmp_path / "clip01.npy"
    np.save(path, frames.clip(0, 1))
    return str(path)


@pytest.fixture
def docked(make_napari_viewer_proxy, qtbot):
    """(viewer, widget): the widget docked through the npe2 manifest, as a user opens it."""
    viewer = make_napari_viewer_proxy()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-ribseg", "Rib Segmentation")
    yield viewer, widget
    job = widget.finetune_section.job
    widget.shutdown()  # idempotent; safe after napari closed (a test may close it)
    if job is not None:
        job.kill()


@pytest.fixture
def wait_worker(qtbot):
    """A function that waits until the segment worker finished and its results are applied."""

    def wait(widget, timeout: int = 60_000) -> None:
        qtbot.waitUntil(lambda: widget.segment_section.worker is None, timeout=timeout)

    return wait


@pytest.fixture
def errors(monkeypatch) -> list[str]:
    """Messages the widget sent to napari's ``show_error`` during the test."""
    import napari.utils.notifications as notifications

    seen: list[str] = []
    monkeypatch.setattr(notifications, "show_error", lambda message: seen.append(str(message)))
    return seen


@pytest.fixture
def infos(monkeypatch) -> list[str]:
    """Messages the widget sent to napari's ``show_info`` during the test."""
    import napari.utils.notifications as notifications

    seen: list[str] = []
    monkeypatch.setattr(notifications, "show_info", lambda message: seen.append(str(message)))
    return seen


@pytest.fixture
def segmented(docked, tiny_model, stack_file, wait_worker):
    """(viewer, widget) with the test stack loaded and segmented by the tiny model."""
    viewer, widget = docked
    widget.load(stack_file)
    assert widget.segment_section.select_model(tiny_model)
    widget.segment("all")
    wait_worker(widget)
    return viewer, widget


@pytest.fixture
def accept_base_predictions():
    """``accept(widget, model_name)``: curate every frame with the base model's own prediction
    (p > 0.5), as if accepted as is (a fine-tune then has nothing to win on)."""
    from napari_ribseg.core.stack import FrameStatus

    def accept(widget, model_name):
        """Curate every frame with the base model's own prediction (p > 0.5), as if accepted as is."""
        import torch

        from napari_ribseg.core.models import load_model

        project = widget.session.project
        model = load_model(model_name, device="cpu").model.eval()
        with torch.no_grad():
            x = torch.from_numpy(np.asarray(widget.session.frames, np.float32)[:, None])
            project.labels[:] = (model(x)[:, 0] > 0).numpy().astype(project.labels.dtype)
        for f in range(len(project.labels)):
            widget.set_status(f, FrameStatus.CURATED)

    return accept
