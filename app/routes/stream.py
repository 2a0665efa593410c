"""Streaming websockets: ``/v1/stream/denoise``, ``/v1/stream/transcribe``, ``/v1/stream/keywords``.

Binary-first, in the vosk-server / sherpa-onnx / Wyoming family (protocol in README "Streaming"; messages in
:mod:`app.stream_schemas`):

    client: {"type": "session.start", ...}         server: {"type": "session.started", ...}
    client: binary PCM frames, any size             server: binary PCM (denoise) | transcript.* | keyword.detected
    client: session.update / input.flush            server: transcript.final / keyword.detected
    client: {"type": "session.end"}                 server: last results, {"type": "session.ended"}, close 1000

Close codes: 1000 done, 1008 bad API key or a limit (idle, session length), 1011 internal error, 1013 overload
(full queue, buffer overflow, worker lost). A full server refuses the handshake itself with HTTP 503.
Protocol mistakes (binary before session.start, malformed JSON, an unknown message) answer an ``error`` and
keep the connection.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, WebSocket
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from model_zoo.pipelines.kws import DetectionRuns
from ..errors import NotReady, Overloaded, ServiceError, WorkerLost, error_body
from ..pool import Pool
from ..service import Engine
from ..settings import Settings
from ..stream_schemas import (InputFlush, KeywordDetected, SessionEnd, SessionEnded, SessionStart, SessionStarted,
                              SessionUpdate, StreamError, StreamWord, TranscriptFinal, TranscriptPartial,
                              client_message)
from ..streaming import BufferOverflow, LiveStream, PcmCodec, StreamRegistry, step_samples

router = APIRouter(prefix="/v1/stream", tags=["streaming"])
log = logging.getLogger(__name__)

NORMAL, POLICY, INTERNAL, TRY_AGAIN_LATER = 1000, 1008, 1011, 1013
TASKS = {"denoise": "denoise", "transcribe": "asr", "keywords": "kws"}


# ---- dependencies ------------------------------------------------------------------------------------------------
def stream_settings(websocket: WebSocket) -> Settings:
    return websocket.app.state.settings


def stream_registry(websocket: WebSocket) -> StreamRegistry:
    return websocket.app.state.streams


def stream_engine(websocket: WebSocket) -> Engine:
    return websocket.app.state.engine


def key_problem(websocket: WebSocket, settings: Settings = Depends(stream_settings)) -> str | None:
    """Why the presented key is refused (None: accepted). Browsers cannot set headers on a websocket, so
    ``?api_key=`` counts as well as ``Authorization: Bearer`` and ``X-API-Key``."""
    if not settings.api_keys:
        return None
    auth = websocket.headers.get("authorization", "")
    key = (auth[7:].strip() if auth[:7].lower() == "bearer " else None) or websocket.headers.get("x-api-key") \
        or websocket.query_params.get("api_key")
    if not key:
        return "missing API key: send Authorization: Bearer KEY, X-API-Key: KEY or ?api_key=KEY"
    if not any(hmac.compare_digest(key.encode(), k.encode()) for k in settings.api_keys):
        return "invalid API key"
    return None


# ---- one connection ----------------------------------------------------------------------------------------------
class Closing(Exception):
    """End the connection: an error message (unless ``code`` is normal) and this close code."""

    def __init__(self, close_code: int, error_code: str = "", message: str = "") -> None:
        super().__init__(message)
        self.close_code, self.error_code, self.message = close_code, error_code, message


class Connection:
    """The protocol of one websocket: sends are serialised, because the pump and the reader both send."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self._send_lock = asyncio.Lock()
        self.gone = False

    async def send(self, message: Any) -> None:
        async with self._send_lock:
            if self.websocket.application_state != WebSocketState.CONNECTED or self.gone:
                return
            try:
                if isinstance(message, bytes):
                    await self.websocket.send_bytes(message)
                else:
                    await self.websocket.send_text(message.model_dump_json(exclude_none=True))
            except (WebSocketDisconnect, RuntimeError, OSError):
                # The client went away; the reader sees the disconnect and frees the session.
                self.gone = True

    async def error(self, code: str, message: str) -> None:
        await self.send(StreamError(code=code, message=message))

    async def close(self, code: int, reason: str = "") -> None:
        async with self._send_lock:
            if self.websocket.application_state == WebSocketState.CONNECTED:
                try:
                    await self.websocket.close(code, reason[:120])
                except RuntimeError:  # the client closed meanwhile
                    pass


class TaskProtocol:
    """What a task sends for each step result, at ``input.flush`` and at the end."""

    def __init__(self, conn: Connection, start: SessionStart, card: dict) -> None:
        self.conn, self.start, self.card = conn, start, card
        self.rate = int(card["sample_rate"])
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

    def __init__(self, conn: Connection, start: SessionStart, card: dict) -> None:
        super().__init__(conn, start, card)
        from ..resampler import StreamResampler

        self.back = StreamResampler(self.rate, start.sample_rate)
        self.codec = PcmCodec(start.encoding)
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
        # Resampling there and back can round the length by a sample; the offline endpoint crops or pads too.
        total = self.stream.received
        rest = rest[: max(0, total - self.sent)]
        rest = np.pad(rest, (0, max(0, total - self.sent - len(rest))))
        await self._send_audio(rest.astype(np.float32))


class TranscribeProtocol(TaskProtocol):
    """Greedy partials while audio arrives; a final per segment (``input.flush``) and at the end."""

    def __init__(self, conn: Connection, start: SessionStart, card: dict) -> None:
        super().__init__(conn, start, card)
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

    def __init__(self, conn: Connection, start: SessionStart, card: dict) -> None:
        super().__init__(conn, start, card)
        self.runs = DetectionRuns(card["labels"], rate=self.rate, window=self.rate, threshold=start.threshold,
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


PROTOCOLS: dict[str, type[TaskProtocol]] = {"denoise": DenoiseProtocol, "asr": TranscribeProtocol,
                                            "kws": KeywordsProtocol}


def _unknown_keywords(start: SessionStart | SessionUpdate, card: dict) -> list[str]:
    return sorted(set(start.keywords or ()) - set(card.get("labels", ())))


def _message_bytes(message: dict) -> int:
    """What a websocket message holds, for the inbox bound."""
    return len(message.get("bytes") or b"") + len(message.get("text") or "")


class StreamHandler:
    """Runs one websocket from ``session.start`` to the close."""

    def __init__(self, websocket: WebSocket, task: str, settings: Settings, engine: Engine) -> None:
        self.conn, self.task, self.settings, self.engine = Connection(websocket), task, settings, engine
        self.websocket = websocket
        self.opened = time.monotonic()
        self.protocol: TaskProtocol | None = None
        self.stream: LiveStream | None = None
        self.session_id = uuid.uuid4().hex
        # Messages read off the socket, waiting for the handler (see _read_socket); bounded in bytes.
        self._inbox: asyncio.Queue[dict] = asyncio.Queue()
        self._inbox_bytes = 0
        self._inbox_limit = max(1 << 20, int(settings.stream_max_buffer_seconds * 48000 * 4))  # 48 kHz float32
        self._inbox_space = asyncio.Event()
        self._reader: asyncio.Task | None = None

    def _receive_timeout(self) -> float:
        left = self.settings.stream_max_session_seconds - (time.monotonic() - self.opened)
        return max(0.0, min(self.settings.stream_idle_timeout_seconds, left))

    async def _read_socket(self) -> None:
        """Read the socket all the time, into the inbox. uvicorn stops reading a websocket while its app is not
        receiving, and then answers no ping either: a handler waiting for a flush to drain a backlog made clients
        give up on their keepalive (a 30-minute soak saw it). Past the inbox bound the reader waits, and the
        socket's own flow control takes over."""
        try:
            while True:
                message = await self.websocket.receive()
                self._inbox_bytes += _message_bytes(message)
                self._inbox.put_nowait(message)
                if message["type"] == "websocket.disconnect":
                    return
                while self._inbox_bytes > self._inbox_limit:
                    self._inbox_space.clear()
                    await self._inbox_space.wait()
        except (RuntimeError, OSError):  # the socket is gone
            self._inbox.put_nowait({"type": "websocket.disconnect", "code": 1006})

    async def _next_message(self) -> dict:
        message = await self._inbox.get()
        self._inbox_bytes -= _message_bytes(message)
        self._inbox_space.set()
        return message

    async def _receive(self) -> dict:
        """The next message; WebSocketDisconnect when the client left; Closing on idle timeout, session length,
        or a failed pump."""
        timeout = self._receive_timeout()
        receiving = asyncio.ensure_future(self._next_message())
        waiters = {receiving}
        failure = asyncio.ensure_future(self.stream.wait_failure()) if self.stream is not None else None
        if failure is not None:
            waiters.add(failure)
        try:
            done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()
        if receiving in done:
            message = receiving.result()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            return message
        if failure is not None and failure in done:
            raise self._failure_closing(failure.result())
        if time.monotonic() - self.opened >= self.settings.stream_max_session_seconds:
            raise Closing(POLICY, "session_too_long",
                          f"sessions last at most {self.settings.stream_max_session_seconds:g} s")
        raise Closing(POLICY, "idle_timeout", f"no message for {self.settings.stream_idle_timeout_seconds:g} s")

    @staticmethod
    def _failure_closing(err: BaseException) -> Closing:
        if isinstance(err, (Overloaded, NotReady, WorkerLost)):
            return Closing(TRY_AGAIN_LATER, err.code, err.message)
        if isinstance(err, ServiceError):
            return Closing(INTERNAL, err.code, err.message)
        log.error("stream failed: %r", err)
        return Closing(INTERNAL, "internal_error", f"{type(err).__name__}: {err}")

    def _parse(self, text: str) -> Any | None:
        try:
            return client_message.validate_json(text)
        except ValidationError as err:
            first = err.errors()[0]
            return (first["type"], first["msg"])

    async def run(self) -> None:
        self._reader = asyncio.create_task(self._read_socket(), name=f"read-{self.session_id[:8]}")
        try:
            start = await self._wait_for_start()
            await self._open(start)
            await self._serve()
        except Closing as closing:
            if closing.close_code != NORMAL:
                await self.conn.error(closing.error_code, closing.message)
            await self.conn.close(closing.close_code, closing.error_code)
        except WebSocketDisconnect:
            pass
        finally:
            self._reader.cancel()
            if self.stream is not None:
                await self.stream.close()  # frees the worker's state at once

    async def _protocol_error(self, kind: str, message: str) -> None:
        codes = {"json_invalid": "malformed_json", "union_tag_invalid": "unknown_message_type",
                 "union_tag_not_found": "unknown_message_type"}
        await self.conn.error(codes.get(kind, "invalid_message"), message)

    async def _wait_for_start(self) -> SessionStart:
        while True:
            message = await self._receive()
            if message.get("bytes") is not None:
                await self.conn.error("session_not_started", "send session.start before audio")
                continue
            parsed = self._parse(message.get("text") or "")
            if isinstance(parsed, tuple):
                await self._protocol_error(*parsed)
            elif not isinstance(parsed, SessionStart):
                await self.conn.error("session_not_started", f"send session.start before {parsed.type}")
            else:
                problem = self._start_problem(parsed)
                if problem is None:
                    return parsed
                await self.conn.error(*problem)

    def _model(self, start: SessionStart) -> str | tuple[str, str]:
        served = [name for name, card in self.engine.cards.items() if card["task"] == self.task]
        name = start.model or (served[0] if served else None)
        name = self.settings.model_aliases.get(name, name) if name not in self.engine.cards else name
        if name not in self.engine.cards:
            return ("model_not_found", f"model {start.model!r} is not served; GET /v1/models lists the models")
        if self.engine.cards[name]["task"] != self.task:
            return ("wrong_model_task", f"model {name!r} is a {self.engine.cards[name]['task']} model, not {self.task}")
        return name

    def _start_problem(self, start: SessionStart) -> tuple[str, str] | None:
        model = self._model(start)
        if isinstance(model, tuple):
            return model
        if self.task == "kws" and _unknown_keywords(start, self.engine.cards[model]):
            return ("invalid_parameter", f"unknown keywords {_unknown_keywords(start, self.engine.cards[model])}")
        return None

    async def _open(self, start: SessionStart) -> None:
        model = self._model(start)
        card = self.engine.cards[model]
        self.protocol = PROTOCOLS[self.task](self.conn, start, card)
        deadline = time.monotonic() + self.settings.request_timeout_seconds
        try:
            session = await self.engine.pool.open_session(model, self.protocol.pool_options(), deadline)
        except ServiceError as err:
            raise self._failure_closing(err) from None
        rate = int(card["sample_rate"])
        self.stream = LiveStream(
            session, client_rate=start.sample_rate, model_rate=rate,
            step=step_samples(session.info.get("quantum", 1), rate, self.settings.stream_step_ms),
            max_buffered=int(self.settings.stream_max_buffer_seconds * rate),
            deadline_seconds=self.settings.request_timeout_seconds, deliver=self.protocol.on_step)
        self.protocol.stream = self.stream
        self.codec = PcmCodec(start.encoding)
        latency = int(session.info.get("latency", card.get("algorithmic_latency_samples", 0)))
        await self.conn.send(SessionStarted(
            session_id=self.session_id, model=model, task=self.task, sample_rate=rate,
            input_sample_rate=start.sample_rate, encoding=start.encoding, algorithmic_latency_samples=latency,
            algorithmic_latency_ms=round(1000 * latency / rate, 3)))

    async def _serve(self) -> None:
        while True:
            message = await self._receive()
            if message.get("bytes") is not None:
                await self._audio(message["bytes"])
                continue
            parsed = self._parse(message.get("text") or "")
            if isinstance(parsed, tuple):
                await self._protocol_error(*parsed)
            elif isinstance(parsed, SessionStart):
                await self.conn.error("session_already_started", "this session has started; send session.end first")
            elif isinstance(parsed, SessionUpdate):
                if self.task == "kws" and _unknown_keywords(parsed, self.protocol.card):
                    await self.conn.error("invalid_parameter",
                                          f"unknown keywords {_unknown_keywords(parsed, self.protocol.card)}")
                else:
                    self.protocol.update(parsed)
            elif isinstance(parsed, InputFlush):
                await self._drain()
                await self.protocol.on_flush()
            elif isinstance(parsed, SessionEnd):
                await self._end()
                return

    async def _audio(self, data: bytes) -> None:
        samples = self.codec.decode(data)
        if not np.isfinite(samples).all():
            await self.conn.error("invalid_audio", "the frame contains NaN or infinite samples; it was not used")
            return
        try:
            await self.stream.push(samples)
        except BufferOverflow as err:
            raise Closing(TRY_AGAIN_LATER, "buffer_overflow", str(err)) from None

    async def _drain(self, end: bool = False) -> None:
        try:
            await self.stream.drain(end=end)
        except BaseException as err:  # noqa: BLE001 - the pump's failure, reported to the client
            if isinstance(err, asyncio.CancelledError):
                raise
            raise self._failure_closing(err) from None

    async def _end(self) -> None:
        await self._drain(end=True)
        try:
            await self.protocol.on_end()
        except ServiceError as err:
            raise self._failure_closing(err) from None
        audio_seconds = self.stream.received / self.stream.client_rate
        await self.conn.send(SessionEnded(
            session_id=self.session_id, audio_seconds=round(audio_seconds, 3),
            processing_seconds=round(self.stream.processing, 4),
            rtf=round(self.stream.processing / audio_seconds, 4) if audio_seconds else 0.0))
        await self.conn.close(NORMAL)


async def _refuse(websocket: WebSocket, retry_after: int, message: str, code: str) -> None:
    """HTTP 503 at the handshake (servers without the denial extension get a 1013 close instead)."""
    body = JSONResponse(error_body(message, "server_error", code), 503, headers={"Retry-After": str(retry_after)})
    try:
        await websocket.send_denial_response(body)
    except RuntimeError:
        await websocket.accept()
        await websocket.send_text(StreamError(code=code, message=message).model_dump_json())
        await websocket.close(TRY_AGAIN_LATER, code)


async def _stream(websocket: WebSocket, task: str, problem: str | None, settings: Settings,
                  registry: StreamRegistry, engine: Engine) -> None:
    pool: Pool = engine.pool
    if problem is not None:
        # Accept first: a browser sees a close code and reason, never the status of a refused handshake.
        await websocket.accept()
        await websocket.send_text(StreamError(code="invalid_api_key", message=problem).model_dump_json())
        await websocket.close(POLICY, "invalid_api_key")
        return
    if len(registry) >= settings.stream_max_sessions:
        await _refuse(websocket, settings.retry_after_seconds,
                      f"{settings.stream_max_sessions} streams are already open; retry shortly", "overloaded")
        return
    if not pool.ready:
        await _refuse(websocket, settings.retry_after_seconds, "models are still loading", "not_ready")
        return
    handler = StreamHandler(websocket, task, settings, engine)
    registry.active.add(handler.session_id)
    try:
        await websocket.accept()
        await handler.run()
    finally:
        registry.active.discard(handler.session_id)


def _endpoint(task: str):
    async def endpoint(websocket: WebSocket, problem: str | None = Depends(key_problem),
                       settings: Settings = Depends(stream_settings),
                       registry: StreamRegistry = Depends(stream_registry),
                       engine: Engine = Depends(stream_engine)) -> None:
        await _stream(websocket, task, problem, settings, registry, engine)

    endpoint.__name__ = f"stream_{task}"
    return endpoint


for _path, _task in TASKS.items():
    router.add_api_websocket_route(f"/{_path}", _endpoint(_task), name=f"stream_{_path}")
