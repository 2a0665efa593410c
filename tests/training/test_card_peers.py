"""The peers' scores on a model card: rendered in its Markdown, and kept by a retrained checkpoint scored on the
same clips (``training.reproduce.kept_peers``, ``install``)."""

from __future__ import annotations

import dataclasses
import json

from model_zoo.card import ModelCard, load_card
from training.recipes import SHIPPED
from training.reproduce import install, kept_peers, write_model_card

PEERS = {"real": {"clips": 3, "source": "`bench/peers.py`, test", "systems": {"Whisper": {"wer": 0.09, "rtf": 0.26}}}}


def card(clips: int, peers: dict | None = None, recipe: str = SHIPPED["asr"]) -> ModelCard:
    return ModelCard(name="asr", task="asr", architecture={}, sample_rate=16000, algorithmic_latency_samples=0,
                     parameters=1, recipe={"name": recipe, "steps": 1, "batch_size": 1, "lr": 0.1},
                     scores={"wer": 0.5}, training_seconds=60.0, scored_on="test split", peers=peers,
                     evaluation={"options": {}, "sets": {"real": {"clips": clips, "scores": {"wer": 0.7}}}})


def test_the_card_shows_each_peer_on_the_same_clips(tmp_path):
    write_model_card(tmp_path / "asr.md", card(3, PEERS))
    text = (tmp_path / "asr.md").read_text()
    assert "Other systems on the same clips: real human speech" in text and "3 clips" in text
    assert "| system | wer | rtf |" in text and "| Whisper | 0.0900 | 0.2600 |" in text
    assert "\n\n\n" not in text
    write_model_card(tmp_path / "none.md", card(3))
    assert "Other systems" not in (tmp_path / "none.md").read_text()


def test_a_retrained_card_keeps_the_peers_of_sets_with_as_many_clips():
    assert kept_peers(card(3), card(3, PEERS)) == PEERS
    assert kept_peers(card(4), card(3, PEERS)) is None  # other clips: the peers' scores no longer apply
    assert kept_peers(card(3), card(3)) is None


def test_install_carries_the_shipped_peers_over(tmp_path):
    shipped, run = tmp_path / "zoo", tmp_path / "run"
    shipped.mkdir(), run.mkdir()
    (shipped / "asr.json").write_text(card(3, PEERS).to_json())
    (run / "asr.json").write_text(card(3).to_json())
    install("asr", run / "asr", checkpoint_dir=shipped)
    assert load_card(shipped / "asr.json").peers == PEERS
    assert "| Whisper |" in (shipped / "asr.md").read_text()
    # a run scored on other clips replaces them with nothing
    (run / "asr.json").write_text(dataclasses.replace(card(5), scores={"wer": 0.4}).to_json())
    install("asr", run / "asr", checkpoint_dir=shipped)
    installed = json.loads((shipped / "asr.json").read_text())
    assert "peers" not in installed and installed["scores"] == {"wer": 0.4}
