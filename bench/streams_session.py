"""One paced real-time stream of ``bench/streams.py`` and what it measures; the CPU of a local process tree.

A :class:`PacedStream` opens ``/v1/stream/{task}``, sends 16 kHz ``pcm_s16le`` frames on an absolute clock (frame
``i`` is due at ``t0 + offset + i * frame``, so a late frame never delays the next), and records for every frame
the time it was sent and the time the output that completes it arrived:

* denoise: the denoised samples (binary frames, aligned with the input: output sample ``j`` is input sample
  ``j``), so frame ``i`` is complete once ``(i + 1) * frame`` samples have come back;
* asr and kws: ``input.progress`` (the session asks for it with ``progress``), sent after each model step's own
  results (the partial transcript, the detections), carrying the samples the model has consumed.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

__all__ = ["PATHS", "RATE", "PacedStream", "tree_cpu_seconds"]

RATE = 16000
PATHS = {"denoise": "denoise", "asr": "transcribe", "kws": "keywords"}  # task -> /v1/stream/{path}


@dataclass
class PacedStream:
    task: str
    url: str  # ws://host:port (no path)
    headers: dict
    pcm: bytes  # 16-bit mono at RATE, long enough for the stream
    frames: int
    frame_samples: int
    step_ms: float | None
    timeout: float = 60.0
    options: dict = field(default_factory=dict)  # more fields of session.start (transcribe: beam_search, ...)
    sent_at: np.ndarray = field(init=False)  # perf_counter of each frame's send (nan: never sent)
    done_at: np.ndarray = field(init=False)  # perf_counter of the output completing it (nan: never)
    late: list[float] = field(default_factory=list)  # seconds each send was behind its schedule
    covered: int = 0  # input samples answered so far
    max_lag: int = 0  # most samples sent but not yet answered, seen at a send
    started: dict | None = None  # session.started
    ended: bool = False  # session.ended received
    closed: str | None = None  # why the stream ended otherwise (refused, close code, timeout)
    errors: list[str] = field(default_factory=list)  # server error messages (code: message)
    _ws: object = None
    _reader: asyncio.Task | None = None

    def __post_init__(self) -> None:
        self.sent_at = np.full(self.frames, np.nan)
        self.done_at = np.full(self.frames, np.nan)
        self._next = 0  # first frame not yet complete

    # ---- what came back ----------------------------------------------------------------------------------------
    def cover(self, samples: int, now: float) -> None:
        """Input samples ``[0, samples)`` are answered: the frames they complete are done now."""
        self.covered = max(self.covered, samples)
        while self._next < self.frames and (self._next + 1) * self.frame_samples <= self.covered:
            self.done_at[self._next] = now
            self._next += 1

    @property
    def complete(self) -> int:
        """Frames whose output arrived."""
        return self._next

    def latencies(self, skip: int = 0) -> np.ndarray:
        """Seconds from send to output of every completed frame from ``skip`` on."""
        lat = self.done_at[skip:] - self.sent_at[skip:]
        return lat[np.isfinite(lat)]

    async def _read(self, ws) -> None:
        model_rate = RATE
        try:
            async for message in ws:
                now = time.perf_counter()
                if isinstance(message, bytes):  # denoised pcm_s16le at our rate
                    self.cover(self.covered + len(message) // 2, now)
                    continue
                event = json.loads(message)
                kind = event.get("type")
                if kind == "session.started":
                    self.started, model_rate = event, event["sample_rate"]
                elif kind == "input.progress":
                    self.cover(event["samples"] * RATE // model_rate, now)
                elif kind == "error":
                    self.errors.append(f"{event.get('code')}: {event.get('message')}")
                elif kind == "session.ended":
                    self.ended = True
        except ConnectionClosed:
            pass
        if not self.ended and self.closed is None:
            self.closed = f"closed {ws.close_code} {ws.close_reason or ''}".strip()

    # ---- the session ---------------------------------------------------------------------------------------------
    async def open(self) -> bool:
        """Connect and start the session; False (``closed`` says why) when it did not start."""
        try:
            ws = await ws_connect(f"{self.url}/v1/stream/{PATHS[self.task]}", additional_headers=self.headers,
                                  max_size=None, open_timeout=self.timeout, close_timeout=10)
        except InvalidStatus as err:
            self.closed = f"refused {err.response.status_code}"
            return False
        except (OSError, asyncio.TimeoutError, WebSocketException) as err:
            self.closed = f"connect failed: {err!r}"[:200]
            return False
        start = {"type": "session.start", "sample_rate": RATE, "encoding": "pcm_s16le",
                 "progress": self.task != "denoise", "interim_results": True}
        if self.step_ms is not None:
            start["step_ms"] = self.step_ms
        start.update(self.options)
        self._ws = ws
        self._reader = asyncio.create_task(self._read(ws))
        await ws.send(json.dumps(start))
        deadline = time.monotonic() + self.timeout
        while self.started is None and not self._reader.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.started is None:
            self.closed = self.closed or ("; ".join(self.errors) or "no session.started")
            await self.abort()
            return False
        return True

    async def run(self, t0: float, offset: float) -> None:
        """Send every frame on time (``t0``: a ``time.monotonic()``), then ``session.end``; wait for the end."""
        ws, frame_bytes, period = self._ws, 2 * self.frame_samples, self.frame_samples / RATE
        try:
            for i in range(self.frames):
                due = t0 + offset + i * period
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if self._reader.done():  # closed by the server
                    break
                self.late.append(max(0.0, time.monotonic() - due))
                first = (i * frame_bytes) % (len(self.pcm) - frame_bytes)
                self.sent_at[i] = time.perf_counter()
                await ws.send(self.pcm[first:first + frame_bytes])
                self.max_lag = max(self.max_lag, (i + 1) * self.frame_samples - self.covered)
            else:
                await ws.send(json.dumps({"type": "session.end"}))
            await asyncio.wait_for(asyncio.shield(self._reader), self.timeout)
        except ConnectionClosed:
            await asyncio.wait_for(asyncio.shield(self._reader), self.timeout)
        except asyncio.TimeoutError:
            self.closed = self.closed or "no session.ended in time"
        finally:
            await self.abort()

    async def abort(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 10)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._reader.cancel()


# ---- the server's CPU ------------------------------------------------------------------------------------------
def _children_from_proc() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    return children


def tree_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of ``pid`` and all its descendants (psutil when installed, else /proc);
    None without a pid or when it is gone."""
    if pid is None:
        return None
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            root = psutil.Process(pid)
            total = 0.0
            for p in [root, *root.children(recursive=True)]:
                try:
                    t = p.cpu_times()
                    total += t.user + t.system
                except psutil.Error:
                    pass
            return total
        except psutil.Error:
            return None
    children, tick, total, todo = _children_from_proc(), os.sysconf("SC_CLK_TCK"), 0.0, [pid]
    seen = False
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            seen = True
        except (OSError, IndexError, ValueError):
            continue
        todo.extend(children.get(current, []))
    return total if seen else None
