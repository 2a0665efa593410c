"""What the OpenAI Realtime and Wyoming sessions of ``bench/soak.py --realtime N --wyoming N`` share: paced audio,
a session's tally and its first problem, and a slot's loop of sessions (the sessions: ``soak_realtime.py``,
``soak_wyoming.py``).

A session that ends as its pattern says counts as completed (``abandon``/``drop``: abandoned); one refused for
capacity (handshake 503, close 1013, ``too_many_connections``, ``overloaded``) as a capacity refusal; anything
else is an error of its kind (``handshake_<status>``, ``connect_failed``, ``timeout``, ``error_event``,
``invalid_event``, ``closed_early``, ``incomplete_turn``, ``no_transcript``). They are tallied like the
websocket streams (:class:`soak_streams.StreamTally`).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import typing

from service import clip
from soak_streams import StreamTally

__all__ = ["CHUNK_MS", "CAPACITY_CODES", "pcm", "Paced", "Session", "session_after_session"]

CHUNK_MS = 100
CAPACITY_CODES = {"too_many_connections", "overloaded", "buffer_overflow", "worker_lost"}


def pcm(seconds: float, rate: int) -> bytes:
    """16-bit mono PCM of ``service.clip`` at ``rate`` (its WAV header cut off)."""
    return clip(seconds, rate)[44:]


class Paced:
    """Audio out of a long buffer, ``CHUNK_MS`` at a time, in real time from the first chunk."""

    def __init__(self, audio: bytes, rate: int, offset: int) -> None:
        self.audio, self.size, self.offset, self.sent = audio, rate * CHUNK_MS // 1000 * 2, offset, 0

    async def chunks(self, seconds: float) -> typing.AsyncIterator[bytes]:
        start = time.monotonic()
        for i in range(int(seconds * 1000 / CHUNK_MS)):
            delay = start + i * CHUNK_MS / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            first = (self.offset + self.sent) % (len(self.audio) - self.size)
            first -= first % 2
            self.sent += self.size
            yield self.audio[first:first + self.size]


class Session:
    """What both protocols' sessions share: the tally, the pattern, the events seen and the first problem."""

    protocol = ""

    def __init__(self, tally: StreamTally, pattern: str, seconds: float, audio: bytes, rate: int, offset: int,
                 timeout: float) -> None:
        self.tally, self.pattern, self.seconds, self.timeout = tally, pattern, seconds, timeout
        self.paced = Paced(audio, rate, offset)
        self.rate = rate
        self.events: list[dict] = []
        self.bad: tuple[str, str] | None = None  # (error kind, detail)
        self.capacity: str | None = None

    @property
    def task(self) -> str:
        """What the session's outcomes are counted under (``by_task``)."""
        return self.protocol

    def problem(self, kind: str, detail: str) -> None:
        if self.bad is None:
            self.bad = (kind, f"{self.protocol}/{self.pattern}: {detail}"[:300])

    async def until(self, condition: typing.Callable[[], bool], reader: asyncio.Task) -> bool:
        """Wait (up to the timeout) until ``condition()``; False when the reader ended or time ran out first."""
        deadline = time.monotonic() + self.timeout
        while not condition():
            if reader.done() or time.monotonic() > deadline:
                return condition()
            await asyncio.sleep(0.02)
        return True

    def finish(self, outcome: str) -> None:
        """Tally the session: ``outcome`` (completed / abandoned) unless a problem or a refusal came first."""
        tally = self.tally
        tally.audio_seconds_sent += self.paced.sent / 2 / self.rate
        by_task = tally.by_task.setdefault(self.task, {})
        if self.capacity is not None:
            tally.count(tally.capacity, self.capacity)
            tally.count(by_task, "capacity")
        elif self.bad is not None:
            tally.error(*self.bad)
            tally.count(by_task, "error")
        else:
            setattr(tally, outcome, getattr(tally, outcome) + 1)
            tally.count(by_task, outcome)


async def session_after_session(session_type: type[Session], rate: int, where: tuple, args: argparse.Namespace,
                                tally: StreamTally, patterns: typing.Iterator[str], end: float, *, seed: int,
                                start_after: float) -> None:
    """One slot's sessions until ``end``, written once so the Realtime and Wyoming slots draw theirs alike."""
    rng = random.Random(seed)
    low, high = args.session_seconds
    audio = pcm(61.0, rate)
    await asyncio.sleep(start_after)
    while (left := end - time.monotonic()) >= min(low, 1.0):
        session = session_type(tally, next(patterns), round(min(rng.uniform(low, high), left), 2), audio, rate,
                               rng.randrange(len(audio)), args.stream_timeout)
        await session.run(*where)
