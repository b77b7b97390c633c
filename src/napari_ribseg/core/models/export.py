"""Export a rib model to the bioimage.io model format, so it runs in other tools.

The package holds TorchScript weights of the network *with its sigmoid*: input one float32 frame
(batch, channel, y, x) of the model's square ``input_size`` in [0, 1] (uint8 frames divided by 255,
as the readers do), output the rib probability of the same shape. Frames of another size are
letterboxed by our inference engine; other tools get the fixed square the network was trained on,
stated in the input's axes. The model card travels in the package as an attachment and in
``config.napari_ribseg``.

``bioimageio.spec`` and ``bioimageio.core`` are an optional extra (``pip install
napari-ribseg[bioimageio]``) imported only by :func:`export_bioimageio`.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from napari_ribseg.core.errors import RibsegError

#: Where the card's licence is free text, the package needs an SPDX id: our code's licence.
DEFAULT_LICENCE = "BSD-3-Clause"


class ExportError(RibsegError):
    """The model could not be exported (missing extra, invalid description)."""


def _require_bioimageio() -> None:
    try:
        import bioimageio.spec  # noqa: F401
    except ImportError as exc:
        raise ExportError(
            "bioimage.io export needs the optional extra: pip install 'napari-ribseg[bioimageio]'"
        ) from exc


def _test_input(input_size: int) -> np.ndarray:
    """A deterministic test frame with ribs: a simulated linear-probe frame, float32 in [0, 1].

    A rib model must mark something on it: bioimage.io refuses a test output whose every value is
    below 1e-4, which the bundled models gave on striped noise.
    """
    from napari_ribseg.core.simulate import SimulationConfig, simulate_cine

    cine = simulate_cine(1, SimulationConfig(size=(input_size, input_size)), 0)
    return np.asarray(cine.frames[0], dtype=np.float32)[None, None]


def export_bioimageio(
    loaded: Any, out: str | os.PathLike, *, licence: str | None = None, validate: bool = False
) -> Path:
    """Write ``loaded`` (a ``LoadedModel``) as a bioimage.io model package (a .zip) at ``out``.

    ``validate`` runs ``bioimageio.core.test_model`` on the written package and raises
    :class:`ExportError` with its summary when it fails.
    """
    _require_bioimageio()
    import torch
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5 as bio

    from napari_ribseg.core.atomic import atomic_path, check_writable

    card, net = loaded.card, loaded.model
    size = int(card.input_size)
    # Before scripting and packing: a folder failed at the end, naming a temporary file.
    out = check_writable(out, "package")
    if out.suffix.lower() != ".zip":
        # save_bioimageio_package writes a zip whatever the name: x.tar was a zip named .tar,
        # which tar, bioimage.io's uploader and file managers then fail to open.
        raise ExportError(
            f"{out}: a bioimage.io model package is a .zip file; name it {out.stem or out.name}.zip"
        )
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        probe = _test_input(size)
        scripted = _ProbabilityNet.script(net)
        weights_path = tmp / "weights.pt"
        torch.jit.save(scripted, str(weights_path))
        with torch.inference_mode():
            expected = scripted(torch.from_numpy(probe)).numpy()
        np.save(tmp / "test_input.npy", probe)
        np.save(tmp / "test_output.npy", expected)
        card_path = tmp / "model_card.json"
        card_path.write_text(json.dumps(card.to_dict(), indent=2))
        doc = tmp / "README.md"
        doc.write_text(_documentation(card))

        def axes(kind):
            space = bio.SpaceInputAxis if kind == "in" else bio.SpaceOutputAxis
            return [
                bio.BatchAxis(),
                bio.ChannelAxis(
                    channel_names=[bio.Identifier("rib" if kind == "out" else "bmode")]
                ),
                space(id=bio.AxisId("y"), size=size),
                space(id=bio.AxisId("x"), size=size),
            ]

        unit = bio.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0))
        metrics = {m.name: m.value for m in card.metrics} if card.metrics else {}
        descr = bio.ModelDescr(
            name=_bio_name(card.name),
            description=(card.description or f"Rib segmentation in lung ultrasound ({card.name})")[
                :1000
            ],
            authors=[bio.Author(name="napari-ribseg developers")],
            cite=[bio.CiteEntry(text="napari-ribseg", url="https://github.com/napari/napari")],
            license=licence or DEFAULT_LICENCE,
            documentation=bio.FileDescr(source=doc),
            attachments=[bio.FileDescr(source=card_path)],
            tags=["ultrasound", "lung", "rib", "segmentation", "unet", "2d", "pytorch"],
            inputs=[
                bio.InputTensorDescr(
                    id=bio.TensorId("frame"),
                    description="B-mode frame, float32 in [0, 1] (uint8 / 255)",
                    axes=axes("in"),
                    test_tensor=bio.FileDescr(source=tmp / "test_input.npy"),
                    data=unit,
                )
            ],
            outputs=[
                bio.OutputTensorDescr(
                    id=bio.TensorId("rib_probability"),
                    description="rib probability; threshold (0.5 by default) for the mask",
                    axes=axes("out"),
                    test_tensor=bio.FileDescr(source=tmp / "test_output.npy"),
                    data=unit,
                )
            ],
            weights=bio.WeightsDescr(
                torchscript=bio.TorchscriptWeightsDescr(
                    source=weights_path, pytorch_version=bio.Version(torch.__version__)
                )
            ),
            config=bio.Config(napari_ribseg={"card": card.to_dict(), "metrics": metrics}),
        )
        with atomic_path(out) as tmp_out:
            save_bioimageio_package(descr, output_path=tmp_out)
    if validate:
        summary = validate_bioimageio(out)
        if summary.status != "passed":
            raise ExportError(f"{out}: bioimage.io test failed:\n{summary.display() or summary}")
    return out


def validate_bioimageio(package: str | os.PathLike) -> Any:
    """bioimageio.core's own ``test_model`` summary of a package (``.status == "passed"``)."""
    _require_bioimageio()
    from bioimageio.core import test_model

    return test_model(str(package))


def _bio_name(name: str) -> str:
    # The spec allows letters, digits, spaces and a few marks; model names use '-' and '_'.
    return "".join(c if c.isalnum() or c in " _-()+." else " " for c in name).strip() or "ribseg"


def _documentation(card: Any) -> str:
    lines = [
        f"# {card.name}",
        "",
        card.description or "Rib segmentation in lung ultrasound, exported from napari-ribseg.",
        "",
        f"- architecture: {card.variant} ({card.preset}), input {card.input_size}x{card.input_size}",
        "- input: one B-mode frame, float32 in [0, 1] (uint8 / 255); output: rib probability",
        "- frames of another size: letterbox to the square (aspect kept, zero pad), as napari-ribseg",
    ]
    lines += [f"- {m.name}: {m.value}" for m in card.metrics]
    return "\n".join(lines) + "\n"


class _ProbabilityNet:
    """The network followed by its sigmoid, as TorchScript."""

    @staticmethod
    def script(net: Any) -> Any:
        import torch
        from torch import nn

        class WithSigmoid(nn.Module):
            def __init__(self, inner: nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.sigmoid(self.inner(x))

        model = WithSigmoid(net).eval().cpu()
        example = torch.from_numpy(_test_input(int(net.input_size)))
        with torch.no_grad(), warnings.catch_warnings():
            # Tracing records the fixed-size graph; the network has no data-dependent control flow
            # (its input checks become constants, which is what the TracerWarnings say).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return torch.jit.trace(model, example)


__all__ = ["ExportError", "export_bioimageio", "validate_bioimageio"]
