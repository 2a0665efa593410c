"""Wake words live: a ``detect`` request's audio goes into a resident keyword session as it arrives (the keyword
websocket's path: :class:`app.streaming.live.LiveStream`, resampled exactly as it comes), and detections are the
runs of ``POST /keywords`` (:class:`model_zoo.pipelines.kws.DetectionRuns`, default threshold and hop), each
handed on the moment its run ends. A client that sends faster than the model waits: the audio goes in pieces of
at most a quarter of the stream's buffer and the buffer is drained at half, so the reader stops reading (TCP's
back-pressure) instead of cutting the client off.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from model_zoo.pipelines.kws import DEFAULT_HOP_SECONDS, DEFAULT_THRESHOLD, Detection, DetectionRuns

from ..engine import Engine
from ..errors import ServiceError, public_message
from ..http.dependencies import deadline_for
from ..settings import Settings
from ..streaming.live import LiveStream, step_samples
from .audio import Format, MonoDecoder
from .framing import Problem

__all__ = ["WakeStream"]

log = logging.getLogger(__name__)


async def engine_call(call: Awaitable[Any]) -> Any:
    """An engine call; its failure (overloaded, lost worker, bad audio) becomes the client's error event."""
    try:
        return await call
    except ServiceError as err:
        raise Problem(err.code, err.message) from None


class WakeStream:
    """One ``detect`` request's audio, from its first chunk to ``finish`` (or ``close``, if the client left)."""

    def __init__(self, runs: DetectionRuns, fmt: Format, on_detection: Callable[[Detection], Awaitable[None]]) -> None:
        self.runs, self.decoder, self.on_detection = runs, MonoDecoder(fmt), on_detection
        self.stream: LiveStream | None = None
        self.detected = False

    @classmethod
    async def open(cls, engine: Engine, settings: Settings, model: str, keywords: list[str] | None, fmt: Format,
                   on_detection: Callable[[Detection], Awaitable[None]]) -> WakeStream:
        rate = engine.rate(model)
        runs = DetectionRuns(engine.cards[model].labels, rate=rate, threshold=DEFAULT_THRESHOLD, keywords=keywords)
        wake = cls(runs, fmt, on_detection)
        session = await engine_call(engine.open_stream(model, {"live": True, "hop": DEFAULT_HOP_SECONDS},
                                                       deadline_for(settings)))
        wake.stream = LiveStream(
            session, client_rate=fmt.rate, model_rate=rate,
            step=step_samples(session.info.get("quantum", 1), rate, settings.stream_step_ms),
            max_buffered=int(settings.stream_max_buffer_seconds * rate),
            deadline_seconds=settings.request_timeout_seconds, deliver=wake._windows)
        return wake

    async def _windows(self, windows: list, length: int | None = None) -> None:
        for start, probs in windows:
            for detection in self.runs.push(start, probs, length):
                await self._detected(detection)

    async def _detected(self, detection: Detection) -> None:
        self.detected = True
        await self.on_detection(detection)

    async def feed(self, payload: bytes) -> None:
        stream = self.stream
        samples = self.decoder.decode(payload)
        piece = max(1, stream.max_buffered // 4 * stream.client_rate // stream.model_rate)
        for first in range(0, len(samples), piece):
            if stream.failure is not None or stream.buffered > stream.max_buffered // 2:
                await self._drain()
            await stream.push(samples[first:first + piece])

    async def _drain(self, end: bool = False) -> None:
        try:
            await self.stream.drain(end=end)
        except ServiceError as err:
            raise Problem(err.code, err.message) from None
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as err:  # noqa: BLE001 - the pump's failure, told to the client
            log.error("wake word stream failed: %r", err)
            raise Problem("internal_error", public_message(f"{type(err).__name__}: {err}")) from None

    async def finish(self) -> bool:
        """The rest of the audio through the model and the last runs closed; whether anything was detected."""
        await self._drain(end=True)
        length = self.stream.stepped
        await self._windows(await engine_call(self.stream.call(self.stream.session.finish)), length)
        for detection in self.runs.close():
            await self._detected(detection)
        return self.detected

    async def close(self) -> None:
        """Free the session at once (after finish, or when the client went away)."""
        if self.stream is not None:
            await self.stream.close()
