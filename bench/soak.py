"""Soak test: a long mix of requests against a real server process, watching for leaks.

It starts ``centaurus-speech serve`` on loopback (random ``small`` models with ``--random-models DIR``, else
the shipped checkpoints), or uses ``--url`` and ``--server-pid`` of a running local one, and keeps
``--concurrency`` clients busy with a fixed mix (transcriptions native and OpenAI in several formats,
denoising, keywords, model listing, a few bad uploads that must get 4xx) until ``--requests`` are done or
``--seconds`` have passed. Every ``--sample-every`` requests it records:

* resident memory of the server and its workers (VmRSS from /proc, summed),
* open file descriptors of the server process (/proc/PID/fd) and of its workers,
* resident streaming sessions (``centaurus_active_streams`` from /metrics),

and at the end judges: memory growth after warm-up (the first ``--warmup`` fraction) under
``--max-rss-growth`` (5%), descriptors back to the warm-up level, no session left, and no errors besides the
4xx the bad uploads ask for and the 503s of admission control. Exit status 1 when a check fails; the last line
is one JSON object with every number.

With ``--streams N --stream-minutes M`` it also (at the same time as the requests, or alone with
``--requests 0``) keeps N websocket streams open for M minutes, cycling over ``/v1/stream/{transcribe,denoise,
keywords}``: each sends speech-like 16 kHz ``pcm_s16le`` in 20 ms frames paced in real time, in sessions of
``--session-seconds`` (5-60 s) that end with ``session.end`` and are followed by a new session; transcription
asks for interim results. A fixed cycle of patterns mixes in the legal but rough ones: ``input.flush`` and
``session.update`` mid-session, a burst of 2 s of audio sent at once, a client that closes without
``session.end`` and one that drops the TCP connection. Every server message must parse as the documented
schema (``app/stream_schemas.py``), a session that ends must get its last result and ``session.ended`` and a
close 1000 (denoise: exactly as many samples back as were sent). Errors are counted by kind; a 503 at the
handshake and a 1013 close are capacity refusals, counted apart. Samples are then taken every
``--sample-seconds`` as well, and the warm-up is the ``--warmup`` fraction of the stream time.

    python bench/soak.py --random-models /tmp/soak-models --requests 10000 --concurrency 8
    python bench/soak.py --random-models /tmp/soak-models --requests 300        # the CI version
    python bench/soak.py --random-models /tmp/soak-models --requests 0 --streams 6 --stream-minutes 30
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Union

import httpx
from pydantic import Field, TypeAdapter, ValidationError
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from app.stream_schemas import (KeywordDetected, SessionEnded, SessionStarted, StreamError, TranscriptFinal,
                                TranscriptPartial)
from service import clip, make_random_models, start_server

# (name, path, form fields, clip seconds, statuses that count as correct)
MIX: list[tuple[str, str, dict, float, set[int]]] = [
    ("transcribe 1s", "/transcribe", {}, 1.0, {200}),
    ("transcribe 3s beam", "/transcribe", {"beam_search": "true"}, 3.0, {200}),
    ("openai json", "/v1/audio/transcriptions", {"model": "whisper-1"}, 2.0, {200}),
    ("openai verbose", "/v1/audio/transcriptions", {"response_format": "verbose_json",
                                                    "timestamp_granularities[]": ["word", "segment"]}, 1.5, {200}),
    ("openai srt", "/v1/audio/transcriptions", {"response_format": "srt"}, 1.0, {200}),
    ("denoise 1s", "/denoise", {}, 1.0, {200}),
    ("denoise 2s flac", "/denoise", {"response_format": "flac"}, 2.0, {200}),
    ("keywords 1s", "/keywords", {}, 1.0, {200}),
    ("keywords 4s", "/keywords", {"hop": "0.5"}, 4.0, {200}),
    ("models", "/v1/models", {}, 0.0, {200}),
    ("not audio", "/transcribe", {}, -1.0, {415}),
    ("unknown model", "/keywords", {"model": "nope"}, 1.0, {404}),
]
ADMISSION = 503  # the queue is full: what admission control is for, not an error


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def close_detail(ws) -> str:
    """Who closed: the close frames sent and received (none either way: the TCP connection just ended; sent by
    this client with 1011 "keepalive ping timeout": its pings went unanswered)."""
    protocol = ws.protocol

    def frame(close) -> str:
        return "none" if close is None else f"{close.code} {close.reason!r}"

    return f"close frame sent {frame(protocol.close_sent)}, received {frame(protocol.close_rcvd)}"


@dataclass
class Sample:
    requests: int
    seconds: float
    rss_mb: float  # server + workers
    server_fds: int
    worker_fds: int
    sessions: float
    workers: list[int]
    streams_open: int = 0  # websockets this client had open
    stream_sessions: int = 0  # stream sessions finished so far (any outcome)
    load: float = 0.0  # 1-minute load average of the machine


@dataclass
class Tally:
    by_case: dict[str, dict[str, int]] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    done: int = 0

    def record(self, case: str, status: int, expected: set[int]) -> None:
        counts = self.by_case.setdefault(case, {})
        counts[str(status)] = counts.get(str(status), 0) + 1
        self.done += 1
        if status not in expected and status != ADMISSION and len(self.unexpected) < 20:
            self.unexpected.append(f"{case}: {status}")

    def errors(self) -> int:
        return sum(n for case, counts in self.by_case.items() for status, n in counts.items()
                   if int(status) not in next(m[4] for m in MIX if m[0] == case) and int(status) != ADMISSION)

    def admission(self) -> int:
        return sum(counts.get(str(ADMISSION), 0) for counts in self.by_case.values())


# ---- streams -----------------------------------------------------------------------------------------------------
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
            ws = await ws_connect(url, additional_headers=headers, max_size=None, open_timeout=self.timeout,
                                  close_timeout=10)
        except InvalidStatus as err:
            status = err.response.status_code
            if status == 503:
                tally.count(tally.capacity, "handshake_503")
                await asyncio.sleep(1.0)
            else:
                tally.error(f"handshake_{status}", f"{self.task}: {err}")
            return
        except (OSError, asyncio.TimeoutError, WebSocketException) as err:
            tally.error("connect_failed", f"{self.task}: {err!r}")
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


async def settle(client: httpx.AsyncClient, seconds: float) -> float:
    """Wait (up to ``seconds``) for the server to report no resident session; how long it took."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        for line in (await client.get("/metrics", timeout=30)).text.splitlines():
            if line.startswith("centaurus_active_streams ") and float(line.split()[1]) == 0:
                return round(time.monotonic() - started, 2)
        await asyncio.sleep(0.25)
    return float("nan")


async def sample(client: httpx.AsyncClient, server_pid: int, done: int, started: float,
                 streams: StreamTally | None = None) -> Sample:
    ready = (await client.get("/health/ready", timeout=30)).json()
    workers = [w["pid"] for w in ready.get("workers", []) if w.get("pid")]
    sessions = float("nan")
    for line in (await client.get("/metrics", timeout=30)).text.splitlines():
        if line.startswith("centaurus_active_streams "):
            sessions = float(line.split()[1])
    rss = rss_kb(server_pid) + sum(rss_kb(p) for p in workers)
    return Sample(done, round(time.monotonic() - started, 1), round(rss / 1024, 1), fd_count(server_pid),
                  sum(fd_count(p) for p in workers), sessions, workers,
                  streams.open if streams else 0, streams.sessions() if streams else 0, round(os.getloadavg()[0], 2))


def show(last: Sample) -> None:
    print(f"# {last.requests:>6} requests {last.seconds:>7.1f} s  rss {last.rss_mb:8.1f} MB  "
          f"fds {last.server_fds}+{last.worker_fds}  sessions {last.sessions:g}  streams open {last.streams_open} "
          f"done {last.stream_sessions}  load {last.load:.2f}", file=sys.stderr, flush=True)


async def soak(args: argparse.Namespace, base: str, server_pid: int) -> tuple[Tally, StreamTally, list[Sample], float]:
    bodies = {seconds: (clip(seconds) if seconds > 0 else b"this is not audio" * 64)
              for seconds in {m[3] for m in MIX if m[3] != 0.0}}
    tally, streams, samples = Tally(), StreamTally(), []
    cases = itertools.cycle(MIX)
    started = time.monotonic()
    end = started + args.seconds
    lock = asyncio.Lock()
    claimed = [0]  # requests handed out so far
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    # Idle pooled connections are dropped after 2 s, before uvicorn's 5 s keep-alive timeout: with equal timeouts
    # a request can go out on a connection the server is closing (one ReadError in the first 10,000-request run).
    limits = httpx.Limits(max_connections=args.concurrency + 4, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=300) as client:
        samples.append(await sample(client, server_pid, 0, started, streams))

        async def user() -> None:
            while time.monotonic() < end:
                async with lock:
                    if claimed[0] >= args.requests:
                        return
                    claimed[0] += 1
                    name, path, fields, seconds, expected = next(cases)
                try:
                    if path == "/v1/models":
                        response = await client.get(path)
                    else:
                        response = await client.post(path, files={"file": ("clip.wav", bodies[seconds])}, data=fields)
                    status = response.status_code
                except httpx.HTTPError as err:
                    status = 0
                    print(f"# transport error on {name}: {err!r}", file=sys.stderr)
                async with lock:
                    tally.record(name, status, expected)
                    due = tally.done % args.sample_every == 0
                if due:
                    samples.append(await sample(client, server_pid, tally.done, started, streams))
                    show(samples[-1])

        stream_end = started + 60 * args.stream_minutes
        stopped = asyncio.Event()

        async def sampler() -> None:  # during the streams: a sample every --sample-seconds
            while not stopped.is_set():
                try:
                    await asyncio.wait_for(stopped.wait(), args.sample_seconds)
                except asyncio.TimeoutError:
                    samples.append(await sample(client, server_pid, tally.done, started, streams))
                    show(samples[-1])

        async def all_streams() -> None:
            if args.streams <= 0 or args.stream_minutes <= 0:
                return
            pcm, patterns = speech_pcm(61.0), itertools.cycle(PATTERNS)
            sampling = asyncio.create_task(sampler())
            await asyncio.gather(*(streamer(slot, args, base, headers, streams, pcm, patterns, stream_end)
                                   for slot in range(args.streams)))
            stopped.set()
            await sampling

        await asyncio.gather(all_streams(), *(user() for _ in range(args.concurrency if args.requests > 0 else 0)))
        await asyncio.sleep(1.0)  # let closing sessions and sockets settle before the last look
        settled = await settle(client, 10.0)
        samples.append(await sample(client, server_pid, tally.done, started, streams))
    return tally, streams, samples, settled


def judge(args: argparse.Namespace, tally: Tally, streams: StreamTally, samples: list[Sample],
          settled: float) -> dict:
    samples = sorted(samples, key=lambda s: s.seconds)
    streaming = args.streams > 0 and args.stream_minutes > 0

    def progress(s: Sample) -> float:  # of the slower part: requests done, stream time passed
        parts = ([s.requests / tally.done] if args.requests > 0 and tally.done else []) + \
                ([s.seconds / (60 * args.stream_minutes)] if streaming else [])
        return min(parts, default=1.0)

    warm = next((s for s in samples if progress(s) >= args.warmup), samples[0])
    last = samples[-1]
    after = [s for s in samples if s.seconds >= warm.seconds]
    peak = max(s.rss_mb for s in after)
    same_workers = all(s.workers == warm.workers for s in after)
    growth = (peak - warm.rss_mb) / warm.rss_mb if warm.rss_mb else float("nan")
    checks = {
        "rss_growth_under_limit": growth < args.max_rss_growth,
        "server_fds_not_growing": last.server_fds <= warm.server_fds,
        "worker_fds_not_growing": last.worker_fds <= warm.worker_fds,
        "no_sessions_left": last.sessions == 0,
        "no_worker_replaced": same_workers,
    }
    if args.requests > 0:
        checks["requests_done"] = tally.done >= args.requests
        checks["no_unexpected_statuses"] = tally.errors() == 0
    if streaming:
        # Every slot got through more than one session, and capacity refusals did not replace the streams.
        checks["stream_sessions_completed"] = streams.completed >= args.streams
        checks["no_stream_errors"] = not streams.errors
    if streaming and args.requests <= 0:
        # Streams alone: the quiet server at the end (every socket closed) is compared with the quiet server at
        # the start too, so a leak smaller than the streams' own sockets at warm-up shows.
        checks["fds_back_to_start"] = (last.server_fds <= samples[0].server_fds
                                       and last.worker_fds <= samples[0].worker_fds)
    verdict = {"checks": checks, "passed": all(checks.values()), "rss_warm_mb": warm.rss_mb, "rss_peak_mb": peak,
               "rss_last_mb": last.rss_mb, "rss_growth": round(growth, 4), "warm_at_request": warm.requests,
               "warm_at_seconds": warm.seconds, "rss_start_mb": samples[0].rss_mb,
               "server_fds_start": samples[0].server_fds, "server_fds_warm": warm.server_fds,
               "server_fds_peak": max(s.server_fds for s in after), "server_fds_last": last.server_fds,
               "worker_fds_start": samples[0].worker_fds, "worker_fds_warm": warm.worker_fds,
               "worker_fds_peak": max(s.worker_fds for s in after), "worker_fds_last": last.worker_fds,
               "sessions_last": last.sessions, "sessions_settled_after_s": settled,
               "load_mean": round(sum(s.load for s in samples) / len(samples), 2),
               "load_max": max(s.load for s in samples), "seconds": last.seconds}
    if args.requests > 0:
        verdict.update({"requests_done": tally.done, "errors": tally.errors(), "admission_503": tally.admission(),
                        "unexpected": tally.unexpected})
    if streaming:
        verdict["streams"] = {
            "streams": args.streams, "minutes": args.stream_minutes, "sessions_started": streams.started,
            "sessions_completed": streams.completed, "sessions_abandoned": streams.abandoned,
            "audio_seconds_sent": round(streams.audio_seconds_sent, 1),
            "messages": dict(sorted(streams.messages.items())), "messages_total": sum(streams.messages.values()),
            "capacity_refusals": streams.capacity, "errors": streams.errors,
            "errors_total": sum(streams.errors.values()),
            "error_examples": streams.examples, "by_task": streams.by_task, "by_pattern": streams.by_pattern}
    return verdict


def print_table(samples: list[Sample]) -> None:
    print(f"{'seconds':>8}{'requests':>9}{'rss MB':>9}{'srv fds':>8}{'wrk fds':>8}{'sessions':>9}{'streams':>8}"
          f"{'done':>6}{'load':>6}")
    for s in sorted(samples, key=lambda s: s.seconds):
        print(f"{s.seconds:>8.1f}{s.requests:>9}{s.rss_mb:>9.1f}{s.server_fds:>8}{s.worker_fds:>8}{s.sessions:>9g}"
              f"{s.streams_open:>8}{s.stream_sessions:>6}{s.load:>6.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running local server (with --server-pid); default: start one")
    parser.add_argument("--server-pid", type=int, help="pid of the server at --url, to read its memory and fds")
    parser.add_argument("--api-key", default=os.environ.get("CENTAURUS_API_KEY"))
    parser.add_argument("--random-models", type=Path, help="build random small models here and serve them")
    parser.add_argument("--workers", type=int, default=1, help="workers per device of the started server")
    parser.add_argument("--requests", type=int, default=10000, help="stop after this many requests")
    parser.add_argument("--seconds", type=float, default=3600.0, help="or after this long")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--sample-every", type=int, default=250, help="requests between memory/fd samples")
    parser.add_argument("--warmup", type=float, default=0.2, help="fraction of requests before the baseline")
    parser.add_argument("--max-rss-growth", type=float, default=0.05, help="allowed growth after warm-up")
    parser.add_argument("--ready-timeout", type=float, default=600.0, help="seconds the started server may take")
    parser.add_argument("--streams", type=int, default=0, help="websocket streams kept open at once")
    parser.add_argument("--stream-minutes", type=float, default=30.0, help="how long the streams run")
    parser.add_argument("--session-seconds", type=lambda v: tuple(float(x) for x in v.split(",")), default=(5.0, 60.0),
                        metavar="MIN,MAX", help="length of a stream session (uniform between)")
    parser.add_argument("--sample-seconds", type=float, default=30.0, help="seconds between samples during streams")
    parser.add_argument("--stream-timeout", type=float, default=120.0,
                        help="seconds a stream may wait for session.started or its end")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME=VALUE",
                        help="another setting of the started server, e.g. --set stream_max_sessions=4")
    parser.add_argument("--json", type=Path, help="also write the JSON result here")
    args = parser.parse_args(argv)
    if args.url and not args.server_pid:
        parser.error("--url needs --server-pid (memory and descriptors are read from /proc)")

    process = None
    if args.url:
        base, pid = args.url, args.server_pid
    else:
        models = make_random_models(args.random_models) if args.random_models else None
        process, base = start_server("process", models, args.workers, dict(v.split("=", 1) for v in args.settings),
                                     timeout=args.ready_timeout)
        pid = process.pid
    try:
        tally, streams, samples, settled = asyncio.run(soak(args, base, pid))
    finally:
        if process is not None:
            process.terminate()
            process.wait(60)
    verdict = judge(args, tally, streams, samples, settled)
    print_table(samples)
    if args.requests > 0:
        print(f"{tally.done} requests, {verdict['errors']} errors, {verdict['admission_503']} admission 503s")
    if "streams" in verdict:
        v = verdict["streams"]
        print(f"{args.streams} streams for {args.stream_minutes:g} min: {v['sessions_started']} sessions started, "
              f"{v['sessions_completed']} completed, {v['sessions_abandoned']} abandoned on purpose, "
              f"{v['audio_seconds_sent']:.0f} s of audio sent, {v['messages_total']} server messages; "
              f"capacity refusals {v['capacity_refusals'] or 0}, errors {v['errors'] or 0}")
    print(f"resident memory: {verdict['rss_start_mb']:.1f} MB at start, {verdict['rss_warm_mb']:.1f} MB after "
          f"warm-up ({verdict['warm_at_seconds']:.0f} s, request {verdict['warm_at_request']}), "
          f"peak {verdict['rss_peak_mb']:.1f} MB, last {verdict['rss_last_mb']:.1f} MB, "
          f"growth {100 * verdict['rss_growth']:.2f}%")
    print(f"descriptors: server {verdict['server_fds_warm']} -> {verdict['server_fds_last']}, "
          f"workers {verdict['worker_fds_warm']} -> {verdict['worker_fds_last']}; sessions left "
          f"{verdict['sessions_last']:g} (settled after {verdict['sessions_settled_after_s']} s); "
          f"load average mean {verdict['load_mean']} max {verdict['load_max']}")
    for name, ok in verdict["checks"].items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    result = {"bench": "soak", "requests": args.requests, "concurrency": args.concurrency, **verdict,
              "by_case": tally.by_case, "samples": [asdict(s) for s in samples]}
    line = json.dumps(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(line + "\n")
    print(line)
    return 0 if verdict["passed"] else 1

if __name__ == "__main__":
    sys.exit(main())
