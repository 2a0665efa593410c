"""The CI version of the stream soak (``bench/soak.py --streams --realtime --wyoming``): a few concurrent websocket
streams, OpenAI Realtime sessions and Wyoming connections for a few seconds against a real server process on
loopback, through the same code as the 30-minute run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_short_stream_soak_has_no_errors_no_leaked_sessions_or_descriptors(tmp_path):
    out = tmp_path / "soak.json"
    run = subprocess.run([sys.executable, "bench/soak.py", "--random-models", str(tmp_path), "--requests", "0",
                          "--streams", "3", "--realtime", "2", "--wyoming", "2", "--stream-minutes", "0.2",
                          "--session-seconds", "1.5,3",
                          "--sample-seconds", "2", "--warmup", "0.3", "--stream-timeout", "60", "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    streams = result["streams"]
    assert result["passed"] and streams["errors_total"] == 0, streams["error_examples"]
    # Every task finished sessions, and the rough patterns (burst, close without session.end, dropped TCP) ran.
    assert all(streams["by_task"][task].get("completed", 0) >= 1 for task in ("transcribe", "denoise", "keywords"))
    assert {"normal", "flush", "burst", "abandon", "update", "drop"} <= set(streams["by_pattern"])
    assert streams["messages"]["transcript.partial"] > 0 and streams["messages"]["audio"] > 0
    # Realtime: turns committed (GA and beta) and ended by server_vad, clears, closes and drops mid-turn.
    realtime = result["realtime"]
    assert realtime["errors_total"] == 0 and realtime["sessions_completed"] >= 2, realtime["error_examples"]
    assert {"commit", "vad", "commit_beta", "clear", "abandon", "drop"} <= set(realtime["by_pattern"])
    assert realtime["messages"]["conversation.item.input_audio_transcription.completed"] >= 2
    # Wyoming: transcriptions, wake words, describe, and connections closed or reset mid-audio.
    wyoming = result["wyoming"]
    assert wyoming["errors_total"] == 0 and wyoming["sessions_completed"] >= 2, wyoming["error_examples"]
    assert {"transcribe", "detect", "describe", "abandon", "drop"} <= set(wyoming["by_pattern"])
    assert wyoming["messages"]["transcript-stop"] >= 2 and wyoming["messages"]["info"] >= 1
    # Nothing leaked: no session resident on the worker, descriptors back to the quiet server's.
    assert result["sessions_last"] == 0 and result["checks"]["fds_back_to_start"]
    assert result["checks"]["no_worker_replaced"]
