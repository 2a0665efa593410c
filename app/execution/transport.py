"""How the pool talks to a worker: a child process over a pipe, or a thread of this process.

Both handles expose the same small interface to the event loop: ``start()``, ``ready`` (a future with the
model cards), ``run(job) -> Future[outcomes]``, ``stop()``, and an ``on_exit`` callback when the worker dies.

Processes come from a ``forkserver`` that has already imported torch and model_zoo, so starting (or
replacing) a worker costs a fork and a model load, not a fresh interpreter and a torch import. Each process
handle has a sender thread and a receiver thread, so the event loop never blocks on the pipe.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import multiprocessing
import queue
import threading
from typing import Any, Callable

from model_zoo.card import ModelCard

from ..errors import WorkerLost
from .worker import Job, Worker, WorkerSpec, serve

__all__ = ["WorkerHandle", "ProcessWorker", "ThreadWorker", "make_worker"]

log = logging.getLogger(__name__)
_names = itertools.count(1)
_context: multiprocessing.context.BaseContext | None = None


def _forkserver() -> multiprocessing.context.BaseContext:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        # Imported once by the fork server; every worker forks from it with torch already loaded.
        _context.set_forkserver_preload(["torch", "torchaudio", "model_zoo", "app.execution.runners",
                                         "app.execution.worker"])
    return _context


class WorkerHandle:
    """The event loop's view of one worker."""

    kind = "worker"

    def __init__(self, spec: WorkerSpec, loop: asyncio.AbstractEventLoop, on_exit: Callable[["WorkerHandle"], None]):
        self.spec, self.loop, self.on_exit = spec, loop, on_exit
        self.name = f"{self.kind}-{next(_names)}"
        self.ready: asyncio.Future = loop.create_future()
        self.cards: dict[str, ModelCard] = {}  # pickled across the pipe (frozen dataclasses pickle as they are)
        self.pid: int | None = None
        self.alive = False

    def start(self) -> None: ...
    def run(self, job: Job) -> asyncio.Future: ...
    def stop(self, timeout: float = 5.0) -> None: ...


class ProcessWorker(WorkerHandle):
    kind = "process"

    def __init__(self, spec, loop, on_exit) -> None:
        super().__init__(spec, loop, on_exit)
        self._pending: dict[int, asyncio.Future] = {}
        self._outbox: queue.Queue = queue.Queue()
        self._stopping = False

    def start(self) -> None:
        ctx = _forkserver()
        self._conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=serve, args=(child, self.spec), name=self.name, daemon=True)
        self.process.start()
        child.close()  # only the child holds it now, so its death shows here as EOF
        self.pid, self.alive = self.process.pid, True
        threading.Thread(target=self._receive, name=f"{self.name}-recv", daemon=True).start()
        threading.Thread(target=self._send, name=f"{self.name}-send", daemon=True).start()

    def run(self, job: Job) -> asyncio.Future:
        future = self.loop.create_future()
        if not self.alive:
            future.set_exception(WorkerLost(f"{self.name} is not running"))
            return future
        self._pending[job.id] = future
        self._outbox.put(job)
        return future

    def _send(self) -> None:
        while (job := self._outbox.get()) is not None:
            try:
                self._conn.send(job)
            except (OSError, ValueError):  # broken pipe: the receiver reports the death
                return
        try:
            self._conn.send(None)  # asks the worker to finish its queue and exit
        except (OSError, ValueError):
            pass

    def _receive(self) -> None:
        try:
            while True:
                message = self._conn.recv()
                self._post(self._deliver, message)
        except (EOFError, OSError):
            pass
        self.process.join(timeout=5)
        self._post(self._exited)

    def _post(self, callback: Callable, *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the event loop is closed: the service is gone, nobody is waiting
            pass

    def _deliver(self, message: tuple) -> None:
        kind = message[0]
        if kind == "ready":
            self.cards, self.pid = message[1]["cards"], message[1]["pid"]
            if not self.ready.done():
                self.ready.set_result(self.cards)
        elif kind == "fatal":
            if not self.ready.done():
                self.ready.set_exception(RuntimeError(f"{self.name} could not load its models: {message[1]}"))
        elif kind == "result":
            future = self._pending.pop(message[1], None)
            if future is not None and not future.done():
                future.set_result(message[2])

    def _exited(self) -> None:
        self.alive = False
        code = self.process.exitcode
        reason = f"{self.name} (pid {self.pid}) exited with code {code}"
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"{reason} before it was ready"))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(WorkerLost(f"{reason} while running this request; a replacement is starting"))
        self._pending.clear()
        self._conn.close()
        if not self._stopping:
            log.error("%s", reason)
        self.on_exit(self)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit after its queued jobs; kill it if it does not within ``timeout``."""
        self._stopping = True
        self._outbox.put(None)
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(1)


class ThreadWorker(WorkerHandle):
    """The worker runs on one thread of this process: no isolation, no pipe."""

    kind = "thread"

    def start(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        self.worker = Worker(self.spec)  # public: in this process its sessions can be looked at (tests do)
        self.alive = True
        loaded = asyncio.wrap_future(self._executor.submit(self.worker.load), loop=self.loop)

        def loaded_done(f: asyncio.Future) -> None:
            if f.exception() is not None:
                self.ready.set_exception(f.exception())
            else:
                self.cards = f.result()
                self.ready.set_result(self.cards)

        loaded.add_done_callback(loaded_done)
        self.pid = None

    def run(self, job: Job) -> asyncio.Future:
        return asyncio.wrap_future(self._executor.submit(self.worker.handle, job), loop=self.loop)

    def stop(self, timeout: float = 5.0) -> None:
        self.alive = False
        self._executor.shutdown(wait=True, cancel_futures=False)


def make_worker(mode: str, spec: WorkerSpec, loop: asyncio.AbstractEventLoop,
                on_exit: Callable[[WorkerHandle], None]) -> WorkerHandle:
    return (ProcessWorker if mode == "process" else ThreadWorker)(spec, loop, on_exit)
