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
from pathlib import Path

import numpy as np
import torch

from app.settings import Settings
from model_zoo.checkpoint import save
from model_zoo.nets import build_network
from model_zoo.nets.blocks import LayerSpec

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
    return {task: str(save(net.eval(), directory / task, name=task, task=task)) + ".json"
            for task, net in networks.items()}


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
