"""A live stream between a websocket and a resident session in a worker: resampling, buffering, stepping.

Audio arrives as float32 at the client's rate (decoded by :class:`app.audio.pcm.PcmCodec`); :class:`LiveStream`
resamples it to the model's rate (:class:`app.streaming.resampler.StreamResampler`, exact), keeps it in a
bounded buffer, and a pump task feeds it to the session in steps of ``step`` samples (a multiple of the
model's quantum, so that the sessions of a model keep equal state shapes and the worker steps them together
as one batch). Order is kept by construction: one buffer, one pump, one session lock. Results go to
``deliver`` in order. :func:`open_live` opens a session and its stream (the websockets' and Wyoming's way).

:class:`StreamRegistry` counts the live streams of the app for admission (``stream_max_sessions``).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import numpy as np

from ..execution.sessions import SessionHandle
from .resampler import StreamResampler

if TYPE_CHECKING:
    from ..engine import Engine
    from ..settings import Settings

__all__ = ["LiveStream", "BufferOverflow", "StreamRegistry", "open_live", "step_samples"]


class BufferOverflow(Exception):
    """The client sends faster than the model consumes, beyond the buffer bound."""


def step_samples(quantum: int, rate: int, step_ms: float) -> int:
    """The smallest multiple of ``quantum`` covering ``step_ms`` of audio."""
    quantum = max(1, quantum)
    wanted = max(1, int(round(step_ms * rate / 1000)))
    return -(-wanted // quantum) * quantum


CATCH_UP_STEPS = 4  # at most this many steps of a backlog in one call (4 chunk lengths at most share a worker)


class LiveStream:
    """One client's audio path into its resident session; ``deliver(result)`` gets each step's result in order."""

    def __init__(self, session: SessionHandle, *, client_rate: int, model_rate: int, step: int, max_buffered: int,
                 deadline_seconds: float, deliver: Callable[[Any], Awaitable[None]]) -> None:
        self.session, self.client_rate, self.model_rate = session, client_rate, model_rate
        self.step, self.max_buffered, self.deadline_seconds, self.deliver = step, max_buffered, deadline_seconds, deliver
        self.quantum = max(1, int(session.info.get("quantum", 1)))
        self.resampler = StreamResampler(client_rate, model_rate)
        self._chunks: list[np.ndarray] = []
        self._stepping = np.zeros(0, np.float32)  # the chunk of the call in flight (or just delivered)
        self.buffered = 0  # model-rate samples waiting for the model
        self.stepped = 0  # model-rate samples the model has seen
        self.received = 0  # client-rate samples received
        self.processing = 0.0  # seconds spent in session calls (queueing included)
        # Done with the pump's failure, for whoever must hear of it at once (a callback, not a waiter on the
        # condition below, which every frame and every step wakes).
        self.failed: asyncio.Future = asyncio.get_running_loop().create_future()
        self._draining = False
        self._busy = False
        self._cond = asyncio.Condition()
        self._pump = asyncio.create_task(self._run(), name=f"pump-{session.id[:8]}")

    @property
    def failure(self) -> BaseException | None:
        """Why the pump stopped; None while it runs."""
        return self.failed.result() if self.failed.done() else None

    # ---- input -------------------------------------------------------------------------------------------------
    async def push(self, samples: np.ndarray) -> None:
        """Client-rate samples in; raises :class:`BufferOverflow` past the bound (nothing is dropped silently)."""
        self.received += len(samples)
        at_model_rate = self.resampler.push(samples)
        if self.buffered + len(at_model_rate) > self.max_buffered:
            raise BufferOverflow(f"more than {self.max_buffered / self.model_rate:g} s of audio is waiting for the "
                                 "model; send audio no faster than real time")
        await self._append(at_model_rate)

    async def _append(self, samples: np.ndarray) -> None:
        if len(samples):
            async with self._cond:
                self._chunks.append(samples)
                self.buffered += len(samples)
                self._cond.notify_all()

    async def drain(self, end: bool = False) -> None:
        """Step everything received so far (``end``: and the resampler's tail); returns once the model has it."""
        if end:
            await self._append(self.resampler.flush())
        async with self._cond:
            self._draining = True
            self._cond.notify_all()
            await self._cond.wait_for(lambda: self.failure is not None or (not self.buffered and not self._busy))
            self._draining = False
        if self.failure is not None:
            raise self.failure

    # ---- the pump ----------------------------------------------------------------------------------------------
    def _next_size(self) -> int:
        """How much to step now (0: wait). Steps keep ``stepped`` a multiple of the quantum when they can."""
        if self.buffered == 0:
            return 0
        realign = -self.stepped % self.quantum
        if realign and self.buffered >= realign:
            return realign  # after a flush of a partial quantum: back in phase with the other sessions
        if self.buffered >= self.step:
            # Whole steps: equal chunk lengths are what lets the worker put the steps of many streams into one
            # network call. A backlog goes up to CATCH_UP_STEPS steps at a time: a stream has one call in flight,
            # so at one step per call, a stream whose call once took longer than a step would never catch up
            # (bench/streams.py: 64 denoise streams drifted seconds behind with the workers a third busy; 64
            # transcript streams, stepped one step per call for their endpoints' sake, all fell behind likewise).
            return self.step * min(self.buffered // self.step, CATCH_UP_STEPS)
        return self.buffered if self._draining else 0

    def _take(self, size: int) -> np.ndarray:
        audio = np.concatenate(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        chunk, rest = audio[:size], audio[size:]
        self._chunks = [rest] if len(rest) else []
        self.buffered -= size
        return chunk

    async def _run(self) -> None:
        try:
            while True:
                async with self._cond:
                    await self._cond.wait_for(lambda: self._next_size() > 0)
                    chunk = self._stepping = self._take(self._next_size())
                    self._busy = True
                started = time.perf_counter()
                result = await self.session.step(chunk, time.monotonic() + self.deadline_seconds)
                self.processing += time.perf_counter() - started
                self.stepped += len(chunk)
                await self.deliver(result)
                async with self._cond:
                    self._busy = False
                    self._cond.notify_all()
        except asyncio.CancelledError:
            raise
        except BaseException as err:  # noqa: BLE001 - handed to whoever waits on the stream
            async with self._cond:
                self.failed.set_result(err)
                self._busy = False
                self._cond.notify_all()

    def rewind(self, samples: int) -> None:
        """Give back the last ``samples`` of the call just delivered: they are stepped again, first. An utterance
        that ends inside a call of several steps hands the audio after its end to the next utterance's session
        this way (:mod:`app.streaming.utterances`). Only from ``deliver``, while the pump is between steps."""
        if not 0 <= samples <= len(self._stepping):
            raise ValueError(f"cannot rewind {samples} samples of a {len(self._stepping)}-sample call")
        if samples:
            self._chunks.insert(0, self._stepping[len(self._stepping) - samples:])
            self._stepping = self._stepping[:len(self._stepping) - samples]
            self.buffered += samples
            self.stepped -= samples

    # ---- the end -----------------------------------------------------------------------------------------------
    async def call(self, op: Callable[[float], Awaitable[Any]]) -> Any:
        """A session call (segment, finish) timed like the steps."""
        started = time.perf_counter()
        try:
            return await op(time.monotonic() + self.deadline_seconds)
        finally:
            self.processing += time.perf_counter() - started

    async def close(self) -> None:
        """Stop the pump and free the session's state at once (client gone, error, or after finish).

        The worker's close job is sent before the first await: a handler cancelled right here (the server
        tearing the connection down) still frees the state.
        """
        self._pump.cancel()
        await self.session.close()
        try:
            await self._pump
        except BaseException:  # noqa: BLE001 - cancelled or already failed: nothing left to report
            pass


async def open_live(engine: Engine, settings: Settings, model: str, options: dict,
                    deliver: Callable[[Any], Awaitable[None]], *, client_rate: int,
                    step_ms: float | None = None) -> LiveStream:
    """A resident session of ``model`` (pool ``options``) and the stream that feeds it audio at ``client_rate``,
    stepped by ``step_ms`` (default: the server's ``stream_step_ms``) rounded up to the model's quantum, with the
    server's buffer bound and deadlines; ``deliver`` gets each step's result. Raises the engine's errors."""
    rate = engine.rate(model)
    session = await engine.open_stream(model, options, time.monotonic() + settings.request_timeout_seconds)
    return LiveStream(session, client_rate=client_rate, model_rate=rate,
                      step=step_samples(session.info.get("quantum", 1), rate, step_ms or settings.stream_step_ms),
                      max_buffered=int(settings.stream_max_buffer_seconds * rate),
                      deadline_seconds=settings.request_timeout_seconds, deliver=deliver)


class StreamRegistry:
    """The live streams of the app (for ``stream_max_sessions`` and the metrics)."""

    def __init__(self) -> None:
        self.active: set[str] = set()

    def __len__(self) -> int:
        return len(self.active)
