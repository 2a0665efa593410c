"""The worker pool: admission control, micro-batching and dispatch to workers on every device.

Shape of the thing::

    requests --(forward)--> shared queue per model ---\
                                                       >-- dispatcher per worker --> worker (process|thread)
    sessions --(open/step/finish)--> that worker's queue

* Every worker loads every served model once; ``workers_per_device`` workers per device; every visible GPU
  gets its share, else the CPU.
* A dispatcher per worker takes the oldest waiting request whenever its worker is free and sends it, together
  with what queued meanwhile, as one job of up to ``max_batch_size`` rows. When every worker is idle it sends at
  once: a lone request never waits for company. While another worker is running a job (requests are flowing),
  the head waits up to ``busy_batch_wait_ms`` for company first, so that batches stay large under load.
  ``max_batch_wait_ms`` (0 by default) makes every head wait, idle pool or not. Measured on the 2-core CPU
  (``/keywords``, 1 s clips): a fixed 10 ms wait cost one client at a time half its throughput; sending at once
  even under load cost ~15% more worker CPU per request at 32 clients (smaller batches).
* Admission: more than ``queue_limit`` waiting calls -> :class:`Overloaded` (503 + Retry-After). Every call
  has a deadline: expired calls are dropped from the queue, and the caller gets :class:`DeadlineExceeded`.
* A worker process that dies (SIGKILL, OOM) fails exactly its in-flight and pinned work with
  :class:`WorkerLost` and is replaced; ``close()`` drains the queues before stopping the workers.

Streaming sessions (:class:`Session`) are resident: the model state of a stream stays on the worker that
opened it (states of SSM models are KBs to MBs, too big to ship per 20 ms chunk), and that worker steps all
of its sessions of one model together as one batch. Long uploads use the same sessions to run chunk by chunk
in bounded memory; the websocket endpoints (:mod:`app.routes.stream`) use them for live audio.

Why worker processes by default (``worker_mode="thread"`` exists for measurements and debugging): measured on
the 2-core CPU with small models (``bench/service.py``, 1 intra-op thread per worker), throughput and server
CPU per request are the same within noise for both modes (transcribe 2 s clips: ~20-40 ms CPU per request,
30-45 req/s at concurrency 8; denoise: ~100-190 ms, ~9 req/s), and the pipe costs ~3 ms per call. What
processes add: a worker killed by the OOM killer, a segfault or a CUDA fault is replaced without taking the
service down; a worker's memory can be reclaimed by replacing it; model code never holds the event loop's GIL.
Intra-op threads default to 1 per CPU worker (scale with workers instead): two threads that spin-wait for
each other on a busy machine burnt 3 s of CPU per call instead of 0.12 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .errors import DeadlineExceeded, NotReady, Overloaded, ServiceError, WorkerLost
from .transport import WorkerHandle, make_worker
from .worker import Failure, Job, WorkerSpec

__all__ = ["PoolConfig", "Pool", "Session", "plan_devices", "InferenceFailed"]

log = logging.getLogger(__name__)


class InferenceFailed(ServiceError):
    status, type, code = 500, "server_error", "inference_failed"


@dataclass
class PoolConfig:
    models: dict[str, str]
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    workers_per_device: int = 0  # 0: one per core on the CPU, one per GPU
    mode: str = "process"
    max_batch_size: int = 8
    max_batch_wait: float = 0.0  # every batch's head waits this long for company
    busy_batch_wait: float = 0.010  # ... or this long while another worker runs a job; idle pool: no wait
    queue_limit: int = 64
    retry_after_seconds: int = 1
    torch_threads: int = 0
    warmup: bool = True


def plan_devices(preference: str) -> list[str]:
    """``auto`` -> every visible GPU, else the CPU; ``cuda`` -> every GPU; otherwise the named device."""
    import torch

    from model_zoo.runtime import select_device

    if preference in ("auto", "cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count:
            return [f"cuda:{i}" for i in range(count)]
        if preference == "cuda":
            select_device("cuda")  # raises with the reason
        return ["cpu"]
    return [str(select_device(preference))]


@dataclass(eq=False)
class _Call:
    """One request's piece of work waiting for (or in) a batch."""

    op: str
    model: str
    payload: Any
    rows: int
    future: asyncio.Future
    deadline: float
    length: int = 0  # samples per row: clips of very different lengths are not padded into one batch
    enqueued: float = field(default_factory=time.monotonic)


class _WorkerSlot:
    """A worker and what is pinned to it: its session queue and its sessions."""

    def __init__(self, handle: WorkerHandle) -> None:
        self.handle = handle
        self.queues: dict[tuple[str, str], deque[_Call]] = {}
        self.sessions: set[str] = set()
        self.dispatcher: asyncio.Task | None = None


class Pool:
    """Owns the workers; the routes call :meth:`forward` and :meth:`open_session`."""

    def __init__(self, config: PoolConfig, on_batch: Callable[[str, str, int], None] | None = None) -> None:
        self.config = config
        self.on_batch = on_batch or (lambda model, op, rows: None)
        self._queues: dict[tuple[str, str], deque[_Call]] = {}
        self._slots: list[_WorkerSlot] = []
        self._cond: asyncio.Condition | None = None
        self._ids = itertools.count(1)
        self._closing = False
        self._busy = 0
        self.restarts = 0
        self._failures_in_a_row = 0
        self._background: set[asyncio.Task] = set()

    # ---- lifecycle --------------------------------------------------------------------------------------------
    def _workers_for(self, device: str) -> int:
        if self.config.workers_per_device:
            return self.config.workers_per_device
        return max(1, os.cpu_count() or 1) if device == "cpu" else 1

    def _spec(self, device: str, index: int) -> WorkerSpec:
        # One intra-op thread per CPU worker unless told otherwise: parallelism comes from more workers. Intra-op
        # threads spin-wait for each other, and on a busy machine (other jobs, other workers) a descheduled
        # partner turns that into burnt CPU: measured 3 s instead of 0.12 s of CPU per call with 2 threads.
        threads = self.config.torch_threads or (1 if device == "cpu" else 0)
        return WorkerSpec(models=self.config.models, device=device, torch_threads=threads,
                          warmup=self.config.warmup, name=f"{device}#{index}")

    async def start(self) -> None:
        """Start every worker; returns at once (see :attr:`ready`)."""
        self._loop = asyncio.get_running_loop()
        self._cond = asyncio.Condition()
        for device in self.config.devices:
            for index in range(self._workers_for(device)):
                self._launch(self._spec(device, index))

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Until every worker has loaded and warmed up its models (raises if one failed)."""
        await asyncio.wait_for(asyncio.gather(*(s.handle.ready for s in self._slots)), timeout)

    def _launch(self, spec: WorkerSpec, delay: float = 0.0) -> None:
        handle = make_worker(self.config.mode, spec, self._loop, self._on_exit)
        slot = _WorkerSlot(handle)
        self._slots.append(slot)

        async def boot() -> None:
            if delay:
                await asyncio.sleep(delay)
            if self._closing:
                return
            try:
                handle.start()
            except Exception as err:  # noqa: BLE001 - cannot fork/spawn: retry later like a crashed worker
                log.error("cannot start %s: %s", handle.name, err)
                handle.ready.cancel()
                self._on_exit(handle)
                return
            try:
                await handle.ready
            except Exception as err:  # noqa: BLE001 - logged; the exit callback schedules a retry
                log.error("%s", err)
                return
            self._failures_in_a_row = 0
            log.info("%s ready (pid %s) with %s", handle.name, handle.pid, ", ".join(handle.cards))
            slot.dispatcher = asyncio.create_task(self._dispatch(slot), name=f"dispatch-{handle.name}")
            async with self._cond:
                self._cond.notify_all()

        self._track(asyncio.create_task(boot(), name=f"boot-{handle.name}"))

    async def _wake(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    def _track(self, task: asyncio.Task) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_exit(self, handle: WorkerHandle) -> None:
        """A worker process ended: fail what was pinned to it and start a replacement (unless closing)."""
        slot = next((s for s in self._slots if s.handle is handle), None)
        if slot is None:
            return
        self._slots.remove(slot)
        lost = WorkerLost(f"{handle.name} exited; streams on it are lost")
        for q in slot.queues.values():
            for call in q:
                if not call.future.done():
                    call.future.set_exception(lost)
        # Its dispatcher fails the in-flight job's calls itself (WorkerLost) and then ends; wake it if idle.
        self._track(asyncio.create_task(self._wake()))
        if self._closing:
            return
        self.restarts += 1
        healthy = handle.ready.done() and not handle.ready.cancelled() and handle.ready.exception() is None
        self._failures_in_a_row = 0 if healthy else self._failures_in_a_row + 1
        # Back off when workers die before they are ready (bad model, no memory): 0.5 s, 1 s, ... 30 s.
        delay = 0.0 if not self._failures_in_a_row else min(30.0, 0.5 * 2 ** (self._failures_in_a_row - 1))
        self._launch(handle.spec, delay)

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def ready(self) -> bool:
        """At least one worker has loaded and warmed up every model, and the pool is not shutting down."""
        return not self._closing and any(self._is_ready(s) for s in self._slots)

    @staticmethod
    def _is_ready(slot: _WorkerSlot) -> bool:
        h = slot.handle
        return (h.alive and h.ready.done() and not h.ready.cancelled() and h.ready.exception() is None
                and slot.dispatcher is not None)

    def workers(self) -> list[dict[str, Any]]:
        return [{"name": s.handle.name, "kind": s.handle.kind, "device": s.handle.spec.device, "pid": s.handle.pid,
                 "ready": self._is_ready(s), "sessions": len(s.sessions)} for s in self._slots]

    async def close(self, timeout: float = 30.0) -> None:
        """Stop taking work, let queued and running work finish (up to ``timeout``), then stop the workers."""
        self._closing = True
        if self._cond is None:
            return
        async with self._cond:
            self._cond.notify_all()
        end = time.monotonic() + timeout
        while (self.queue_depth() or self._busy) and time.monotonic() < end:
            await asyncio.sleep(0.02)
        for slot in list(self._slots):
            if slot.dispatcher is not None:
                slot.dispatcher.cancel()
        await asyncio.gather(*(asyncio.to_thread(s.handle.stop) for s in list(self._slots) if s.handle.alive))
        for task in list(self._background):
            task.cancel()

    # ---- admission --------------------------------------------------------------------------------------------
    def queue_depth(self) -> int:
        """Calls waiting for a worker (not yet running)."""
        return sum(len(q) for q in self._queues.values()) + sum(
            len(q) for s in self._slots for q in s.queues.values())

    def active_sessions(self) -> int:
        return sum(len(s.sessions) for s in self._slots)

    async def _submit(self, op: str, model: str, payload: Any, rows: int, deadline: float,
                      slot: _WorkerSlot | None = None, length: int = 0) -> Any:
        if self._closing:
            raise NotReady("the service is shutting down", code="shutting_down",
                           headers={"Retry-After": str(self.config.retry_after_seconds)})
        if not self.ready:
            raise NotReady("models are still loading", headers={"Retry-After": str(self.config.retry_after_seconds)})
        if self.queue_depth() >= self.config.queue_limit:
            raise Overloaded(f"{self.config.queue_limit} requests are already waiting; retry shortly",
                             headers={"Retry-After": str(self.config.retry_after_seconds)})
        call = _Call(op, model, payload, rows, self._loop.create_future(), deadline, length)
        queues = slot.queues if slot is not None else self._queues
        queue = queues.setdefault((op, model), deque())
        queue.append(call)
        try:
            async with self._cond:
                self._cond.notify_all()
            return await asyncio.wait_for(call.future, max(deadline - time.monotonic(), 0.0))
        except TimeoutError:
            raise DeadlineExceeded("the request did not finish before its deadline") from None
        finally:
            # Cancelled or timed out while still queued (even before wait_for, waiting for the lock): the call
            # leaves the queue and its future is done, which dispatchers skip, so it can never run after its
            # caller gave up (a stream's step after the stream was closed, say) nor count against the queue limit.
            if not call.future.done():
                call.future.cancel()
                with contextlib.suppress(ValueError):
                    queue.remove(call)

    async def forward(self, model: str, rows: np.ndarray, options: dict, deadline: float) -> Any:
        """One call of ``model`` on ``rows (R, L)`` (R windows of one request), batched with others'."""
        return await self._submit("forward", model, (rows, options), rows.shape[0], deadline, length=rows.shape[-1])

    async def open_session(self, model: str, options: dict, deadline: float) -> "Session":
        """A resident stream on the least-loaded ready worker."""
        candidates = [s for s in self._slots if self._is_ready(s)]
        if not candidates:
            raise NotReady("no worker is ready", headers={"Retry-After": str(self.config.retry_after_seconds)})
        slot = min(candidates, key=lambda s: len(s.sessions))
        session = Session(self, slot, model, uuid.uuid4().hex)
        slot.sessions.add(session.id)
        try:
            session.info = await self._submit("open", model, (session.id, options), 1, deadline, slot)
        except BaseException:
            slot.sessions.discard(session.id)
            raise
        return session

    # ---- dispatch ---------------------------------------------------------------------------------------------
    async def _dispatch(self, slot: _WorkerSlot) -> None:
        while True:
            batch = await self._next_batch(slot)
            if batch is None:
                return
            (op, model), calls = batch
            job = Job(next(self._ids), op, model, [c.payload for c in calls])
            self.on_batch(model, op, sum(c.rows for c in calls))
            self._busy += 1
            try:
                outcomes = await slot.handle.run(job)
            except WorkerLost as err:
                outcomes = [err] * len(calls)
            except Exception as err:  # noqa: BLE001 - a broken job fails its callers, not the dispatcher
                log.exception("job %s failed", job.id)
                outcomes = [InferenceFailed(f"{type(err).__name__}: {err}")] * len(calls)
            finally:
                self._busy -= 1
            for call, outcome in zip(calls, outcomes):
                if call.future.done():
                    continue  # the caller gave up (deadline) meanwhile
                if isinstance(outcome, Failure):
                    call.future.set_exception(InferenceFailed(outcome.message, code=outcome.code))
                elif isinstance(outcome, BaseException):
                    call.future.set_exception(outcome)
                else:
                    call.future.set_result(outcome)
            if not slot.handle.alive:
                return

    def _drop_stale(self, q: deque[_Call], now: float) -> None:
        while q and (q[0].future.done() or q[0].deadline <= now):
            call = q.popleft()
            if not call.future.done():
                call.future.set_exception(DeadlineExceeded("the request waited in the queue past its deadline"))

    async def _next_batch(self, slot: _WorkerSlot) -> tuple[tuple[str, str], list[_Call]] | None:
        async with self._cond:
            while True:
                if not slot.handle.alive:
                    return None
                now = time.monotonic()
                heads = []
                for queues in (slot.queues, self._queues):  # pinned session work first: a stream is waiting
                    for key, q in queues.items():
                        self._drop_stale(q, now)
                        if q:
                            heads.append((q[0].enqueued, key, q))
                if not heads:
                    if self._closing:
                        return None
                    await self._cond.wait()
                    continue
                _, key, q = min(heads, key=lambda h: h[0])
                rows = sum(c.rows for c in q)
                # No wait when every worker is idle (nothing else is running, so no company is on its way).
                linger = max(self.config.max_batch_wait, self.config.busy_batch_wait if self._busy else 0.0)
                wait = q[0].enqueued + linger - now
                if wait > 0 and rows < self.config.max_batch_size and not self._closing:
                    try:
                        await asyncio.wait_for(self._cond.wait(), wait)
                    except TimeoutError:
                        pass
                    continue
                return key, self._take(q)

    def _take(self, q: deque[_Call]) -> list[_Call]:
        """The head call plus queued calls that fit in the batch and are within 2x of its length, in order.

        Padding a 1 s clip to 20 s to share a call would cost more than it saves; skipped calls keep their place
        at the front of the queue for the next batch.
        """
        head = q.popleft()
        calls, taken, kept = [head], head.rows, []
        while q and taken < self.config.max_batch_size:
            call = q.popleft()
            if call.future.done():
                continue
            similar = call.length <= 2 * head.length and head.length <= 2 * call.length
            if similar and taken + call.rows <= self.config.max_batch_size:
                calls.append(call)
                taken += call.rows
            else:
                kept.append(call)
        q.extendleft(reversed(kept))
        return calls


class Session:
    """A stream resident on one worker. Calls are sequential (a lock keeps chunks in order).

    ``step(chunk)`` sends a chunk ``(T,)`` at the model's rate and returns the partial output (denoised audio,
    ASR logits are kept for the end); ``finish()`` returns the final result (a transcript, the flushed audio)
    and frees the state. If the worker dies, every call fails with :class:`WorkerLost`.
    """

    def __init__(self, pool: Pool, slot: _WorkerSlot, model: str, session_id: str) -> None:
        self.pool, self.slot, self.model, self.id = pool, slot, model, session_id
        self._lock = asyncio.Lock()
        self.closed = False
        self.info: dict[str, int] = {}  # from the worker: quantum (samples per output frame), latency (samples)

    def _check_alive(self) -> None:
        if not self.slot.handle.alive:
            raise WorkerLost(f"{self.slot.handle.name} exited; this stream's state was lost with it")

    async def step(self, chunk: np.ndarray, deadline: float) -> Any:
        async with self._lock:
            self._check_alive()
            return await self.pool._submit("step", self.model, (self.id, chunk), 1, deadline, self.slot)

    async def segment(self, deadline: float) -> Any:
        """The result of the audio since the last segment (a final transcript); the stream goes on."""
        async with self._lock:
            self._check_alive()
            return await self.pool._submit("segment", self.model, self.id, 1, deadline, self.slot)

    async def finish(self, deadline: float) -> Any:
        async with self._lock:
            try:
                self._check_alive()
                return await self.pool._submit("finish", self.model, self.id, 1, deadline, self.slot)
            finally:
                self.closed = True
                self.slot.sessions.discard(self.id)

    async def close(self) -> None:
        """Free the state without a result (client went away). Never raises."""
        if self.closed:
            return
        self.closed = True
        self.slot.sessions.discard(self.id)
        if self.slot.handle.alive:
            job = Job(next(self.pool._ids), "close", self.model, [self.id])
            try:
                # Shielded: a caller cancelled right now (a server tearing the connection down) must not cancel
                # the close job itself, or a thread worker would never free the state.
                await asyncio.shield(self.slot.handle.run(job))
            except Exception:  # noqa: BLE001 - best effort
                pass
