"""changed_pixels compared the whole stack at once (``labels != model_labels``): a bool stack as
large as the labels (369 MB at 400 frames of 820 x 1124) at every save and overwrite check."""

from __future__ import annotations

import tracemalloc

import numpy as np

from napari_ribseg.core.project import ReviewProject


def _project(tmp_path, n=64, shape=(256, 256)):
    project, _ = ReviewProject.open(tmp_path / "clip.ribseg", n, shape, lock=False)
    rng = np.random.default_rng(0)
    project.model_labels[:] = rng.random((n, *shape)) < 0.3
    project.labels[:] = project.model_labels
    flips = rng.random((n, *shape)) < rng.random((n, 1, 1)) * 0.05
    project.labels[flips] ^= 1
    return project, np.count_nonzero(project.labels != project.model_labels, axis=(1, 2))


def _peak(fn):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_changed_pixels_counts_are_exact_and_peak_memory_is_bounded(tmp_path):
    project, expected = _project(tmp_path)
    stack_bytes = 64 * 256 * 256  # one bool (or uint8) stack: 4 MiB
    # Whole stack: a 16-frame bool mask and count_nonzero's own 16-frame temporary, 2 MiB (was
    # a whole-stack mask, 4 MiB and more).
    counts, peak = _peak(lambda: project.changed_pixels)
    assert counts.dtype == np.int64 and counts.tolist() == expected.tolist()
    assert expected.min() >= 0 and expected.max() > 1000
    assert peak < stack_bytes * 0.6, f"peak {peak} bytes for a {stack_bytes}-byte stack"
    # A list of frames: copies of 16 frames of both stacks as well, 4 MiB (was 3 whole stacks).
    every = np.arange(64)[::-1]
    counts, peak = _peak(lambda: project.changed_pixels_of(every))
    assert counts.tolist() == expected[::-1].tolist()
    assert peak < stack_bytes * 1.25, f"peak {peak} bytes for a {stack_bytes}-byte stack"
    assert project.changed_pixels_of([5, 5, 63]).tolist() == expected[[5, 5, 63]].tolist()
    assert project.changed_pixels_of([]).tolist() == []
    protected, peak = _peak(lambda: project.protected_frames)
    assert protected.tolist() == np.flatnonzero(expected > 0).tolist()
    assert peak < stack_bytes * 0.6
