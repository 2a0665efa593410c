"""One websocket from ``session.start`` to the close: the session's admission, the receive loop, the end.

Binary-first, in the vosk-server / sherpa-onnx / Wyoming family (protocol in README "Streaming"; messages in
:mod:`app.streaming.messages`)::

    client: {"type": "session.start", ...}         server: {"type": "session.started", ...}
    client: binary PCM frames, any size             server: binary PCM (denoise) | transcript.* | keyword.detected
    client: session.update / input.flush            server: transcript.final / keyword.detected
    client: {"type": "session.end"}                 server: last results, {"type": "session.ended"}, close 1000

Protocol mistakes (binary before session.start, malformed JSON, an unknown message) answer an ``error`` and
keep the connection. The model and the API key are checked by the same functions as HTTP's
(:mod:`app.http.dependencies`), a keyword stream's keywords by ``POST /keywords``' (:mod:`app.keywords`); the pool
is reached through :class:`app.engine.Engine` only. A protocol may run streams of other models on the same audio
beside the session's own (its ``companions``: the keyword stream's recognizer, for words the classifier does not
know); the handler feeds, drains, watches and closes them with it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid

import numpy as np
from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from ..audio.pcm import PcmCodec
from ..engine import Engine
from ..errors import InvalidParameter, NotFound, NotReady, Overloaded, ServiceError, WorkerLost
from ..http.dependencies import resolve_model
from ..keywords import KeywordChoice, choose_keywords, first_served, split_specs
from ..settings import Settings
from .connection import INTERNAL, NORMAL, POLICY, TRY_AGAIN_LATER, Closing, Connection, Inbox
from .live import BufferOverflow, LiveStream, open_live
from .messages import (ClientMessage, InputFlush, InputProgress, Mistake, SessionEnd, SessionEnded, SessionStart,
                       SessionStarted, SessionUpdate, parse_client_message)
from .protocols import PROTOCOLS, TaskProtocol

__all__ = ["StreamHandler"]

log = logging.getLogger(__name__)

STREAM_FAILED = "stream.failed"  # an inbox message of ours: a stream's pump failed (its error under "error")


def failure_closing(err: BaseException) -> Closing:
    """How a failed model call ends the stream: try again later (1013) for overload and lost workers, else 1011."""
    if isinstance(err, (Overloaded, NotReady, WorkerLost)):
        return Closing(TRY_AGAIN_LATER, err.code, err.message)
    if isinstance(err, ServiceError):
        return Closing(INTERNAL, err.code, err.message)
    log.error("stream failed: %r", err)
    return Closing(INTERNAL, "internal_error", f"{type(err).__name__}: {err}")


class StreamHandler:
    """Runs one accepted websocket of ``task`` (``asr``, ``kws`` or ``denoise``) until it closes."""

    def __init__(self, websocket: WebSocket, task: str, settings: Settings, engine: Engine) -> None:
        self.conn, self.task, self.settings, self.engine = Connection(websocket), task, settings, engine
        self.opened = time.monotonic()
        self.session_id = uuid.uuid4().hex
        # 10 s of 48 kHz float32 by default, at least 1 MB.
        self.inbox = Inbox(websocket, max(1 << 20, int(settings.stream_max_buffer_seconds * 48000 * 4)))
        self.model: str | None = None
        self.codec: PcmCodec | None = None
        self.protocol: TaskProtocol | None = None
        self.stream: LiveStream | None = None
        self._watched: set[LiveStream] = set()

    inbox_name = "stream"

    async def run(self) -> None:
        """The lifecycle every websocket protocol shares: greet, serve each message until the session ends, report a
        closing in the protocol's words, and free the worker's state at once however the socket ends."""
        self.inbox.start(name=f"{self.inbox_name}-{self.session_id[:8]}")
        try:
            await self._greet()
            while not await self._serve(await self._receive()):
                pass
        except Closing as closing:
            if closing.close_code != NORMAL:
                await self._report(closing)
            await self.conn.close(closing.close_code, closing.error_code)
        except WebSocketDisconnect:
            pass
        finally:
            self.inbox.stop()
            for stream in self._watched:
                stream.failed.remove_done_callback(self._failed)
            for stream in self._streams():
                await stream.close()

    def _streams(self) -> list[LiveStream]:
        """The session's stream, then its protocol's companions (none before session.start)."""
        if self.stream is None:
            return []
        return [self.stream, *(self.protocol.companions() if self.protocol is not None else [])]

    # ---- the protocol's hooks ----------------------------------------------------------------------------------
    async def _greet(self) -> None:
        """What the server says first: nothing here (the client opens with ``session.start``)."""

    async def _report(self, closing: Closing) -> None:
        """Tell the client why the connection closes abnormally."""
        await self.conn.error(closing.error_code, closing.message)

    async def _serve(self, message: dict) -> bool:
        """Handle one websocket message; True once the session has ended. Protocol mistakes are answered here."""
        if message.get("bytes") is not None:
            item: bytes | ClientMessage = message["bytes"]
        else:
            item = parse_client_message(message.get("text") or "")
            if isinstance(item, Mistake):
                await self.conn.error(item.code, item.message)
                return False
        if self.stream is None:
            await self._before_start(item)
            return False
        return await self._after_start(item)

    # ---- receiving ---------------------------------------------------------------------------------------------
    def _receive_timeout(self) -> float:
        left = self.settings.stream_max_session_seconds - (time.monotonic() - self.opened)
        return max(0.0, min(self.settings.stream_idle_timeout_seconds, left))

    async def _receive(self) -> dict:
        """The next message; WebSocketDisconnect when the client left; Closing on idle timeout, session length,
        or a failed pump.

        A message already waiting costs no task and no timer (50 frames a second per stream); a stream's failure
        comes in through the inbox as well (:meth:`_watch_failures`)."""
        self._watch_failures()
        message = self.inbox.get_nowait()
        if message is None:
            try:
                async with asyncio.timeout(self._receive_timeout()):
                    message = await self.inbox.get()
            except TimeoutError:
                if time.monotonic() - self.opened >= self.settings.stream_max_session_seconds:
                    raise Closing(POLICY, "session_too_long",
                                  f"sessions last at most {self.settings.stream_max_session_seconds:g} s") from None
                raise Closing(POLICY, "idle_timeout",
                              f"no message for {self.settings.stream_idle_timeout_seconds:g} s") from None
        if message["type"] == STREAM_FAILED:
            raise failure_closing(message["error"])
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        return message

    def _watch_failures(self) -> None:
        """Each stream's failure (companions come and go) is handed to the inbox as it happens."""
        for stream in self._streams():
            if stream not in self._watched:
                stream.failed.add_done_callback(self._failed)
                self._watched.add(stream)

    def _failed(self, failed: asyncio.Future) -> None:
        self.inbox.put({"type": STREAM_FAILED, "error": failed.result()})

    # ---- before session.start ----------------------------------------------------------------------------------
    async def _before_start(self, item: bytes | ClientMessage) -> None:
        if isinstance(item, bytes):
            await self.conn.error("session_not_started", "send session.start before audio")
        elif not isinstance(item, SessionStart):
            await self.conn.error("session_not_started", f"send session.start before {item.type}")
        else:
            try:
                self._check_step(item.step_ms)
                model = self._model_for(item)
            except ServiceError as err:
                await self.conn.error(err.code, err.message)
                return
            await self._open(item, model)

    def _model_for(self, start: SessionStart) -> str:
        """The served model of this task ``start`` asks for (the HTTP endpoints' lookup), its keywords checked."""
        model = resolve_model(self.engine, self.settings, start.model, self.task)
        if self.task == "kws" and start.keywords is not None:
            self._keywords(model, start.keywords)
        return model

    def _check_step(self, step_ms: float | None) -> None:
        low, high = self.settings.stream_min_step_ms, self.settings.stream_max_step_ms
        if step_ms is not None and not low <= step_ms <= high:
            raise InvalidParameter(f"step_ms must be between {low:g} and {high:g} (this server's limits)")

    def _keywords(self, model: str, keywords: list[str]) -> KeywordChoice:
        """A keyword stream's ``keywords`` split between the keyword model ``model`` and the served recognizer, as
        ``POST /keywords`` splits them (:func:`app.keywords.choose_keywords`: the same refusals)."""
        return choose_keywords(self.engine, model, split_specs(keywords, "keywords"), first_served(self.engine, "asr"))

    async def _open(self, start: SessionStart, model: str) -> None:
        card = self.engine.cards[model]
        self.model, self.codec = model, PcmCodec(start.encoding)
        self.protocol = protocol = PROTOCOLS[self.task](self.conn, start, card, self.codec)
        protocol.follow = functools.partial(open_live, self.engine, self.settings, client_rate=start.sample_rate,
                                            step_ms=start.step_ms)
        protocol.choose = functools.partial(self._keywords, model)
        try:
            self.stream = await protocol.follow(model, protocol.pool_options(), self._deliver)
        except ServiceError as err:
            raise failure_closing(err) from None
        session, rate, step = self.stream.session, card.sample_rate, self.stream.step
        protocol.stream = self.stream
        protocol.reopen = lambda: self.engine.open_stream(  # a fresh session (an utterance's end, see utterances)
            model, protocol.pool_options(), time.monotonic() + self.settings.request_timeout_seconds)
        try:
            await protocol.on_open()
        except ServiceError as err:
            raise failure_closing(err) from None
        latency = int(session.info.get("latency", card.algorithmic_latency_samples))
        await self.conn.send(SessionStarted(
            session_id=self.session_id, model=model, task=self.task, sample_rate=rate,
            input_sample_rate=start.sample_rate, encoding=start.encoding, algorithmic_latency_samples=latency,
            algorithmic_latency_ms=round(1000 * latency / rate, 3), step_samples=step,
            step_ms=round(1000 * step / rate, 3)))

    async def _deliver(self, result: object) -> None:
        """A step's results, then (``progress``) how much audio the model has consumed."""
        await self.protocol.on_step(result)
        if self.protocol.start.progress:
            stepped = self.stream.stepped
            await self.conn.send(InputProgress(samples=stepped, end=round(stepped / self.stream.model_rate, 6)))

    # ---- after session.start -----------------------------------------------------------------------------------
    async def _after_start(self, item: bytes | ClientMessage) -> bool:
        """Handle one frame or message of a started session; True once the session has ended."""
        if isinstance(item, bytes):
            await self._audio(item)
        elif isinstance(item, SessionStart):
            await self.conn.error("session_already_started", "this session has started; send session.end first")
        elif isinstance(item, SessionUpdate):
            try:
                await self.protocol.update(item)
            except (InvalidParameter, NotFound) as err:  # refused: the session goes on unchanged
                await self.conn.error(err.code, err.message)
            except ServiceError as err:  # a companion's session could not be opened
                raise failure_closing(err) from None
        elif isinstance(item, InputFlush):
            await self._drain()
            await self.protocol.on_flush()
        elif isinstance(item, SessionEnd):
            await self._end()
            return True
        return False

    async def _audio(self, data: bytes) -> None:
        samples = self.codec.decode(data)
        if not np.isfinite(samples).all():
            await self.conn.error("invalid_audio", "the frame contains NaN or infinite samples; it was not used")
            return
        try:
            for stream in self._streams():
                await stream.push(samples)
        except BufferOverflow as err:
            raise Closing(TRY_AGAIN_LATER, "buffer_overflow", str(err)) from None

    async def _drain(self, end: bool = False) -> None:
        try:
            for stream in self._streams():
                await stream.drain(end=end)
        except BaseException as err:  # noqa: BLE001 - the pump's failure, reported to the client
            if isinstance(err, asyncio.CancelledError):
                raise
            raise failure_closing(err) from None

    async def _end(self) -> None:
        await self._drain(end=True)
        try:
            await self.protocol.on_end()
        except ServiceError as err:
            raise failure_closing(err) from None
        audio_seconds = self.stream.received / self.stream.client_rate
        processing = sum(stream.processing for stream in self._streams())
        await self.conn.send(SessionEnded(
            session_id=self.session_id, audio_seconds=round(audio_seconds, 3),
            processing_seconds=round(processing, 4),
            rtf=round(processing / audio_seconds, 4) if audio_seconds else 0.0))
        await self.conn.close(NORMAL)
