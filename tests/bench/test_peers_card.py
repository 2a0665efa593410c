"""``bench/peers_card.py``: the peers of a result file go into the cards whose sets have as many clips."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from peers_card import attach, peer_sets  # noqa: E402

from model_zoo.card import ModelCard, load_card  # noqa: E402


def write_card(folder: Path, task: str, clips: dict[str, int]) -> None:
    card = ModelCard(name=task, task=task, architecture={}, sample_rate=16000, algorithmic_latency_samples=0,
                     parameters=1, recipe={"name": f"{task}-synthetic", "steps": 1, "batch_size": 1, "lr": 0.1},
                     scores={}, training_seconds=1.0,
                     evaluation={"options": {}, "sets": {k: {"clips": n, "scores": {}} for k, n in clips.items()}})
    (folder / f"{task}.json").write_text(card.to_json())


def test_peers_are_written_where_the_clips_match_and_ours_are_left_out(tmp_path):
    write_card(tmp_path, "asr", {"real": 484, "synthetic": 228})
    write_card(tmp_path, "denoise", {"synthetic": 228})
    result = {
        "date": "2026-12-05", "machine": "test", "sets": ["synthetic", "real"],
        "peers": {"whisper": {"label": "Whisper tiny.en"}},
        "real": {"asr": {"clips": 484, "systems": {
            "centaurus": {"wer": 0.75}, "whisper": {"wer": 0.09, "cer": float("nan"), "examples": [], "rtf": 0.26}}}},
        "tasks": {"denoise": {"clips": 150, "set_clips": 228, "data": "synthetic",
                              "systems": {"nsnet2": {"overall": {"count": 150, "pesq": 1.9}}}}},
    }
    path = tmp_path / "peers.json"
    path.write_text(json.dumps(result))
    messages: list[str] = []
    assert attach(path, tmp_path, log=messages.append) == 1
    peers = load_card(tmp_path / "asr.json").peers
    assert peers == {"real": {"clips": 484, "source": "`bench/peers.py`, 2026-12-05, test",
                              "systems": {"Whisper tiny.en": {"wer": 0.09, "rtf": 0.26}}}}
    assert load_card(tmp_path / "denoise.json").peers is None
    assert any("denoise/synthetic: skipped" in m and "150" in m and "228" in m for m in messages)
    assert "| Whisper tiny.en | 0.0900 | 0.2600 |" in (tmp_path / "asr.md").read_text()


def test_every_set_of_a_run_maps_to_its_card_set_festival_included(tmp_path):
    write_card(tmp_path, "asr", {"synthetic": 3, "festival": 2, "real": 4})
    entry = lambda data, clips, wer: {"clips": clips, "set_clips": clips, "data": data,  # noqa: E731
                                      "systems": {"centaurus": {"wer": 0.5}, "whisper": {"wer": wer}}}
    result = {"date": "d", "machine": "m", "sets": ["synthetic", "festival", "real"], "peers": {},
              "tasks": {"asr": entry("synthetic", 3, 0.1)}, "festival": {"asr": entry("festival", 2, 0.2)},
              "real": {"asr": entry("real", 4, 0.3)}}
    sets = peer_sets(result)
    assert sets == {("asr", "synthetic"): result["tasks"]["asr"], ("asr", "festival"): result["festival"]["asr"],
                    ("asr", "real"): result["real"]["asr"]}
    path = tmp_path / "peers.json"
    path.write_text(json.dumps(result))
    assert attach(path, tmp_path, log=lambda _: None) == 3
    peers = load_card(tmp_path / "asr.json").peers
    assert {name: p["systems"]["whisper"]["wer"] for name, p in peers.items()} == \
        {"synthetic": 0.1, "festival": 0.2, "real": 0.3}
    assert "festival, a synthesizer never trained on (test split), 2 clips" in (tmp_path / "asr.md").read_text()


# The layout of result files written before the card's sets (bench/results is not in git, so their shape is
# spelled out here): the synthetic set under "tasks" without a "data" key (a sample of the whole test split,
# festival voices included), the real set under "real".
OLD_SYNTHETIC = {"date": "2026-12-05 06:40 UTC", "machine": "test", "sets": ["synthetic"],
                 "peers": {"nsnet2": {"label": "NSNet2 16 kHz"}},
                 "tasks": {"denoise": {"clips": 150, "corpus": "data/corpus/asr", "systems": {
                     "centaurus": {"overall": {"count": 150, "pesq": 1.48}, "rtf": 0.01},
                     "nsnet2": {"overall": {"count": 150, "pesq": 1.94}, "rtf": 0.01}}}}}
OLD_REAL = {"date": "2026-12-04 20:33 UTC", "machine": "test", "sets": ["real"],
            "peers": {"whisper-tiny-en": {"label": "Whisper tiny.en"}, "pocketsphinx-kws": {"label": "grammar"}},
            "tasks": {},
            "real": {"asr": {"clips": 484, "data": "real", "systems": {"whisper-tiny-en": {"wer": 0.09}}},
                     "kws": {"clips": 232, "data": "real", "systems": {"pocketsphinx-kws": {"accuracy": 0.04}}}}}


@pytest.mark.parametrize("result,expected", [
    (OLD_SYNTHETIC, {("denoise", "synthetic")}),
    (OLD_REAL, {("asr", "real"), ("kws", "real")}),
])
def test_result_files_of_earlier_runs_still_read(result, expected):
    sets = peer_sets(result)
    assert set(sets) == expected
    assert all(isinstance(entry["clips"], int) and entry["systems"] for entry in sets.values())


def test_an_older_synthetic_sample_is_not_taken_for_the_card_set_even_with_as_many_clips(tmp_path):
    """Runs before the card's sets sampled the whole test split, festival voices included: same count, other clips."""
    (tmp_path / "old.json").write_text(json.dumps(OLD_SYNTHETIC))
    write_card(tmp_path, "denoise", {"synthetic": 150})
    messages: list[str] = []
    assert attach(tmp_path / "old.json", tmp_path, log=messages.append) == 0
    assert load_card(tmp_path / "denoise.json").peers is None
    assert any("denoise/synthetic: skipped, an older run" in m for m in messages)
    # the real set of an older run is the card's: it is written
    (tmp_path / "old-real.json").write_text(json.dumps(OLD_REAL))
    write_card(tmp_path, "kws", {"real": 232})
    assert attach(tmp_path / "old-real.json", tmp_path, log=lambda _: None) == 1
    assert set(load_card(tmp_path / "kws.json").peers) == {"real"}
