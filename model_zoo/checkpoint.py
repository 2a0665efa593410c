"""Checkpoints: safetensors weights plus a JSON card, and the shipped models beside this file.

A checkpoint ``NAME`` is ``NAME.safetensors`` (weights only: never pickle, so loading cannot run code) and
``NAME.json``::

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

from .nets import TASKS, parameter_count
from .nets.ctc import WordLanguageModel

__all__ = [
    "CHECKPOINT_DIR", "CheckpointError", "FORMAT", "load", "save", "list_models", "read_card", "language_model_path",
]

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"
FORMAT = "centaurus-speech/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be found, read or matched to its network; the message names the problem."""


def _resolve(name_or_path: str | Path) -> tuple[Path, Path]:
    text = str(name_or_path)
    shipped = CHECKPOINT_DIR / f"{text}.json"
    if "/" not in text and "\\" not in text and not text.endswith((".json", ".safetensors")):
        if not shipped.exists():
            known = ", ".join(m["name"] for m in list_models()) or "none"
            raise CheckpointError(f"unknown model {text!r}; shipped models: {known}")
        return shipped, shipped.with_suffix(".safetensors")
    path = Path(text)
    card, weights = path.with_suffix(".json"), path.with_suffix(".safetensors")
    for required in (card, weights):
        if not required.exists():
            raise CheckpointError(f"checkpoint file not found: {required}")
    return card, weights


def read_card(name_or_path: str | Path) -> dict[str, Any]:
    """The JSON card of a checkpoint, validated."""
    card_path, _ = _resolve(name_or_path)
    try:
        card = json.loads(card_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read checkpoint card {card_path}: {err}") from err
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise CheckpointError(f"{card_path} is not a {FORMAT} card (format: {card.get('format') if isinstance(card, dict) else None!r})")
    if card.get("task") not in TASKS:
        raise CheckpointError(f"{card_path}: unknown task {card.get('task')!r}; expected one of {sorted(TASKS)}")
    return card


def build_from_card(card: dict[str, Any]) -> nn.Module:
    task = TASKS[card["task"]]
    try:
        config = task.config(**card["architecture"])
        return task.network(config)
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"checkpoint {card.get('name')!r}: invalid architecture: {err}") from err


def load(name_or_path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """A shipped model by name (``kws``, ``denoise``, ``asr``) or a checkpoint by path, in eval mode on ``device``.

    The card is attached as ``model.card``.
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
    if card["task"] == "asr":
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


def save(model: nn.Module, path: str | Path, *, name: str, task: str, **card_fields: Any) -> Path:
    """Write ``path.safetensors`` and ``path.json``; ``card_fields`` (recipe, scores, data, ...) go into the card."""
    path = Path(path).with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    config = dataclasses.asdict(model.config)
    card = {
        "format": FORMAT,
        "name": name,
        "task": task,
        "architecture": config,
        "sample_rate": model.config.sample_rate,
        "algorithmic_latency_samples": model.algorithmic_latency,
        "parameters": parameter_count(model),
        **({"labels": list(model.config.labels)} if task == "kws" else {}),
        **({"vocab": list(model.config.vocab)} if task == "asr" else {}),
        **card_fields,
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path.with_suffix(".safetensors")))
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return path


def list_models() -> list[dict[str, Any]]:
    """Shipped checkpoints: name, task, sample rate, streaming, algorithmic latency, parameters, scores."""
    models = []
    for card_path in sorted(CHECKPOINT_DIR.glob("*.json")):
        if card_path.name.endswith(".lm.json"):  # a recognizer's language model, not a card
            continue
        card = json.loads(card_path.read_text())
        models.append({
            "name": card["name"], "task": card["task"], "sample_rate": card["sample_rate"], "streaming": True,
            "algorithmic_latency_samples": card["algorithmic_latency_samples"], "parameters": card["parameters"],
            "scores": card.get("scores", {}),
        })
    return models
