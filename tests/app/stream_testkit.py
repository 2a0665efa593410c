"""Helpers for the streaming tests: a session over a websocket (Starlette's TestClient or a real client)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np


@dataclass
class StreamResult:
    audio: np.ndarray
    messages: list[dict] = field(default_factory=list)
    close_code: int | None = None

    def of(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]


def random_frames(samples: np.ndarray, rng: np.random.Generator, largest: int = 4000) -> list[np.ndarray]:
    """The clip cut into frames of random sizes (1 sample up to ``largest``)."""
    frames, start = [], 0
    while start < len(samples):
        size = int(rng.integers(1, largest))
        frames.append(samples[start:start + size])
        start += size
    return frames


def start_message(**options) -> str:
    return json.dumps({"type": "session.start", "encoding": "pcm_f32le", **options})


def receive_until_close(ws) -> StreamResult:
    """Everything the server sends (TestClient websocket) until it closes."""
    result = StreamResult(np.zeros(0, np.float32))
    audio = []
    while True:
        message = ws.receive()
        if message["type"] == "websocket.close":
            result.close_code = message.get("code")
            break
        if message.get("bytes") is not None:
            audio.append(np.frombuffer(message["bytes"], "<f4"))
        else:
            result.messages.append(json.loads(message["text"]))
    result.audio = np.concatenate(audio) if audio else np.zeros(0, np.float32)
    return result


def stream_clip(client, path: str, frames: list[np.ndarray], query: str = "", **options) -> StreamResult:
    """One whole session through Starlette's TestClient: start, frames, end, everything until the close."""
    with client.websocket_connect(f"/v1/stream/{path}{query}") as ws:
        ws.send_text(start_message(**options))
        started = ws.receive_json()
        assert started["type"] == "session.started", started
        for frame in frames:
            ws.send_bytes(np.asarray(frame, "<f4").tobytes())
        ws.send_text(json.dumps({"type": "session.end"}))
        result = receive_until_close(ws)
    result.messages.insert(0, started)
    return result
