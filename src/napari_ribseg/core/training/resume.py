"""Resume state of an interrupted fine-tune: safetensors + JSON beside the output, never pickle."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import Any

import torch

from napari_ribseg.core.atomic import atomic_path, write_text_atomic
from napari_ribseg.core.errors import TrainingError
from napari_ribseg.core.models.checkpoint import checkpoint_paths

RESUME_FORMAT = 1


def resume_paths(out: str | Path) -> tuple[Path, Path]:
    """(tensors, JSON) of the resume state kept beside ``out``.

    They live in a ``<stem>.resume`` folder so the model registry, which lists ``*.safetensors``
    in the model folder, never mistakes them for a model.
    """
    weights, _ = checkpoint_paths(out)
    folder = weights.with_name(weights.stem + ".resume")
    return folder / "state.safetensors", folder / "state.json"


def _json_safe(value: Any) -> Any:
    """Nested containers with inf/nan encoded as strings (strict JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _json_restore(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        return {k: _json_restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_restore(v) for v in value]
    return value


def _flatten_optimizer(
    state: dict, prefix: str = "optimizer"
) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into its tensors (as they are: :func:`_for_file` readies them
    for safetensors) and the JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, dict] = {}
    for index, param_state in state["state"].items():
        entry: dict[str, Any] = {}
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{index}.{key}"] = value
                entry[key] = {"__tensor__": f"{prefix}.{index}.{key}"}
            else:
                entry[key] = value
        meta[str(index)] = entry
    return tensors, {"state": meta, "param_groups": state["param_groups"]}


def _for_file(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tensors as safetensors writes them: detached, on the CPU, contiguous."""
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def _unflatten_optimizer(meta: dict, tensors: dict[str, torch.Tensor]) -> dict:
    state = {}
    for index, entry in meta["state"].items():
        state[int(index)] = {
            k: tensors[v["__tensor__"]] if isinstance(v, dict) and "__tensor__" in v else v
            for k, v in entry.items()
        }
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


def _save_resume(out: Path, model, optimizer, info: dict, kept: dict | None = None) -> None:
    """Write the resume state; ``kept`` names further (epoch, weights, optimizer state) triples
    a run holds (the collapse guard's snapshots). They go to a file of their own, named by their
    epochs and written only when they change (about 20 times a run, not every epoch)."""
    from safetensors.torch import save_file

    tensor_path, json_path = resume_paths(out)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    tensors.update(opt_tensors)
    with atomic_path(tensor_path) as tmp:
        save_file(_for_file(tensors), str(tmp), metadata={"format": "napari-ribseg-resume"})
    kept_file, kept_meta = _save_kept(tensor_path.parent, kept or {})
    # JSON last: a state counts only once its JSON names the epoch, so a crash between the two
    # writes leaves the previous, consistent pair (the tensors file is checked by epoch below).
    # Tie the state to the checkpoint this run has written so far: only that file may be replaced
    # by resuming without --overwrite (see resume_may_replace).
    info = {
        **info,
        "kept": kept_meta,
        "kept_file": kept_file,
        "optimizer": opt_meta,
        "format": RESUME_FORMAT,
        "output_sha256": _file_sha256(checkpoint_paths(out)[0]),
    }
    write_text_atomic(json_path, json.dumps(_json_safe(info), indent=1))
    # Only now may an older snapshots file go: the JSON no longer names it.
    for old in tensor_path.parent.glob("kept-*.safetensors"):
        if old.name != kept_file:
            with contextlib.suppress(OSError):
                old.unlink()


def _save_kept(folder: Path, kept: dict) -> tuple[str | None, dict]:
    """Write the kept triples to ``kept-<epochs>.safetensors`` unless that file exists already;
    return its name (``None`` when nothing is kept) and the JSON-able description."""
    from safetensors.torch import save_file

    held = {name: triple for name, triple in kept.items() if triple is not None}
    if not held:
        return None, dict.fromkeys(kept)
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = dict.fromkeys(kept)
    for name, (epoch, weights, opt_state) in held.items():
        tensors.update({f"{name}.model.{k}": v for k, v in weights.items()})
        kept_tensors, kept_opt = _flatten_optimizer(opt_state, prefix=f"{name}.optimizer")
        tensors.update(kept_tensors)
        meta[name] = {"epoch": int(epoch), "optimizer": kept_opt}
    # A snapshot is taken once per epoch and never changed, so its epoch names it; an epoch that
    # took none copies nothing off the device.
    file_name = "kept-" + "-".join(f"{k}{v[0]}" for k, v in sorted(held.items())) + ".safetensors"
    if not (folder / file_name).is_file():
        with atomic_path(folder / file_name) as tmp:
            save_file(
                _for_file(tensors), str(tmp), metadata={"format": "napari-ribseg-resume-kept"}
            )
    return file_name, meta


def _file_sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resume_may_replace(out: str | Path) -> bool:
    """Whether a resume state beside ``out`` belongs to the model now at ``out``.

    True only when the state names the exact weights this interrupted run wrote (or no model is
    there yet): a stale state of another run never licenses replacing a model without --overwrite.
    """
    _, json_path = resume_paths(out)
    try:
        info = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(info, dict) or info.get("format") != RESUME_FORMAT:
        return False
    current = _file_sha256(checkpoint_paths(out)[0])
    return current is None or current == info.get("output_sha256")


def bind_resume_to_output(out: str | Path) -> None:
    """Record the model now at ``out`` in the resume state beside it: a stopped run writes its
    result after its last state, and resuming it must still count as replacing its own file."""
    _, json_path = resume_paths(out)
    try:
        info = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(info, dict) and info.get("format") == RESUME_FORMAT:
        info["output_sha256"] = _file_sha256(checkpoint_paths(out)[0])
        write_text_atomic(json_path, json.dumps(info, indent=1))


def _load_resume(out: Path) -> tuple[dict, dict[str, torch.Tensor]] | None:
    from safetensors.torch import load_file

    tensor_path, json_path = resume_paths(out)
    if not (tensor_path.is_file() and json_path.is_file()):
        return None
    try:
        info = _json_restore(json.loads(json_path.read_text(encoding="utf-8")))
        tensors = load_file(str(tensor_path))
    except (OSError, ValueError) as exc:
        raise TrainingError(
            f"resume state {json_path.parent} is unreadable ({exc}); delete it"
        ) from exc
    if info.get("format") != RESUME_FORMAT:
        return None
    return info, tensors


def _kept_states(info: dict, folder: Path) -> dict[str, tuple | None]:
    """The (epoch, weights, optimizer state) triples :func:`_save_resume` kept, by name."""
    from safetensors.torch import load_file

    meta = info.get("kept") or {}
    name = info.get("kept_file")
    tensors = load_file(str(folder / name)) if name and (folder / name).is_file() else {}
    out: dict[str, tuple | None] = {}
    for key, entry in meta.items():
        if entry is None or not tensors:
            out[key] = None
            continue
        head = f"{key}.model."
        weights = {k[len(head) :]: v for k, v in tensors.items() if k.startswith(head)}
        out[key] = (int(entry["epoch"]), weights, _unflatten_optimizer(entry["optimizer"], tensors))
    return out


def remove_resume(out: Path, *, keep_folder: bool = False) -> None:
    """Remove the resume state of the run writing ``out`` (if any).

    ``keep_folder``: remove what the folder holds but keep the folder itself, the name's
    reservation (``core.training.output.stamped_output``), which the run gives back as its
    last act: given back here, before the run ends, another caller could reserve the name and
    the run's own clean-up then remove that caller's reservation."""
    folder = resume_paths(out)[0].parent
    if not keep_folder:
        shutil.rmtree(folder, ignore_errors=True)
        return
    with contextlib.suppress(OSError):
        for entry in list(folder.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()
