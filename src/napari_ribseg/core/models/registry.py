"""The one model registry: bundled checkpoints in the package, user checkpoints in a user folder.

A model's name is its file stem. ``resolve_model`` looks for a path first, then a user model, then a
bundled one, so a user checkpoint of the same name shadows the bundled one. Listing needs no torch:
cards and parameter counts come from :func:`~napari_ribseg.core.models.card.read_weights_card`, the
reader ``load_checkpoint`` uses, so a file listed is a file that loads and one refused is skipped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from napari_ribseg.core.atomic import is_temporary
from napari_ribseg.core.errors import CheckpointError
from napari_ribseg.core.models.card import (
    ModelCard,
    own_step,
    read_weights_card,
    safetensors_header,  # noqa: F401  (re-exported: scripts read headers from here)
)

if TYPE_CHECKING:
    import torch

    from napari_ribseg.core.models.checkpoint import LoadedModel

log = logging.getLogger(__name__)

MODEL_DIR_ENV = "RIBSEG_MODEL_DIR"


@dataclass(frozen=True)
class ModelEntry:
    """One checkpoint the registry knows."""

    name: str
    path: Path
    card: ModelCard
    source: Literal["bundled", "user"]
    n_params: int

    @property
    def is_start(self) -> bool:
        """Whether this is a start checkpoint (salient pre-training), not a rib model.

        Start checkpoints are what a new X-Unet begins from; they never saw a rib, so pickers that
        segment hide them and ``ribseg models`` marks them.
        """
        return is_start_card(self.card)


def is_start_card(card: ModelCard) -> bool:
    """Whether ``card`` is a start checkpoint's (salient pre-training), not a rib model's."""
    # A salient pre-training card has no parent; models trained from it name it as parent.
    salient = "salient_pretraining" in card.extra and not card.parent
    return salient or card.training_data.source.startswith("synthetic:")


def refuse_start_checkpoint(card: ModelCard, what: str) -> None:
    """Raise :class:`CheckpointError` when ``card`` is a start checkpoint's: it never saw a rib."""
    if is_start_card(card):
        raise CheckpointError(
            f"{card.name} is a start checkpoint (salient-object pre-training), not a rib model: "
            f"it never saw a rib, so it cannot {what}; fine-tune it first (ribseg finetune DATA "
            f"--model {card.name} --out NAME) or choose a rib model (ribseg models)"
        )


def bundled_model_dir() -> Path:
    """The package's ``core/models/weights`` folder."""
    return Path(__file__).resolve().parent / "weights"


ModelDir = str | os.PathLike | None


def user_model_dir(model_dir: ModelDir = None) -> Path:
    """The user model folder: ``model_dir`` when given (the widget's setting), else
    ``$RIBSEG_MODEL_DIR``, else the platform user-data folder of napari-ribseg / ``models``."""
    if model_dir:
        return Path(model_dir).expanduser()
    env = os.environ.get(MODEL_DIR_ENV)
    if env:
        return Path(env).expanduser()
    try:
        from platformdirs import user_data_dir
    except ImportError:  # platformdirs comes with napari; a bare core install falls back
        return Path.home() / ".local" / "share" / "napari-ribseg" / "models"
    return Path(user_data_dir("napari-ribseg", appauthor=False)) / "models"


def _entry(path: Path, source: Literal["bundled", "user"]) -> ModelEntry | None:
    weights = read_weights_card(path)
    if weights.card is None:
        return None  # no card at all, or a component's (the VGG16 encoder): not a model
    n_params = weights.card.n_params or weights.n_params
    return ModelEntry(
        name=path.stem, path=path, card=weights.card, source=source, n_params=n_params
    )


SkipReport = Callable[[Path, str], None]


def _scan(
    folder: Path, source: Literal["bundled", "user"], on_skip: SkipReport | None = None
) -> list[ModelEntry]:
    if not folder.is_dir():
        return []
    entries = []
    for path in sorted(folder.glob("*.safetensors")):
        if is_temporary(path.name):
            continue  # an interrupted or in-progress save, never a model
        try:
            entry = _entry(path, source)
        except (CheckpointError, OSError, ValueError, TypeError, KeyError) as exc:
            # One bad card skips that model only, never the listing.
            if on_skip is not None:
                on_skip(path, str(exc))  # the caller reports it (ribseg models printed it twice)
            else:
                log.warning("Skipping unreadable checkpoint %s: %s", path, exc)
            continue
        if entry is not None:
            entries.append(entry)
    return entries


def list_models(
    on_skip: SkipReport | None = None, *, model_dir: ModelDir = None
) -> list[ModelEntry]:
    """All whole-model checkpoints: bundled first, then user, each sorted by name.

    A checkpoint whose header or card is bad is skipped with a warning (logged, and passed to
    ``on_skip(path, reason)`` when given) so it never hides the others. ``model_dir``: see
    :func:`user_model_dir`.
    """
    user = _scan(user_model_dir(model_dir), "user", on_skip)
    return _scan(bundled_model_dir(), "bundled", on_skip) + user


def bundled_rank(entry: ModelEntry) -> tuple[float, str]:
    """How bundled models rank: by the hard-domain Dice on their cards (simulated frames pushed to
    the real-scan fingerprint, the closest measure to a user's own scans; docs/models.md), else
    by their test Dice. On 2026-12-02 the U-Net led the ordinary test set (at last 0.830 against
    the V-Unet's 0.826) and the V-Unet the hard domain (0.818 against 0.808): the V-Unet stays
    first."""
    card = entry.card
    score = card.metric("hard_dice")
    if score is None:
        score = card.metric("dice")
    return (score if score is not None else -1.0, entry.name)


def best_model_of_variant(variant: str) -> ModelEntry | None:
    """The bundled rib model of ``variant`` that ranks first (:func:`bundled_rank`; start
    checkpoints excluded), or ``None`` when none is bundled."""
    candidates = [
        e
        for e in _scan(bundled_model_dir(), "bundled")
        if e.card.variant == variant and not e.is_start
    ]
    if not candidates:
        return None
    return max(candidates, key=bundled_rank)


def gate_verdict(card: ModelCard) -> bool | None:
    """What the card says about the promotion gate: ``None`` for a model that is no fine-tune,
    ``True`` when its fine-tune passed the gate, ``False`` when it lost it (a ``--select last``
    model) or was never gated (``--select best``, cards written before the gate): such a model
    was judged, if at all, only on its own validation frames."""
    step = own_step(card)
    if step is None:
        return None
    kind, record = step
    gate = record.get("gate")
    if kind == "adapt":  # kept by the gate on curated frames, or by the label-free check alone
        return True if isinstance(gate, dict) and gate.get("promoted") else None
    return bool(gate.get("promoted")) if isinstance(gate, dict) else False


def is_label_free(card: ModelCard) -> bool:
    """Whether the model was adapted without labels (``ribseg adapt``) and kept by the label-free
    check alone, which cannot see a small loss (bench_adapt_cine.py); an adaptation that won the
    gate on its stack's curated frames is judged like a fine-tune."""
    step = own_step(card)
    if step is None or step[0] != "adapt":
        return False
    gate = step[1].get("gate")
    return not (isinstance(gate, dict) and gate.get("promoted"))


def _created(entry: ModelEntry) -> datetime:
    """When the card says the model was made (aware, UTC when the card gives no zone)."""
    try:
        when = datetime.fromisoformat(entry.card.created)
    except (TypeError, ValueError):
        return datetime.min.replace(tzinfo=UTC)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def default_model(
    entries: list[ModelEntry] | None = None, *, model_dir: ModelDir = None
) -> ModelEntry | None:
    """The model segmenting uses when none is named (the widget's and ``ribseg predict``'s).

    The newest user model (by the card's ``created``) that either passed its fine-tune's gate or
    is no fine-tune at all (a checkpoint the user trained elsewhere or copied in: nothing judged
    it worse); else the first bundled rib model by :func:`bundled_rank` (the hard-domain Dice on
    its card). A fine-tune that
    lost its gate or was never gated is never the default (it stays selectable by name), nor is a
    model adapted without labels (it is tuned to one stack and no label checked it); and a user
    model's Dice is never compared with a bundled one's: they are measured on other frames.
    Start checkpoints (salient pre-training) are never the default. ``entries`` defaults to
    :func:`list_models`; ``None`` when there is no candidate.
    """
    if entries is None:
        entries = list_models(model_dir=model_dir)
    rib_models = [e for e in entries if not e.is_start]
    users = [
        e
        for e in rib_models
        if e.source == "user" and gate_verdict(e.card) is not False and not is_label_free(e.card)
    ]
    if users:
        return max(users, key=lambda e: (_created(e), e.name))
    bundled = [e for e in rib_models if e.source == "bundled"]
    if not bundled:
        return None
    return max(bundled, key=bundled_rank)


def entry_named(entries: list[ModelEntry], name: str) -> ModelEntry | None:
    """The entry of ``entries`` that ``name`` resolves to (:func:`resolve_model`'s rule: a user
    model shadows a bundled one of the same name); ``None`` when none is called ``name``."""
    matches = [e for e in entries if e.name == name]
    return next((e for e in matches if e.source == "user"), matches[0] if matches else None)


def resolve_model(name_or_path: str | os.PathLike, *, model_dir: ModelDir = None) -> Path:
    """The ``.safetensors`` path of a registry name, a variant name or a checkpoint path.

    A variant name (``unet``, ``v-unet``, ``x-unet``, the study's names) resolves to the best
    bundled model of that variant unless a checkpoint of exactly that name exists. Raises
    CheckpointError for pickle files and for unknown names (listing the available ones).
    """
    from napari_ribseg.core.models.checkpoint import checkpoint_paths, refuse_pickle

    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    refuse_pickle(path)
    looks_like_path = path.suffix in (".safetensors", ".json") or "/" in text or os.sep in text
    if looks_like_path or path.is_file():
        weights, _ = checkpoint_paths(path)
        if weights.is_file():
            return weights
        raise CheckpointError(f"Checkpoint not found: {weights}")
    for folder in (user_model_dir(model_dir), bundled_model_dir()):
        candidate = folder / f"{text}.safetensors"
        if candidate.is_file():
            return candidate
    best = best_model_of_variant(text)
    if best is not None:
        return best.path
    names = sorted({e.name for e in list_models(model_dir=model_dir)})
    raise CheckpointError(
        f"No model named {text!r}; available: {', '.join(names) if names else '(none)'} "
        f"(user models go in {user_model_dir(model_dir)})"
    )


def load_model(
    name_or_path: str | os.PathLike,
    device: str | torch.device = "cpu",
    *,
    model_dir: ModelDir = None,
) -> LoadedModel:
    """Resolve a name or path and load it (see :func:`load_checkpoint`)."""
    from napari_ribseg.core.models.checkpoint import load_checkpoint

    return load_checkpoint(resolve_model(name_or_path, model_dir=model_dir), device=device)
