"""What each task sends back over its websocket: for every step's result, at ``input.flush`` and at the end.

Each protocol mirrors its offline endpoint, so a stream and an upload of the same audio agree: denoised audio
of the input's length, the transcript of ``POST /transcribe``, the detections of ``POST /keywords``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from model_zoo.card import ModelCard
from model_zoo.nets import for_every_task
from model_zoo.pipelines.kws import DetectionRuns

from ..audio.length import fit_length
from ..audio.pcm import PcmCodec
from .connection import Connection
from .live import LiveStream
from .messages import (KeywordDetected, SessionStart, SessionUpdate, StreamWord, TranscriptFinal,
                       TranscriptPartial)
from .resampler import StreamResampler

__all__ = ["TaskProtocol", "DenoiseProtocol", "TranscribeProtocol", "KeywordsProtocol", "PROTOCOLS"]


class TaskProtocol:
    """What a task sends for each step result, at ``input.flush`` and at the end. ``stream`` is set once the
    session is open; ``codec`` is the connection's PCM codec (the client's encoding)."""

    def __init__(self, conn: Connection, start: SessionStart, card: ModelCard, codec: PcmCodec) -> None:
        self.conn, self.start, self.card, self.codec = conn, start, card, codec
        self.rate = card.sample_rate
        self.stream: LiveStream | None = None

    def pool_options(self) -> dict:
        return {"live": True}

    def update(self, message: SessionUpdate) -> None:
        """``session.update``: options that change what is sent from now on."""

    async def on_step(self, result: Any) -> None: ...

    async def on_flush(self) -> None: ...

    async def on_end(self) -> None: ...


class DenoiseProtocol(TaskProtocol):
    """Enhanced audio back in the client's encoding and rate; as many samples in total as were sent."""

    def __init__(self, conn: Connection, start: SessionStart, card: ModelCard, codec: PcmCodec) -> None:
        super().__init__(conn, start, card, codec)
        self.back = StreamResampler(self.rate, start.sample_rate)
        self.sent = 0

    async def _send_audio(self, samples: np.ndarray) -> None:
        if len(samples):
            self.sent += len(samples)
            await self.conn.send(self.codec.encode(samples))

    async def on_step(self, result: np.ndarray) -> None:
        await self._send_audio(self.back.push(result))

    async def on_end(self) -> None:
        tail = await self.stream.call(self.stream.session.finish)
        rest = np.concatenate([self.back.push(tail), self.back.flush()])
        # Resampling there and back can round the length by a sample; the offline endpoint fits it the same way.
        await self._send_audio(fit_length(rest, self.stream.received - self.sent).astype(np.float32))


class TranscribeProtocol(TaskProtocol):
    """Greedy partials while audio arrives; a final per segment (``input.flush``) and at the end."""

    def __init__(self, conn: Connection, start: SessionStart, card: ModelCard, codec: PcmCodec) -> None:
        super().__init__(conn, start, card, codec)
        self.interim, self.word_times = start.interim_results, start.word_timestamps
        self.segment, self.segment_start, self.last_partial = 0, 0.0, ""

    def pool_options(self) -> dict:
        # Partials are computed by the worker only if wanted at the start (session.update can mute them).
        return {"live": True, "interim_results": self.interim, "beam_search": self.start.beam_search}

    def update(self, message: SessionUpdate) -> None:
        if message.interim_results is not None:
            self.interim = message.interim_results
        if message.word_timestamps is not None:
            self.word_times = message.word_timestamps

    def _now(self) -> float:
        return round(self.stream.stepped / self.rate, 3)

    async def on_step(self, result: Any) -> None:
        if result is None or not self.interim or result.text == self.last_partial:
            return
        self.last_partial = result.text
        await self.conn.send(TranscriptPartial(segment=self.segment, text=result.text, start=self.segment_start,
                                               end=self._now()))

    async def _final(self, transcript: Any) -> None:
        words = [StreamWord(word=w.text, start=w.start, end=w.end, confidence=w.confidence) for w in transcript.words]
        await self.conn.send(TranscriptFinal(segment=self.segment, text=transcript.text, start=self.segment_start,
                                             end=self._now(), words=words if self.word_times else None))
        self.segment, self.segment_start, self.last_partial = self.segment + 1, self._now(), ""

    async def on_flush(self) -> None:
        await self._final(await self.stream.call(self.stream.session.segment))

    async def on_end(self) -> None:
        await self._final(await self.stream.call(self.stream.session.finish))


class KeywordsProtocol(TaskProtocol):
    """keyword.detected as each run of windows ends, exactly as ``POST /keywords`` finds them."""

    def __init__(self, conn: Connection, start: SessionStart, card: ModelCard, codec: PcmCodec) -> None:
        super().__init__(conn, start, card, codec)
        self.runs = DetectionRuns(card.labels or (), rate=self.rate, threshold=start.threshold,
                                  keywords=start.keywords)

    def pool_options(self) -> dict:
        return {"live": True, "hop": self.start.hop}

    def update(self, message: SessionUpdate) -> None:
        self.runs.update(keywords=message.keywords, threshold=message.threshold)

    async def _send(self, detections: list) -> None:
        for d in detections:
            await self.conn.send(KeywordDetected(keyword=d.keyword, start=d.start, end=d.end, score=d.score))

    async def on_step(self, windows: list[tuple[int, np.ndarray]]) -> None:
        for start, probs in windows:
            await self._send(self.runs.push(start, probs))

    async def on_flush(self) -> None:
        await self._send(self.runs.close())

    async def on_end(self) -> None:
        length = self.stream.stepped
        for start, probs in await self.stream.call(self.stream.session.finish):
            await self._send(self.runs.push(start, probs, length))
        await self._send(self.runs.close())


# The protocol of each task of model_zoo.nets.TASKS, checked at import: a task cannot be added without one.
PROTOCOLS: dict[str, type[TaskProtocol]] = for_every_task(
    {"denoise": DenoiseProtocol, "asr": TranscribeProtocol, "kws": KeywordsProtocol}, "app.streaming.protocols.PROTOCOLS")
