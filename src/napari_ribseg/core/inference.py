"""Predict rib probabilities for a stack: device, batching, letterboxing, compact storage.

:func:`predict_stack` is a job (see :mod:`napari_ribseg.core.jobs`): a generator that yields
``Progress(kind="batch", step=frames done, total=frames to run)`` after every batch and returns a
:class:`Prediction`. The GUI drives it from a worker thread, the CLI and tests through
:func:`predict_stack_sync`.

Design choices, and why:

- Probabilities are stored as uint8 ``round(p * 255)``: a 1,000-frame 512x512 stack is 262 MB instead
  of 1 GB in float32, and 1/255 is finer than any threshold a user sets with a slider. Thresholding
  and clean-up (:mod:`napari_ribseg.core.postprocess`) run on these stored values, so changing the
  threshold never re-runs the model.
- Frames of any size are letterboxed to the model's square ``input_size`` (aspect kept, zero pad) and
  the probability map is mapped back to the frame's exact size with the inverse transform; both run
  on the compute device (``letterbox_tensor``/``unletterbox_tensor``), so a GPU receives raw frames
  and returns uint8 maps.
- The batch size is chosen from free memory (CUDA: ``torch.cuda.mem_get_info``; CPU: available RAM)
  and a per-frame activation estimate measured on a small probe frame and scaled by area; after an
  out-of-memory error the same batch is retried at half the size.
- Speed: ``torch.inference_mode`` (no autograd bookkeeping), channels-last tensors (the layout the
  fast convolution kernels of cuDNN and oneDNN use) and, on CUDA only, autocast to bfloat16 (float16
  on GPUs without bf16). Autocast stays off on the CPU (whether bf16 helps depends on the CPU's
  bf16 instructions, and float32 keeps CPU results the same across machines) and on Apple MPS (op
  coverage still uneven), so results there are plain float32.
- Per-frame confidence, in [0.5, 1]: the mean probability inside the predicted mask (p >= 0.5) when
  the frame has one; for a frame with no predicted rib, ``1 - max(p)``, i.e. how far the most rib-like
  pixel stayed from being called a rib. 0.5 means a coin flip somewhere in the frame, 1.0 certainty.
  It is fixed at the 0.5 threshold so that sorting frames by confidence for review does not change
  while the user moves the display threshold.
- Input is what the readers give, or their raw source: float frames must lie in [0, 1] (checked per
  batch, an error names the first bad frame); bool and uint8 frames are scaled by their dtype's
  full scale and an in-memory uint16 stack by ``2**bits - 1`` for the bit depth of its maximum,
  exactly as the readers scale them (``core.io.intensity.uint16_divisor``, also for the imaged
  region's detection), on the device, so a
  memory-mapped uint8 source goes up as uint8 (a lazy uint16 source scales itself:
  ``core.io.lazy.TiffFrames``). Other integer
  dtypes are refused: only the readers' whole-stack min-max rule can scale them consistently.
- Streaming: ``frames`` may be any array-like with ``shape``, ``dtype`` and fancy ``__getitem__``
  (e.g. a lazily read file); ``on_batch`` receives each batch's probabilities as they are made and
  ``keep_probabilities=False`` stores none, so memory stays at one batch, not one stack.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_ribseg.core.devices import resolve_device
from napari_ribseg.core.errors import DeviceError
from napari_ribseg.core.io.intensity import (
    full_scale,
    is_uint16,
    uint16_divisor,
    unit_divisor,
    unit_float,
)
from napari_ribseg.core.jobs import Progress, StopFlag, run_job
from napari_ribseg.core.postprocess import probability_to_mask
from napari_ribseg.core.stack import Stack

if TYPE_CHECKING:
    import torch
    from torch import nn

#: Largest batch on the CPU: frames/s is flat from 1 to 8 frames on one thread and best at 4-8 with
#: several threads (docs/inference.md), and a paper-size model takes seconds per frame on a few
#: cores, so a larger batch would only make the progress bar and the Stop button sluggish.
CPU_MAX_BATCH = 8
#: Largest batch on a GPU: a few dozen 256x256 frames are already enough work per launch to keep a
#: GPU busy; larger batches would only delay Stop and hold more memory. (Not yet measured on a GPU.)
GPU_MAX_BATCH = 64
#: Share of the free memory a batch may use; the rest is headroom for the allocator and the
#: letterboxed input/outputs that the activation estimate does not count. The CPU and MPS shares are
#: smaller because that memory is shared with the viewer, the stack and the rest of the system.
MEMORY_FRACTION = {"cuda": 0.6, "mps": 0.4, "cpu": 0.25}
#: Whether to run the model on the imaged region's box (True) or on the whole frame (False); either
#: way the outside of the region is zeroed. Whole frames: on the hard domain (24 frames, 820x1124;
#: ``benchmarks/bench_bundled.py``, docs/region.md) v-unet / unet / x-unet scored Dice 0.525 /
#: 0.427 / 0.414 on whole frames with the outside zeroed, 0.523 / 0.392 / 0.406 cropped to the box
#: and 0.528 / 0.427 / 0.407 with no region; zeroing halves x-unet's spurious components there.
CROP_TO_REGION = False
#: Whether to average each frame's probabilities with those of its left-right mirror image
#: (test-time augmentation, twice the compute). Chosen in docs/inference.md from
#: ``benchmarks/bench_flip_average.py``.
FLIP_AVERAGE = False
#: The uint8 level of p = 0.5: stored values >= this are "rib" for the confidence score.
_HALF_LEVEL = 128


@dataclass
class Prediction:
    """Rib probabilities of a stack, as computed so far.

    ``prob`` is uint8 (N, H, W) holding ``round(p * 255)``; ``done[i]`` says whether frame ``i`` was
    computed (frames not run, or not reached before a stop, stay 0 and ``False``); ``confidence`` is
    float32 (N,) as described in the module docstring, NaN for frames not done.
    """

    prob: np.ndarray
    done: np.ndarray
    confidence: np.ndarray
    device: str = ""
    batch_size: int = 0
    input_size: int = 0
    model_name: str | None = None
    elapsed_s: float = 0.0
    stopped: bool = False
    #: Whether each frame's probabilities are the mean of the frame's and its mirror image's.
    flip_average: bool = False
    #: The imaged region the model ran on (``ImagedRegion``), ``None`` when it saw whole frames.
    region: Any = None

    @classmethod
    def empty(cls, n_frames: int, height: int, width: int) -> Prediction:
        """A prediction with nothing computed yet."""
        return cls(
            prob=np.zeros((n_frames, height, width), dtype=np.uint8),
            done=np.zeros(n_frames, dtype=bool),
            confidence=np.full(n_frames, np.nan, dtype=np.float32),
        )

    @property
    def n_frames(self) -> int:
        return int(self.prob.shape[0])

    @property
    def n_done(self) -> int:
        return int(np.count_nonzero(self.done))

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    def probability(self, index: int | slice | None = None) -> np.ndarray:
        """Float32 probabilities in [0, 1] of one frame, a slice, or (``None``) the whole stack."""
        data = self.prob if index is None else self.prob[index]
        return data.astype(np.float32) / 255.0

    def mask(
        self,
        threshold: float = 0.5,
        *,
        min_size: int = 0,
        fill_holes: bool = False,
        keep_largest: int = 0,
        index: int | slice | None = None,
    ) -> np.ndarray:
        """Rib mask (uint8 0/1) of the stored probabilities; see :func:`probability_to_mask`."""
        data = self.prob if index is None else self.prob[index]
        return probability_to_mask(
            data, threshold, min_size=min_size, fill_holes=fill_holes, keep_largest=keep_largest
        )


def frame_confidence(prob: np.ndarray) -> np.ndarray:
    """Per-frame confidence in [0.5, 1] of uint8 probabilities (N, H, W); see the module docstring."""
    prob = np.asarray(prob)
    if prob.dtype != np.uint8 or prob.ndim != 3:
        raise ValueError(f"expected uint8 (N, H, W) probabilities; got {prob.dtype} {prob.shape}")
    flat = prob.reshape(prob.shape[0], -1)
    inside = flat >= _HALF_LEVEL
    n_inside = inside.sum(axis=1)
    sum_inside = np.where(inside, flat, 0).sum(axis=1, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_inside = sum_inside / (255.0 * n_inside)
    empty_score = 1.0 - flat.max(axis=1) / 255.0 if flat.shape[1] else np.ones(len(flat))
    return np.where(n_inside > 0, mean_inside, empty_score).astype(np.float32)


# --------------------------------------------------------------------------- model and memory


def _unwrap(loaded: Any) -> tuple[nn.Module, str | None]:
    """The network and a display name from a LoadedModel (model + card) or a bare RibSegNet."""
    from torch import nn

    model = getattr(loaded, "model", loaded)
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a LoadedModel or a RibSegNet; got {type(loaded).__name__}")
    card = getattr(loaded, "card", None)
    name = getattr(card, "name", None) or getattr(model, "variant", None)
    return model, name


def _input_size(model: nn.Module, loaded: Any) -> int:
    size = getattr(model, "input_size", None) or getattr(
        getattr(loaded, "card", None), "input_size", None
    )
    if not size:
        raise TypeError("the model has no input_size; expected a RibSegNet or a LoadedModel")
    return int(size)


#: Side of the probe frame used to measure activation sizes (a multiple of 16, the U-Net's stride).
_PROBE_SIZE = 32


def activation_bytes_per_frame(
    model: nn.Module, input_size: int, *, bytes_per_value: int = 4
) -> int:
    """Upper estimate of the activation memory one frame needs in an inference forward pass.

    Sums the outputs of every leaf module in one forward pass of a small 32x32 probe frame and scales
    by area: every layer of a fully convolutional network grows with the frame's area, so the probe
    gives the exact count at ``input_size`` for ~1/64 of a frame's compute. (A shape-only pass on
    torch's ``meta`` device would cost nothing to run but imports torch._dynamo, ~4 s on first use.)
    The sum over-estimates under ``inference_mode``, which frees most intermediates early; that margin
    is wanted, as the U-Net's skip connections do stay alive until the decoder.
    """
    import torch

    in_channels = int(getattr(model, "in_channels", 1))
    counted = in_channels * _PROBE_SIZE * _PROBE_SIZE

    def hook(_module, _inputs, output) -> None:
        nonlocal counted
        if isinstance(output, torch.Tensor):
            counted += output.numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    try:
        with torch.inference_mode():
            model(torch.zeros(1, in_channels, _PROBE_SIZE, _PROBE_SIZE, device=device))
    finally:
        for handle in handles:
            handle.remove()
    scale = (input_size / _PROBE_SIZE) ** 2
    return int(counted * scale * bytes_per_value)


def _available_host_memory() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # psutil is optional; sysconf exists on Linux and macOS
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return 4 << 30


def free_memory(device: torch.device) -> int:
    """Bytes a batch may draw on: free GPU memory on CUDA/MPS, available RAM on the CPU."""
    import torch

    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "mps":
        try:
            limit = int(torch.mps.recommended_max_memory())
            return max(limit - int(torch.mps.driver_allocated_memory()), 0)
        except (AttributeError, RuntimeError):
            return _available_host_memory()
    return _available_host_memory()


def choose_batch_size(
    model: nn.Module,
    device: torch.device,
    input_size: int,
    n_frames: int,
    *,
    mixed_precision: bool = False,
) -> int:
    """Frames per batch that fit in the free memory of ``device``, capped (see the module constants)."""
    per_frame = activation_bytes_per_frame(
        model, input_size, bytes_per_value=2 if mixed_precision else 4
    )
    budget = free_memory(device) * MEMORY_FRACTION.get(device.type, 0.25)
    cap = CPU_MAX_BATCH if device.type == "cpu" else GPU_MAX_BATCH
    fit = int(budget // max(per_frame, 1))
    return max(1, min(fit, cap, max(n_frames, 1)))


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    if isinstance(exc, oom_type):
        return True
    # MPS and the CPU allocator report plain RuntimeErrors.
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def _release_cached_memory(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


# --------------------------------------------------------------------------- the job


def _frame_order(frame_indices: Sequence[int] | np.ndarray | None, n_frames: int) -> np.ndarray:
    """Frames to run in the given order (duplicates dropped); a bool mask of length N also works."""
    if frame_indices is None:
        return np.arange(n_frames)
    order = np.asarray(frame_indices)
    if order.dtype == bool:
        if order.shape != (n_frames,):
            raise ValueError(
                f"frame_indices as a mask must have one entry per frame ({n_frames}); "
                f"got shape {order.shape}"
            )
        return np.flatnonzero(order)
    if order.size and (order.dtype.kind not in "iuf" or not np.array_equal(order, np.round(order))):
        # astype truncated: frame_indices=[1.7] ran frame 1.
        raise ValueError(
            f"frame_indices must be whole frame numbers or a bool mask; got {order.ravel().tolist()}"
        )
    order = order.astype(np.int64).ravel()
    bad = order[(order < 0) | (order >= n_frames)]
    if bad.size:
        raise ValueError(f"frame_indices {bad.tolist()} out of range for a {n_frames}-frame stack")
    _, first = np.unique(order, return_index=True)
    return order[np.sort(first)]


def _is_array_like(frames: Any) -> bool:
    return all(hasattr(frames, a) for a in ("shape", "dtype", "ndim", "__getitem__"))


def _as_frames(frames: Any) -> Any:
    if isinstance(frames, Stack):
        frames = frames.frames
    if not _is_array_like(frames):
        try:
            frames = np.asarray(frames)
        except ValueError:
            # numpy's "inhomogeneous shape" said nothing of frames or of predict_images.
            sizes = sorted({tuple(np.shape(f)) for f in frames})
            raise ValueError(
                f"frames differ in size ({', '.join('x'.join(map(str, s)) for s in sizes)}); a stack "
                "needs one frame size: pass frames of different sizes to predict_images"
            ) from None
    if frames.ndim == 2:
        frames = np.asarray(frames)[None]
    if frames.ndim != 3:
        raise ValueError(f"frames must be (N, H, W) or (H, W); got shape {frames.shape}")
    dtype = np.dtype(frames.dtype)
    if full_scale(dtype) is None and dtype.kind != "f":
        raise ValueError(
            f"frames of dtype {dtype} cannot be scaled to [0, 1] here; expected float in [0, 1], "
            f"bool, uint8 or uint16 (read the file with read_stack, which min-max scales the stack)"
        )
    return frames


def _uint16_divisor(frames: Any) -> float | None:
    """For an in-memory (or memory-mapped) uint16 stack, the readers' divisor
    (``core.io.intensity.uint16_divisor``); else ``None`` (a lazy uint16 source scales itself)."""
    if not isinstance(frames, np.ndarray) or not is_uint16(frames.dtype) or not frames.size:
        return None
    return uint16_divisor(frames)


def _check_unit_batch(batch: np.ndarray, chunk: np.ndarray) -> None:
    """Refuse float frames outside [0, 1] (or not finite), naming the first bad frame."""
    if batch.dtype.kind != "f" or not batch.size:
        return
    flat = batch.reshape(len(batch), -1)
    bad = ~(np.isfinite(flat).all(axis=1) & (flat.min(axis=1) >= 0) & (flat.max(axis=1) <= 1))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        lo, hi = float(np.nanmin(flat[first])), float(np.nanmax(flat[first]))
        raise ValueError(
            f"frame {int(chunk[first])}: float intensities must be finite and in [0, 1]; got "
            f"[{lo:g}, {hi:g}] (pass uint8/uint16 frames to have them scaled by their dtype)"
        )


def _forward_batch(
    model: nn.Module,
    batch: np.ndarray,
    input_size: int,
    device: torch.device,
    *,
    autocast_dtype: torch.dtype | None,
    channels_last: bool,
    flip_average: bool = False,
    scale: float | None = None,
) -> np.ndarray:
    """Letterbox a batch, run the model, return uint8 probabilities at the frames' own size.

    Resizing, sigmoid and quantisation all run on ``device``, so only the raw frames go up and uint8
    maps (a quarter of float32) come back. ``flip_average`` also runs the left-right mirrored batch
    and averages the two probability maps (mirrored back), one after the other, so the batch's
    memory is that of one pass.
    """
    import torch

    from napari_ribseg.core.models import letterbox_tensor, unletterbox_tensor

    if scale is None or batch.dtype.kind == "f":
        scale = full_scale(batch.dtype)
    # Integer frames go to the device as they are (a quarter of float32) and are scaled there.
    host = np.ascontiguousarray(batch, dtype=None if scale is not None else np.float32)
    x = torch.from_numpy(host)
    # Pinned memory lets the host-to-GPU copy run asynchronously.
    x = x.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else x.to(device)
    if scale is not None:
        x = x.float().div_(scale)
    x, box = letterbox_tensor(x, input_size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(
        device_type=device.type,
        dtype=autocast_dtype or torch.float32,
        enabled=autocast_dtype is not None,
    ):
        prob = torch.sigmoid(model(x).float())
        if flip_average:
            mirrored = torch.flip(x, dims=[-1])
            prob = prob.add_(torch.sigmoid(model(mirrored).float()).flip(dims=[-1])).mul_(0.5)
    prob = unletterbox_tensor(prob, box)[:, 0]
    return prob.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8).cpu().numpy()


def _autocast_dtype(device: torch.device, mixed_precision: bool | None) -> torch.dtype | None:
    import torch

    if mixed_precision is None:
        mixed_precision = device.type == "cuda"
    if not mixed_precision:
        return None
    if device.type != "cuda":
        raise DeviceError(
            f"mixed precision is only supported on CUDA here; got device {device} "
            f"(use mixed_precision=None or False)"
        )
    # bf16 has float32's range, so a network without batch norm cannot overflow; fp16 otherwise.
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def predict_stack(
    loaded: Any,
    frames: np.ndarray | Stack,
    *,
    device: str | torch.device = "auto",
    batch_size: int | None = None,
    frame_indices: Sequence[int] | np.ndarray | None = None,
    stop: StopFlag | None = None,
    into: Prediction | None = None,
    mixed_precision: bool | None = None,
    channels_last: bool = True,
    on_batch: Callable[[np.ndarray, np.ndarray], Any] | None = None,
    keep_probabilities: bool = True,
    crop_to_region: bool | None = None,
    region: Any = None,
    flip_average: bool | None = None,
) -> Generator[Progress, None, Prediction]:
    """Job: predict rib probabilities of ``frames`` (N, H, W) float32 in [0, 1] (or a ``Stack``).

    ``loaded`` is a ``LoadedModel`` (model + card) or a bare ``RibSegNet``; the network is moved to
    ``device`` and stays there, so repeated calls do not upload the weights again. ``batch_size``
    ``None`` chooses one from free memory. ``frame_indices`` (ints, in the order to run them, or a
    bool mask) restricts which frames run. ``stop`` is checked between batches; what is done is kept.
    ``into`` continues an earlier :class:`Prediction` of the same stack (e.g. resume after a stop with
    ``frame_indices=~pred.done``) instead of starting an empty one. ``mixed_precision`` ``None`` means
    autocast on CUDA only. ``on_batch(frame_indices, uint8_probabilities)`` is called after each
    batch; with ``keep_probabilities=False`` the returned Prediction's ``prob`` has no pixels
    (shape (N, 0, 0)): the caller keeps what it needs from ``on_batch`` (see the streaming notes).
    ``region`` (an ``ImagedRegion``; detected from in-memory frames when ``None``, unless
    ``crop_to_region`` is ``False``) zeroes the probabilities outside the imaged region;
    ``crop_to_region`` (``None``: :data:`CROP_TO_REGION`) also runs the model on its bounding box
    instead of the whole frame. A given ``region`` is always applied. ``flip_average`` (``None``:
    :data:`FLIP_AVERAGE`) averages each frame's probabilities with those of its mirror image (test-
    time augmentation; twice the compute).

    Yields ``Progress("batch", step=frames done, total=frames to run, values={"frames_per_s",
    "batch_size"})``, one ``"message"`` naming device and batch size first; returns the Prediction.
    Raises :class:`DeviceError` for an unavailable device or when one frame alone does not fit.
    """
    import torch

    start = time.perf_counter()
    frames = _as_frames(frames)
    scale = _uint16_divisor(frames)
    n_frames, height, width = (int(s) for s in frames.shape)
    model, name = _unwrap(loaded)
    input_size = _input_size(model, loaded)
    dev = resolve_device(device)
    autocast_dtype = _autocast_dtype(dev, mixed_precision)
    order = _frame_order(frame_indices, n_frames)
    crop = CROP_TO_REGION if crop_to_region is None else bool(crop_to_region)
    flip = FLIP_AVERAGE if flip_average is None else bool(flip_average)
    # Lazy stacks (readers that decode on demand) are read exactly once: pass them a region.
    if region is None and crop_to_region is not False and isinstance(frames, np.ndarray):
        from napari_ribseg.core.region import detect_imaged_region

        region = detect_imaged_region(frames, divisor=scale)
    if region is not None and getattr(region, "kind", "") == "full":
        region = None

    if into is None:
        result = (
            Prediction.empty(n_frames, height, width)
            if keep_probabilities
            else Prediction.empty(n_frames, 0, 0)
        )
    elif not keep_probabilities:
        raise ValueError("into= continues stored probabilities; it needs keep_probabilities=True")
    elif into.prob.shape != (n_frames, height, width):
        raise ValueError(
            f"cannot continue a prediction of shape {into.prob.shape} on frames {frames.shape}"
        )
    elif into.n_done and into.flip_average != flip:
        raise ValueError(
            f"cannot continue a prediction made with flip_average={into.flip_average} with "
            f"flip_average={flip}: its frames would mix the two"
        )
    else:
        result = into
    result.device, result.input_size, result.model_name = str(dev), input_size, name
    result.flip_average = flip
    result.stopped = False
    result.region = region

    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    was_training = model.training
    model.eval()
    try:
        # Weights go to the device first, so the free memory measured below excludes them.
        model.to(dev)
        if batch_size is None:
            batch = choose_batch_size(
                model, dev, input_size, len(order), mixed_precision=autocast_dtype is not None
            )
        else:
            batch = int(batch_size)
        result.batch_size = batch
        if channels_last:
            model.to(memory_format=torch.channels_last)
        amp = f", autocast {str(autocast_dtype).removeprefix('torch.')}" if autocast_dtype else ""
        amp += ", flip-averaged" if flip else ""
        yield Progress("message", message=f"{len(order)} frames on {dev}, batch size {batch}{amp}")
        yield Progress(
            "batch", 0, len(order), values={"frames_per_s": 0.0, "batch_size": float(batch)}
        )
        position = 0
        run_start = time.perf_counter()
        while position < len(order):
            if stop is not None and stop.is_set():
                result.stopped = True
                break
            chunk = order[position : position + batch]
            batch_frames = np.asarray(frames[chunk])
            if region is not None and crop:
                batch_frames = region.crop(batch_frames)
            _check_unit_batch(batch_frames, chunk)
            out_of_memory = False
            try:
                with torch.inference_mode():
                    probs = _forward_batch(
                        model,
                        batch_frames,
                        input_size,
                        dev,
                        autocast_dtype=autocast_dtype,
                        channels_last=channels_last,
                        flip_average=flip,
                        scale=scale,
                    )
            except (RuntimeError, MemoryError) as exc:
                if not _is_out_of_memory(exc) and not isinstance(exc, MemoryError):
                    raise
                out_of_memory = True
            if out_of_memory:
                # Retried outside the except block so the failed batch's tensors, held alive by
                # the traceback, are freed before the allocator's cache is emptied.
                _release_cached_memory(dev)
                if batch == 1:
                    raise DeviceError(
                        f"out of memory on {dev} even with one {height}x{width} frame "
                        f"(model input {input_size}x{input_size}); free memory or use the CPU"
                    )
                batch = max(1, batch // 2)
                result.batch_size = batch
                yield Progress("message", message=f"out of memory on {dev}: batch size {batch}")
                continue
            if region is not None:
                probs = region.uncrop(probs) if crop else region.apply(probs)
            if keep_probabilities:
                result.prob[chunk] = probs
            if on_batch is not None:
                on_batch(chunk, probs)
            result.done[chunk] = True
            result.confidence[chunk] = frame_confidence(probs)
            position += len(chunk)
            rate = position / max(time.perf_counter() - run_start, 1e-9)
            yield Progress(
                "batch",
                position,
                len(order),
                values={"frames_per_s": rate, "batch_size": float(batch)},
            )
    finally:
        # The caller's model goes back to the default memory layout and its training flag: code
        # that later fine-tunes or inspects this same object (state_dict views, safetensors,
        # which refuses non-contiguous tensors) must not see channels-last weights.
        if channels_last:
            model.to(memory_format=torch.contiguous_format)
        model.train(was_training)
    result.elapsed_s = time.perf_counter() - start
    return result


def predict_stack_sync(
    loaded: Any,
    frames: np.ndarray | Stack,
    *,
    device: str | torch.device = "auto",
    batch_size: int | None = None,
    frame_indices: Sequence[int] | np.ndarray | None = None,
    stop: StopFlag | None = None,
    on_progress: Callable[[Progress], Any] | None = None,
    **options: Any,
) -> Prediction:
    """:func:`predict_stack` run to completion; ``on_progress`` receives each event."""
    return run_job(
        predict_stack(
            loaded,
            frames,
            device=device,
            batch_size=batch_size,
            frame_indices=frame_indices,
            stop=stop,
            **options,
        ),
        on_progress,
    )


def predict_images(
    loaded: Any,
    images: Sequence[np.ndarray],
    *,
    device: str | torch.device = "auto",
    batch_size: int | None = None,
    stop: StopFlag | None = None,
    clips: Sequence[str] | None = None,
    **options: Any,
) -> Generator[Progress, None, list[np.ndarray | None]]:
    """Job: predict a list of 2-D images that may differ in size (e.g. a paired dataset).

    Images of the same shape (and the same clip, when ``clips`` names each image's) are one stack
    for :func:`predict_stack`: batched together, and their imaged region detected together, as
    for that clip on its own; unrelated images of one size never share a region. Returns one uint8
    probability map per image, in input order; ``None`` for images not reached before a stop.
    Progress counts images overall. Each image is scaled as the readers scale it (bool by 1, uint8
    by 255, floats kept in [0, 1]); raw uint16 images share one divisor per clip (per call without
    ``clips``), ``2**bits - 1`` for the bit depth of that clip's largest value, as
    ``read_paired_dataset`` divides them: a dark frame of a 12-bit clip stays dark.
    """
    if clips is not None and len(clips) != len(images):
        raise ValueError(f"{len(clips)} clip names for {len(images)} images; expected one each")
    groups: dict[tuple, list[int]] = {}
    for i, image in enumerate(images):
        if np.ndim(image) != 2:
            raise ValueError(f"image {i} must be 2-D; got shape {np.shape(image)}")
        clip = str(clips[i]) if clips is not None else ""
        groups.setdefault((*np.shape(image), clip), []).append(i)
    total = len(images)
    out: list[np.ndarray | None] = [None] * total
    dev = resolve_device(device)
    offset = 0
    divisors = _clip_divisors(images, clips)
    for indices in groups.values():
        clip = str(clips[indices[0]]) if clips is not None else ""
        stack = np.stack([_unit_image(images[i], i, divisors.get(clip)) for i in indices])
        job = predict_stack(loaded, stack, device=dev, batch_size=batch_size, stop=stop, **options)
        while True:
            try:
                event = next(job)
            except StopIteration as finished:
                pred: Prediction = finished.value
                break
            if event.kind == "batch":
                event = Progress("batch", offset + event.step, total, values=event.values)
            elif offset:
                continue  # one start message is enough
            yield event
        for j, i in enumerate(indices):
            if pred.done[j]:
                out[i] = pred.prob[j]
        offset += len(indices)
        if pred.stopped:
            break
    return out


def _clip_divisors(images: Sequence[np.ndarray], clips: Sequence[str] | None) -> dict[str, float]:
    """One divisor per clip (per call without ``clips``) for the raw uint16 images, from the
    largest value of that clip's uint16 images, as ``read_paired_dataset`` divides a clip."""
    wide: dict[str, list[np.ndarray]] = {}
    for i, image in enumerate(images):
        if is_uint16(np.asarray(image).dtype):
            wide.setdefault(str(clips[i]) if clips is not None else "", []).append(image)
    return {clip: uint16_divisor(members) for clip, members in wide.items()}


def _unit_image(image: np.ndarray, index: int, uint16: float | None) -> np.ndarray:
    """One image as float32 in [0, 1] by the readers' rules; uint16 by ``uint16``, its clip's
    divisor (:func:`_clip_divisors`)."""
    image = np.asarray(image)
    if image.dtype.kind != "f":
        try:
            divisor = uint16 if is_uint16(image.dtype) else unit_divisor(image)
        except ValueError as exc:
            raise ValueError(f"image {index}: {exc}") from None
        return unit_float(image, divisor)
    if image.size and not (
        np.isfinite(image).all() and float(image.min()) >= 0 and float(image.max()) <= 1
    ):
        raise ValueError(
            f"image {index}: float intensities must be finite and in [0, 1]; got "
            f"[{float(np.nanmin(image)):g}, {float(np.nanmax(image)):g}]"
        )
    return image.astype(np.float32, copy=False)


def predict_images_sync(
    loaded: Any,
    images: Sequence[np.ndarray],
    *,
    on_progress: Callable[[Progress], Any] | None = None,
    **kwargs: Any,
) -> list[np.ndarray | None]:
    """:func:`predict_images` run to completion."""
    return run_job(predict_images(loaded, images, **kwargs), on_progress)


__all__ = [
    "Prediction",
    "activation_bytes_per_frame",
    "choose_batch_size",
    "frame_confidence",
    "free_memory",
    "predict_images",
    "predict_images_sync",
    "predict_stack",
    "predict_stack_sync",
]
