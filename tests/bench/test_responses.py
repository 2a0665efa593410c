"""``bench/responses.py``: what a recording keeps, and that ``compare`` finds every kind of difference."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from responses import differences, main, make_audio, scrub  # noqa: E402


def test_scrub_drops_what_varies_between_runs_at_any_depth():
    message = {"type": "session.ended", "session_id": "abc", "rtf": 0.1, "audio_seconds": 3.0,
               "words": [{"word": "on", "request_id": "x"}]}
    assert scrub(message) == {"type": "session.ended", "audio_seconds": 3.0, "words": [{"word": "on"}]}


def test_differences_names_each_changed_added_and_removed_place():
    before = {"a": {"text": "timer", "n": [1, 2]}, "gone": 1, "list": [1]}
    after = {"a": {"text": "time", "n": [1, 3]}, "new": 2, "list": [1, 2]}
    assert differences(before, after) == [
        '/a/n[1]: 2 -> 3', '/a/text: "timer" -> "time"', "/gone: removed", "/list: [1] -> [1, 2]", "/new: added",
    ]
    assert differences(before, before) == []


def test_compare_exits_nonzero_on_a_difference(tmp_path, capsys):
    (tmp_path / "a.json").write_text('{"x": {"status": 200}}')
    (tmp_path / "b.json").write_text('{"x": {"status": 400}}')
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "a.json")]) == 0
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 1
    assert "/x/status: 200 -> 400" in capsys.readouterr().out


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="needs espeak-ng")
def test_the_inputs_are_the_same_bytes_every_time():
    first, second = make_audio(), make_audio()
    assert first == second
    assert len(first["sentence"]) > 32000  # seconds of speech, not an empty file
