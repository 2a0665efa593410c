"""Wake words live: a ``detect`` request's audio goes into a resident keyword session as it arrives (the keyword
websocket's path: :class:`app.streaming.live.LiveStream`, resampled exactly as it comes), and detections are the
runs of ``POST /keywords`` (:class:`model_zoo.pipelines.kws.DetectionRuns`, default threshold and hop), each
handed on the moment its run ends. Names the classifier does not know are searched for in the served recognizer's
output, on a second resident session fed the same audio (:mod:`app.streaming.open_keywords`, the keyword stream's
way; which name goes where is :func:`app.keywords.choose_keywords`), each detection handed on once final. A client
that sends faster than the model waits: the audio goes in pieces of at most a quarter of a stream's buffer and a
buffer is drained at half, so the reader stops reading (TCP's back-pressure) instead of cutting the client off.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, Awaitable, Callable

from model_zoo.pipelines.kws import DEFAULT_HOP_SECONDS, DEFAULT_THRESHOLD, Detection, DetectionRuns

from ..engine import Engine
from ..errors import ServiceError, public_message
from ..keywords import KeywordChoice
from ..settings import Settings
from ..streaming.live import LiveStream, open_live
from ..streaming.open_keywords import OpenKeywordStream
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
        self.searched: OpenKeywordStream | None = None  # the names the classifier does not know, if any
        self.detected = False

    @classmethod
    async def open(cls, engine: Engine, settings: Settings, model: str, keywords: KeywordChoice | None,
                   fmt: Format, on_detection: Callable[[Detection], Awaitable[None]]) -> WakeStream:
        """``keywords``: the names asked for, split (None: every keyword of the classifier ``model``)."""
        rate = engine.rate(model)
        runs = DetectionRuns(engine.cards[model].labels, rate=rate, threshold=DEFAULT_THRESHOLD,
                             keywords=None if keywords is None else keywords.watched)
        wake = cls(runs, fmt, on_detection)
        follow = functools.partial(open_live, engine, settings, client_rate=fmt.rate)
        wake.stream = await engine_call(follow(model, {"live": True, "hop": DEFAULT_HOP_SECONDS}, wake._windows))
        if keywords is not None and keywords.open:
            try:
                wake.searched = await engine_call(OpenKeywordStream.open(
                    follow, keywords.recognizer, keywords.open, offset=0.0, deliver=wake._found))
            except BaseException:
                await wake.close()
                raise
        return wake

    @property
    def streams(self) -> list[LiveStream]:
        return [self.stream] + ([self.searched.stream] if self.searched is not None else [])

    async def _windows(self, windows: list, length: int | None = None) -> None:
        for start, probs in windows:
            for detection in self.runs.push(start, probs, length):
                await self._detected(detection)

    async def _found(self, detections: list[Detection]) -> None:
        for detection in detections:
            await self._detected(detection)

    async def _detected(self, detection: Detection) -> None:
        self.detected = True
        await self.on_detection(detection)

    async def feed(self, payload: bytes) -> None:
        samples = self.decoder.decode(payload)
        streams = self.streams
        piece = max(1, min(s.max_buffered // 4 * s.client_rate // s.model_rate for s in streams))
        for first in range(0, len(samples), piece):
            for stream in streams:
                if stream.failure is not None or stream.buffered > stream.max_buffered // 2:
                    await self._drain(stream)
                await stream.push(samples[first:first + piece])

    async def _drain(self, stream: LiveStream, end: bool = False) -> None:
        try:
            await stream.drain(end=end)
        except ServiceError as err:
            raise Problem(err.code, err.message) from None
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as err:  # noqa: BLE001 - the pump's failure, told to the client
            log.error("wake word stream failed: %r", err)
            raise Problem("internal_error", public_message(f"{type(err).__name__}: {err}")) from None

    async def finish(self) -> bool:
        """The rest of the audio through the models and the last runs closed; whether anything was detected."""
        for stream in self.streams:
            await self._drain(stream, end=True)
        length = self.stream.stepped
        await self._windows(await engine_call(self.stream.call(self.stream.session.finish)), length)
        for detection in self.runs.close():
            await self._detected(detection)
        if self.searched is not None:
            await engine_call(self.searched.finish())
        return self.detected

    async def close(self) -> None:
        """Free the sessions at once (after finish, or when the client went away)."""
        for stream in self.streams if self.stream is not None else []:
            await stream.close()
