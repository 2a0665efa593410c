"""The typed model card: every shipped card reads into it and writes back to the same JSON."""

from __future__ import annotations

import dataclasses
import json
import pickle

import pytest

from model_zoo.card import ModelCard, load_card
from model_zoo.checkpoint import CHECKPOINT_DIR, CheckpointError, read_card, save, shipped_cards

SHIPPED = sorted(p for p in CHECKPOINT_DIR.glob("*.json") if not p.name.endswith(".lm.json"))


def test_there_are_shipped_cards():
    assert {p.stem for p in SHIPPED} >= {"kws", "denoise", "asr"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_card_round_trips_exactly(path):
    text = path.read_text()
    original = json.loads(text)
    card = load_card(path)
    assert card.to_dict() == original
    assert list(card.to_dict()) == list(original)  # the same order of keys
    assert card.to_json() == text  # byte for byte, as save() writes it
    assert ModelCard.from_dict(card.to_dict()).to_json() == text
    assert read_card(path.stem).to_json() == text


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_attributes_are_typed_and_there_is_no_dict_view(path):
    original = json.loads(path.read_text())
    card = load_card(path)
    assert isinstance(card.sample_rate, int) and card.sample_rate == original["sample_rate"]
    assert card.task == original["task"] and card.name == original["name"]
    assert card.algorithmic_latency_samples == original["algorithmic_latency_samples"]
    names = {"kws": "labels", "asr": "vocab"}.get(card.task)
    if names:
        assert getattr(card, names) == tuple(original[names])  # a tuple: the card is immutable
    # Attributes only: untyped reads (card["sample_rate"], card.get(...)) cannot come back.
    with pytest.raises(TypeError):
        card["sample_rate"]  # noqa: B018
    assert not hasattr(card, "get") and not hasattr(card, "keys")
    # The service's workers send cards to the server process by pickle.
    assert pickle.loads(pickle.dumps(card)).to_json() == card.to_json()


def test_unknown_keys_and_nulls_are_kept_in_place():
    data = json.loads((CHECKPOINT_DIR / "kws.json").read_text())
    data = {"future": {"a": 1}, **data, "note": None, "later": [1, 2]}
    card = ModelCard.from_dict(data)
    assert card.extra == {"future": {"a": 1}, "later": [1, 2]} and card.note is None
    assert list(card.to_dict()) == list(data) and card.to_dict() == data
    added = dataclasses.replace(card, beam_search={"language_model": "x.arpa"})
    assert list(added.to_dict())[-1] == "beam_search" and "beam_search" not in card.to_dict()


def test_to_dict_is_a_copy():
    card = load_card(CHECKPOINT_DIR / "asr.json")
    card.to_dict()["scores"]["wer"] = -1.0
    assert card.scores["wer"] != -1.0


def test_missing_and_mistyped_fields_are_named(tmp_path):
    data = json.loads((CHECKPOINT_DIR / "denoise.json").read_text())
    with pytest.raises(ValueError, match="lacks sample_rate"):
        ModelCard.from_dict({k: v for k, v in data.items() if k != "sample_rate"})
    with pytest.raises(ValueError, match="sample_rate must be an integer"):
        ModelCard.from_dict({**data, "sample_rate": "16000"})
    (tmp_path / "d.json").write_text(json.dumps({**data, "parameters": None}))
    (tmp_path / "d.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="parameters must be an integer"):
        read_card(tmp_path / "d.json")


def test_save_writes_the_card_it_describes(tmp_path):
    from model_zoo.nets import build_network

    model = build_network("kws")
    path = save(model, tmp_path / "k", name="k", task="kws", recipe={"steps": 0}, scores={"x": 1.0}, other=3)
    card = read_card(path.with_suffix(".json"))
    assert card.labels == tuple(model.config.labels) and card.sample_rate == model.config.sample_rate
    assert card.parameters > 0 and card.scores == {"x": 1.0} and card.extra == {"other": 3}
    assert list(card.to_dict())[:7] == ["format", "name", "task", "architecture", "sample_rate",
                              "algorithmic_latency_samples", "parameters"]


def test_shipped_cards_are_the_listed_models():
    import model_zoo

    assert [c.name for c in shipped_cards()] == [m["name"] for m in model_zoo.list_models()]
