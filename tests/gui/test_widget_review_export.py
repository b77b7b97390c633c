"""A stack reviewed in the widget is exported by ``ribseg export-curated`` exactly as painted."""

from __future__ import annotations

import numpy as np
import tifffile

from napari_ribseg.cli import main
from napari_ribseg.core.io.paired import read_paired_dataset
from napari_ribseg.core.project import LOCK_FILE, project_dir_for
from napari_ribseg.core.stack import FrameStatus


def test_widget_review_exports_through_the_cli(docked, tmp_path, capsys):
    viewer, widget = docked
    rng = np.random.default_rng(0)
    frames = (rng.random((6, 64, 64)) * 50).astype(np.uint8)
    frames[:, 20:26, 8:56] += 180
    stack = tmp_path / "clip07.tif"
    tifffile.imwrite(stack, frames)

    # Opened as a user drops it on napari: through the npe2 reader, put under review.
    viewer.open(str(stack), plugin="napari-ribseg")
    session = widget.session
    labels = viewer.layers["clip07 ribs"]
    assert labels.data.shape == (6, 64, 64) and not labels.data.any()

    # Paint a different disc on frames 0-3 with napari's own brush, then curate them.
    labels.brush_size = 5
    labels.selected_label = 1
    for frame in range(4):
        session.go_to(frame)
        labels.paint((frame, 10 + 10 * frame, 12 + 8 * frame), 1)
        widget.set_status(frame, FrameStatus.CURATED)
    session.go_to(5)
    labels.paint((5, 50, 50), 1)  # painted but not curated: must not be exported
    painted = np.asarray(labels.data).copy()
    for frame in range(4):
        assert painted[frame, 10 + 10 * frame, 12 + 8 * frame] == 1
        assert 10 <= np.count_nonzero(painted[frame]) <= 30
    assert len({painted[f].tobytes() for f in range(4)}) == 4
    widget.save_project()  # what the widget's autosave calls (each status change saved already)

    # The user closes the viewer; the review is saved and its lock released.
    sidecar = project_dir_for(stack)
    widget.close()
    viewer.layers.clear()
    assert not (sidecar / LOCK_FILE).exists()

    out = tmp_path / "curated"
    assert main(["export-curated", str(stack), "--out", str(out)]) == 0
    assert "4 curated frame pairs" in capsys.readouterr().out
    assert len(list((out / "IMG").iterdir())) == 4
    assert len(list((out / "MASK").iterdir())) == 4
    exported = read_paired_dataset(out)
    assert len(exported.ids) == 4
    order = np.argsort(exported.ids)
    for frame, index in enumerate(order):
        np.testing.assert_array_equal(exported.masks[index], painted[frame])
        np.testing.assert_allclose(exported.images[index], frames[frame] / 255, atol=1 / 255)
