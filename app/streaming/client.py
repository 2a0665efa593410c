"""``centaurus-speech stream FILE --task transcribe|denoise|keywords``: a file over the streaming websocket.

The file is decoded locally (any container FFmpeg reads), sent as ``pcm_f32le`` in chunks of ``--chunk-ms``
paced at ``--speed`` times real time (0: as fast as the server's buffer allows), and the results are printed
as they come: finals (and with ``--partials`` partials) of a transcript, keyword detections, or the denoised
audio written to a WAV file. Uses the ``websockets`` package's synchronous client: a sender thread and the
main thread reading results.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..audio.pcm import float_to_pcm, pcm_to_float

__all__ = ["StreamOptions", "stream_file"]

PATHS = {"transcribe": "transcribe", "denoise": "denoise", "keywords": "keywords"}


@dataclass
class StreamOptions:
    task: str
    url: str = "ws://127.0.0.1:8000"
    api_key: str | None = None
    model: str | None = None
    chunk_ms: float = 100.0
    speed: float = 1.0
    partials: bool = False
    keywords: list[str] | None = None
    threshold: float = 0.5
    output: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _load(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 at a rate the server accepts (others are resampled to 16 kHz here, offline)."""
    from ..audio.decode import decode
    from ..audio.resample import resample
    from .messages import STREAM_SAMPLE_RATES

    audio = decode(path.read_bytes())
    samples, rate = audio.samples, audio.sample_rate
    if rate not in STREAM_SAMPLE_RATES:
        samples, rate = resample(samples, rate, 16000), 16000
    return samples.numpy().astype(np.float32), rate


def _url(options: StreamOptions) -> str:
    base = options.url.rstrip("/")
    if base.startswith("http"):
        base = "ws" + base[4:]
    return f"{base}/v1/stream/{PATHS[options.task]}"


def _send_audio(ws: Any, samples: np.ndarray, rate: int, options: StreamOptions) -> None:
    chunk = max(1, int(rate * options.chunk_ms / 1000))
    started = time.monotonic()
    for index, first in enumerate(range(0, len(samples), chunk)):
        if options.speed > 0:  # pace like a live source, so the server's buffer bound is never hit
            due = started + index * options.chunk_ms / 1000 / options.speed
            time.sleep(max(0.0, due - time.monotonic()))
        ws.send(float_to_pcm(samples[first:first + chunk], "pcm_f32le"))
    ws.send(json.dumps({"type": "session.end"}))


def stream_file(path: Path, options: StreamOptions, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Stream ``path``; returns a process exit code (0 when the server ended the session normally)."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    samples, rate = _load(path)
    headers = {"Authorization": f"Bearer {options.api_key}"} if options.api_key else {}
    start = {"type": "session.start", "sample_rate": rate, "encoding": "pcm_f32le",
             "interim_results": options.partials, "threshold": options.threshold, **options.extra}
    if options.model:
        start["model"] = options.model
    if options.keywords:
        start["keywords"] = options.keywords
    denoised: list[np.ndarray] = []
    ended = False
    with connect(_url(options), additional_headers=headers, max_size=None) as ws:
        ws.send(json.dumps(start))
        try:
            sender: threading.Thread | None = None
            for message in ws:
                if isinstance(message, bytes):
                    denoised.append(pcm_to_float(message, "pcm_f32le"))
                    continue
                event = json.loads(message)
                kind = event["type"]
                if kind == "session.started":
                    print(f"session {event['session_id']}: {event['model']} at {event['sample_rate']} Hz, "
                          f"latency {event['algorithmic_latency_ms']} ms", file=err)
                    sender = threading.Thread(target=_send_audio, args=(ws, samples, rate, options), daemon=True)
                    sender.start()
                elif kind == "transcript.partial":
                    print(f"... {event['text']}", file=out)
                elif kind == "transcript.final":
                    print(f"[{event['start']:.2f}-{event['end']:.2f}] {event['text']}", file=out)
                elif kind == "keyword.detected":
                    print(f"{event['keyword']} {event['start']:.2f}-{event['end']:.2f} {event['score']:.3f}", file=out)
                elif kind == "session.ended":
                    ended = True
                    print(f"{event['audio_seconds']} s of audio, real-time factor {event['rtf']}", file=err)
                elif kind == "error":
                    print(f"error {event['code']}: {event['message']}", file=err)
        except ConnectionClosed:
            pass
        code = ws.close_code
    if options.task == "denoise" and denoised:
        import torch

        from ..audio.encode import encode

        target = options.output or path.with_suffix(".denoised.wav")
        target.write_bytes(encode(torch.from_numpy(np.concatenate(denoised).copy()), rate, "wav"))
        print(f"wrote {target}", file=err)
    return 0 if ended and code in (1000, None) else 1
