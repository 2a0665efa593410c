"""A live transcription cut into utterances: the endpoint rule, and a fresh recognizer session per utterance.

Each step of a live recognizer session returns its frames' blank posteriors
(:class:`model_zoo.pipelines.endpoint.RecognizerStep`); :class:`Utterances` hands them to the endpoint detector
(:mod:`model_zoo.pipelines.endpoint`, the one rule) and, at an endpoint or a client's commit, *cuts*: the session
is finished (its result is the utterance's final transcript) and a fresh one takes the audio that follows. A
fresh session is what makes a cut exact: the utterance's final is ``POST /transcribe`` of exactly that
utterance's audio (its word times moved to the stream's clock), as sherpa-onnx resets a CTC stream at an endpoint.
A ``segment`` (``input.flush``) ends an utterance too but carries the model state on, as it always has.

The websocket transcription protocol (:class:`app.streaming.protocols.TranscribeProtocol`) and the OpenAI
Realtime adapter (:mod:`app.streaming.realtime`) both run their utterances through this class.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import replace
from typing import Any, Awaitable, Callable

import numpy as np

from model_zoo.nets.ctc import Transcript
from model_zoo.pipelines.endpoint import Endpoint, EndpointDetector, EndpointRules

from ..execution.sessions import SessionHandle
from .live import LiveStream

__all__ = ["Utterances", "shifted", "step_parts", "retrieve_failure"]


def shifted(transcript: Transcript, seconds: float) -> Transcript:
    """``transcript`` with its word times ``seconds`` later."""
    if not seconds:
        return transcript
    return replace(transcript, words=tuple(replace(w, start=round(w.start + seconds, 3), end=round(w.end + seconds, 3))
                                           for w in transcript.words))


def _close_orphan(opening: asyncio.Future) -> None:
    """The session a cancelled cut opened, closed (``opening`` is done: its result is the session)."""
    if not opening.cancelled() and opening.exception() is None:
        asyncio.ensure_future(opening.result().close())


def retrieve_failure(future: asyncio.Future) -> None:
    """A done callback for a future whose failure is raised where it is awaited, if anyone still does: asyncio
    logs a failure nobody retrieved, and a stream that has closed no longer awaits its last final."""
    if not future.cancelled():
        future.exception()


def step_parts(result: Any) -> tuple[Any, np.ndarray | None]:
    """A live recognizer step's result -> (its partial text or None, blank posteriors or None)."""
    if result is None or isinstance(result, str):
        return result, None
    return result.partial, result.blank


class Utterances:
    """The utterances of one live transcription over ``stream``.

    ``reopen()`` opens a fresh recognizer session with the stream's options; ``rules`` (None: no endpointing)
    and ``frame_seconds`` configure the detector. Positions are model-rate samples of the stream.
    """

    def __init__(self, stream: LiveStream, reopen: Callable[[], Awaitable[SessionHandle]],
                 rules: EndpointRules | None, frame_seconds: float) -> None:
        self.stream, self.reopen = stream, reopen
        self.frame_seconds = frame_seconds
        self.detector = EndpointDetector(rules or EndpointRules(), frame_seconds)
        self.set_rules(rules)
        self.session_start = 0  # where the current recognizer session began (word times are relative to it)
        self.start = 0  # where the current utterance began
        self.rewound = 0  # frames of the last call given back to the stream at an endpoint, left out of the final

    @property
    def rate(self) -> int:
        return self.stream.model_rate

    def set_rules(self, rules: EndpointRules | None) -> None:
        """New rule lengths (None: endpointing off), from the next frame on."""
        self.endpointing = rules is not None
        if rules is not None:
            self.detector.rules = rules

    @property
    def speech_start(self) -> float | None:
        """Seconds on the stream's clock where the current utterance's speech began (None: none heard yet)."""
        if self.detector.speech_start is None:
            return None
        return self.start / self.rate + self.detector.speech_start * self.frame_seconds

    def push(self, blank: np.ndarray | None) -> Endpoint | None:
        """A call's blank posteriors; the endpoint they end the utterance at, if any (endpointing on).

        The frames are read a step at a time, so the utterance ends after the step that ended it, as at real-time
        pace, even when a stream that fell behind stepped several steps in one call: the frames of the call's later
        steps are given back to the stream (:meth:`LiveStream.rewind`), to be stepped again by the next utterance's
        session, and left out of this one's final (:meth:`cut`, which must follow). Where utterances end does not
        depend on the server's load.
        """
        if blank is None:
            return None
        per_step = max(1, self.stream.step // self.stream.quantum)
        for at in range(0, len(blank), per_step):
            endpoint = self.detector.push(blank[at:at + per_step])
            if endpoint is not None and self.endpointing:
                self.rewound = len(blank) - min(len(blank), at + per_step)
                self.stream.rewind(self.rewound * self.stream.quantum)
                return endpoint
        return None

    def _next_utterance(self) -> None:
        self.start = self.stream.stepped
        self.detector.reset()

    async def cut(self) -> asyncio.Future:
        """End the utterance here, after everything stepped so far: a fresh session takes the stream on, and the
        returned future gives the utterance's final transcript (``POST /transcribe`` of its audio, word times on
        the stream's clock) once the old session has decoded it.

        This returns as soon as the fresh session is open, so the stream steps on while the final is decoded (a
        beam search, 7-25 ms on two busy cores, longer behind other streams' finals: a stream that waited for it
        fell behind by as much). The old session's final is asked for at once; it leaves the worker's memory with
        it. Call this only while the pump is between steps: from the stream's ``deliver`` or after a drain.
        """
        old, drop, offset = self.stream.session, self.rewound, self.session_start / self.rate
        final = asyncio.ensure_future(self._final(old, drop, offset))
        final.add_done_callback(retrieve_failure)
        # Shielded: a client that leaves mid-cut cancels the pump, and a session opened for nobody would stay
        # resident in its worker; it is closed as soon as it exists instead.
        opening = asyncio.ensure_future(self.reopen())
        try:
            session = await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_close_orphan)
            raise
        # The pump steps ``stream.session``; nothing steps while this runs (see above), so the swap is safe.
        self.stream.session, self.rewound = session, 0
        self.session_start = self.stream.stepped
        self._next_utterance()
        return final

    async def _final(self, session: SessionHandle, drop_frames: int, offset: float) -> Transcript:
        transcript = await self.stream.call(functools.partial(session.finish, drop_frames=drop_frames))
        return shifted(transcript, offset)

    async def segment(self) -> Transcript:
        """End the utterance here with the model state carried on (``input.flush``): its final transcript."""
        transcript = await self.stream.call(self.stream.session.segment)
        self._next_utterance()
        return shifted(transcript, self.session_start / self.rate)

    async def finish(self) -> Transcript:
        """The last utterance's final transcript; the session is done."""
        transcript = await self.stream.call(self.stream.session.finish)
        return shifted(transcript, self.session_start / self.rate)
