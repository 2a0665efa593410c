"""The worker pool: admission control, micro-batching and dispatch to workers on every device.

Shape of the thing::

    requests --(forward)--> shared queue per model ---\
                                                       >-- dispatcher per worker --> worker (process|thread)
    sessions --(open/step/finish)--> that worker's queue

* Every worker loads every served model once; ``workers_per_device`` workers per device; every visible GPU
  gets its share, else the CPU.
* A dispatcher per worker takes the oldest waiting request whenever its worker is free and sends it, together
  with what queued meanwhile, as one job of up to ``max_batch_size`` rows (``stream_batch_size`` stream steps).
  When every worker is idle it sends at once: a lone request never waits for company. While another worker is
  running a job (requests are flowing), the head waits up to ``busy_batch_wait_ms`` for company first, so that
  batches stay large under load; a stream's step never waits (see ``_next_batch``).
  ``max_batch_wait_ms`` (0 by default) makes every head wait, idle pool or not. Measured on the 2-core CPU
  (``/keywords``, 1 s clips): a fixed 10 ms wait cost one client at a time half its throughput; sending at once
  even under load cost ~15% more worker CPU per request at 32 clients (smaller batches).
* Admission: more than ``queue_limit`` waiting calls -> :class:`Overloaded` (503 + Retry-After). Every call
  has a deadline: expired calls are dropped from the queue, and the caller gets :class:`DeadlineExceeded`.
* A worker process that dies (SIGKILL, OOM) fails exactly its in-flight and pinned work with
  :class:`WorkerLost` and is replaced; ``close()`` drains the queues before stopping the workers.

Streaming sessions (:class:`app.execution.sessions.SessionHandle`) are resident on one worker; their calls go
to that worker's own queue. Which workers run, and their replacement, is :mod:`app.execution.supervisor`'s
business; which calls go together, :mod:`app.execution.batching`'s; this module admits, queues and dispatches.

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
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import DeadlineExceeded, NotReady, Overloaded, ServiceError, WorkerLost
from .batching import Call, drop_stale, take_batch
from .sessions import SessionHandle
from .supervisor import Supervisor, WorkerSlot
from .transport import WorkerHandle
from .worker import DETACHED_OPS, Failure, Job

__all__ = ["PoolConfig", "Pool", "plan_devices", "InferenceFailed"]

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
    stream_batch_size: int = 64  # session calls (a stream's step) per job
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


class Pool:
    """Owns the queues and the workers; :class:`app.engine.Engine` calls :meth:`forward` and
    :meth:`open_session`."""

    def __init__(self, config: PoolConfig, on_batch: Callable[[str, str, int], None] | None = None) -> None:
        self.config = config
        self.on_batch = on_batch or (lambda model, op, rows: None)
        self._queues: dict[tuple[str, str], deque[Call]] = {}
        self._workers = Supervisor(config, self._on_ready, self._on_lost, lambda: self._closing)
        self._cond: asyncio.Condition | None = None
        self._ids = itertools.count(1)
        self._closing = False
        self._busy = 0
        self._background: set[asyncio.Task] = set()

    # ---- lifecycle --------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start every worker; returns at once (see :attr:`ready`)."""
        self._cond = asyncio.Condition()
        self._workers.start(asyncio.get_running_loop())

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Until every worker has loaded and warmed up its models (raises if one failed)."""
        await asyncio.wait_for(asyncio.gather(*(s.handle.ready for s in self._workers.slots)), timeout)

    async def _on_ready(self, slot: WorkerSlot) -> None:
        slot.dispatcher = asyncio.create_task(self._dispatch(slot), name=f"dispatch-{slot.handle.name}")
        await self._wake()

    def _on_lost(self, slot: WorkerSlot) -> None:
        """A worker exited: fail what was pinned to it (its sessions' queued calls)."""
        lost = WorkerLost(f"{slot.handle.name} exited; streams on it are lost")
        for q in slot.queues.values():
            for call in q:
                if not call.future.done():
                    call.future.set_exception(lost)
        # Its dispatcher fails the in-flight job's calls itself (WorkerLost) and then ends; wake it if idle.
        task = asyncio.create_task(self._wake())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _wake(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def ready(self) -> bool:
        """At least one worker has loaded and warmed up every model, and the pool is not shutting down."""
        return not self._closing and bool(self._workers.ready_slots())

    @property
    def restarts(self) -> int:
        """Workers replaced since the start."""
        return self._workers.restarts

    @property
    def handles(self) -> list[WorkerHandle]:
        """The current workers (replacements included), for inspection."""
        return [s.handle for s in self._workers.slots]

    @property
    def running_jobs(self) -> int:
        """Jobs sent to workers and not answered yet."""
        return self._busy

    def workers(self) -> list[dict[str, Any]]:
        return self._workers.describe()

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
        slots = list(self._workers.slots)
        for slot in slots:
            if slot.dispatcher is not None:
                slot.dispatcher.cancel()
        await asyncio.gather(*(asyncio.to_thread(s.handle.stop) for s in slots if s.handle.alive))
        self._workers.cancel_booting()
        for task in list(self._background):
            task.cancel()

    # ---- admission --------------------------------------------------------------------------------------------
    def queue_depth(self) -> int:
        """Calls waiting for a worker (not yet running)."""
        return sum(len(q) for q in self._queues.values()) + sum(
            len(q) for s in self._workers.slots for q in s.queues.values())

    def active_sessions(self) -> int:
        return sum(len(s.sessions) for s in self._workers.slots)

    def new_job(self, op: str, model: str, items: list[Any]) -> Job:
        """A job with a fresh id, for work sent to a worker directly (a session's close)."""
        return Job(next(self._ids), op, model, items)

    async def submit(self, op: str, model: str, payload: Any, rows: int, deadline: float,
                     slot: WorkerSlot | None = None, length: int = 0) -> Any:
        """Queue one call (on ``slot``'s own queue for session work) and wait for its outcome: admission,
        deadline and cancellation are handled here. :meth:`forward` and the session calls are built on it."""
        if self._closing:
            raise NotReady("the service is shutting down", code="shutting_down",
                           headers={"Retry-After": str(self.config.retry_after_seconds)})
        if not self.ready:
            raise NotReady("models are still loading", headers={"Retry-After": str(self.config.retry_after_seconds)})
        if self.queue_depth() >= self.config.queue_limit:
            raise Overloaded(f"{self.config.queue_limit} requests are already waiting; retry shortly",
                             headers={"Retry-After": str(self.config.retry_after_seconds)})
        call = Call(op, model, payload, rows, asyncio.get_running_loop().create_future(), deadline, length)
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
        return await self.submit("forward", model, (rows, options), rows.shape[0], deadline, length=rows.shape[-1])

    async def open_session(self, model: str, options: dict, deadline: float) -> SessionHandle:
        """A resident stream on the least-loaded ready worker."""
        candidates = self._workers.ready_slots()
        if not candidates:
            raise NotReady("no worker is ready", headers={"Retry-After": str(self.config.retry_after_seconds)})
        slot = min(candidates, key=lambda s: len(s.sessions))
        session = SessionHandle(self, slot, model, uuid.uuid4().hex)
        slot.sessions.add(session.id)
        try:
            session.info = await self.submit("open", model, (session.id, options), 1, deadline, slot)
        except BaseException:
            slot.sessions.discard(session.id)
            raise
        return session

    # ---- dispatch ---------------------------------------------------------------------------------------------
    async def _dispatch(self, slot: WorkerSlot) -> None:
        while True:
            batch = await self._next_batch(slot)
            if batch is None:
                return
            (op, model), calls = batch
            job = self.new_job(op, model, [c.payload for c in calls])
            self.on_batch(model, op, sum(c.rows for c in calls))
            if op in DETACHED_OPS:
                task = asyncio.create_task(self._run(slot, job, calls), name=f"job-{job.id}")
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            else:
                await self._run(slot, job, calls)
            if not slot.handle.alive:
                return

    async def _run(self, slot: WorkerSlot, job: Job, calls: list[Call]) -> None:
        """Send ``job`` to ``slot``'s worker and hand each call its outcome."""
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

    async def _next_batch(self, slot: WorkerSlot) -> tuple[tuple[str, str], list[Call]] | None:
        async with self._cond:
            while True:
                if not slot.handle.alive:
                    return None
                now = time.monotonic()
                heads = []
                for queues in (slot.queues, self._queues):  # pinned session work first: a stream is waiting
                    for key, q in queues.items():
                        drop_stale(q, now)
                        if q:
                            heads.append((q[0].enqueued, key, q, queues is slot.queues))
                if not heads:
                    if self._closing:
                        return None
                    await self._cond.wait()
                    continue
                _, key, q, pinned = min(heads, key=lambda h: h[0])
                rows = sum(c.rows for c in q)
                limit = self.config.stream_batch_size if pinned else self.config.max_batch_size
                # No wait when every worker is idle (nothing else is running, so no company is on its way), nor
                # for a stream's call: its audio comes at real time, so waiting only adds latency, and its
                # worker's other streams queue their steps while it computes anyway (they share the next call).
                # With the 10 ms wait, 64 denoise streams on two workers fell seconds behind (bench/streams.py).
                busy_wait = self.config.busy_batch_wait if self._busy and not pinned else 0.0
                linger = max(self.config.max_batch_wait, busy_wait)
                wait = q[0].enqueued + linger - now
                if wait > 0 and rows < limit and not self._closing:
                    try:
                        await asyncio.wait_for(self._cond.wait(), wait)
                    except TimeoutError:
                        pass
                    continue
                return key, take_batch(q, limit)
