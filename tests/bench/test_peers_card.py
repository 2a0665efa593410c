"""``bench/peers_card.py``: the peers of a result file go into the cards whose sets have as many clips."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from peers_card import attach  # noqa: E402

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
        "date": "2026-12-05", "machine": "test", "sets": ["synthetic"],
        "peers": {"whisper": {"label": "Whisper tiny.en"}},
        "real": {"asr": {"clips": 484, "systems": {
            "centaurus": {"wer": 0.75}, "whisper": {"wer": 0.09, "cer": float("nan"), "examples": [], "rtf": 0.26}}}},
        "tasks": {"denoise": {"clips": 150, "systems": {"nsnet2": {"overall": {"count": 150, "pesq": 1.9}}}}},
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
