"""Helpers for the service tests: tiny random checkpoints, synthetic audio encoded by ffmpeg, settings.

Models are tiny and randomly initialised (the shipped checkpoints are not needed): the tests check the
service's plumbing, not recognition quality. Audio is synthesised here and encoded with Debian's ffmpeg.
"""

from __future__ import annotations

import io
import math
import subprocess
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from app.settings import Settings
from model_zoo.checkpoint import save
from model_zoo.nets import build_network
from model_zoo.nets.blocks import LayerSpec
from model_zoo.nets.ctc import WordLanguageModel

# A spoken sentence on which greedy decoding and beam search disagree (with the tiny models too).
SPEECH_SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "turn-on-the-lights.wav"

# ffmpeg arguments per container, as a browser or phone would produce them.
FORMATS = {
    "wav": ["-c:a", "pcm_s16le"],
    "flac": ["-c:a", "flac"],
    "ogg": ["-c:a", "libvorbis"],
    "opus": ["-c:a", "libopus"],
    "mp3": ["-c:a", "libmp3lame"],
    "webm": ["-c:a", "libopus"],
    "m4a": ["-c:a", "aac"],
}


def build_tiny_models(directory: Path) -> dict[str, str]:
    torch.manual_seed(0)
    tiny = LayerSpec(mode="dws", state_dim=4)
    networks = {
        "kws": build_network("kws", channels=(4, 8), factors=(4, 4),  # >= 1 frame per second with either front end
                             layers=(LayerSpec(mode="full", state_dim=4), LayerSpec(mode="s5", blocks=2, state_dim=4))),
        "denoise": build_network("denoise", channels=(4, 8), factors=(4, 4), layer=tiny,
                                 bottleneck=LayerSpec(mode="s5", state_dim=4, blocks=2)),
        "asr": build_network("asr", "tiny", width=32, depth=1, n_mels=20, layer=tiny),
    }
    paths = {task: str(save(net.eval(), directory / task, name=task, task=task)) + ".json"
             for task, net in networks.items()}
    # The recognizer ships a word language model, so beam search runs with it as in production.
    WordLanguageModel.from_transcripts(["hello world", "the world is wide"]).save(directory / "asr.lm.json")
    return paths


def settings_for(models: dict[str, str], **overrides) -> Settings:
    defaults = dict(models=models, worker_mode="process", workers_per_device=1, max_batch_wait_ms=5, chunk_seconds=1.0,
                    torch_threads=1)
    return Settings(**{**defaults, **overrides})


def wait_ready(client, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while client.get("/health/ready").status_code != 200:
        assert time.monotonic() < end, "service never became ready"
        time.sleep(0.05)


def signal(seconds: float = 1.0, rate: int = 16000, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A speech-like test signal: a gliding tone with a syllable-rate envelope plus a little noise, ``(C, L)``."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    tone = np.sin(2 * math.pi * (220 * t + 80 * t**2)) * (0.5 + 0.5 * np.sin(2 * math.pi * 4 * t) ** 2)
    mono = 0.3 * tone + 0.02 * rng.standard_normal(len(t))
    return np.stack([mono * (1.0 - 0.2 * c) for c in range(channels)]).astype(np.float32)


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """16-bit WAV of ``(C, L)`` float samples."""
    samples = np.atleast_2d(samples)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(samples.shape[0])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples.T, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def encoded(fmt: str, seconds: float = 1.0, rate: int = 16000, channels: int = 1) -> bytes:
    """The test signal encoded by ffmpeg into ``fmt`` (through a file: the MP4 muxer needs to seek)."""
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "in.wav", Path(tmp) / f"out.{fmt}"
        source.write_bytes(wav_bytes(signal(seconds, rate, channels), rate))
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(source), *FORMATS[fmt], str(target)],
                       check=True, capture_output=True)
        return target.read_bytes()


@dataclass
class ServerProcess:
    """A real ``centaurus-speech serve`` on a loopback port: its base URL, the process, its log file and the
    headers a client needs (the API key, when the server has keys)."""

    base: str
    process: subprocess.Popen
    log: Path
    headers: dict[str, str] = field(default_factory=dict)

    def metric(self, name: str) -> float:
        """One unlabelled value from ``/metrics`` (e.g. ``centaurus_worker_restarts``)."""
        import httpx

        for line in httpx.get(f"{self.base}/metrics", headers=self.headers, timeout=10).text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise KeyError(name)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(models: dict[str, str], log: Path, ready_timeout: float = 600.0, **settings: str) -> ServerProcess:
    """Start the service under uvicorn, as ``scripts/serve`` would, and wait until ``/health/ready`` is 200.

    ``settings`` become ``CENTAURUS_<NAME>`` variables (one worker process, one thread, 5 ms batch wait unless
    given). The caller stops it (:func:`stop_server`).
    """
    import json
    import os
    import sys

    import httpx

    port = free_port()
    defaults = {"torch_threads": "1", "log_level": "warning", "workers_per_device": "1", "max_batch_wait_ms": "5"}
    env = {**os.environ, "CENTAURUS_MODELS": json.dumps(models), "CENTAURUS_PORT": str(port),
           "CENTAURUS_HOST": "127.0.0.1",
           **{f"CENTAURUS_{k.upper()}": str(v) for k, v in {**defaults, **settings}.items()}}
    cli = Path(sys.executable).with_name("centaurus-speech")
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "app.cli"]
    with open(log, "wb") as out:
        process = subprocess.Popen([*command, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    keys = str(settings.get("api_keys", ""))
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log,
                           {"X-API-Key": keys.split(",")[0].strip()} if keys else {})
    end = time.monotonic() + ready_timeout
    while process.poll() is None and time.monotonic() < end:
        try:
            if httpx.get(f"{server.base}/health/ready", headers=server.headers, timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_server(server)  # never leave a half-started server behind
    raise AssertionError(f"server never became ready (exit code {process.returncode}):\n{log.read_text()}")


def stop_server(server: ServerProcess, timeout: float = 30.0) -> int | None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``; returns the exit code."""
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(10)
    return server.process.returncode


def record_model_calls(client, monkeypatch) -> list[tuple[str, dict]]:
    """``(model, options)`` of every call the engine makes into the pool (whole clips and sessions alike)."""
    pool, calls = client.app.state.pool, []
    forward, open_session = pool.forward, pool.open_session

    async def recorded_forward(model, rows, options, deadline):
        calls.append((model, dict(options)))
        return await forward(model, rows, options, deadline)

    async def recorded_open_session(model, options, deadline):
        calls.append((model, dict(options)))
        return await open_session(model, options, deadline)

    monkeypatch.setattr(pool, "forward", recorded_forward)
    monkeypatch.setattr(pool, "open_session", recorded_open_session)
    return calls


def upload(data: bytes, name: str = "clip.wav") -> dict:
    """The ``files`` of a multipart upload of ``data``, as a client that does not name a content type sends it."""
    return {"file": (name, data, "application/octet-stream")}
