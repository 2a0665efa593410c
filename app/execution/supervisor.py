"""Worker supervision: start the planned workers, know which are ready, replace the ones that die.

Every worker loads every served model once; ``workers_per_device`` workers per device (0: one per core on
the CPU, one per GPU). A worker process that dies (SIGKILL, OOM) is replaced; one that dies before it was ever
ready (a bad model, no memory) is retried with a growing delay, 0.5 s up to 30 s, instead of in a tight loop.
The pool decides what a dead worker's work becomes (:meth:`app.execution.pool.Pool`'s ``on_lost``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from .batching import Call
from .transport import WorkerHandle, make_worker
from .worker import WorkerSpec

if TYPE_CHECKING:
    from .pool import PoolConfig

__all__ = ["WorkerSlot", "Supervisor"]

log = logging.getLogger(__name__)


class WorkerSlot:
    """A worker and what is pinned to it: its session queues, its sessions and its dispatcher task."""

    def __init__(self, handle: WorkerHandle) -> None:
        self.handle = handle
        self.queues: dict[tuple[str, str], deque[Call]] = {}
        self.sessions: set[str] = set()
        self.dispatcher: asyncio.Task | None = None

    @property
    def ready(self) -> bool:
        """Loaded and warmed up every model, alive, and its dispatcher runs."""
        h = self.handle
        return (h.alive and h.ready.done() and not h.ready.cancelled() and h.ready.exception() is None
                and self.dispatcher is not None)


class Supervisor:
    """Owns the worker slots. ``on_ready(slot)`` runs once a worker has loaded its models; ``on_lost(slot)``
    once it has exited (before any replacement starts); ``closing()`` says whether to replace at all."""

    def __init__(self, config: PoolConfig, on_ready: Callable[[WorkerSlot], Any],
                 on_lost: Callable[[WorkerSlot], None], closing: Callable[[], bool]) -> None:
        self.config, self.on_ready, self.on_lost, self.closing = config, on_ready, on_lost, closing
        self.slots: list[WorkerSlot] = []
        self.restarts = 0
        self._failures_in_a_row = 0
        self._booting: set[asyncio.Task] = set()

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

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Launch every planned worker; returns at once (each reports through ``on_ready``)."""
        self._loop = loop
        for device in self.config.devices:
            for index in range(self._workers_for(device)):
                self._launch(self._spec(device, index))

    def _launch(self, spec: WorkerSpec, delay: float = 0.0) -> None:
        handle = make_worker(self.config.mode, spec, self._loop, self._on_exit)
        slot = WorkerSlot(handle)
        self.slots.append(slot)

        async def boot() -> None:
            if delay:
                await asyncio.sleep(delay)
            if self.closing():
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
            await self.on_ready(slot)

        task = asyncio.create_task(boot(), name=f"boot-{handle.name}")
        self._booting.add(task)
        task.add_done_callback(self._booting.discard)

    def _on_exit(self, handle: WorkerHandle) -> None:
        """A worker ended: hand its slot to ``on_lost`` and start a replacement (unless closing)."""
        slot = next((s for s in self.slots if s.handle is handle), None)
        if slot is None:
            return
        self.slots.remove(slot)
        self.on_lost(slot)
        if self.closing():
            return
        self.restarts += 1
        healthy = handle.ready.done() and not handle.ready.cancelled() and handle.ready.exception() is None
        self._failures_in_a_row = 0 if healthy else self._failures_in_a_row + 1
        # Back off when workers die before they are ready (bad model, no memory): 0.5 s, 1 s, ... 30 s.
        delay = 0.0 if not self._failures_in_a_row else min(30.0, 0.5 * 2 ** (self._failures_in_a_row - 1))
        self._launch(handle.spec, delay)

    def ready_slots(self) -> list[WorkerSlot]:
        return [s for s in self.slots if s.ready]

    def describe(self) -> list[dict[str, Any]]:
        """One line per worker, for ``/health/ready`` and the metrics."""
        return [{"name": s.handle.name, "kind": s.handle.kind, "device": s.handle.spec.device, "pid": s.handle.pid,
                 "ready": s.ready, "sessions": len(s.sessions)} for s in self.slots]

    def cancel_booting(self) -> None:
        for task in list(self._booting):
            task.cancel()
