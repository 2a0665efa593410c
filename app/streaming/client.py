"""The websocket client: an audio file over ``/v1/stream/{task}``, the server's messages as they come.

:func:`session` is the one stream client (``app.client.Client.stream`` and ``centaurus-speech stream`` are built
on it). The file is decoded locally (any container FFmpeg reads), sent as ``pcm_f32le`` in chunks of
``chunk_ms`` paced at ``speed`` times real time (0: unpaced, as fast as the server's buffer allows) by a sender
thread, while the caller's thread reads and yields the results: JSON events as dicts, and the denoised audio
as ``{"type": "audio", "samples": float32 array, "sample_rate": rate}``. A session that does not end with
``session.ended`` and a normal close raises :class:`StreamError` with the server's last error.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..audio.pcm import float_to_pcm, pcm_to_float
from ..errors import ServiceError

__all__ = ["StreamOptions", "StreamError", "TASKS", "load", "session"]

# Task names (and the aliases of the model tasks) -> the websocket path under /v1/stream/.
TASKS = {"transcribe": "transcribe", "asr": "transcribe", "keywords": "keywords", "kws": "keywords",
         "denoise": "denoise"}


class StreamError(Exception):
    """A stream that could not start or did not end normally: the server's error ``code`` and ``message``; the
    HTTP ``status`` of a refused handshake or a local decode; the websocket ``close_code`` of a closed stream."""

    def __init__(self, message: str, code: str, *, status: int | None = None, close_code: int | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.status, self.close_code = message, code, status, close_code


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
    threshold: float | None = None  # None: the server's default (model_zoo.pipelines.kws.DEFAULT_THRESHOLD)
    extra: dict[str, Any] = field(default_factory=dict)
    # Called by the sender with (seconds sent, seconds in the file) after every chunk.
    progress: Callable[[float, float], None] | None = None
    open_timeout: float = 10.0


def load(audio: Path | bytes) -> tuple[np.ndarray, int]:
    """Mono float32 at a rate the server accepts (others are resampled to 16 kHz here, offline)."""
    from ..audio.decode import decode
    from ..audio.resample import resample
    from .messages import STREAM_SAMPLE_RATES

    try:
        decoded = decode(audio if isinstance(audio, bytes) else Path(audio).read_bytes())
    except ServiceError as err:  # the same message an upload of this file would get
        raise StreamError(err.message, err.code, status=err.status) from None
    samples, rate = decoded.samples, decoded.sample_rate
    if rate not in STREAM_SAMPLE_RATES:
        samples, rate = resample(samples, rate, 16000), 16000
    return samples.numpy().astype(np.float32), rate


def _url(options: StreamOptions) -> str:
    base = options.url.rstrip("/")
    if base.startswith("http"):
        base = "ws" + base[4:]
    return f"{base}/v1/stream/{TASKS[options.task]}"


def _send_audio(ws: Any, samples: np.ndarray, rate: int, options: StreamOptions, stop: threading.Event) -> None:
    from websockets.exceptions import ConnectionClosed

    chunk = max(1, int(rate * options.chunk_ms / 1000))
    started = time.monotonic()
    try:
        for index, first in enumerate(range(0, len(samples), chunk)):
            if options.speed > 0:  # pace like a live source, so the server's buffer bound is never hit
                due = started + index * options.chunk_ms / 1000 / options.speed
                if stop.wait(max(0.0, due - time.monotonic())):
                    return
            elif stop.is_set():
                return
            ws.send(float_to_pcm(samples[first:first + chunk], "pcm_f32le"))
            if options.progress:
                options.progress(min(len(samples), first + chunk) / rate, len(samples) / rate)
        ws.send(json.dumps({"type": "session.end"}))
    except ConnectionClosed:  # the reader sees the close and reports it
        pass


def _connect(options: StreamOptions) -> Any:
    from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
    from websockets.sync.client import connect

    headers = {"Authorization": f"Bearer {options.api_key}"} if options.api_key else {}
    url = _url(options)
    try:
        return connect(url, additional_headers=headers, max_size=None, open_timeout=options.open_timeout)
    except InvalidStatus as err:  # refused at the handshake (a full server: 503): the body is the JSON envelope
        status = err.response.status_code
        try:
            error = json.loads(err.response.body or b"")["error"]
            raise StreamError(error["message"], error["code"], status=status) from None
        except (ValueError, KeyError, TypeError):
            raise StreamError(f"the server refused the stream (HTTP {status})", f"http_{status}", status=status) from None
    except InvalidURI:
        raise StreamError(f"not a server URL: {options.url}", "invalid_url") from None
    except (OSError, TimeoutError, InvalidHandshake) as err:
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        if isinstance(err, ConnectionRefusedError):
            reason = "connection refused (is the server running?)"
        raise StreamError(f"cannot connect to {url}: {reason}", "connection_failed") from None


def session(audio: Path | bytes | tuple[np.ndarray, int], options: StreamOptions) -> Iterator[dict]:
    """Stream ``audio`` (a file, its bytes, or ``(mono float32 samples, rate)``) and yield the server's messages.

    Returns after ``session.ended``; raises :class:`StreamError` when the file cannot be decoded, the server
    cannot be reached, refuses the stream, or closes it with an error (the error event is yielded first).
    Leaving the loop early closes the stream.
    """
    from websockets.exceptions import ConnectionClosed

    if options.task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}")
    samples, rate = audio if isinstance(audio, tuple) else load(audio)
    start = {"type": "session.start", "sample_rate": rate, "encoding": "pcm_f32le",
             "interim_results": options.partials, **options.extra}
    if options.threshold is not None:
        start["threshold"] = options.threshold
    if options.model:
        start["model"] = options.model
    if options.keywords:
        start["keywords"] = options.keywords
    last_error: dict | None = None
    ended = False
    stop = threading.Event()
    sender: threading.Thread | None = None
    with _connect(options) as ws:
        try:
            try:
                ws.send(json.dumps(start))
            except ConnectionClosed:  # refused at once (a wrong key): its error message is still to be read
                pass
            while True:
                # A refused session.start either closes the socket (a wrong key) or leaves it open (a bad
                # option): then a second of quiet ends the wait, not the server's idle timeout.
                refused = sender is None and last_error is not None
                try:
                    message = ws.recv(timeout=1.0 if refused else None)
                except TimeoutError:
                    break
                if isinstance(message, bytes):
                    yield {"type": "audio", "samples": pcm_to_float(message, "pcm_f32le"), "sample_rate": rate}
                    continue
                event = json.loads(message)
                if event.get("type") == "session.started" and sender is None:
                    sender = threading.Thread(target=_send_audio, args=(ws, samples, rate, options, stop), daemon=True)
                    sender.start()
                elif event.get("type") == "error":
                    last_error = event
                elif event.get("type") == "session.ended":
                    ended = True
                yield event
        except ConnectionClosed:
            pass
        finally:
            stop.set()
        code, reason = ws.close_code, ws.close_reason
    if sender is not None:
        sender.join(5)
    if ended and code in (1000, None):
        return
    if last_error is not None:
        raise StreamError(last_error.get("message", "stream error"), last_error.get("code", "stream_error"),
                          close_code=code)
    raise StreamError(f"the server closed the stream (code {code}{': ' + reason if reason else ''})",
                      "stream_closed", close_code=code)
