"""Tiny crafted files whose headers declare huge sizes (shared by the tests and the RSS benchmark)."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import numpy as np


def _npy_header(shape, dtype="<u1") -> bytes:
    buffer = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": tuple(shape)}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def tiff_claiming(path: Path, height: int, width: int) -> Path:
    """A ~150-byte uncompressed TIFF whose one page claims ``height`` x ``width`` uint8 pixels."""
    entries = [
        (256, 4, 1, width),  # ImageWidth
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression none
        (262, 3, 1, 1),  # BlackIsZero
        (273, 4, 1, 8),  # StripOffsets
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, height * width % 2**32),  # StripByteCounts
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        packed = struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, typ, count) + packed
    ifd += struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd)
    return path


def npy_claiming(path: Path, shape) -> Path:
    path.write_bytes(_npy_header(shape) + b"\x00" * 64)
    return path


def npz_claiming(path: Path, shape) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("frames.npy", _npy_header(shape) + b"\x00" * 64)
    return path


def npz_bomb(path: Path, nbytes: int = 400 * 1024**2) -> Path:
    """An .npz whose member inflates from ~0.4 MB to ``nbytes`` of zeros (a zip bomb)."""
    n = nbytes // (1024 * 1024)
    block = b"\x00" * (1024 * 1024)
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf,
        zf.open("frames.npy", "w", force_zip64=True) as fh,
    ):
        fh.write(_npy_header((n, 1024, 1024)))
        for _ in range(n):
            fh.write(block)
    return path


def dicom_claiming(path: Path, rows: int, cols: int, frames: str | int) -> Path:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.Rows, ds.Columns = rows, cols
    # NumberOfFrames; written as LO so a garbage value like "ab" reaches the file as it is.
    ds.add_new(0x00280008, "IS" if isinstance(frames, int) else "LO", str(frames))
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 8, 8, 7
    ds.PixelRepresentation = 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = b"\x00" * 16
    ds.save_as(path, enforce_file_format=True)
    return path


def png_claiming(folder: Path, height: int, width: int) -> Path:
    """A frame folder holding one PNG whose header claims ``height`` x ``width`` pixels."""
    import zlib

    folder.mkdir(parents=True, exist_ok=True)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    (folder / "frame0.png").write_bytes(data + chunk(b"IEND", b""))
    return folder


def mat73_claiming(path: Path, shape) -> Path:
    import h5py

    with h5py.File(path, "w", userblock_size=512) as fh:
        fh.create_dataset("frames", shape=shape, dtype="u1", chunks=True, compression="gzip")
    with open(path, "r+b") as fh:  # MATLAB's v7.3 header in the user block
        fh.write(b"MATLAB 7.3 MAT-file".ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")
    return path


def all_hostile(tmp: Path) -> dict[str, Path]:
    """Every crafted file of issue 10, by name."""
    return {
        "tiff-1e5x1e5": tiff_claiming(tmp / "huge.tif", 100_000, 100_000),
        "tiff-30000^2": tiff_claiming(tmp / "wide.tif", 30_000, 30_000),
        "npy-1e13": npy_claiming(tmp / "huge.npy", (10_000_000, 1000, 1000)),
        "npz-1e13": npz_claiming(tmp / "huge.npz", (10_000_000, 1000, 1000)),
        "npz-bomb": npz_bomb(tmp / "bomb.npz"),
        "dicom-65535^2x1000": dicom_claiming(tmp / "huge.dcm", 65535, 65535, 1000),
        "dicom-frames-ab": dicom_claiming(tmp / "ab.dcm", 8, 8, "ab"),
        "png-20000^2": png_claiming(tmp / "pngs", 20_000, 20_000),
        "mat73-huge": mat73_claiming(tmp / "huge.mat", (100_000, 10_000, 10_000)),
    }
