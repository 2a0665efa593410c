"""The CI version of the soak (``bench/soak.py``): a few hundred mixed requests against a real server process,
``stream=true`` uploads (server-sent events) among them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_short_soak_has_no_errors_no_leaked_sessions_or_descriptors(tmp_path):
    out = tmp_path / "soak.json"
    run = subprocess.run([sys.executable, "bench/soak.py", "--random-models", str(tmp_path), "--requests", "200",
                          "--concurrency", "4", "--sample-every", "40", "--warmup", "0.34", "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["passed"] and result["errors"] == 0
    # Every case of the mix ran, and the bad uploads got exactly their 4xx.
    assert len(result["by_case"]) == 14
    assert set(result["by_case"]["not audio"]) == {"415"}
    # The streamed transcriptions (server-sent events) came back whole: deltas, then the done text (a bad body
    # would count as -1).
    assert set(result["by_case"]["openai sse"]) == set(result["by_case"]["openai sse greedy"]) == {"200"}
    assert set(result["by_case"]["unknown model"]) == {"404"}
    assert result["sessions_last"] == 0 and result["server_fds_last"] <= result["server_fds_warm"]
