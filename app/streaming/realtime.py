"""OpenAI Realtime transcription sessions on ``/v1/realtime``: an adapter from OpenAI's events to a live stream.

The SDK's ``client.realtime.connect(model=..., extra_query={"intent": "transcription"})`` (GA) connects here when
its base URL is ``http://host:port/v1``; ``client.beta.realtime.connect(...)`` (beta: it sends ``OpenAI-Beta:
realtime=v1``) does too with ``websocket_base_url="ws://host:port/v1"`` (it dials ``wss://`` otherwise). Events
(shapes in :mod:`app.streaming.realtime_messages`)::

    server: session.created | transcription_session.created (beta)      the default session: audio/pcm at 24 kHz,
                                                                           server_vad turn detection
    client: session.update | transcription_session.update               server: session.updated | transcription_...
    client: input_audio_buffer.append {audio: base64 PCM16}             (server_vad) input_audio_buffer.speech_started
    a pause (server_vad) or client: input_audio_buffer.commit           (server_vad) input_audio_buffer.speech_stopped,
                                                                           input_audio_buffer.committed,
                                                                           conversation.item.input_audio_transcription
                                                                           .delta (a word each) and .completed
    client: input_audio_buffer.clear                                     server: input_audio_buffer.cleared
    any mistake                                                          server: error {error: {type, code, message,
                                                                           param, event_id}}; the connection goes on

A turn is an utterance of :class:`app.streaming.utterances.Utterances`: with ``server_vad`` the endpoint rules of
:mod:`model_zoo.pipelines.endpoint` end it at a pause (``silence_duration_ms`` is rule 2; a stretch with no speech
at all is dropped without events), the same detector as ``/v1/stream/transcribe``'s finals; without it, only
``commit`` ends it. Each turn is recognized by a fresh session, so its transcript is ``POST /transcribe`` of its
audio (beam search). The session's audio reaches the pool through :meth:`app.engine.Engine.open_stream` only.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

from fastapi import WebSocket

from model_zoo.nets.ctc import Transcript
from model_zoo.pipelines.asr import DEFAULT_BEAM_SEARCH

from ..audio.pcm import PcmCodec
from ..engine import Engine
from ..errors import ServiceError
from ..http.dependencies import resolve_model, served_name
from ..settings import Settings
from .connection import POLICY, TRY_AGAIN_LATER, Closing
from .handler import StreamHandler, failure_closing
from .live import BufferOverflow, LiveStream, step_samples
from .realtime_messages import (AppendEvent, ClearEvent, ClientEvent, CommitEvent, EventMistake, SessionConfig,
                                SessionUpdateEvent, TranscriptionSessionUpdateEvent, error_event, new_id,
                                parse_event, server_event)
from .utterances import Utterances, step_parts

__all__ = ["RealtimeHandler", "refuse_reason"]

_OPTIONS = {"live": True, "interim_results": False, "beam_search": DEFAULT_BEAM_SEARCH, "blank_probs": True}


class RealtimeHandler(StreamHandler):
    """Runs one accepted ``/v1/realtime`` websocket until it closes. ``beta``: the client speaks the beta events
    (the session is announced as ``transcription_session.created``); ``url_model``: the ``model`` of the URL,
    used when it names a served recognizer."""

    def __init__(self, websocket: WebSocket, settings: Settings, engine: Engine, *, beta: bool = False,
                 url_model: str | None = None) -> None:
        super().__init__(websocket, "asr", settings, engine)
        self.beta = beta
        usable = url_model is not None and served_name(engine, settings, url_model) is not None
        self.config = SessionConfig(model=url_model if usable else None)
        self.utterances: Utterances | None = None
        self.item_id, self.previous_item_id, self.speaking = new_id("item"), None, False

    async def _send(self, type_: str, **fields: Any) -> None:
        await self.conn.send(server_event(type_, **fields))

    inbox_name = "realtime"

    async def _greet(self) -> None:
        created = "transcription_session.created" if self.beta else "session.created"
        await self._send(created, session=self.config.beta() if self.beta else self.config.ga())

    async def _report(self, closing: Closing) -> None:
        kind = "invalid_request_error" if closing.close_code == POLICY else "server_error"
        await self.conn.send(error_event(closing.message, type_=kind, code=closing.error_code))

    async def _serve(self, message: dict) -> bool:
        """Handle one event; its mistake (or its model's) is told, and the session goes on. Uncommitted audio is
        dropped when the socket ends."""
        event_id = None
        try:
            if message.get("bytes") is not None:
                raise EventMistake("binary frames are not events: send audio base64-encoded in "
                                   "input_audio_buffer.append", code="invalid_json")
            event = parse_event(message.get("text") or "")
            event_id = event.event_id
            await self._handle(event)
        except ServiceError as err:
            await self.conn.send(error_event(err.message, type_=err.type, code=err.code, param=err.param,
                                             event_id=getattr(err, "event_id", None) or event_id))
        return False

    async def _handle(self, event: ClientEvent) -> None:
        if isinstance(event, SessionUpdateEvent):
            await self._update(self.config.updated_ga(event.session), beta=False)
        elif isinstance(event, TranscriptionSessionUpdateEvent):
            await self._update(self.config.updated_beta(event.session), beta=True)
        elif isinstance(event, AppendEvent):
            await self._append(event.audio)
        elif isinstance(event, CommitEvent):
            await self._commit()
        elif isinstance(event, ClearEvent):
            await self._clear()

    # ---- the session -------------------------------------------------------------------------------------------
    def _model(self, config: SessionConfig) -> str:
        param = "session.input_audio_transcription.model" if self.beta else "session.audio.input.transcription.model"
        return resolve_model(self.engine, self.settings, config.model, "asr", param=param)

    async def _update(self, config: SessionConfig, *, beta: bool) -> None:
        model = self._model(config)  # NotFound / InvalidParameter: an error event, the session unchanged
        if self.stream is not None:
            if config.rate != self.config.rate:
                raise EventMistake("the audio format cannot change once audio has been appended",
                                   code="session_active", param="format")
            if model != self.model:
                raise EventMistake("the transcription model cannot change once audio has been appended",
                                   code="session_active", param="model")
            self.utterances.set_rules(config.rules())
        self.config = config
        if beta:
            await self._send("transcription_session.updated", session=config.beta())
        else:
            await self._send("session.updated", session=config.ga())

    async def _open_stream(self) -> None:
        model = self._model(self.config)
        card = self.engine.cards[model]
        timeout = self.settings.request_timeout_seconds
        try:
            session = await self.engine.open_stream(model, _OPTIONS, time.monotonic() + timeout)
        except ServiceError as err:
            raise failure_closing(err) from None
        rate = card.sample_rate
        self.model, self.codec = model, PcmCodec("pcm_s16le")
        self.stream = LiveStream(
            session, client_rate=self.config.rate, model_rate=rate,
            step=step_samples(session.info.get("quantum", 1), rate, self.settings.stream_step_ms),
            max_buffered=int(self.settings.stream_max_buffer_seconds * rate), deadline_seconds=timeout,
            deliver=self._on_step)
        self.utterances = Utterances(self.stream, lambda: self.engine.open_stream(model, _OPTIONS,
                                                                                  time.monotonic() + timeout),
                                     self.config.rules(), self.stream.quantum / rate)

    # ---- audio -------------------------------------------------------------------------------------------------
    async def _append(self, audio: str) -> None:
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise EventMistake("audio is not valid base64", code="invalid_base64", param="audio") from None
        if not data:
            return
        if self.stream is None:
            await self._open_stream()
        samples = self.codec.decode(data)
        # An append may hold minutes of audio (OpenAI allows 15 MiB): it goes in a piece at a time, waiting for
        # the model whenever the stream's buffer would overflow, so a fast client is slowed down, never cut off.
        piece = max(1, int(self.stream.client_rate * min(1.0, self.settings.stream_max_buffer_seconds / 2)))
        ratio = self.stream.model_rate / self.stream.client_rate
        for start in range(0, len(samples), piece):
            chunk = samples[start:start + piece]
            if self.stream.buffered + len(chunk) * ratio + 64 > self.stream.max_buffered:
                await self._drain()
            try:
                await self.stream.push(chunk)
            except BufferOverflow as err:
                raise Closing(TRY_AGAIN_LATER, "buffer_overflow", str(err)) from None

    def _ms(self, seconds: float) -> int:
        return int(round(1000 * seconds))

    async def _on_step(self, result: Any) -> None:
        """Each step (in the pump): speech_started at the first speech of a turn, and the turn's end at an
        endpoint (server_vad)."""
        endpoint = self.utterances.push(step_parts(result)[1])
        speech = self.utterances.speech_start
        if self.config.vad and not self.speaking and speech is not None:
            self.speaking = True
            start = max(self.utterances.start / self.stream.model_rate, speech - self.config.prefix_padding_ms / 1000)
            await self._send("input_audio_buffer.speech_started", audio_start_ms=self._ms(start), item_id=self.item_id)
        if endpoint is None:
            return
        if endpoint.speech_start is None:  # a stretch with no speech: no turn; the next one starts afresh
            await self.utterances.cut()  # its final is not needed
            return
        await self._send("input_audio_buffer.speech_stopped",
                         audio_end_ms=self._ms(self.stream.stepped / self.stream.model_rate), item_id=self.item_id)
        await self._complete()

    async def _complete(self, here: bool = False) -> None:
        """End the turn here: committed, the transcript word by word (delta), completed. ``here``: called by the
        handler (a commit), not the pump."""
        seconds = (self.stream.stepped - self.utterances.start) / self.stream.model_rate
        transcript: Transcript = await (self._cut_here() if here else self._turn_final())
        item = self.item_id
        await self._send("input_audio_buffer.committed", item_id=item, previous_item_id=self.previous_item_id)
        words = transcript.text.split(" ") if transcript.text else []
        for i, word in enumerate(words):  # they concatenate to the transcript, as the SSE deltas do
            await self._send("conversation.item.input_audio_transcription.delta", item_id=item, content_index=0,
                             delta=word if i == 0 else f" {word}")
        await self._send("conversation.item.input_audio_transcription.completed", item_id=item, content_index=0,
                         transcript=transcript.text, usage={"type": "duration", "seconds": round(seconds, 3)})
        self.previous_item_id, self.item_id, self.speaking = item, new_id("item"), False

    async def _turn_final(self) -> Transcript:
        """A cut and its final: a turn's events follow each other, so the pump waits for it."""
        return await (await self.utterances.cut())

    async def _cut_here(self) -> Transcript:
        """A cut from the handler: a failed model call ends the connection as a failed pump would."""
        try:
            return await self._turn_final()
        except ServiceError as err:
            raise failure_closing(err) from None

    def _buffered_audio(self) -> bool:
        return self.stream is not None and self.stream.stepped > self.utterances.start

    async def _commit(self) -> None:
        if self.stream is not None:
            await self._drain()
        if not self._buffered_audio():
            raise EventMistake("the input audio buffer is empty: append audio before committing",
                               code="input_audio_buffer_commit_empty")
        await self._complete(here=True)

    async def _clear(self) -> None:
        if self.stream is not None:
            await self._drain()
            if self._buffered_audio():
                await self._cut_here()  # the audio so far is dropped with its session
            self.item_id, self.speaking = new_id("item"), False
        await self._send("input_audio_buffer.cleared")


def refuse_reason(intent: str | None) -> str | None:
    """Why a connection with this ``intent`` query is refused (None: it is served)."""
    if intent not in (None, "", "transcription"):
        return (f"intent {intent[:40]!r} is not served: this server runs transcription sessions only "
                "(?intent=transcription)")
    return None

