"""The model card: what a checkpoint says about itself (``NAME.json`` beside ``NAME.safetensors``), typed.

A card read from JSON and written back is the same JSON, key for key and in the same order: keys this class
does not know are kept in :attr:`ModelCard.extra`, and the order of the keys read is remembered. Files and
validation against the task registry live in :mod:`model_zoo.checkpoint`; this module knows only the card.

A card is read by its attributes only; it is deliberately not a mapping (no ``card["sample_rate"]``), so untyped
reads cannot come back. :meth:`ModelCard.to_dict` gives the JSON object. Cards cross process pipes by pickle.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FORMAT", "ModelCard", "load_card"]

FORMAT = "centaurus-speech/1"

_SEQUENCES = ("labels", "vocab")  # JSON lists held as tuples: a card is immutable


@dataclass(frozen=True)
class ModelCard:
    """One checkpoint's card. Every card has ``format`` and the six fields without a default
    (:func:`model_zoo.checkpoint.save` writes them); the others are ``None`` when the card does not have them."""

    name: str
    task: str  # "kws" | "denoise" | "asr" (model_zoo.nets.TASKS)
    architecture: dict[str, Any]  # the network's config dataclass, as a dict
    sample_rate: int  # Hz of the audio the network takes
    algorithmic_latency_samples: int  # from the start of an output frame until all its input has arrived
    parameters: int  # trainable parameters
    format: str = FORMAT
    labels: tuple[str, ...] | None = None  # keyword spotting: the classes, in output order
    vocab: tuple[str, ...] | None = None  # speech recognition: the CTC tokens, blank first
    recipe: dict[str, Any] | None = None  # training.recipes.Recipe.to_dict() of the run that trained it
    scores: dict[str, float] | None = None  # measured on ``scored_on``
    data: str | None = None  # what it was trained on, in words
    scored_on: str | None = None
    training_seconds: float | None = None
    training_steps: int | None = None
    tolerance: dict[str, float] | None = None  # reproduce: allowed |score - card's score| per metric
    decoder: dict[str, Any] | None = None  # asr: the word bigram's tuned beam-search weights and their grid
    beam_search: dict[str, Any] | None = None  # asr: the n-gram file beside the card and its tuned weights
    evaluation: dict[str, Any] | None = None  # training.evaluation.score_sets and the options it ran with
    # Other systems scored on the clips of ``evaluation``'s sets, per set: {"clips", "source", "systems": {label:
    # {metric: value}}} (bench/peers_card.py). They depend on the clips only, not on this checkpoint.
    peers: dict[str, Any] | None = None
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this class does not know, kept as they were
    # Keys in the order they were read, so that writing the card back gives the same file.
    key_order: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = [f"{name} must be {kind}, not {type(getattr(self, name)).__name__}"
                    for name, kind, ok in (
                        ("name", "a string", isinstance(self.name, str)),
                        ("task", "a string", isinstance(self.task, str)),
                        ("format", "a string", isinstance(self.format, str)),
                        ("architecture", "an object", isinstance(self.architecture, dict)),
                        ("sample_rate", "an integer", _is_int(self.sample_rate)),
                        ("algorithmic_latency_samples", "an integer", _is_int(self.algorithmic_latency_samples)),
                        ("parameters", "an integer", _is_int(self.parameters)),
                    ) if not ok]
        if problems:
            raise ValueError(f"model card {self.name!r}: " + "; ".join(problems))
        for name in _SEQUENCES:  # accept any sequence of names; hold a tuple
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))

    # ---- JSON ---------------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCard:
        """The card of a parsed JSON object; ``ValueError`` naming what is missing or of the wrong type."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a model card is a JSON object, not {type(data).__name__}")
        missing = [name for name in _REQUIRED if name not in data]
        if missing:
            raise ValueError(f"model card {data.get('name')!r} lacks {', '.join(missing)}")
        fields = {k: v for k, v in data.items() if k in _JSON_FIELDS}
        extra = {k: v for k, v in data.items() if k not in _JSON_FIELDS}
        return cls(**fields, extra=extra, key_order=tuple(data))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (a deep copy): the keys read, in their order, then any set since."""
        return copy.deepcopy(dict(self._items()))

    def to_json(self) -> str:
        """The card file's text, as :func:`model_zoo.checkpoint.save` writes it."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def _keys(self) -> list[str]:
        present = {name for name in _JSON_FIELDS if getattr(self, name) is not None} | set(self.extra)
        # A key read as null stays null; one added later (dataclasses.replace) goes after those read.
        ordered = [k for k in self.key_order if k in present or k in _JSON_FIELDS]
        seen = set(ordered)
        return ordered + [k for k in (*_JSON_FIELDS, *self.extra) if k in present and k not in seen]

    def _json_value(self, key: str) -> Any:
        """The value of a present key as the JSON holds it (lists, not tuples)."""
        if key in self.extra:
            return self.extra[key]
        value = getattr(self, key)
        return list(value) if key in _SEQUENCES and value is not None else value

    def _items(self) -> Iterator[tuple[str, Any]]:
        for key in self._keys():
            yield key, self._json_value(key)

    __hash__ = None  # type: ignore[assignment]  # it holds dicts


# The JSON keys the fields hold, in the order save() writes them (format first), and those every card has.
_JSON_FIELDS: tuple[str, ...] = ("format", *(f.name for f in dataclasses.fields(ModelCard)
                                            if f.name not in ("format", "extra", "key_order")))
_REQUIRED: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ModelCard)
                                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_card(path: str | Path) -> ModelCard:
    """The card in JSON file ``path``; ``OSError``, ``json.JSONDecodeError`` or ``ValueError`` when it cannot be
    read or is not a card. Checks neither the format nor the task: :func:`model_zoo.checkpoint.read_card` does."""
    return ModelCard.from_dict(json.loads(Path(path).read_text()))
