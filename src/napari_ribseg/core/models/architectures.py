"""U-Net, V-Unet and X-Unet of Cheng & Lam (2021) with one module layout for freezing and loading.

Every variant is a :class:`RibSegNet`: ``encoder`` stages (shallow first), a ``bottleneck`` (the
deepest stage), ``decoder`` stages (deepest first) and a 1x1 ``head``. Convolutions are 3x3 with ReLU,
no batch norm, max-pool down, ``ConvTranspose2d(k=2, s=2)`` up and concatenated skips, as in the paper.

- ``unet``: plain U-Net trained from scratch, two convolutions per level.
- ``v-unet``: the contracting path is VGG16's 13 convolutions (blocks 1-5 without the last pooling),
  initialised from VGG16 (HED/BSDS500) with the grayscale input folded into ``conv1_1``; the decoder
  mirrors VGG with 3, 3, 2, 2 convolutions per level.
- ``x-unet``: the ``unet`` architecture whose weights come from grayscale salient-object pre-training.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from napari_ribseg.core.models.variants import VARIANTS

log = logging.getLogger(__name__)

#: Convolutions per level (shallow to deep) of the contracting path.
ENCODER_DEPTHS = {"unet": (2, 2, 2, 2, 2), "x-unet": (2, 2, 2, 2, 2), "v-unet": (2, 2, 3, 3, 3)}
#: Convolutions per decoder level (deepest first, i.e. levels 4, 3, 2, 1).
DECODER_DEPTHS = {"unet": (2, 2, 2, 2), "x-unet": (2, 2, 2, 2), "v-unet": (3, 3, 2, 2)}

#: Input affine applied inside ``forward`` before the first convolution: x' = (x - offset) * scale.
#: V-Unet folds its Caffe BGR mean subtraction into ``conv1_1`` instead (offset 0, scale 1).
INPUT_AFFINE = {"unet": (0.5, 2.0), "x-unet": (0.5, 2.0), "v-unet": (0.0, 1.0)}

#: Spatial sizes must be divisible by this (four 2x2 poolings).
SIZE_MULTIPLE = 16


class FoldedInputConv(nn.Conv2d):
    """3x3 first convolution with a folded input normalisation that stays exact at the borders.

    The pretrained ``conv1_1`` expects ``z = 255 * x - mean`` (Caffe BGR) zero-padded in the ``z``
    domain. Folding the gray replication and scaling into the weight and the mean into the bias is exact
    in the interior; at the image border the zero pad of ``x`` is not the zero pad of ``z``, so the taps
    that fall on the pad would wrongly subtract the mean. ``pad_response[o, 0, i, j]`` is that per-tap
    mean response; adding ``conv(pad_indicator, pad_response)`` puts back exactly what the original
    network saw. It is all zeros (a plain convolution) when no pretrained weights were folded in.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, padding=1)
        self.register_buffer("pad_response", torch.zeros(out_channels, 1, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Always float32: the x255 weights and the mean in the bias cancel to much smaller
        # activations, which fp16/bf16 (autocast or a .half() model) would round badly. One input
        # channel makes this layer cheap; the next layer casts back under autocast.
        dtype = torch.promote_types(x.dtype, torch.float32)
        with torch.autocast(x.device.type, enabled=False):
            xf = x.to(dtype)
            y = F.conv2d(xf, self.weight.to(dtype), self.bias.to(dtype), padding=1)
            h, w = x.shape[-2:]
            indicator = F.pad(xf.new_zeros(1, 1, h, w), (1, 1, 1, 1), value=1.0)
            y = y + F.conv2d(indicator, self.pad_response.to(dtype))
        return y.to(x.dtype)


class ConvStage(nn.Module):
    """Optional 2x2 max-pool, then 3x3 convolutions with ReLU (one encoder level)."""

    def __init__(self, in_channels: int, width: int, n_convs: int, *, pool: bool, first=None):
        super().__init__()
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        convs = []
        for i in range(n_convs):
            if i == 0 and first is not None:
                convs.append(first)
            else:
                convs.append(nn.Conv2d(in_channels if i == 0 else width, width, 3, padding=1))
        self.convs = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        for conv in self.convs:
            x = F.relu(conv(x), inplace=True)
        return x


class UpStage(nn.Module):
    """``ConvTranspose2d(k=2, s=2)`` up, concatenation with the skip, 3x3 convolutions with ReLU."""

    def __init__(self, in_channels: int, width: int, n_convs: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, width, kernel_size=2, stride=2)
        self.convs = nn.ModuleList(
            nn.Conv2d(2 * width if i == 0 else width, width, 3, padding=1) for i in range(n_convs)
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat([skip, self.up(x)], dim=1)
        for conv in self.convs:
            x = F.relu(conv(x), inplace=True)
        return x


class RibSegNet(nn.Module):
    """Encoder-decoder rib segmenter: x float (B, C, S, S) in [0, 1] -> logits (B, 1, S, S).

    Normalisation happens inside ``forward``; ``S`` must be a multiple of 16.
    """

    def __init__(
        self,
        variant: str,
        widths: Sequence[int],
        *,
        preset: str = "custom",
        in_channels: int = 1,
        input_size: int = 256,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"Unknown model variant {variant!r}; expected one of {VARIANTS}")
        widths = tuple(int(w) for w in widths)
        if len(widths) != 5 or min(widths) < 1:
            raise ValueError(f"widths must be 5 positive channel counts; got {widths}")
        self.variant = variant
        self.preset = preset
        self.widths = widths
        self.in_channels = int(in_channels)
        self.input_size = int(input_size)
        self.input_offset, self.input_scale = INPUT_AFFINE[variant]
        #: Where the initial weights came from (``None``: random initialisation).
        self.pretrained_source: str | None = None

        enc_depths = ENCODER_DEPTHS[variant]
        dec_depths = DECODER_DEPTHS[variant]
        first = (
            FoldedInputConv(self.in_channels, widths[0])
            if variant == "v-unet" and self.in_channels == 1
            else None
        )
        stages = []
        prev = self.in_channels
        for level in range(4):
            stages.append(
                ConvStage(
                    prev,
                    widths[level],
                    enc_depths[level],
                    pool=level > 0,
                    first=first if level == 0 else None,
                )
            )
            prev = widths[level]
        self.encoder = nn.ModuleList(stages)
        self.bottleneck = ConvStage(prev, widths[4], enc_depths[4], pool=True)
        prev = widths[4]
        ups = []
        for i, level in enumerate((3, 2, 1, 0)):
            ups.append(UpStage(prev, widths[level], dec_depths[i]))
            prev = widths[level]
        self.decoder = nn.ModuleList(ups)
        self.head = nn.Conv2d(widths[0], 1, kernel_size=1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He initialisation (no batch norm, so the signal must keep its scale through ~20 layers)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.ConvTranspose2d):
                # Each output pixel sees exactly in_channels inputs (k=2, s=2), no ReLU follows.
                nn.init.normal_(module.weight, std=(1.0 / module.in_channels) ** 0.5)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.head.weight, std=(1.0 / self.head.in_channels) ** 0.5)
        nn.init.zeros_(self.head.bias)
        if isinstance(self.encoder[0].convs[0], FoldedInputConv):
            self.encoder[0].convs[0].pad_response.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.variant} expects input (batch, {self.in_channels}, S, S); got {tuple(x.shape)}"
            )
        if size[0] % SIZE_MULTIPLE or size[1] % SIZE_MULTIPLE:
            raise ValueError(
                f"{self.variant} input height and width must be multiples of {SIZE_MULTIPLE}; "
                f"got {tuple(size)} (letterbox frames to the model's input_size first)"
            )
        if self.input_offset or self.input_scale != 1.0:
            x = (x - self.input_offset) * self.input_scale
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = self.bottleneck(x)
        for stage, skip in zip(self.decoder, reversed(skips), strict=True):
            x = stage(x, skip)
        return self.head(x)

    def parameter_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Named parameters by role: ``encoder``, ``bottleneck``, ``decoder``, ``head``."""
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {}
        for key in ("encoder", "bottleneck", "decoder", "head"):
            module = getattr(self, key)
            groups[key] = [(f"{key}.{name}", p) for name, p in module.named_parameters()]
        return groups

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, preset={self.preset!r}, widths={self.widths}"


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def macs_per_frame(model: nn.Module, input_size: int | None = None) -> int:
    """Multiply-accumulates of conv and transposed-conv layers for one frame, counted analytically.

    Counted from the tensor shapes seen by forward hooks during one forward pass of zeros.
    """
    size = int(input_size or getattr(model, "input_size", 256))
    in_channels = int(getattr(model, "in_channels", 1))
    total = 0

    def conv_hook(module: nn.Conv2d, inputs, output) -> None:
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1]
        total += output[0].numel() * (module.in_channels // module.groups) * k

    def convt_hook(module: nn.ConvTranspose2d, inputs, output) -> None:
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1]
        total += inputs[0][0].numel() * (module.out_channels // module.groups) * k

    handles = []
    for module in model.modules():
        if isinstance(module, nn.ConvTranspose2d):
            handles.append(module.register_forward_hook(convt_hook))
        elif isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
    try:
        ref = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, in_channels, size, size, device=ref.device, dtype=ref.dtype))
    finally:
        for handle in handles:
            handle.remove()
    return int(total)


def flops_per_frame(model: nn.Module, input_size: int | None = None) -> int:
    """Floating-point operations of conv layers for one frame (2 x :func:`macs_per_frame`)."""
    return 2 * macs_per_frame(model, input_size)
