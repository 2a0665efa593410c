"""``bench/streams.py``: the frame bookkeeping, and a short sweep against a real server process (random small models,
all three tasks); latency numbers are not judged here (the machine may be busy), only that they are measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from streams_session import PacedStream  # noqa: E402


def test_a_frame_is_done_when_the_output_covering_its_last_sample_arrives():
    stream = PacedStream("denoise", "ws://unused", {}, b"", frames=4, frame_samples=320, step_ms=20)
    stream.sent_at[:] = [0.0, 0.02, 0.04, 0.06]
    stream.cover(384, 0.03)  # one 24 ms step: frame 0 is complete, frame 1 is not
    stream.cover(768, 0.055)  # the next completes frame 1 (ends at 640), not frame 2 (960)
    assert stream.complete == 2
    stream.cover(1280, 0.09)
    assert stream.complete == 4
    assert np.allclose(stream.latencies(), [0.03, 0.035, 0.05, 0.03])
    assert np.allclose(stream.latencies(skip=2), [0.05, 0.03])
    stream.cover(100, 0.2)  # older progress never moves coverage back
    assert stream.covered == 1280


def test_a_short_sweep_measures_every_task(tmp_path):
    run = subprocess.run([sys.executable, "bench/streams.py", "--random-models", str(tmp_path), "--streams", "1,3",
                          "--seconds", "2.5", "--warmup", "0.5", "--pause", "0.2", "--keep-going",
                          "--start", "asr.beam_search=false"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["bench"] == "streams" and set(result["capacity"]) == {"denoise", "asr", "kws"}
    assert result["session_start"] == {"asr": {"beam_search": False}}
    assert [(c["task"], c["streams"]) for c in result["cells"]] == \
        [(t, n) for t in ("denoise", "asr", "kws") for n in (1, 3)]
    for c in result["cells"]:
        assert c["refused"] == c["closed"] == c["dropped_frames"] == 0, c
        assert c["frames_measured"] == c["streams"] * (125 - 25), c  # every frame after the warm-up answered
        assert 0 < c["p50_ms"] <= c["p99_ms"] <= c["max_ms"], c
        assert 20 <= c["step_ms"] <= 32 and c["server_cores"] > 0, c
    assert "capacity (largest N" in run.stdout
