"""DICOM ultrasound images and cines through pydicom.

Single- and multi-frame files; YBR_FULL / YBR_FULL_422 are converted to RGB by pydicom (its
``convert_color_space``, applied by ``pixel_array``) and then to BT.601 luma; PALETTE COLOR goes
through the palette; MONOCHROME1 is inverted so bright is always echo. Unsigned integers are scaled by
``2**BitsStored - 1``. Compressed transfer syntaxes are decoded when a decoder package is installed,
otherwise :class:`UnsupportedFormatError` says which package to install.

Spacing: ``PixelSpacing`` (enhanced files: the shared ``PixelMeasuresSequence``), else the first
``SequenceOfUltrasoundRegions`` item measured in centimetres in both directions (units code 3),
``PhysicalDeltaY``/``X`` x 10 -> mm. Frame rate: the acquisition's ``CineRate``, else
``1000 / FrameTime`` (ms), else the display's ``RecommendedDisplayFrameRate``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_ribseg.core.budget import check_frame, check_shape
from napari_ribseg.core.errors import MemoryBudgetError, StackReadError, UnsupportedFormatError
from napari_ribseg.core.io.intensity import arrange_frames, to_unit_frames
from napari_ribseg.core.stack import Stack

_DECODER_HINT = (
    "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle, or pip install "
    "python-gdcm"
)
_CM = 3  # DICOM PhysicalUnits code for centimetres


def _float(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def dicom_spacing(ds) -> tuple[tuple[float, float] | None, str | None]:
    """(row, col) pixel spacing in mm and the element it came from, or (None, None)."""
    spacing = ds.get("PixelSpacing")
    if spacing is None:
        # Enhanced multi-frame objects keep it in the shared functional groups.
        shared = ds.get("SharedFunctionalGroupsSequence")
        if shared:
            measures = shared[0].get("PixelMeasuresSequence")
            if measures:
                spacing = measures[0].get("PixelSpacing")
    if spacing is not None and len(spacing) == 2:
        row, col = _float(spacing[0]), _float(spacing[1])
        if row and col:
            return (row, col), "PixelSpacing"
    regions = ds.get("SequenceOfUltrasoundRegions") or []
    # A 2-D tissue region (spatial format 1) is the B-mode image; prefer it over Doppler strips.
    ordered = sorted(regions, key=lambda r: 0 if r.get("RegionSpatialFormat") == 1 else 1)
    for region in ordered:
        if (
            region.get("PhysicalUnitsXDirection") == _CM
            and region.get("PhysicalUnitsYDirection") == _CM
        ):
            dx = _float(abs(float(region.get("PhysicalDeltaX", 0) or 0)))
            dy = _float(abs(float(region.get("PhysicalDeltaY", 0) or 0)))
            if dx and dy:
                return (dy * 10.0, dx * 10.0), "SequenceOfUltrasoundRegions"
    return None, None


def dicom_frame_rate(ds) -> tuple[float | None, str | None]:
    """Frames per second and the element it came from, or (None, None)."""
    # Acquisition timing first (CineRate, FrameTime); the display rate a viewer is told to use
    # (RecommendedDisplayFrameRate) may be slowed down for viewing.
    rate = _float(ds.get("CineRate"))
    if rate:
        return rate, "CineRate"
    frame_time = _float(ds.get("FrameTime"))
    if frame_time:
        return 1000.0 / frame_time, "FrameTime"
    rate = _float(ds.get("RecommendedDisplayFrameRate"))
    if rate:
        return rate, "RecommendedDisplayFrameRate"
    return None, None


def _decode(ds, path: Path) -> np.ndarray:
    tsyntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if tsyntax is None:
        raise StackReadError(f"{path}: DICOM file has no TransferSyntaxUID; cannot decode pixels")
    try:
        from pydicom.pixels import get_decoder, pixel_array
    except ImportError:  # pydicom 2.x
        return _decode_pydicom2(ds, path)
    if tsyntax.is_compressed:
        try:
            decoder = get_decoder(tsyntax)
        except NotImplementedError as exc:
            raise UnsupportedFormatError(
                f"{path}: pixel data is encoded as {tsyntax.name}, which pydicom cannot decode"
            ) from exc
        if not decoder.is_available:
            raise UnsupportedFormatError(
                f"{path}: pixel data is compressed as {tsyntax.name} and no decoder is installed "
                f"({'; '.join(decoder.missing_dependencies)}); {_DECODER_HINT}"
            )
    try:
        # raw=False: pydicom converts YBR_FULL(_422) to RGB, knowing whether a JPEG codec already did.
        return pixel_array(ds, raw=False)
    except (
        ValueError,
        RuntimeError,
        EOFError,
        NotImplementedError,
        KeyError,
        AttributeError,
    ) as exc:
        raise StackReadError(
            f"{path}: cannot decode DICOM pixel data (truncated or corrupt?): {exc}"
        ) from exc


def _decode_pydicom2(ds, path: Path) -> np.ndarray:
    from pydicom.pixel_data_handlers.util import convert_color_space

    try:
        arr = ds.pixel_array
    except (RuntimeError, NotImplementedError) as exc:
        raise UnsupportedFormatError(
            f"{path}: cannot decode {ds.file_meta.TransferSyntaxUID.name}: {exc}; {_DECODER_HINT}"
        ) from exc
    except (ValueError, EOFError, KeyError, AttributeError) as exc:
        raise StackReadError(f"{path}: cannot decode DICOM pixel data: {exc}") from exc
    if str(ds.get("PhotometricInterpretation", "")).startswith("YBR_FULL"):
        arr = convert_color_space(arr, ds.PhotometricInterpretation, "RGB")
    return arr


def _header_int(ds, key: str, default: int, path: Path) -> int:
    value = ds.get(key)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise StackReadError(
            f"{path}: DICOM {key} is {str(value)!r}; expected a whole number"
        ) from exc


def read_dicom(path: Path) -> Stack:
    """Read a single- or multi-frame DICOM image as a stack."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import ImplicitVRLittleEndian

    try:
        try:
            ds = pydicom.dcmread(path)
        except InvalidDicomError:
            # Older devices write DICOM without the 128-byte preamble and file meta; the standard's
            # default transfer syntax (implicit VR little endian) then applies.
            ds = pydicom.dcmread(path, force=True)
            if "TransferSyntaxUID" not in ds.file_meta:
                ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise StackReadError(
            f"{path}: cannot read DICOM file (truncated or corrupt?): {exc}"
        ) from exc
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise StackReadError(f"{path}: not a DICOM image: no pixel data (zero frames)")
    n_frames, rows, cols, samples, bits = (
        _header_int(ds, key, default, path)
        for key, default in (
            ("NumberOfFrames", 1),
            ("Rows", 0),
            ("Columns", 0),
            ("SamplesPerPixel", 1),
            ("BitsAllocated", 8),
        )
    )
    if n_frames < 1:
        raise StackReadError(f"{path}: DICOM NumberOfFrames is {n_frames}; contains zero frames")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    samples = max(samples, 1)
    # The header's size is budgeted before the decoder allocates it (RLE/JPEG expand a lot).
    check_frame(rows, cols, path)
    check_shape((n_frames, rows, cols, samples), max(1, (bits + 7) // 8), "DICOM pixel data", path)
    try:
        arr = _decode(ds, path)
    except MemoryError as exc:
        raise MemoryBudgetError(f"{path}: out of memory decoding DICOM pixels: {exc}") from exc

    scale: float | None = None
    stored: int | None = None  # BitsStored of data wider than 8 bits: the depth the record names
    if photometric == "PALETTE COLOR":
        try:
            from pydicom.pixels import apply_color_lut
        except ImportError:  # pydicom 2.x
            from pydicom.pixel_data_handlers.util import apply_color_lut

        arr, samples = apply_color_lut(arr, ds), 3
    elif arr.dtype.kind == "u" and "PixelData" in ds:
        bits = int(ds.get("BitsStored", arr.dtype.itemsize * 8) or arr.dtype.itemsize * 8)
        scale = float(2 ** min(bits, arr.dtype.itemsize * 8) - 1)
        if arr.dtype.itemsize > 1 and ds.get("BitsStored"):
            stored = min(bits, arr.dtype.itemsize * 8)
    original_dtype = str(arr.dtype)
    colour = samples > 1 or (arr.ndim == 4)
    raw, colour = arrange_frames(arr, path, colour=colour)
    # MONOCHROME1 shows low values as white: inverted after scaling (in place, chunk by chunk), so
    # bright is always strong echo.
    frames, scaling = to_unit_frames(
        raw, path, colour=colour, scale=scale, invert=photometric == "MONOCHROME1"
    )
    if stored is not None:
        # Declared, as a PNG's sBIT is: the record (and ``ribseg info``) says where it came from.
        head = {"method": "divide", "divisor": scale}
        scaling = {**head, "significant_bits": stored, "bits_from": "BitsStored", **scaling}
    spacing, spacing_source = dicom_spacing(ds)
    rate, rate_source = dicom_frame_rate(ds)
    return Stack(
        frames=frames,
        source=path,
        spacing_mm=spacing,
        frame_rate=rate,
        original_dtype=original_dtype,
        metadata={
            "transfer_syntax": str(ds.file_meta.TransferSyntaxUID.name),
            "photometric_interpretation": photometric,
            "modality": str(ds.get("Modality", "")),
            "spacing_source": spacing_source,
            "frame_rate_source": rate_source,
            "intensity_scaling": scaling,
        },
    )
