"""Checkpoints: safetensors weights plus a JSON card, and the shipped models beside this file.

A checkpoint ``NAME`` is ``NAME.safetensors`` (weights only: never pickle, so loading cannot run code) and
``NAME.json``, its card (:class:`model_zoo.card.ModelCard`)::

    {"format": "centaurus-speech/1", "name": ..., "task": "kws" | "denoise" | "asr",
     "architecture": {...the network's config dataclass...}, "sample_rate": 16000,
     "labels" | "vocab": [...], "algorithmic_latency_samples": ..., "parameters": ...,
     "recipe": {...}, "scores": {...}, "data": "...", "training_time_seconds": ...}

A speech recognizer may also have ``NAME.lm.json``, the word language model its beam search uses (see
:class:`model_zoo.nets.ctc.WordLanguageModel`); ``load`` attaches it as ``model.language_model`` (``None``
when absent). Shipped checkpoints live in ``model_zoo/checkpoints/`` with a Markdown model card ``NAME.md`` each.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .card import FORMAT, ModelCard, load_card
from .nets import TASKS, parameter_count
from .nets.ctc import WordLanguageModel

__all__ = [
    "CHECKPOINT_DIR", "CheckpointError", "FORMAT", "ModelCard", "load", "save", "list_models", "read_card",
    "shipped_cards", "card_for", "build_from_card", "language_model_path",
]

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"


class CheckpointError(ValueError):
    """A checkpoint that cannot be found, read or matched to its network; the message names the problem."""


def _resolve(name_or_path: str | Path) -> tuple[Path, Path]:
    text = str(name_or_path)
    shipped = CHECKPOINT_DIR / f"{text}.json"
    if "/" not in text and "\\" not in text and not text.endswith((".json", ".safetensors")):
        if not shipped.exists():
            known = ", ".join(card.name for card in shipped_cards()) or "none"
            raise CheckpointError(f"unknown model {text!r}; shipped models: {known}")
        return shipped, shipped.with_suffix(".safetensors")
    path = Path(text)
    card, weights = path.with_suffix(".json"), path.with_suffix(".safetensors")
    for required in (card, weights):
        if not required.exists():
            raise CheckpointError(f"checkpoint file not found: {required}")
    return card, weights


def read_card(name_or_path: str | Path) -> ModelCard:
    """The card of a checkpoint (a shipped name or a path), validated: our format, a known task, every field a
    card must have."""
    card_path, _ = _resolve(name_or_path)
    try:
        data = json.loads(card_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read checkpoint card {card_path}: {err}") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{card_path} is not a {FORMAT} card (format: {data.get('format') if isinstance(data, dict) else None!r})")
    if data.get("task") not in TASKS:
        raise CheckpointError(f"{card_path}: unknown task {data.get('task')!r}; expected one of {sorted(TASKS)}")
    try:
        return ModelCard.from_dict(data)
    except ValueError as err:
        raise CheckpointError(f"{card_path}: {err}") from err


def build_from_card(card: ModelCard) -> nn.Module:
    """A freshly initialised network of the card's task and architecture."""
    task = TASKS[card.task]
    try:
        config = task.config(**card.architecture)
        return task.network(config)
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"checkpoint {card.name!r}: invalid architecture: {err}") from err


def load(name_or_path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """A shipped model by name (``kws``, ``denoise``, ``asr``) or a checkpoint by path, in eval mode on ``device``.

    The card is attached as ``model.card`` (a :class:`~model_zoo.card.ModelCard`).
    """
    card = read_card(name_or_path)
    card_path, weights_path = _resolve(name_or_path)
    model = build_from_card(card)
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"cannot read weights {weights_path}: {err}") from err
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"weights {weights_path} do not match the architecture in its card: {err}") from err
    model.card = card
    model.card_dir = card_path.parent  # files the card names (a language model) live beside it
    if card.task == "asr":
        model.language_model = _load_language_model(_language_model_file(card_path))
    return model.to(device).eval()


def language_model_path(name_or_path: str | Path) -> Path:
    """Where a recognizer's word language model lives: ``NAME.lm.json`` next to its card."""
    return _language_model_file(_resolve(name_or_path)[0])


def _language_model_file(card_path: Path) -> Path:
    return card_path.with_name(card_path.stem + ".lm.json")


def _load_language_model(path: Path) -> WordLanguageModel | None:
    if not path.exists():
        return None
    try:
        return WordLanguageModel.load(path)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"cannot read language model {path}: {err}") from err


def card_for(model: nn.Module, *, name: str, task: str, **card_fields: Any) -> ModelCard:
    """The card of ``model`` as :func:`save` writes it: what the network says about itself (architecture,
    sample rate, latency, parameters, labels or vocab), then ``card_fields`` (recipe, scores, data, ...)."""
    return ModelCard.from_dict({
        "format": FORMAT,
        "name": name,
        "task": task,
        "architecture": dataclasses.asdict(model.config),
        "sample_rate": model.config.sample_rate,
        "algorithmic_latency_samples": model.algorithmic_latency,
        "parameters": parameter_count(model),
        **({"labels": list(model.config.labels)} if task == "kws" else {}),
        **({"vocab": list(model.config.vocab)} if task == "asr" else {}),
        **card_fields,
    })


def save(model: nn.Module, path: str | Path, *, name: str, task: str, **card_fields: Any) -> Path:
    """Write ``path.safetensors`` and ``path.json``; ``card_fields`` (recipe, scores, data, ...) go into the card
    (:func:`card_for`)."""
    path = Path(path).with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    card = card_for(model, name=name, task=task, **card_fields)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path.with_suffix(".safetensors")))
    path.with_suffix(".json").write_text(card.to_json())
    return path


def shipped_cards() -> list[ModelCard]:
    """The cards of the shipped checkpoints (``model_zoo/checkpoints/*.json``), by file name."""
    return [load_card(card_path) for card_path in sorted(CHECKPOINT_DIR.glob("*.json"))
            if not card_path.name.endswith(".lm.json")]  # a recognizer's language model, not a card


def list_models() -> list[dict[str, Any]]:
    """Shipped checkpoints: name, task, sample rate, streaming, algorithmic latency, parameters, scores."""
    return [{
        "name": card.name, "task": card.task, "sample_rate": card.sample_rate, "streaming": True,
        "algorithmic_latency_samples": card.algorithmic_latency_samples, "parameters": card.parameters,
        "scores": card.scores if card.scores is not None else {},
    } for card in shipped_cards()]
