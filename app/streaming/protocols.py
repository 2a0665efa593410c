"""What each task sends back over its websocket: for every step's result, at ``input.flush`` and at the end.

Each protocol mirrors its offline endpoint, so a stream and an upload of the same audio agree: denoised audio
of the input's length, the transcript of ``POST /transcribe``, the detections of ``POST /keywords`` (words of the
caller's choosing included: :mod:`app.streaming.open_keywords`).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, Awaitable, Callable

import numpy as np

from model_zoo.card import ModelCard
from model_zoo.nets import for_every_task
from model_zoo.pipelines.endpoint import EndpointRules
from model_zoo.pipelines.kws import Detection, DetectionRuns

from model_zoo.samples import fit_length
from ..audio.pcm import PcmCodec
from ..keywords import KeywordChoice
from .connection import Connection
from .live import LiveStream
from .messages import (KeywordDetected, SessionStart, SessionUpdate, StreamWord, TranscriptFinal,
                       TranscriptPartial)
from .open_keywords import Follow, OpenKeywordStream
from .resampler import StreamResampler
from .utterances import Utterances, retrieve_failure, step_parts

__all__ = ["TaskProtocol", "DenoiseProtocol", "TranscribeProtocol", "KeywordsProtocol", "PROTOCOLS"]


class TaskProtocol:
    """What a task sends for each step result, at ``input.flush`` and at the end. ``stream`` is set once the
    session is open; ``codec`` is the connection's PCM codec (the client's encoding)."""

    def __init__(self, conn: Connection, start: SessionStart, card: ModelCard, codec: PcmCodec) -> None:
        self.conn, self.start, self.card, self.codec = conn, start, card, codec
        self.rate = card.sample_rate
        self.stream: LiveStream | None = None
        # Set by the handler with the stream: opens a fresh session with pool_options() (utterances use it) ...
        self.reopen: Callable[[], Awaitable[Any]] | None = None
        # ... opens a stream of another model on the same audio, a companion (app.streaming.open_keywords.Follow) ...
        self.follow: Follow | None = None
        # ... and splits a keyword stream's keywords as POST /keywords does (raises its errors).
        self.choose: Callable[[list[str]], KeywordChoice] | None = None

    def pool_options(self) -> dict:
        return {"live": True}

    def companions(self) -> list[LiveStream]:
        """Streams of other models fed the same audio; the handler pushes, drains, watches and closes them with
        the session's own."""
        return []

    async def on_open(self) -> None:
        """Once the session's stream is open, before ``session.started``: open the companions."""

    async def update(self, message: SessionUpdate) -> None:
        """``session.update``: options that change what is sent from now on. A refused option
        (:class:`app.errors.InvalidParameter`) changes nothing."""

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
    """Greedy partials while audio arrives; a final per segment: at each endpoint (a pause, see
    :mod:`app.streaming.utterances`), at ``input.flush`` and at the end.

    An endpoint's final is sent when it has been decoded, while the stream steps on: the next utterance's partials
    wait for it (the newest of them is sent right after it), so that messages keep their order."""

    def __init__(self, conn: Connection, start: SessionStart, card: ModelCard, codec: PcmCodec) -> None:
        super().__init__(conn, start, card, codec)
        self.interim, self.word_times = start.interim_results, start.word_timestamps
        self.segment, self.segment_start, self.last_partial = 0, 0.0, ""
        self.endpointing = start.endpointing
        self.rules = EndpointRules(silence_without_speech=start.endpoint_silence_without_speech,
                                   silence_after_speech=start.endpoint_silence_after_speech,
                                   max_utterance=start.endpoint_max_utterance)
        self.utterances: Utterances | None = None  # once the stream is open (on_open)
        self.sending_final: asyncio.Task | None = None  # an endpoint's final, sent once decoded
        self.held: tuple[str, float] | None = None  # the newest partial (text, end) meanwhile

    def pool_options(self) -> dict:
        # Partials are computed by the worker only if wanted at the start (session.update can mute them); every
        # step also returns its blank posteriors, for the endpoint rule (session.update can turn it on).
        return {"live": True, "interim_results": self.start.interim_results, "beam_search": self.start.beam_search,
                "blank_probs": True}

    async def on_open(self) -> None:
        self.utterances = Utterances(self.stream, self.reopen, self._rules(), self.stream.quantum / self.rate)

    def _rules(self) -> EndpointRules | None:
        return self.rules if self.endpointing and self.reopen is not None else None

    async def update(self, message: SessionUpdate) -> None:
        if message.interim_results is not None:
            self.interim = message.interim_results
        if message.word_timestamps is not None:
            self.word_times = message.word_timestamps
        if message.endpointing is not None:
            self.endpointing = message.endpointing
        lengths = {name: value for name in ("silence_without_speech", "silence_after_speech", "max_utterance")
                   if (value := getattr(message, f"endpoint_{name}")) is not None}
        self.rules = replace(self.rules, **lengths)
        self.utterances.set_rules(self._rules())

    def _now(self) -> float:
        return round(self.stream.stepped / self.rate, 3)

    async def on_step(self, result: Any) -> None:
        if self.sending_final is not None and self.sending_final.done():
            await self._final_sent()  # raises the final's failure here, in the pump: the stream ends with it
        partial, blank = step_parts(result)
        endpoint = self.utterances.push(blank)
        # A partial that ran past the endpoint (frames given back for the next utterance) is not sent: the final
        # of the utterance follows.
        fresh = partial is not None and self.interim and partial != self.last_partial
        if fresh and not self.utterances.rewound:
            self.last_partial = partial
            if self.sending_final is None:
                await self._partial(partial, self._now())
            else:
                self.held = (partial, self._now())
        if endpoint is not None:
            await self._final_sent()  # one final at a time, in order
            said, end = bool(self.last_partial), self._now()
            final = await self.utterances.cut()
            self.last_partial = ""
            self.sending_final = asyncio.ensure_future(self._send_final(final, said, end))
            self.sending_final.add_done_callback(retrieve_failure)  # raised at the next step, or at the end

    async def _partial(self, text: str, end: float) -> None:
        await self.conn.send(TranscriptPartial(segment=self.segment, text=text, start=self.segment_start, end=end))

    async def _send_final(self, final: asyncio.Future, said: bool, end: float) -> None:
        """An endpoint's final once decoded, then the partial of the next utterance held meanwhile."""
        transcript = await final
        if transcript.text or said:
            await self._final(transcript, end)
        else:  # a pause with nothing said: the next utterance starts here, without an empty final
            self.segment_start = end
        if self.held is not None:
            (text, at), self.held = self.held, None
            await self._partial(text, at)

    async def _final_sent(self) -> None:
        """Until the endpoint's final in flight, if any, has been sent (its failure raised)."""
        if self.sending_final is not None:
            sending, self.sending_final = self.sending_final, None
            await sending

    async def _final(self, transcript: Any, end: float | None = None) -> None:
        end = self._now() if end is None else end
        words = [StreamWord(word=w.text, start=w.start, end=w.end, confidence=w.confidence) for w in transcript.words]
        await self.conn.send(TranscriptFinal(segment=self.segment, text=transcript.text, start=self.segment_start,
                                             end=end, words=words if self.word_times else None))
        self.segment, self.segment_start = self.segment + 1, end

    async def on_flush(self) -> None:
        await self._final_sent()
        await self._final(await self.utterances.segment())
        self.last_partial = ""

    async def on_end(self) -> None:
        await self._final_sent()
        await self._final(await self.utterances.finish())


class KeywordsProtocol(TaskProtocol):
    """keyword.detected as each run of windows ends, exactly as ``POST /keywords`` finds them. Words the classifier
    does not know (``keywords``) are searched for in the served recognizer's output, on a second resident session
    fed the same audio (:mod:`app.streaming.open_keywords`): each is sent once final, ``LOOKAHEAD_SECONDS`` after
    its end, again exactly as ``POST /keywords`` finds it. ``session.update`` with other such words ends that search
    as at the end of the audio and starts a new one on the audio that follows."""

    def __init__(self, conn: Connection, start: SessionStart, card: ModelCard, codec: PcmCodec) -> None:
        super().__init__(conn, start, card, codec)
        self.runs = DetectionRuns(card.labels or (), rate=self.rate, threshold=start.threshold)
        self.searched: OpenKeywordStream | None = None

    def pool_options(self) -> dict:
        return {"live": True, "hop": self.start.hop}

    def companions(self) -> list[LiveStream]:
        return [self.searched.stream] if self.searched is not None else []

    async def on_open(self) -> None:
        if self.start.keywords is not None:
            await self._watch(self.choose(self.start.keywords))

    async def update(self, message: SessionUpdate) -> None:
        choice = self.choose(message.keywords) if message.keywords is not None else None  # refused: no change
        self.runs.update(threshold=message.threshold)
        if choice is not None:
            await self._watch(choice)

    async def _watch(self, choice: KeywordChoice) -> None:
        """From now on report the keywords of ``choice``: the classifier's at once, the recognizer's on a session
        of their own (the one searching until now, for other words, is finished first)."""
        self.runs.update(keywords=choice.watched)
        if set(choice.open) == set(self.searched.keywords if self.searched is not None else ()):
            return
        old, self.searched = self.searched, None
        if old is not None:
            try:
                await old.finish()
            finally:
                await old.close()
        if choice.open:
            self.searched = await OpenKeywordStream.open(
                self.follow, choice.recognizer, choice.open, deliver=self._send,
                offset=self.stream.received / self.stream.client_rate)  # the stream's time of its first sample

    async def _send(self, detections: list[Detection]) -> None:
        for d in detections:
            await self.conn.send(KeywordDetected(keyword=d.keyword, start=d.start, end=d.end, score=d.score))

    async def on_step(self, windows: list[tuple[int, np.ndarray]]) -> None:
        for start, probs in windows:
            await self._send(self.runs.push(start, probs))

    async def on_flush(self) -> None:
        await self._send(self.runs.close())
        if self.searched is not None:
            await self.searched.flush()

    async def on_end(self) -> None:
        length = self.stream.stepped
        for start, probs in await self.stream.call(self.stream.session.finish):
            await self._send(self.runs.push(start, probs, length))
        await self._send(self.runs.close())
        if self.searched is not None:
            await self.searched.finish()


# The protocol of each task of model_zoo.nets.TASKS, checked at import: a task cannot be added without one.
PROTOCOLS: dict[str, type[TaskProtocol]] = for_every_task(
    {"denoise": DenoiseProtocol, "asr": TranscribeProtocol, "kws": KeywordsProtocol}, "app.streaming.protocols.PROTOCOLS")
