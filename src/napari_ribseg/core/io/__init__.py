"""Reading ultrasound stacks and paired datasets, writing labels, stacks and datasets.

One registry (:func:`find_reader`, :func:`read_stack`) serves the napari reader, the CLI and the
training data loader. Format modules import their libraries (tifffile, pydicom, imageio, scipy, h5py)
only when a file of that format is read, so importing this package is cheap.
"""

from napari_ribseg.core.io.frame_folder import read_stacked_files
from napari_ribseg.core.io.intensity import LUMA_601, binarize_mask
from napari_ribseg.core.io.paired import (
    PairedDataset,
    clip_id,
    read_paired_dataset,
    write_paired_dataset,
)
from napari_ribseg.core.io.registry import (
    READERS,
    StackReader,
    find_reader,
    natural_key,
    read_stack,
)
from napari_ribseg.core.io.writers import write_label_tiff, write_png_sequence, write_stack_tiff

__all__ = [
    "LUMA_601",
    "READERS",
    "PairedDataset",
    "StackReader",
    "binarize_mask",
    "clip_id",
    "find_reader",
    "natural_key",
    "read_paired_dataset",
    "read_stack",
    "read_stacked_files",
    "write_label_tiff",
    "write_paired_dataset",
    "write_png_sequence",
    "write_stack_tiff",
]
