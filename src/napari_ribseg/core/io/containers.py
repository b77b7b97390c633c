"""Files that hold several named arrays (.mat, .npz) and plain .npy: choose an array, make a Stack.

Choice: the array named by ``variable=``, else the largest numeric array with 2 to 5 dimensions.

MATLAB (.mat v5 through ``scipy.io.loadmat``, v7.3 through h5py): h5py sees arrays transposed relative
to MATLAB, so they are transposed back first. A 3-D array in a file MATLAB or Octave wrote (its text
header names MATLAB's platform or Octave) is H x W x N, MATLAB's own layout, whatever the sizes. In a
file from Python (scipy writes "Platform: posix"), numpy's N x H x W is as likely, so the axis that is
strictly the smallest is the frame axis and goes first; when the smallest size is shared by two axes
(e.g. 64 x 64 x 64) the MATLAB layout H x W x N is assumed. A trailing axis of
exactly 3 (with larger height and width) is MATLAB's truecolor RGB layout and gives one colour frame
(MATLAB keeps alpha separately, so a trailing 4 is four frames). 4-D arrays are H x W x 1 x N
(MATLAB's greyscale multi-frame layout: ``dicomread`` of a cine, ``immovie``), H x W x 3 x N
(MATLAB's RGB video layout) or H x W x N x 3. MATLAB ``logical`` arrays (stored as uint8) read as
bool: 0/1.

NumPy (.npy, .npz): numpy's own layout (N, H, W), (N, H, W, 3|4) or (H, W). .npy files and uncompressed
contiguous v7.3 datasets are memory-mapped.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np

from napari_ribseg.core.budget import BOMB_MIN_BYTES, MAX_COMPRESSION_RATIO, check_shape
from napari_ribseg.core.errors import MemoryBudgetError, StackReadError
from napari_ribseg.core.io.intensity import arrange_frames, to_unit_frames
from napari_ribseg.core.stack import Stack

Candidate = tuple[tuple[int, ...], np.dtype]


def _usable(shape: tuple[int, ...], dtype: np.dtype) -> bool:
    return np.dtype(dtype).kind in "biuf" and 2 <= len(shape) <= 5 and int(np.prod(shape)) > 0


def choose_variable(candidates: dict[str, Candidate], variable: str | None, path: Path) -> str:
    """The name of the array to read: ``variable`` if given, else the largest usable one."""
    listing = (
        ", ".join(f"{k} {tuple(s)} {np.dtype(d)}" for k, (s, d) in candidates.items()) or "none"
    )
    if variable is not None:
        if variable not in candidates:
            raise StackReadError(f"{path}: no variable {variable!r}; the file holds: {listing}")
        shape, dtype = candidates[variable]
        if np.dtype(dtype).kind not in "biuf":
            raise StackReadError(f"{path}: variable {variable!r} has non-numeric dtype {dtype}")
        return variable
    usable = {k: v for k, v in candidates.items() if _usable(*v)}
    if not usable:
        raise StackReadError(
            f"{path}: no numeric array with 2 to 5 dimensions and at least one frame; the file holds: "
            f"{listing}"
        )
    # Largest first; among equal sizes, the first name in sorted order so the choice is stable.
    return max(sorted(usable), key=lambda k: int(np.prod(usable[k][0])))


#: The header MATLAB itself (its architecture codes) or Octave writes; scipy writes
#: "Platform: posix" or "nt" and h5py none.
_MATLAB_WRITER = re.compile(
    rb"MAT-file, (?:Platform: (?:PCWIN|GLNX|MAC|SOL|HPUX)|written by Octave)"
)


def written_by_matlab(path: Path) -> bool:
    """True when the .mat file's text header says MATLAB or Octave wrote it (not Python)."""
    with open(path, "rb") as fh:
        return bool(_MATLAB_WRITER.search(fh.read(116)))


def matlab_frames_first(
    array: np.ndarray, path: Path, *, frames_last: bool = False
) -> tuple[np.ndarray, bool]:
    """Put the frame axis of a MATLAB-ordered array first (see the module docstring).

    ``frames_last``: the file came from MATLAB or Octave, whose stacks are H x W x N, so a 3-D
    array's last axis is the frame axis whatever its size; otherwise the smallest axis is.
    """
    shape = array.shape
    if array.ndim == 3:
        if shape[2] == 3 and min(shape[:2]) > 4:
            return arrange_frames(array, path, colour=True)
        smallest = min(shape)
        frame_axis = 2 if frames_last or shape.count(smallest) > 1 else shape.index(smallest)
        return arrange_frames(np.moveaxis(array, frame_axis, 0), path, colour=False)
    if array.ndim == 4 and min(shape[:2]) > 4:
        if shape[2] == 1:
            # H x W x 1 x N: MATLAB's greyscale multi-frame layout (dicomread, immovie, montage).
            return arrange_frames(np.moveaxis(array[:, :, 0, :], 2, 0), path, colour=False)
        if shape[2] in (3, 4):
            return arrange_frames(np.transpose(array, (3, 0, 1, 2)), path, colour=True)
        if shape[3] in (3, 4):
            return arrange_frames(np.transpose(array, (2, 0, 1, 3)), path, colour=True)
    return arrange_frames(array, path)


def _stack(
    raw: np.ndarray, colour: bool, path: Path, name: str | None, dtype, extra: dict
) -> Stack:
    frames, scaling = to_unit_frames(raw, path, colour=colour)
    return Stack(
        frames=frames,
        source=path,
        original_dtype=str(np.dtype(dtype)),
        metadata={"variable": name, "intensity_scaling": scaling, **extra},
    )


def read_mat(path: Path, *, variable: str | None = None) -> Stack:
    """Read a MATLAB .mat file (v5 or v7.3)."""
    import scipy.io
    from scipy.io.matlab import matfile_version

    try:
        major, _ = matfile_version(str(path))
    except (ValueError, OSError, TypeError) as exc:
        raise StackReadError(f"{path}: not a MATLAB file or truncated: {exc}") from exc
    if major == 2:
        return _read_mat73(path, variable)
    try:
        # whosmat reads the headers only: budget the declared arrays before loadmat makes them.
        classes = {}
        for var_name, var_shape, var_class in scipy.io.whosmat(str(path)):
            classes[var_name] = var_class
            if variable is None or var_name == variable:
                check_shape(var_shape, 8, f"MATLAB variable {var_name!r}", path)
        contents = scipy.io.loadmat(str(path))
    except MemoryError as exc:
        raise MemoryBudgetError(f"{path}: out of memory reading the MATLAB file: {exc}") from exc
    except (ValueError, OSError, TypeError, NotImplementedError, EOFError) as exc:
        raise StackReadError(
            f"{path}: cannot read MATLAB v5 file (truncated or corrupt?): {exc}"
        ) from exc
    arrays = {
        k: v for k, v in contents.items() if not k.startswith("__") and isinstance(v, np.ndarray)
    }
    name = choose_variable({k: (v.shape, v.dtype) for k, v in arrays.items()}, variable, path)
    array = arrays[name]
    if classes.get(name) == "logical":
        array = array.astype(bool)  # scipy gives MATLAB logicals as uint8 0/1
    by_matlab = written_by_matlab(path)
    raw, colour = matlab_frames_first(array, path, frames_last=by_matlab)
    return _stack(raw, colour, path, name, array.dtype, _mat_extra("5", array, by_matlab))


def _mat_extra(version: str, array: np.ndarray, by_matlab: bool) -> dict:
    return {"matlab_version": version, "shape": array.shape, "written_by_matlab": by_matlab}


def _read_mat73(path: Path, variable: str | None) -> Stack:
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            datasets = {k: v for k, v in fh.items() if isinstance(v, h5py.Dataset)}
            # h5py shapes are MATLAB's reversed; report MATLAB's order.
            candidates = {
                k: (tuple(reversed(v.shape)), v.dtype)
                for k, v in datasets.items()
                if v.attrs.get("MATLAB_class", b"") not in (b"char", b"cell", b"struct")
            }
            name = choose_variable(candidates, variable, path)
            dset = datasets[name]
            check_shape(dset.shape, dset.dtype.itemsize, f"MATLAB v7.3 variable {name!r}", path)
            offset = dset.id.get_offset()
            mappable = dset.chunks is None and dset.compression is None and offset is not None
            dtype = dset.dtype
            if dset.attrs.get("MATLAB_class", b"") == b"logical" and dtype == np.uint8:
                dtype = np.dtype(bool)  # MATLAB stores logicals as uint8 0/1
            if not mappable:
                array = dset[()].astype(dtype, copy=False)
        if mappable:
            array = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=dset.shape)
    except (StackReadError, MemoryBudgetError):
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StackReadError(
            f"{path}: cannot read MATLAB v7.3 file (truncated or corrupt?): {exc}"
        ) from exc
    array = np.asarray(array).T if not mappable else array.T
    by_matlab = written_by_matlab(path)
    raw, colour = matlab_frames_first(array, path, frames_last=by_matlab)
    return _stack(raw, colour, path, name, dtype, _mat_extra("7.3", array, by_matlab))


def _npz_members(path: Path) -> dict[str, Candidate]:
    """Shape and dtype of every array in an .npz without loading the arrays."""
    out: dict[str, Candidate] = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read_header(fh)
            name = info.filename[: -len(".npy")]
            declared = int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
            # A zip bomb is refused from its zip directory, before any byte is inflated.
            if (
                info.compress_type != zipfile.ZIP_STORED
                and declared > BOMB_MIN_BYTES
                and declared > MAX_COMPRESSION_RATIO * max(info.compress_size, 1)
            ):
                raise MemoryBudgetError(
                    f"{path}: member {name!r} declares {declared} bytes from {info.compress_size} "
                    f"compressed bytes (ratio > {MAX_COMPRESSION_RATIO}); refusing a likely zip bomb"
                )
            if info.file_size < declared:
                raise StackReadError(
                    f"{path}: member {name!r} declares {declared} bytes of data but holds "
                    f"{info.file_size}; the file is truncated or corrupt"
                )
            out[name] = (shape, dtype)
    return out


def npy_header(path: str | Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) a .npy file declares, read from its header without loading the data."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(fh)
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        raise StackReadError(f"{path}: not a readable .npy file: {exc}") from exc
    return tuple(int(s) for s in shape), np.dtype(dtype)


def read_numpy(path: Path, *, variable: str | None = None) -> Stack:
    """Read a .npy (memory-mapped) or .npz (named or largest array) file."""
    try:
        if path.suffix.lower() == ".npy":
            name = None
            shape, dtype = npy_header(path)
            check_shape(shape, dtype.itemsize, "NumPy array", path)
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            if array.dtype.kind not in "biuf":
                raise StackReadError(f"{path}: array dtype {array.dtype} is not numeric")
        else:
            members = _npz_members(path)
            name = choose_variable(members, variable, path)
            check_shape(
                members[name][0], np.dtype(members[name][1]).itemsize, f"array {name!r}", path
            )
            with np.load(path, allow_pickle=False) as npz:
                array = npz[name]
    except (StackReadError, MemoryBudgetError):
        raise
    except MemoryError as exc:
        raise MemoryBudgetError(f"{path}: out of memory reading the NumPy file: {exc}") from exc
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise StackReadError(
            f"{path}: cannot read NumPy file (truncated or corrupt?): {exc}"
        ) from exc
    raw, colour = arrange_frames(array, path)
    return _stack(raw, colour, path, name, array.dtype, {"shape": array.shape})
