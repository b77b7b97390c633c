"""Turning raw pixel arrays into the float32 [0, 1] frames of a :class:`~napari_ribseg.core.stack.Stack`.

Every reader ends here, so the intensity rules are the same for all formats:

* ``bool`` -> 0/1, ``uint8`` -> /255, ``uint16`` -> /(2**bits - 1) with ``bits`` the fewest of 8, 10,
  12, 14 and 16 that hold the stack's maximum (:func:`uint16_bits`: 8-bit data saved as 16-bit, a
  10-, 12- or 14-bit scanner's or ADC's samples, true 16-bit), unless the file declares its depth
  (a PNG's ``sBIT``, a TIFF's ``MaxSampleValue``, whose value is the divisor, 5000 as well as
  4095: ``core.io.bit_depth``) and the data fit it; a reader that knows the depth passes it
  (DICOM's ``2**BitsStored - 1``); a paired dataset takes the maximum of
  each clip (``core.io.paired``), and the engine divides raw arrays by the same rule through
  :func:`uint16_divisor` / :func:`unit_divisor` / :func:`unit_float`;
* any other dtype (floats, signed or 32-bit integers): kept if every value lies in [0, 1], otherwise
  min-max scaled with the *global* minimum and maximum of the whole stack (not per frame, so the
  brightness of frames stays comparable); a constant stack outside [0, 1] becomes zeros;
* NaN or infinite values raise :class:`StackReadError` naming the file and the first bad frame;
* colour (a trailing axis of 3 or 4 samples) becomes ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B``
  (alpha ignored); 2 samples (grey + alpha) keep the grey sample;
* data whose format says "low values are white" (DICOM MONOCHROME1, TIFF WhiteIsZero) is inverted
  after scaling, ``1 - v``, so bright is always strong echo, and the record says ``inverted``.

Conversion runs over chunks of frames into one preallocated float32 array, so a memory-mapped source
is paged in a chunk at a time and never held in memory next to its float copy; a float32 source that
is already in [0, 1] and grey is returned as it is (a memory map stays a memory map).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from napari_ribseg.core.errors import StackReadError
from napari_ribseg.core.io.bit_depth import DeclaredDepth, agreed_bits

#: ITU-R BT.601 luma weights for R, G, B.
LUMA_601 = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# About 64 MiB of float32 output per chunk: large enough to be fast, small enough to stay cheap.
_CHUNK_BYTES = 64 * 2**20

_FIXED_SCALE = {np.dtype(bool): 1.0, np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


#: The ``bits_from`` of a depth a file declares (``core.io.bit_depth``; DICOM's ``BitsStored``),
#: not guessed.
DECLARED_BY = ("sBIT", "MaxSampleValue", "BitsStored")

#: The bit depths uint16 data is read at when its file records none (:func:`uint16_bits`).
UINT16_BITS = (8, 10, 12, 14, 16)


def is_uint16(dtype: np.dtype) -> bool:
    """True for uint16 in either byte order."""
    return np.dtype(dtype).newbyteorder("=") == np.dtype(np.uint16)


def uint16_bits(maximum: int | float) -> int:
    """Significant bits of uint16 samples whose file does not say: the fewest of 8, 10, 12, 14 and
    16 that hold ``maximum``, the largest value of the whole stack.

    Ultrasound frames reach near their full scale (specular echoes, overlay text), so 12-bit samples
    (maximum <= 4095) divided by 65535 would read 16 times too dark and the model would see a black
    frame; napari's auto-contrast hides that from the user. 10- and 14-bit data (scanner ADCs,
    DICOM exports whose BitsStored a TIFF or PNG cannot keep) are as common: with 8, 12 and 16
    only, they read 4 times too dark. A stack is misread (up to 4 times too bright, never
    clipped) only if its brightest pixel is below a quarter of its range.
    """
    for bits in UINT16_BITS:
        if maximum < 2**bits:
            return bits
    return 16


def uint16_divisor(frames) -> float:
    """The divisor of raw uint16 ``frames`` (an array, an array-like with ``shape`` and slicing, or
    a list of arrays): ``2**bits - 1`` for the :func:`uint16_bits` of their largest value.

    The one place the engine finds it (inference, region detection, training sets, adaptation), so
    a raw stack passed in is divided as its file would be read. Read a chunk of frames at a time:
    a memory-mapped stack is never copied whole."""
    if isinstance(frames, list | tuple):
        top = max((int(np.max(f)) for f in frames if np.size(f)), default=0)
    else:
        n = int(frames.shape[0]) if len(frames.shape) else 1
        if len(frames.shape) < 3:
            top = int(np.max(frames)) if np.size(frames) else 0
        else:
            frame_bytes = max(1, int(np.prod(frames.shape[1:])) * 2)
            step = max(1, (64 << 20) // frame_bytes)
            top = max(
                (int(np.max(frames[i : i + step])) for i in range(0, n, step) if n), default=0
            )
    return uint16_scaling(top)[0]


def unit_divisor(frames) -> float | None:
    """What raw ``frames`` are divided by to lie in [0, 1] by the readers' rules: 1 for bool, 255
    for uint8, :func:`uint16_divisor` for uint16, ``None`` for floats (already in [0, 1]).

    A lazy source (an array-like that is not an ndarray, e.g. ``core.io.lazy.TiffFrames``) scales
    uint16 of fewer bits itself and hands out raw uint16 only at 16 bits: its dtype's full scale,
    without a pass over the file. Other dtypes raise ``ValueError``: only the readers' whole-stack
    min-max rule scales them."""
    listed = isinstance(frames, list | tuple)
    first = frames[0] if listed and frames else frames
    dtype = np.dtype(getattr(first, "dtype", np.asarray(first).dtype))
    if dtype.kind == "f":
        return None
    if is_uint16(dtype) and (listed or isinstance(frames, np.ndarray)):
        return uint16_divisor(frames)
    scale = full_scale(dtype)
    if scale is None:
        raise ValueError(
            f"frames of dtype {dtype} cannot be scaled to [0, 1] here; expected float in [0, 1], "
            "bool, uint8 or uint16 (read the file with read_stack, which min-max scales the stack)"
        )
    return scale


def unit_float(array, divisor: float | None = None) -> np.ndarray:
    """``array`` as float32 in [0, 1] by the readers' rules: divided by ``divisor`` (the whole
    stack's :func:`unit_divisor`, for part of a stack), or by its own when none is given.

    Floats are returned as float32 unchanged (they are checked where they enter the engine)."""
    array = np.asarray(array)
    if array.dtype.kind == "f":
        return array.astype(np.float32, copy=False)
    if divisor is None:
        divisor = unit_divisor(array)
    out = array.astype(np.float32)
    out /= np.float32(divisor)
    return np.clip(out, 0.0, 1.0, out=out)


def sample_max(raw: np.ndarray, colour: bool) -> int:
    """The largest grey or colour sample of ``raw``, alpha left out (an opaque alpha of 65535
    would make 12-bit colour data read as 16-bit)."""
    if colour and raw.shape[-1] in (2, 4):
        raw = raw[..., : raw.shape[-1] - 1]
    return int(np.max(raw)) if raw.size else 0


def uint16_scaling(
    maximum: int | float, declared: DeclaredDepth | None = None, note: str | None = None
) -> tuple[float, dict]:
    """Divisor and ``intensity_scaling`` record for uint16 data whose largest value is ``maximum``.

    ``declared``: the :class:`~napari_ribseg.core.io.bit_depth.DeclaredDepth` the file(s) declare,
    used when the data fit it (divided by its white point: ``2**bits - 1``, or a TIFF's
    ``MaxSampleValue`` that is not one); otherwise the bits are guessed from ``maximum``
    (:func:`uint16_bits`). A declared record keeps ``maximum``: the stack read before depths were
    declared was divided by its guess (``core.project.legacy_fingerprints``). ``note`` (why declared
    depths were not used) is kept in the record as ``bits_note``."""
    if declared is not None and maximum <= declared.white:
        bits, source, divisor = declared.bits, declared.source, float(declared.white)
    else:
        bits, source = uint16_bits(maximum), "stack maximum"
        divisor = float(2**bits - 1)
        declared = None
    record: dict = {"method": "divide", "divisor": divisor}
    if bits < 16 or declared is not None:
        record.update(significant_bits=bits, bits_from=source)
    if declared is not None:
        record["maximum"] = int(maximum)
    if note:
        record["bits_note"] = note
    return divisor, record


def bits_text(record: dict, whose: str = "its") -> str | None:
    """Where a divide record's divisor comes from, in words: ``12 significant bits, declared by
    its sBIT``, ``white point declared by its MaxSampleValue``, ``12 significant bits, from the
    clip maximum``; ``None`` when the record names no bit depth (16 bits, the dtype's scale).
    ``whose``: ``their`` for several clips.

    The one wording of ``bits_from`` for a stack's line and a paired dataset's per-clip line."""
    if "significant_bits" not in record:
        return None
    where = record["bits_from"]
    where = f"declared by {whose} {where}" if where in DECLARED_BY else f"from the {where}"
    bits = int(record["significant_bits"])
    if where.startswith("declared") and float(record["divisor"]) != float(2**bits - 1):
        return f"white point {where}"
    return f"{bits} significant bits, {where}"


def describe_scaling(record: dict | None) -> str:
    """One line for an ``intensity_scaling`` record, e.g. ``divided by 4095 (12 significant bits,
    from the stack maximum)``; ``unknown`` for none."""
    if not record:
        return "unknown"
    method = record.get("method")
    if method == "divide":
        text = f"divided by {record['divisor']:g}"
        if (bits := bits_text(record)) is not None:
            text += f" ({bits})"
        if "bits_note" in record:
            text += f"; {record['bits_note']}"
    elif method == "minmax":
        text = f"min-max scaled from [{record['min']:g}, {record['max']:g}] over the stack"
    elif method == "divide-per-clip":
        text = _describe_clips(record["uint16_clips"])
    elif method == "divide-by-dtype":
        text = "each frame divided by its dtype's full scale"
        if "uint16" in record:
            text += f"; 16-bit frames {describe_scaling(record['uint16'])}"
        if "uint16_clips" in record:
            text += "; " + _describe_clips(record["uint16_clips"])
    elif method == "none":
        text = "kept as read (already in [0, 1])"
    else:
        text = str(method)
    if record.get("inverted"):
        if "inverted_frames" in record:
            text += f"; {record['inverted_frames']} of {record['frames']} frames inverted"
        else:
            text += "; inverted"
        text += " (low values were white)"
    return text


def _describe_clips(clips: dict[str, dict], named: int = 5) -> str:
    """``16-bit images divided by their clip's bit depth: 4095 (12 significant bits, declared by
    their sBIT) for 3 clips (a, b, c)`` for a paired dataset's ``uint16_clips`` records, one part
    per divisor and origin of the depth (:func:`bits_text`, as a stack's line says it), then the
    ``bits_note`` of each clip that has one."""
    groups: dict[tuple[float, str], list[str]] = {}
    for clip, record in clips.items():
        # A record without bits is a 16-bit guess (declared depths always name theirs).
        where = bits_text(record, "their") or "16 significant bits, from the clip maximum"
        groups.setdefault((record["divisor"], where), []).append(clip)
    parts = []
    for (divisor, where), names in groups.items():
        count = f"{len(names)} clip" + ("s" if len(names) > 1 else "")
        parts.append(f"{divisor:g} ({where}) for {count} ({_some(names, named)})")
    text = "16-bit images divided by their clip's bit depth: " + ", ".join(parts)
    if len({divisor for divisor, _ in groups}) > 1:
        text += "; bit depths differ between clips"
    noted = [(clip, r["bits_note"]) for clip, r in clips.items() if r.get("bits_note")]
    for clip, note in noted[:named]:
        text += f"; clip {clip}: {note}"
    if len(noted) > named:
        text += f"; {len(noted) - named} more clips' declared bit depths not used"
    return text


def _some(names: list[str], named: int) -> str:
    shown = ", ".join(names[:named])
    return shown + (f" and {len(names) - named} more" if len(names) > named else "")


def full_scale(dtype: np.dtype) -> float | None:
    """The value that maps to 1.0 for ``dtype``, or ``None`` when the float rule applies.

    Byte order does not matter: a big-endian uint16 (ImageJ's default) is uint16."""
    return _FIXED_SCALE.get(np.dtype(dtype).newbyteorder("="))


def is_numeric(array: np.ndarray) -> bool:
    """True for bool, integer and real floating arrays (the dtypes a stack can come from)."""
    return array.dtype.kind in "biuf"


def luma(samples: np.ndarray) -> np.ndarray:
    """Grey value of colour samples on the last axis (2: grey+alpha, 3: RGB, 4: RGBA) as float32."""
    n = samples.shape[-1]
    if n in (1, 2):
        return samples[..., 0].astype(np.float32)
    if n in (3, 4):
        rgb = samples[..., :3].astype(np.float32)
        return rgb @ LUMA_601
    raise ValueError(f"cannot convert {n} colour samples to grey")


def arrange_frames(
    array: np.ndarray, source: str | os.PathLike, *, colour: bool | None = None
) -> tuple[np.ndarray, bool]:
    """View ``array`` as (frames, H, W) or (frames, H, W, samples); return it and whether it is colour.

    ``colour=None`` guesses: a trailing axis of 3 or 4 is colour when the two axes before it are
    larger than 4 (an RGB image, not three 4-pixel-wide frames). Singleton axes other than height and
    width are dropped (e.g. (N, 1, H, W) or (H, W, 1)). Anything that is still more than 3-D apart
    from the colour axis raises :class:`StackReadError` naming the shape.
    """
    original_shape = array.shape
    if colour is None:
        colour = (
            array.ndim >= 3 and array.shape[-1] in (3, 4) and min(array.shape[-3:-1], default=0) > 4
        )
    if colour:
        if array.ndim < 3:
            raise StackReadError(
                f"{source}: colour data must be at least 3-D, got {original_shape}"
            )
        # A single sample is grey; two are grey + alpha.
        if array.shape[-1] == 1:
            array, colour = array[..., 0], False
    elif array.ndim >= 3 and array.shape[-1] == 1:
        array = array[..., 0]
    spatial = 3 if colour else 2
    while array.ndim > spatial + 1:
        lead = array.shape[: array.ndim - spatial]
        if 1 not in lead:
            break
        array = array.reshape(tuple(s for s in lead if s != 1) + array.shape[-spatial:])
    if array.ndim == spatial:
        array = array[np.newaxis]
    if array.ndim != spatial + 1:
        raise StackReadError(
            f"{source}: cannot read an array of shape {original_shape} as frames x height x width; "
            "expected 2-D, 3-D, or up to 5-D with a trailing colour axis of 3 or 4"
        )
    if array.shape[0] == 0:
        raise StackReadError(f"{source}: contains zero frames (shape {original_shape})")
    if 0 in array.shape[1:3]:
        raise StackReadError(f"{source}: frames are empty (shape {original_shape})")
    return array, bool(colour)


def _chunk_len(frame_shape: tuple[int, ...]) -> int:
    return max(1, _CHUNK_BYTES // max(1, 4 * int(np.prod(frame_shape))))


def _check_finite(chunk: np.ndarray, start: int, source: str | os.PathLike) -> None:
    if chunk.dtype.kind != "f":
        return
    ok = np.isfinite(chunk).reshape(len(chunk), -1).all(axis=1)
    if not ok.all():
        bad = start + int(np.argmin(ok))
        raise StackReadError(
            f"{source}: frame {bad} contains NaN or infinite values; expected finite intensities"
        )


def to_unit_frames(
    raw: np.ndarray,
    source: str | os.PathLike,
    *,
    colour: bool = False,
    scale: float | None = None,
    invert: bool = False,
    declared: DeclaredDepth | None = None,
) -> tuple[np.ndarray, dict]:
    """Convert (N, H, W[, samples]) raw data to float32 (N, H, W) in [0, 1].

    Returns the frames and a dict describing the scaling (stored in ``Stack.metadata``). ``scale``
    overrides the full-scale value of integer data; without it, uint16 data is divided by the
    white point the file declares (``declared``, from ``core.io.bit_depth``: ``2**bits - 1``, or a
    TIFF's ``MaxSampleValue``) when the data fit it, else by ``2**bits - 1`` for the
    :func:`uint16_bits` of its maximum. ``invert`` maps the scaled value ``v`` to
    ``1 - v`` chunk by chunk in the output (no second copy of the stack).
    """
    frames, scaling = _unit_frames(
        raw, source, colour=colour, scale=scale, copy=invert, declared=declared
    )
    if invert:
        step = _chunk_len(frames.shape[1:3])
        for start in range(0, len(frames), step):
            block = frames[start : start + step]
            np.subtract(np.float32(1.0), block, out=block)
        scaling = {**scaling, "inverted": True}
    return frames, scaling


def _unit_frames(
    raw: np.ndarray,
    source,
    *,
    colour: bool,
    scale: float | None,
    copy: bool,
    declared: DeclaredDepth | None = None,
) -> tuple[np.ndarray, dict]:
    if not is_numeric(raw):
        raise StackReadError(f"{source}: pixel data of dtype {raw.dtype} is not numeric")
    n = raw.shape[0]
    step = _chunk_len(raw.shape[1:3])
    record: dict | None = None
    if scale is None and is_uint16(raw.dtype):
        top = max(sample_max(raw[start : start + step], colour) for start in range(0, n, step))
        if declared is not None:
            declared = agreed_bits([(source, declared, top)])[0]
        scale, record = uint16_scaling(top, declared)
    elif scale is None:
        scale = full_scale(raw.dtype)

    if scale is None and not colour and raw.dtype == np.float32 and not copy:
        # Check before copying: a float32 [0, 1] source (e.g. a memory-mapped TIFF) is used as is.
        lo, hi = np.inf, -np.inf
        for start in range(0, n, step):
            chunk = raw[start : start + step]
            _check_finite(chunk, start, source)
            lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
        if lo >= 0.0 and hi <= 1.0:
            return raw, {"method": "none"}

    out = np.empty((n, *raw.shape[1:3]), dtype=np.float32)
    lo, hi = np.inf, -np.inf
    for start in range(0, n, step):
        chunk = np.asarray(raw[start : start + step])
        _check_finite(chunk, start, source)
        grey = luma(chunk) if colour else chunk.astype(np.float32)
        if scale is not None:
            grey /= np.float32(scale)
        else:
            lo, hi = min(lo, float(grey.min())), max(hi, float(grey.max()))
        out[start : start + len(chunk)] = grey
    if scale is not None:
        # DICOM's BitsStored may be smaller than the data: values above full scale are clipped.
        np.clip(out, 0.0, 1.0, out=out)
        return out, record or {"method": "divide", "divisor": float(scale)}
    if lo >= 0.0 and hi <= 1.0:
        return out, {"method": "none"}
    for start in range(0, n, step):
        block = out[start : start + step]
        if hi > lo:
            block -= np.float32(lo)
            block /= np.float32(hi - lo)
            np.clip(block, 0.0, 1.0, out=block)
        else:
            block[...] = 0.0
    return out, {"method": "minmax", "min": lo, "max": hi}


#: A label of a label map holds at least this many pixels and this share of the labelled ones;
#: fewer are noise of a binary mask (JPEG ringing, resampling), not a second structure.
LABEL_MIN_PIXELS = 20
LABEL_MIN_SHARE = 0.05
#: ... and the labels of a label map together hold at least this share of its labelled pixels (a
#: resampled label map keeps ~90% on its plateaus; a feathered mask of sigma 5 px, 12-30%).
LABEL_MAP_COVERAGE = 0.6
#: A label map numbers its labels 1, 2, 3, ... (napari's labels layers): up to this maximum every
#: value holding enough pixels is a label, a 1-px line hugging a higher label included (pleura 1
#: over rib 2). Above it, greys with no pixels of their own are interpolation (a 0/255 band of
#: 1-2 px shrunk bilinearly peaks at 85-127 with flanks of 4-65): a 1-px line there cannot be
#: told from a flank and is not counted.
LABEL_IDS_MAX = 31
#: Lossy formats: values beside the mask's own are compression ringing, never labels.
LOSSY_SUFFIXES = (".jpg", ".jpeg")
#: Colour masks: a pixel's colour is its R, G, B over its largest sample, rounded to quarters, so
#: the darker shades of an anti-aliased edge (a colour times its coverage) are the same colour.
_COLOUR_STEPS = 4


def _is_lossy(source) -> bool:
    return str(source).lower().endswith(LOSSY_SUFFIXES)


def _area_pixels(values: np.ndarray) -> np.ndarray:
    """True where a pixel lies in a 2x2 square of one value: part of an area, not of a 1-px line.

    Interpolation leaves each grey level of an edge as a line one pixel wide (a staircase on a
    slanted edge), which holds no such square; a label drawn as a region does."""
    square = (
        (values[:-1, :-1] == values[1:, :-1])
        & (values[:-1, :-1] == values[:-1, 1:])
        & (values[:-1, :-1] == values[1:, 1:])
    )
    covered = np.zeros(values.shape, bool)
    covered[:-1, :-1] |= square
    covered[1:, :-1] |= square
    covered[:-1, 1:] |= square
    covered[1:, 1:] |= square
    return covered


def _top_pixels(values: np.ndarray) -> np.ndarray:
    """True where no 8-neighbour holds a higher value: a label's own pixels, a 1-px line
    included, but not the grey ring of a resampled edge, which rises towards its label.

    Exact (every pixel) and cheap: eight comparisons of shifted views."""
    height, width = values.shape
    padded = np.pad(values, 1, mode="edge")
    top = np.ones(values.shape, bool)
    for dy in range(3):
        for dx in range(3):
            if dy != 1 or dx != 1:
                top &= padded[dy : dy + height, dx : dx + width] <= values
    return top


def _label_floor(labelled: int) -> float:
    return max(LABEL_MIN_PIXELS, LABEL_MIN_SHARE * float(labelled))


def _refuse_label_map(mask: np.ndarray, source, *, areas: bool = False) -> None:
    """Raise when ``mask`` is a label map rather than one rib label. A lossy file is never one: its
    extra values are ringing (a 0/1 JPEG mask holds a few 2s, a 0/255 one many greys).

    With ``areas=False`` (masks whose maximum is at most 127: 0/1 masks, napari Labels) a label map
    has two or more non-zero values that each hold :data:`LABEL_MIN_PIXELS` and
    :data:`LABEL_MIN_SHARE` of the labelled pixels, or one of which is a line of at least
    :data:`LABEL_MIN_PIXELS` (:func:`_top_pixels` outside 2x2 squares of its value) however
    small its share: the pleura as a 1-px line beside a large rib. Each of them must have
    :data:`LABEL_MIN_PIXELS` pixels of its own (no higher neighbour, or in a 2x2 square of its
    value; half its pixels if fewer), and together they must hold :data:`LABEL_MAP_COVERAGE` of
    the labelled pixels: the flanks of a thin 0/255 band shrunk by bilinear resampling below
    128, and the changing greys of its ridge, are interpolation, not labels.
    With ``areas=True`` (larger maxima, whose edges hold interpolation grey) the maximum is the
    first label and another non-zero value (not within 1/32 of the maximum: its shades) is a
    second one only when that many of its pixels lie in 2x2 squares of that value (:func:`_area_pixels`): a 1-px grey fringe is not a label, and
    neither is a thin 1-px second label (a limitation: it cannot be told from a fringe).
    """
    if _is_lossy(source):
        return
    values, counts = np.unique(mask, return_counts=True)
    nonzero = values != 0
    if int(nonzero.sum()) < 2:
        return
    labelled = int(counts[nonzero].sum())
    floor = _label_floor(labelled)
    if areas:
        top = values.max()
        in_areas = dict(zip(*np.unique(mask[_area_pixels(mask)], return_counts=True), strict=True))
        # Values within 1/32 of the maximum are its shades (a colour mask's channel after JPEG or
        # a colour conversion: 254 beside 255), never a second label.
        near = top - top // 32
        labels = [v for v in values[nonzero] if v < near and in_areas.get(v, 0) >= floor]
        if not labels:
            return
        labels.append(top)
        how = (
            f"besides {top:g}, {', '.join(f'{v:g}' for v in labels[:-1])} "
            f"{'covers' if len(labels) == 2 else 'each cover'} an area of at least "
            f"{floor:.0f} px, not a 1-px interpolated edge"
        )
    else:
        labels = [v for v, c in zip(values, counts, strict=True) if v != 0 and c >= floor]
        # A thin label (the pleura as a 1-px line beside a large rib) holds less than the share
        # of the floor, but its pixels are its own: none has a neighbour of a higher value, as
        # the grey ring of a resampled 0/2 mask has, and they lie in no 2x2 square of their
        # value, as the small core of a blurred 0/2 mask does. Every pixel is looked at.
        peaks, in_areas = _top_pixels(mask), _area_pixels(mask)
        line = peaks & ~in_areas
        tops = dict(zip(*np.unique(mask[line], return_counts=True), strict=True))
        thin = [
            v for v in values[nonzero] if v not in labels and tops.get(v, 0) >= LABEL_MIN_PIXELS
        ]
        labels = sorted(labels + thin)
        if len(labels) < 2:
            return
    # A label map is piecewise constant: its labels hold most of its labelled pixels. A feathered
    # (blurred) mask or a probability map spreads them over many grey levels, a few of which pass
    # the test above in its smooth tail; it is one soft rib mask, cut by the grey rules.
    held = int(counts[np.isin(values, labels)].sum())
    if held < LABEL_MAP_COVERAGE * labelled:
        if areas:
            return  # a full-range soft mask: cut at half its maximum
        # Up to 127 the rule is > 0, which would take a faint soft mask's whole blurred tail.
        top = values.max()
        raise StackReadError(
            f"{source}: the mask holds {int(nonzero.sum())} grey levels up to {top:g}, none of "
            f"them most of its labelled pixels: a soft mask (blurred, or a probability map scaled "
            f"to {top:g}) rather than a rib mask, and masks whose maximum is 127 or less are read "
            "as > 0, which would take its whole blurred edge. Save it binary (rib 1 or 255, all "
            f"else 0), e.g. mask > {top / 2:g}"
        )
    if not areas and values.max() > LABEL_IDS_MAX:
        # Interpolation greys of a binary mask are not labels. A 0/255 rib band of 1-2 px
        # shrunk by bilinear resampling peaks below 128 (so it is read here) in rows of one grey
        # each: its ridge (85) and its flanks (19), each a label by count. A flank pixel has a
        # higher neighbour and lies in no 2x2 square of its value; a label's own pixels (an
        # area's, a line's, :func:`_top_pixels` or :func:`_area_pixels`) do not, so a label needs
        # LABEL_MIN_PIXELS of its own (half of it, if smaller). A 1-px line of a lower label
        # hugging a higher one is not one (as in a 0/255 mask: it cannot be told from a flank).
        own = dict(zip(*np.unique(mask[peaks | in_areas], return_counts=True), strict=True))
        total = dict(zip(values, counts, strict=True))
        labels = [v for v in labels if own.get(v, 0) >= min(LABEL_MIN_PIXELS, total[v] / 2)]
        if len(labels) < 2:
            return
        # A shallow band's ridge changes its grey every few pixels (96, 102, 108: runs of 13 px,
        # each its own line); with their flanks they are one band's greys, not a label map's
        # plateaus, which hold most of its labelled pixels (as above).
        if int(counts[np.isin(values, labels)].sum()) < LABEL_MAP_COVERAGE * labelled:
            return
    if not areas:
        how = f"{len(labels)} non-zero values hold at least {floor:.0f} px each" + (
            f" or a line of at least {LABEL_MIN_PIXELS} px" if thin else ""
        )
    # Show 0 and the labels first, then other values in order, 8 at most.
    order = np.argsort([0 if v == 0 or v in labels else 1 for v in values], kind="stable")[:8]
    shown = ", ".join(f"{values[i]:g}: {counts[i]} px" for i in sorted(order))
    more = f" and {len(values) - 8} more" if len(values) > 8 else ""
    raise StackReadError(
        f"{source}: the mask holds {len(values)} label values ({shown}{more}); {how}: a label map "
        "rather than a rib mask, and merging them would count every label as rib. Save the rib label "
        "alone as the mask (its pixels 1 or 255, all others 0), e.g. labels == 1 for label 1"
    )


def _refuse_colour_labels(rgb: np.ndarray, source) -> None:
    """Raise when an (H, W, 3) colour mask holds two or more colours that each cover an area
    (:data:`LABEL_MIN_PIXELS` and :data:`LABEL_MIN_SHARE` of the non-black pixels in 2x2 squares
    of that colour): red rib and green pleura are two labels, not one rib. Shades of one colour
    (anti-aliasing against black) are that colour; mixed colours on a 1-px edge are no area. A
    lossy file is never refused."""
    if _is_lossy(source):
        return
    rgb = rgb.astype(np.float32)
    peak = rgb.max(axis=-1)
    # Pixels darker than a quarter of the brightest are background noise or faint edges: the hue
    # of (0, 1, 0) is no colour (a JPEG-compressed red mask saved as PNG holds 1000s of them).
    lit = peak * 4 > peak.max()
    if not lit.any():
        return
    hue = np.rint(rgb[lit] / peak[lit, None] * _COLOUR_STEPS).astype(np.int32)
    key = np.full(peak.shape, -1, np.int32)
    key[lit] = (hue * np.array([(_COLOUR_STEPS + 1) ** 2, _COLOUR_STEPS + 1, 1])).sum(axis=-1)
    keys, in_areas = np.unique(key[_area_pixels(key) & lit], return_counts=True)
    floor = _label_floor(int(lit.sum()))
    colours = keys[in_areas >= floor]
    if len(colours) < 2:
        return
    flat = key.ravel()
    colours = sorted(colours, key=lambda k: int(np.argmax(flat == k)))  # as they appear, row-wise
    parts = []
    for k in colours:
        pixels = rgb[key == k]
        found, counts = np.unique(pixels, axis=0, return_counts=True)
        shown = tuple(int(c) if float(c).is_integer() else float(c) for c in found[counts.argmax()])
        parts.append(f"{shown}: {len(pixels)} px")
    raise StackReadError(
        f"{source}: the mask holds {len(colours)} colours that each cover at least {floor:.0f} px "
        f"({', '.join(parts)}): a label map rather than a rib mask, and merging them would count every "
        "label as rib. Save the rib label alone as the mask: rib pixels white (or 1 or 255 in a "
        "grey image), all others black, e.g. export only the rib class from the labelling tool"
    )


def mask_array(mask, what: str) -> np.ndarray:
    """An in-memory mask (a numpy array a user or the engine hands over) as uint8 0/1, by the very
    rules a mask file is read with (:func:`binarize_mask`): nonzero is rib in a signed 0/-1 mask,
    ``> max // 2`` above 127, ``> 0.5`` for a float 0/1 mask; a label map is refused. ``what`` names
    the mask in the :class:`~napari_ribseg.core.errors.DatasetError` raised (e.g. ``frame 3``)."""
    from napari_ribseg.core.errors import DatasetError

    mask = np.asarray(mask)
    if (
        mask.dtype.kind in "biu"
        and mask.ndim == 2
        and (not mask.size or 0 <= mask.min() <= mask.max() <= 1)
    ):
        # Already 0/1 (what the engine and the review hand over): the rules give it back as is,
        # without binarize_mask's per-value count, which a training set's folds would repeat.
        return mask.astype(np.uint8)
    try:
        return binarize_mask(mask, what)
    except StackReadError as exc:
        raise DatasetError(str(exc)) from exc


def binarize_mask(mask: np.ndarray, source: str | os.PathLike | Path = "") -> np.ndarray:
    """Binarise a 2-D mask (or (H, W, samples) colour mask) to uint8 0/1.

    Colour: a mask whose R, G, B are constant and whose alpha varies over a transparent background
    reads its alpha (a label drawn only in alpha; an empty opaque mask stays empty). Otherwise a
    transparent background (alpha 0 in most pixels, not all) is black, whatever colour it keeps
    (white in many editors), and two
    or more colours that each cover an area (:func:`_refuse_colour_labels`; red rib + green pleura)
    raise :class:`StackReadError`, and one colour (any colour, with its anti-aliased shades) reads
    as the maximum over R, G, B by the grey rules below, its label-map check by areas.

    Grey integer masks (and whole-number float masks above 1, label-map check):

    * maximum above 127: cut at ``> max // 2`` (127 for 0/255, also in a 16-bit file; 2047 for
      12-bit 0/4095), so JPEG ringing and interpolation grey go with the nearer side. Refused as a
      label map when a value other than 0 and the maximum covers an area (0/128/255 with both
      labels real, VOC's 0/1/255); a 1-px edge is not one, and a thin 1-px second label is not
      detected;
    * maximum at most 127: ``> 0``, nonzero for a signed mask (its -1, true stored as all bits
      set, is rib), refused when two non-zero values each hold a real part of the labelled pixels
      (napari Labels: 1 rib, 2 pleura), thin ones included, each with pixels of its own: the
      ridge and flank greys of a thin 0/255 band shrunk below 128 are interpolation, not labels.

    Label-map sizes: :data:`LABEL_MIN_PIXELS` and :data:`LABEL_MIN_SHARE`; a ``.jpg`` mask is never
    refused (its extra values are ringing). Which label is the rib is the user's choice, not ours.
    Float masks: ``> 0.5`` when their maximum is at most 127 (0/1, with interpolation overshoot
    above 1), else ``> 127.5`` (0..255 stored as float), or ``> max / 2`` when the maximum is
    above 255 (0/4095 or 0/65535 resampled to float); whole-number float masks with negative values
    (a signed mask turned float, 0/-1.0) by the signed rule, nonzero. Palette images must come as their indices
    (``read_image(path, mask=True)``), not as the colours they show. A mask with non-zero pixels
    that binarises to empty gives a ``UserWarning`` naming the file and its largest value.
    """
    if mask.dtype.kind == "f" and not np.isfinite(mask).all():
        raise StackReadError(f"{source}: mask contains NaN or infinite values")
    areas = False
    if mask.ndim == 3 and mask.shape[-1] in (2, 3, 4):
        colour = mask[..., :1] if mask.shape[-1] == 2 else mask[..., :3]
        alpha = mask[..., -1] if mask.shape[-1] in (2, 4) else None
        if (
            alpha is not None
            and alpha.size
            and colour.min() == colour.max()
            and alpha.min() != alpha.max()
            and np.median(alpha) == alpha.min()  # a transparent background, opaque label
        ):
            mask = alpha
        else:
            transparent = alpha == 0 if alpha is not None else None
            if (
                transparent is not None
                and np.count_nonzero(transparent) * 2 > transparent.size
                and alpha.max() != 0
            ):
                # A transparent background is background whatever colour it keeps (editors
                # often keep white there): read as colour, it was a second label or rib.
                colour = colour.copy()
                colour[transparent] = 0
            if colour.shape[-1] == 3 and is_numeric(colour) and colour.dtype != bool:
                _refuse_colour_labels(colour, source)
                # Shades of one colour are anti-aliasing, and grey levels that form areas labels.
                areas = True
            mask = colour.max(axis=-1)
            top = float(mask.max()) if areas and mask.size else 0.0
            if top > 127:
                # Under a quarter of the maximum is background by the cut at half of it anyway:
                # faint noise there (a JPEG-compressed colour mask saved as PNG) is no label.
                mask = np.where(mask.astype(np.float32) * 4 > top, mask, 0).astype(mask.dtype)
    if mask.ndim != 2:
        raise StackReadError(f"{source}: a mask must be 2-D, got shape {mask.shape}")
    if mask.dtype == bool:
        return mask.astype(np.uint8)
    if mask.dtype.kind in "iu":
        top = mask.max() if mask.size else 0
        if top > 127:
            _refuse_label_map(mask, source, areas=True)
            threshold = top // 2
        else:
            _refuse_label_map(mask, source, areas=areas)
            threshold = 0
    elif mask.dtype.kind == "f":
        top = mask.max() if mask.size else 0
        if top <= 127.0 and mask.size and mask.min() < 0 and np.array_equal(mask, np.round(mask)):
            # Whole numbers with negatives are a signed mask turned float (int8 -1 as -1.0): read
            # it as the signed mask, nonzero is rib. > 0.5 read a 0/-1 float mask as empty.
            return binarize_mask(mask.astype(np.int16), source)
        if top > 1.0 and np.array_equal(mask, np.round(mask)):
            _refuse_label_map(mask, source, areas=areas or top > 127.0)
        # Above 255 (12- or 16-bit data resampled to float, e.g. skimage's resize): half the
        # maximum, as for integers; > 127.5 dilated a 0/4095 square by its edge (484 px for 400).
        threshold = 0.5 if top <= 127.0 else max(127.5, float(top) / 2)
    else:
        raise StackReadError(f"{source}: mask of dtype {mask.dtype} is not numeric")
    if mask.dtype.kind == "i" and threshold == 0:
        # Nonzero is rib, as > 0 is for unsigned masks: a signed mask's -1 is MATLAB's or a
        # tool's true (all bits set), or 0/255 saved as signed 8-bit. > 0 read such a rib as
        # empty ("largest value 0"). A -1 beside another label is refused above as a label map.
        binary = (mask != 0).astype(np.uint8)
    else:
        binary = (mask > threshold).astype(np.uint8)
    if not binary.any() and mask.any():
        warnings.warn(
            f"{source or 'mask'}: the mask has {int(np.count_nonzero(mask))} non-zero pixels "
            f"(largest value {float(top):g}) but none is above the threshold {float(threshold):g}, "
            "so it reads as empty (no rib); rib pixels should be 1 or 255 (above 0.5 in a float "
            "mask)",
            UserWarning,
            stacklevel=2,
        )
    return binary
