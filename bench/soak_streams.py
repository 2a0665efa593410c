"""The websocket streams of ``bench/soak.py --streams``: paced sessions over the three streaming tasks, a fixed
cycle of rough patterns, every server message checked against the documented schema, and their tally."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import time
from dataclasses import dataclass, field
from typing import Annotated, Union

from pydantic import Field, TypeAdapter, ValidationError
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from app.streaming.messages import (KeywordDetected, SessionEnded, SessionStarted, StreamError, TranscriptFinal,
                                    TranscriptPartial)
from service import clip

__all__ = ["STREAM_TASKS", "PATTERNS", "CAPACITY_CLOSE", "StreamTally", "StreamSession", "speech_pcm", "streamer",
           "close_detail", "NotOpened", "open_websocket"]

STREAM_TASKS = ("transcribe", "denoise", "keywords")
# One per session, cycled over all streams (7 is coprime with the 3 tasks, so every task meets every pattern):
# normal sessions, flush and update mid-session, a 2 s burst sent at once, a close without session.end, and a
# dropped TCP connection (no close handshake at all).
PATTERNS = ("normal", "flush", "burst", "normal", "abandon", "update", "drop")
FRAME_MS = 20
RATE = 16000
CAPACITY_CLOSE = 1013  # buffer overflow, full queue, lost worker: admission control for streams
ServerMessage = Annotated[Union[SessionStarted, TranscriptPartial, TranscriptFinal, KeywordDetected, SessionEnded,
                                StreamError], Field(discriminator="type")]
server_message: TypeAdapter = TypeAdapter(ServerMessage)
EXPECTED_MESSAGES = {"transcribe": {"transcript.partial", "transcript.final", "session.ended"},
                     "denoise": {"session.ended"}, "keywords": {"keyword.detected", "session.ended"}}


@dataclass
class StreamTally:
    started: int = 0  # sessions started (session.started received)
    completed: int = 0  # ended with session.end -> last result, session.ended, close 1000
    abandoned: int = 0  # closed or dropped by the client on purpose, without session.end
    by_task: dict[str, dict[str, int]] = field(default_factory=dict)
    by_pattern: dict[str, int] = field(default_factory=dict)
    messages: dict[str, int] = field(default_factory=dict)  # server messages by type ("audio": binary frames)
    audio_seconds_sent: float = 0.0
    capacity: dict[str, int] = field(default_factory=dict)  # handshake 503 / close 1013: not errors
    errors: dict[str, int] = field(default_factory=dict)  # everything else that went wrong, by kind
    examples: list[str] = field(default_factory=list)
    open: int = 0

    def error(self, kind: str, detail: str = "") -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.examples) < 20:
            self.examples.append(f"{kind}: {detail}"[:300])

    def count(self, table: dict[str, int], key: str, n: int = 1) -> None:
        table[key] = table.get(key, 0) + n

    def sessions(self) -> int:
        return self.completed + self.abandoned + sum(self.errors.values()) + sum(self.capacity.values())


def close_detail(ws) -> str:
    """Who closed: the close frames sent and received (none either way: the TCP connection just ended; sent by
    this client with 1011 "keepalive ping timeout": its pings went unanswered)."""
    protocol = ws.protocol

    def frame(close) -> str:
        return "none" if close is None else f"{close.code} {close.reason!r}"

    return f"close frame sent {frame(protocol.close_sent)}, received {frame(protocol.close_rcvd)}"


class NotOpened(Exception):
    """A soak websocket that did not open: ``kind`` is ``handshake_<status>`` or ``connect_failed``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail

    @property
    def capacity(self) -> bool:
        """A handshake 503: admission control, counted as a capacity refusal, not an error."""
        return self.kind == "handshake_503"


async def open_websocket(url: str, headers: dict, timeout: float):
    """Connect one soak websocket, so the streams and the Realtime sessions sort a failed handshake alike."""
    try:
        return await ws_connect(url, additional_headers=headers, max_size=None, open_timeout=timeout,
                                close_timeout=10)
    except InvalidStatus as err:
        status = err.response.status_code
        if status == 503:
            await asyncio.sleep(1.0)  # refused for load: back off before the slot tries again
        raise NotOpened(f"handshake_{status}", str(err)) from None
    except (OSError, asyncio.TimeoutError, WebSocketException) as err:
        raise NotOpened("connect_failed", repr(err)) from None


def speech_pcm(seconds: float) -> bytes:
    """16-bit mono PCM of ``service.clip`` (its WAV header cut off): a modulated glide plus noise."""
    return clip(seconds)[44:]


class StreamSession:
    """One websocket session: sends paced frames, reads and checks every server message."""

    def __init__(self, tally: StreamTally, task: str, pattern: str, seconds: float, pcm: bytes, offset: int,
                 timeout: float) -> None:
        self.tally, self.task, self.pattern, self.seconds = tally, task, pattern, seconds
        self.pcm, self.offset, self.timeout = pcm, offset, timeout
        self.types: list[str] = []
        self.audio_back = 0  # bytes of denoised audio received
        self.sent = 0  # bytes of audio sent
        self.bad: str | None = None
        self.session_id = "-"

    async def read(self, ws) -> None:
        """Every message until the close; a message that does not parse or does not belong is recorded."""
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    self.audio_back += len(message)
                    self.tally.count(self.tally.messages, "audio")
                    if self.task != "denoise" and self.bad is None:
                        self.bad = f"binary frame on {self.task}"
                    continue
                try:
                    event = server_message.validate_json(message)
                except ValidationError as err:
                    self.bad = self.bad or f"unparsable message {message[:120]!r}: {err.errors()[0]['msg']}"
                    continue
                self.types.append(event.type)
                self.tally.count(self.tally.messages, event.type)
                if event.type == "session.started":
                    self.session_id = event.session_id  # named in error examples
                if event.type == "error":
                    self.bad = self.bad or f"error message {event.code}: {event.message}"
                elif event.type == "session.started":
                    if len(self.types) != 1:
                        self.bad = self.bad or "session.started twice or late"
                elif event.type not in EXPECTED_MESSAGES[self.task] and self.bad is None:
                    self.bad = f"{event.type} on {self.task}"
        except ConnectionClosed:
            pass

    async def send_audio(self, ws, seconds: float, burst_at: float | None) -> None:
        frame = RATE * FRAME_MS // 1000 * 2
        frames = int(seconds * 1000 / FRAME_MS)
        start = time.monotonic()
        position = 0  # frames sent
        while position < frames:
            if burst_at is not None and position * FRAME_MS / 1000 >= burst_at:
                burst = min(frames - position, 2000 // FRAME_MS)  # 2 s at once, then real time again
                for _ in range(burst):
                    await self._frame(ws, frame)
                    position += 1
                start -= burst * FRAME_MS / 1000
                burst_at = None
                continue
            delay = start + position * FRAME_MS / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._frame(ws, frame)
            position += 1

    async def _frame(self, ws, size: int) -> None:
        first = (self.offset + self.sent) % (len(self.pcm) - size)
        first -= first % 2
        await ws.send(self.pcm[first:first + size])
        self.sent += size

    async def run(self, url: str, headers: dict) -> None:
        tally = self.tally
        try:
            ws = await open_websocket(url, headers, self.timeout)
        except NotOpened as err:
            if err.capacity:
                tally.count(tally.capacity, err.kind)
            else:
                tally.error(err.kind, f"{self.task}: {err.detail}")
            return
        tally.open += 1
        try:
            await self._session(ws)
        finally:
            tally.open -= 1

    async def _session(self, ws) -> None:
        tally = self.tally
        start = {"type": "session.start", "sample_rate": RATE, "encoding": "pcm_s16le"}
        if self.task == "transcribe":
            start["interim_results"] = True
        await ws.send(json.dumps(start))
        reader = asyncio.create_task(self.read(ws))
        try:
            deadline = time.monotonic() + self.timeout
            while not self.types and not reader.done() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if not self.types or self.types[0] != "session.started":
                await self._closed_early(ws, reader, "no session.started")
                return
            tally.started += 1
            tally.count(tally.by_pattern, self.pattern)
            burst_at = self.seconds / 3 if self.pattern == "burst" else None
            if self.pattern in ("flush", "update"):
                half = round(self.seconds / 2, 2)
                await self.send_audio(ws, half, None)
                await ws.send(json.dumps({"type": "input.flush"} if self.pattern == "flush" else
                                         {"type": "session.update", "interim_results": False}
                                         if self.task == "transcribe" else {"type": "session.update", "threshold": 0.6}
                                         if self.task == "keywords" else {"type": "session.update"}))
                await self.send_audio(ws, self.seconds - half, None)
            else:
                await self.send_audio(ws, self.seconds, burst_at)
            tally.audio_seconds_sent += self.sent / 2 / RATE
            if self.pattern in ("abandon", "drop"):  # a close without session.end, or no close handshake at all
                await ws.close() if self.pattern == "abandon" else ws.transport.abort()
                await asyncio.wait_for(reader, self.timeout)
                if self.bad is not None:
                    tally.error("unexpected_message", f"{self.task}/{self.pattern}: {self.bad}")
                    self._count("error")
                else:
                    tally.abandoned += 1
                    self._count("abandoned" if self.pattern == "abandon" else "dropped")
                return
            await ws.send(json.dumps({"type": "session.end"}))
            await asyncio.wait_for(reader, self.timeout)
        except ConnectionClosed:
            await self._closed_early(ws, reader, "closed while sending")
            return
        except asyncio.TimeoutError:
            reader.cancel()
            tally.error("timeout", f"{self.task}/{self.pattern}: after {self.types[-3:]}")
            self._count("timeout")
            ws.transport.abort()
            return
        self._judge_end(ws)

    async def _closed_early(self, ws, reader: asyncio.Task, what: str) -> None:
        try:
            await asyncio.wait_for(reader, self.timeout)
        except asyncio.TimeoutError:
            reader.cancel()
        if ws.close_code == CAPACITY_CLOSE:
            self.tally.count(self.tally.capacity, f"close_{CAPACITY_CLOSE}_{ws.close_reason or 'unknown'}")
            self._count("capacity")
        else:
            self.tally.error(f"close_{ws.close_code}", f"{self.task}/{self.pattern} session {self.session_id}: {what}, "
                                                       f"{ws.close_reason!r}, {self.bad or ''}; {close_detail(ws)}")
            self._count("error")
        ws.transport.abort()

    def _judge_end(self, ws) -> None:
        tally, types = self.tally, self.types
        if ws.close_code == CAPACITY_CLOSE:
            tally.count(tally.capacity, f"close_{CAPACITY_CLOSE}_{ws.close_reason or 'unknown'}")
            self._count("capacity")
            return
        problem = self.bad
        if problem is None and ws.close_code != 1000:
            problem = f"close {ws.close_code} {ws.close_reason!r}; {close_detail(ws)}; last {types[-3:]}"
        if problem is None and (not types or types[-1] != "session.ended"):
            problem = f"last message {types[-1:]} is not session.ended"
        if problem is None and self.task == "transcribe" and (len(types) < 2 or types[-2] != "transcript.final"):
            problem = f"no transcript.final before session.ended: {types[-3:]}"
        if problem is None and self.task == "denoise" and self.audio_back != self.sent:
            problem = f"{self.audio_back // 2} samples back for {self.sent // 2} sent"
        if problem is None:
            tally.completed += 1
            self._count("completed")
            return
        kind = ("unparsable" if problem.startswith("unparsable") else "error_message" if problem.startswith("error")
                else f"close_{ws.close_code}" if problem.startswith("close") else "no_final"
                if "session.ended" in problem or "transcript.final" in problem else "sample_count"
                if "samples back" in problem else "unexpected_message")
        tally.error(kind, f"{self.task}/{self.pattern} session {self.session_id}: {problem}")
        self._count("error")

    def _count(self, outcome: str) -> None:
        self.tally.count(self.tally.by_task.setdefault(self.task, {}), outcome)


async def streamer(slot: int, args: argparse.Namespace, base: str, headers: dict, tally: StreamTally, pcm: bytes,
                   patterns, end: float) -> None:
    """One of the ``--streams`` slots: session after session until ``end``, cycling over the three tasks."""
    rng = random.Random(slot)
    low, high = args.session_seconds
    url = base.replace("http", "ws", 1) + "/v1/stream/"
    await asyncio.sleep(slot * 0.3)  # do not open them all in the same instant
    for index in itertools.count():
        left = end - time.monotonic()
        if left < min(low, 1.0):
            return
        task = STREAM_TASKS[(slot + index) % len(STREAM_TASKS)]
        seconds = round(min(rng.uniform(low, high), left), 2)
        session = StreamSession(tally, task, next(patterns), seconds, pcm, rng.randrange(len(pcm)),
                                args.stream_timeout)
        await session.run(url + task, headers)
