"""Masks handed over in memory (a corrected frame, a training set, a dataset to write) are read by
the rules a mask file is read with (``core.io.intensity.mask_array`` -> ``binarize_mask``).

Before: they used ``> 0``, so an int8 0/-1 mask (MATLAB's or a tool's true, all bits set) was
empty, and ``write_paired_dataset`` wrote it as an empty mask without a word, while the same mask
saved to a file read as rib."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile

from napari_ribseg.core.errors import DatasetError
from napari_ribseg.core.io.intensity import binarize_mask
from napari_ribseg.core.io.paired import read_paired_dataset, write_paired_dataset
from napari_ribseg.core.session import ReviewSession
from napari_ribseg.core.training.data import TrainingSet


def _rib(dtype=np.int8, value=-1) -> np.ndarray:
    mask = np.zeros((16, 16), dtype)
    mask[4:10, 3:12] = value
    return mask


@pytest.fixture
def stack_file(tmp_path):
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, np.zeros((2, 16, 16), np.uint8), photometric="minisblack")
    return path


def test_set_labels_reads_a_0_minus_1_int8_mask_as_rib(stack_file):
    session = ReviewSession.open(stack_file)
    session.set_labels(1, _rib())
    assert int(session.project.labels[1].sum()) == 54  # was 0: -1 > 0 is False


def test_set_labels_refuses_a_label_map_naming_the_frame(stack_file):
    session = ReviewSession.open(stack_file)
    labels = _rib(np.uint8, 1)
    labels[12:15, 2:14] = 2  # pleura, 36 px beside a 54-px rib
    with pytest.raises(DatasetError, match=r"^frame 1: the mask holds 3 label values"):
        session.set_labels(1, labels)
    assert int(session.project.labels[1].sum()) == 0  # nothing half-written


def test_a_training_set_reads_a_0_minus_1_int8_mask_as_rib():
    data = TrainingSet([np.zeros((16, 16), np.float32)], [_rib()], ["a"])
    assert int(data.masks[0].sum()) == 54  # was 0
    assert data.masks[0].dtype == np.uint8


def test_write_paired_dataset_writes_a_0_minus_1_int8_mask_as_rib(tmp_path):
    write_paired_dataset(tmp_path / "d", [np.zeros((16, 16), np.uint8)], [_rib()], ["a"])
    back = read_paired_dataset(tmp_path / "d")
    assert int(back.masks[0].sum()) == 54  # was written empty, silently


def test_write_paired_dataset_refuses_a_label_map_before_writing(tmp_path):
    labels = _rib(np.uint8, 1)
    labels[12:15, 2:14] = 2
    with pytest.raises(DatasetError, match=r"mask 'a': the mask holds 3 label values"):
        write_paired_dataset(tmp_path / "d", [np.zeros((16, 16), np.uint8)], [labels], ["a"])
    assert not (tmp_path / "d").exists()


def test_a_0_minus_1_float_mask_reads_as_rib_like_its_int8_copy():
    """A signed mask turned float (-1.0) read > 0.5: empty, with a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert int(binarize_mask(_rib().astype(np.float32)).sum()) == 54
    data = TrainingSet([np.zeros((16, 16), np.float32)], [_rib().astype(np.float64)], ["a"])
    assert int(data.masks[0].sum()) == 54


def test_a_float_probability_map_is_cut_at_one_half_as_a_file_is():
    """In memory as in a file: > 0.5, not > 0 (a 0.1 halo was rib)."""
    prob = np.zeros((16, 16), np.float32)
    prob[4:10, 3:12] = 0.9
    prob[2:4, 3:12] = 0.1
    data = TrainingSet([np.zeros((16, 16), np.float32)], [prob], ["a"])
    assert int(data.masks[0].sum()) == 54  # was 72
