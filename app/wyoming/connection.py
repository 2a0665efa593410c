"""One Wyoming client from connect to disconnect::

    client: describe                                        server: info
    client: ping                                            server: pong
    client: transcribe, audio-start, audio-chunk..., audio-stop
                                        server: transcript-start, transcript-chunk..., transcript, transcript-stop
    client: detect, audio-start, audio-chunk..., audio-stop
                                        server: detection (each keyword, as it is spotted), not-detected at the
                                                stop when there was none

A transcription holds the audio like an upload and decodes it at ``audio-stop`` through the raw-PCM path of
uploads and :meth:`app.engine.Engine.transcribe`, so its text is ``POST /transcribe``'s for the same audio; the
transcript-chunk events are its words (they concatenate to the text). Wake words run live
(:class:`app.wyoming.wake.WakeStream`): the keyword model's words, and any other name the recognizer can spell
(searched for in its output as ``POST /keywords`` does; :func:`app.keywords.choose_keywords` splits them).

Bad input gets an ``error`` event (``text``, ``code``) and the connection goes on: ``malformed_event``,
``invalid_event``, ``unknown_event``, ``unexpected_event`` (one only servers send), ``no_request`` (audio before
transcribe or detect), ``audio_already_started``, ``audio_in_progress``, ``unsupported_audio_format``,
``audio_format_changed``, ``audio_too_long``, ``payload_too_large`` (over ``MAX_UPLOAD_MB``), ``unsupported_language``,
``unknown_wake_word``, ``unknown_program``, ``model_not_found``, and the engine's own codes (``overloaded``, ``worker_lost``, ...). After
an error in an audio stream the rest of that stream is dropped quietly until its ``audio-stop``. Only a stream
out of step (``event_too_large``, lengths that cannot be trusted), ``idle_timeout`` and ``session_too_long``
close the connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.error import Error
from wyoming.event import Event, Eventable, async_write_event
from wyoming.info import Describe
from wyoming.ping import Ping, Pong
from wyoming.wake import Detect, Detection, NotDetected

from model_zoo.pipelines.asr import DEFAULT_BEAM_SEARCH

from ..audio.decode import decode
from ..engine import Engine
from ..errors import ServiceError, echo
from ..http.dependencies import deadline_for, resolve_model
from ..keywords import KeywordChoice, choose_keywords, first_served, split_specs
from ..settings import Settings
from .audio import Format, format_problem
from .framing import FramingError, Problem, read_event
from .programs import ASR_PROGRAM, LANGUAGE, WAKE_PROGRAM, describe, served
from .wake import WakeStream, engine_call

__all__ = ["WyomingConnection", "SERVER_EVENTS"]

log = logging.getLogger(__name__)

# Events only a server sends: a client sending one is confused, not just newer than us.
SERVER_EVENTS = frozenset({"info", "pong", "error", "transcript", "transcript-start", "transcript-chunk",
                           "transcript-stop", "detection", "not-detected"})


@dataclass
class Request:
    task: str  # "asr" or "kws"
    model: str
    keywords: KeywordChoice | None = None  # wake words asked for (None: all of the keyword model's)


@dataclass
class AudioIn:
    """One audio stream, from ``audio-start`` (or its first chunk) to ``audio-stop``."""

    request: Request
    fmt: Format
    failed: bool = False  # an error was sent: the rest is dropped until audio-stop
    chunks: list[bytes] = field(default_factory=list)  # transcription: the PCM as sent
    size: int = 0
    wake: WakeStream | None = None  # wake words
    base_ms: int | None = None  # the client's timestamp (ms) of the stream's first sample, if it sends them


def _milliseconds(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def word_chunks(text: str) -> list[str]:
    """A transcript as its words, each after the first with the space before it: they concatenate to ``text``."""
    first, *rest = text.split(" ") if text else [""]
    return ([first] if first else []) + [" " + word for word in rest]


class WyomingConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, engine: Engine,
                 settings: Settings) -> None:
        self.reader, self.writer, self.engine, self.settings = reader, writer, engine, settings
        self.opened = time.monotonic()
        self.request: Request | None = None
        self.audio: AudioIn | None = None
        self.stray = False  # an error for audio without a request was sent (one per stray stream)
        self._write = asyncio.Lock()
        self.handlers: dict[str, Callable[[Event], Awaitable[None]]] = {
            "describe": self._describe, "ping": self._ping, "select-program": self._select_program,
            "transcribe": self._transcribe, "detect": self._detect,
            "audio-start": self._audio_start, "audio-chunk": self._audio_chunk, "audio-stop": self._audio_stop,
        }

    # ---- the connection --------------------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            while True:
                try:
                    event = await asyncio.wait_for(read_event(self.reader), self._timeout())
                except FramingError as err:
                    await self.error(err.code, err.message)
                    if err.fatal:
                        return
                    continue
                except asyncio.TimeoutError:
                    if time.monotonic() - self.opened >= self.settings.stream_max_session_seconds:
                        await self.error("session_too_long", f"connections last at most "
                                         f"{self.settings.stream_max_session_seconds:g} s")
                    else:
                        await self.error("idle_timeout", f"no event for {self.settings.stream_idle_timeout_seconds:g} s")
                    return
                if event is None:
                    return  # the client went away
                try:
                    await self.handle(event)
                except Problem as problem:
                    await self.error(problem.code, problem.text)
                except (ConnectionError, asyncio.IncompleteReadError):
                    raise
                except Exception as err:  # noqa: BLE001 - a bug must not end the connection silently
                    log.exception("Wyoming %s failed", event.type)
                    await self._close_audio()
                    self.request = None
                    await self.error("internal_error", f"{event.type} failed: {type(err).__name__}")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # an abrupt disconnect: nothing to tell
        finally:
            await self._close_audio()
            self.writer.close()

    def _timeout(self) -> float:
        left = self.settings.stream_max_session_seconds - (time.monotonic() - self.opened)
        return max(0.0, min(self.settings.stream_idle_timeout_seconds, left))

    async def handle(self, event: Event) -> None:
        handler = self.handlers.get(event.type)
        if handler is not None:
            await handler(event)
        elif event.type in SERVER_EVENTS:
            raise Problem("unexpected_event", f"{event.type} is an event servers send, not clients")
        else:
            raise Problem("unknown_event", f"unknown event type {echo(event.type)}")

    async def send(self, message: Eventable) -> None:
        async with self._write:  # the wake-word pump and the event loop both write; one event at a time
            await async_write_event(message.event(), self.writer)

    async def error(self, code: str, text: str) -> None:
        await self.send(Error(text=text, code=code))

    # ---- describe, ping, select-program ----------------------------------------------------------------------
    async def _describe(self, event: Event) -> None:
        Describe.from_event(event)
        await self.send(describe(self.engine))

    async def _ping(self, event: Event) -> None:
        text = Ping.from_event(event).text
        await self.send(Pong(text=text if isinstance(text, str) else None))

    async def _select_program(self, event: Event) -> None:
        name = event.data.get("name")
        programs = ([ASR_PROGRAM] if served(self.engine, "asr") else []) + \
                   ([WAKE_PROGRAM] if served(self.engine, "kws") else [])
        if name not in programs:
            raise Problem("unknown_program", f"no program {echo(name)}; this server has {', '.join(programs)}")

    # ---- requests --------------------------------------------------------------------------------------------
    def _no_open_audio(self, kind: str) -> None:
        if self.audio is not None:
            raise Problem("audio_in_progress", f"{kind} during an audio stream; send audio-stop first")

    async def _transcribe(self, event: Event) -> None:
        self._no_open_audio("transcribe")
        request = Transcribe.from_event(event)
        language = request.language
        if language is not None and (not isinstance(language, str) or
                                     language.lower().replace("_", "-").split("-")[0] != LANGUAGE):
            raise Problem("unsupported_language", f"language {echo(language)} is not supported; the recognizer "
                          f"is English only ({LANGUAGE})")
        name = request.name if isinstance(request.name, str) and request.name else None
        self.request = Request("asr", self._model(name, "asr"))
        self.stray = False

    async def _detect(self, event: Event) -> None:
        self._no_open_audio("detect")
        names = Detect.from_event(event).names
        model = self._model(None, "kws")
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise Problem("invalid_event", "detect: names must be a list of wake word names")
        keywords = None
        if names:  # the keyword model's words, and any other the recognizer can spell (POST /keywords' rule)
            try:
                keywords = choose_keywords(self.engine, model, split_specs(names, "names"),
                                           first_served(self.engine, "asr"))
            except ServiceError as err:
                raise Problem("unknown_wake_word", f"detect: {err.message}; describe lists the keyword model's "
                              "words") from None
        self.request = Request("kws", model, keywords)
        self.stray = False

    def _model(self, name: str | None, task: str) -> str:
        try:
            return resolve_model(self.engine, self.settings, name, task)
        except ServiceError as err:
            raise Problem(err.code, err.message) from None

    # ---- audio -----------------------------------------------------------------------------------------------
    def _format(self, event: Event) -> Format:
        try:
            return Format.of(event.data)
        except KeyError as err:
            raise Problem("invalid_event", f"{event.type}: {err.args[0]} is missing") from None

    async def _audio_start(self, event: Event) -> None:
        if self.audio is not None:
            raise Problem("audio_already_started", "audio-start during an audio stream; send audio-stop first")
        fmt = self._format(event)
        await self._open_audio(fmt, event.data.get("timestamp"))

    async def _open_audio(self, fmt: Format, timestamp: Any) -> None:
        if self.request is None:
            if self.stray:
                return
            self.stray = True
            raise Problem("no_request", "send transcribe or detect before audio")
        live = self.request.task == "kws"
        if problem := format_problem(fmt, live):
            self.request = None  # the stream is refused: its chunks and stop are stray now, answered once
            self.stray = True
            raise Problem("unsupported_audio_format", problem)
        audio = self.audio = AudioIn(self.request, fmt, base_ms=_milliseconds(timestamp))
        if live:
            try:
                audio.wake = await WakeStream.open(self.engine, self.settings, self.request.model,
                                                   self.request.keywords, fmt,
                                                   lambda detection: self._detected(audio, detection))
            except Problem:
                audio.failed = True  # its chunks are dropped until audio-stop
                raise

    async def _audio_chunk(self, event: Event) -> None:
        fmt = self._format(event)
        if self.audio is None:
            await self._open_audio(fmt, event.data.get("timestamp"))  # audio-start is optional for us
            if self.audio is None:
                return
        audio = self.audio
        if audio.failed:
            return
        if audio.base_ms is None:
            audio.base_ms = _milliseconds(event.data.get("timestamp"))
        try:
            self._take(audio, fmt, event.payload or b"")
            if audio.wake is not None:
                await audio.wake.feed(b"".join(audio.chunks))
                audio.chunks.clear()
        except Problem:
            audio.failed, audio.chunks = True, []  # the rest of this stream is dropped until audio-stop
            raise

    def _take(self, audio: AudioIn, fmt: Format, payload: bytes) -> None:
        if fmt != audio.fmt:
            raise Problem("audio_format_changed", f"a chunk of {fmt} in a stream of {audio.fmt}")
        audio.size += len(payload)
        limit = self.settings.max_audio_seconds
        if audio.wake is None and audio.size > limit * fmt.rate * fmt.frame_bytes:
            raise Problem("audio_too_long", f"the audio is longer than {limit:g} s")
        if audio.wake is None and audio.size > self.settings.max_upload_bytes:  # held until audio-stop, as an upload
            raise Problem("payload_too_large", f"the audio is over the upload limit of {self.settings.max_upload_mb:g} MB")
        audio.chunks.append(payload)

    async def _audio_stop(self, event: Event) -> None:
        if self.audio is None:
            request, self.request = self.request, None
            if request is None:
                if not self.stray:
                    raise Problem("no_request", "audio-stop without transcribe or detect")
                self.stray = False  # the end of a refused stream: the next one is answered again
            elif request.task == "asr":
                await self._send_transcript("")  # no audio at all: nothing was said
            else:
                await self.send(NotDetected())
            return
        audio, self.audio, self.request = self.audio, None, None
        try:
            if audio.failed:
                pass
            elif audio.wake is None:
                await self._finish_transcript(audio)
            elif not await audio.wake.finish():
                await self.send(NotDetected())
        finally:
            if audio.wake is not None:
                await audio.wake.close()

    async def _close_audio(self) -> None:
        if self.audio is not None and self.audio.wake is not None:
            await self.audio.wake.close()  # frees the worker's state at once
        self.audio = None

    # ---- transcription ---------------------------------------------------------------------------------------
    async def _finish_transcript(self, audio: AudioIn) -> None:
        data = b"".join(audio.chunks)
        data = data[: len(data) - len(data) % audio.fmt.frame_bytes]
        text = ""
        if data:
            # The raw-PCM path of uploads, in a thread as for uploads: the same samples as POST /transcribe.
            clip = await engine_call(asyncio.to_thread(decode, data, raw=audio.fmt.raw,
                                                        max_seconds=self.settings.max_audio_seconds))
            transcript = await engine_call(self.engine.transcribe(
                audio.request.model, clip, beam_search=DEFAULT_BEAM_SEARCH,
                deadline=deadline_for(self.settings, clip.duration)))
            text = transcript.text
        await self._send_transcript(text)

    async def _send_transcript(self, text: str) -> None:
        await self.send(TranscriptStart(language=LANGUAGE))
        for chunk in word_chunks(text):
            await self.send(TranscriptChunk(text=chunk))
        await self.send(Transcript(text=text, language=LANGUAGE))
        await self.send(TranscriptStop())

    async def _detected(self, audio: AudioIn, detection: Any) -> None:
        timestamp = (audio.base_ms or 0) + round(detection.end * 1000)
        await self.send(Detection(name=detection.keyword, timestamp=timestamp))
