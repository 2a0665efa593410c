"""A worker: every served model loaded once on one device, running the jobs the pool sends it.

The same :class:`Worker` runs inside a child process (:func:`serve`, the process entry point, talking over a
pipe) or on a thread of the service process; :mod:`app.execution.transport` hides which. A job is a batch the
pool already formed: one operation on one model for several requests' items. Each item gets its own outcome,
so one bad item (or a failed batch) fails only the requests it belongs to.

Operations: ``forward`` (whole clips, padded into one call), and for streaming sessions resident here
``open`` (returns the stream's quantum and latency) / ``step`` / ``segment`` (a result so far, the stream goes on)
/ ``finish`` (the final result, a recognizer's last frames left out if asked) / ``close``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import multiprocessing
import os
import queue
import signal
import threading
import traceback
from dataclasses import dataclass
from typing import Any

from model_zoo.card import ModelCard

__all__ = ["Job", "Failure", "WorkerSpec", "Worker", "DecodeProcess", "decode_elsewhere", "serve", "DETACHED_OPS"]

log = logging.getLogger(__name__)


@dataclass
class Job:
    id: int
    op: str  # forward | open | step | segment | finish | close
    model: str
    items: list[Any]


# Session calls the pool's dispatcher does not wait for, and a worker process runs on a thread of their own where
# the runner allows it (``finals_beside_steps``): a final's decoding (a recognizer's beam search, 20-30 ms for an
# utterance of a few seconds with the shipped model) goes on beside the steps of the worker's other streams. In
# line, each final held up the steps of every other stream of its worker that long (a job log at 64 live
# transcription streams: 25-30 ms per final, one every few seconds per stream).
DETACHED_OPS = frozenset({"segment", "finish"})


@dataclass
class Failure:
    """An item's error, picklable; the pool turns it into an exception for the waiting request."""

    message: str
    code: str = "inference_failed"


@dataclass
class WorkerSpec:
    """What a worker needs to start: served name -> checkpoint (shipped name or card path), its device."""

    models: dict[str, str]
    device: str = "cpu"
    torch_threads: int = 0
    warmup: bool = True
    name: str = "worker"


class Worker:
    """Loads the models of a :class:`WorkerSpec` and executes :class:`Job` s, one at a time."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.runners: dict[str, Any] = {}
        self.sessions: dict[str, Any] = {}

    def load(self) -> dict[str, ModelCard]:
        """Load (and warm up) every model; returns the cards by served name."""
        import torch

        import model_zoo
        from model_zoo.runtime import select_device

        from .runners import make_runner

        if self.spec.torch_threads > 0:
            torch.set_num_threads(self.spec.torch_threads)
        device = select_device(self.spec.device)
        for name, source in self.spec.models.items():
            model = model_zoo.load(source, device)
            self.runners[name] = make_runner(model, device)
            if self.spec.warmup:
                self.runners[name].warmup()
        return {name: runner.card for name, runner in self.runners.items()}

    def beside_steps(self, job: Job) -> bool:
        """Whether ``job`` may run on another thread than the steps (a final its runner allows there)."""
        runner = self.runners.get(job.model)
        return job.op in DETACHED_OPS and runner is not None and runner.finals_beside_steps

    def handle(self, job: Job) -> list[Any]:
        """Run one job; returns one outcome (a value or a :class:`Failure`) per item."""
        runner = self.runners.get(job.model)
        if runner is None:
            return [Failure(f"model {job.model!r} is not loaded on {self.spec.name}", "model_not_found")] * len(job.items)
        try:
            if job.op == "forward":
                return runner.forward(job.items)
            if job.op == "open":  # items: (session_id, options)
                for session_id, options in job.items:
                    self.sessions[session_id] = runner.open(options)
                return [runner.stream_info() for _ in job.items]
            if job.op == "step":  # items: (session_id, chunk)
                known = [i for i, (session_id, _) in enumerate(job.items) if session_id in self.sessions]
                stepped = runner.step([self.sessions[job.items[i][0]] for i in known], [job.items[i][1] for i in known])
                outcomes = [self._unknown(session_id) for session_id, _ in job.items]
                for i, outcome in zip(known, stepped):
                    outcomes[i] = outcome
                return outcomes
            if job.op == "segment":  # items: session_id
                return [runner.segment(self.sessions[session_id]) if session_id in self.sessions
                        else self._unknown(session_id) for session_id in job.items]
            if job.op == "finish":  # items: (session_id, drop_frames); only a recognizer drops frames
                return [(runner.finish(self.sessions.pop(session_id), drop) if drop
                         else runner.finish(self.sessions.pop(session_id))) if session_id in self.sessions
                        else self._unknown(session_id) for session_id, drop in job.items]
            if job.op == "close":
                for session_id in job.items:
                    self.sessions.pop(session_id, None)
                return [None] * len(job.items)
            return [Failure(f"unknown operation {job.op!r}", "bad_operation")] * len(job.items)
        except Exception as err:  # noqa: BLE001 - a failed batch must answer its requests, not kill the worker
            log.error("job %s (%s on %s) failed:\n%s", job.id, job.op, job.model, traceback.format_exc())
            return [Failure(f"{type(err).__name__}: {err}")] * len(job.items)

    @staticmethod
    def _unknown(session_id: str) -> Failure:
        # Only this row fails: a step queued for a stream that was closed meanwhile must not fail the healthy
        # streams batched with it (a 30-minute soak saw exactly that once).
        return Failure(f"unknown session {session_id!r}", "session_not_found")


class DecodeProcess:
    """The beam searches of a worker's recognizers, in a process forked from the loaded worker.

    flashlight's search holds the GIL while it runs, so on a thread of the worker it slowed the steps of every other
    stream (bench/streams.py, 64 live transcription streams on two cores: p99 53-67 ms with beam-search finals
    against 40-42 ms with greedy ones). The child shares the loaded models and language model with the worker (a
    fork, copy on write) but no GIL; the thread that asks waits on a pipe. One search at a time, as before (the
    decoder keeps its search in itself). If the child is gone or stuck, the search runs here again.
    """

    timeout_seconds = 120.0  # a search that long means a stuck child (an hour of audio takes seconds)

    def __init__(self, runners: dict[str, Any], not_inherited: tuple[Any, ...] = ()) -> None:
        """``not_inherited``: connections the child closes (the worker's pipe to the service, whose end must
        close when the worker dies)."""
        self.runners = runners
        parent, child = multiprocessing.Pipe()
        self.pid = os.fork()  # before the worker starts any thread of its own: a fork copies only this one
        if self.pid == 0:
            for connection in (parent, *not_inherited):
                connection.close()
            try:
                _decode_forever(child, runners)
            finally:
                os._exit(0)
        child.close()
        self._conn, self._lock, self.alive = parent, threading.Lock(), True

    def decode(self, model: str, logits: Any, options: dict) -> Any:
        """``runners[model].decode(logits, options)``, in the child."""
        with self._lock:
            if self.alive:
                try:
                    self._conn.send((model, logits.numpy(), options))
                    if not self._conn.poll(self.timeout_seconds):
                        raise TimeoutError(f"no answer in {self.timeout_seconds:g} s")
                    ok, value = self._conn.recv()
                except (EOFError, OSError) as err:  # TimeoutError is an OSError
                    log.error("the decoding process %s is gone (%s); beam searches run in the worker again",
                              self.pid, err or type(err).__name__)
                    self.alive = False
                    with contextlib.suppress(OSError):
                        os.kill(self.pid, signal.SIGKILL)
                else:
                    if not ok:
                        raise RuntimeError(value)
                    return value
        return self.runners[model].decode_here(logits, options)

    def close(self) -> None:
        self._conn.close()  # the child ends at the end of its pipe
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def _decode_forever(conn: Any, runners: dict[str, Any]) -> None:
    import torch

    # The parent's OpenMP threads do not exist here, and a parallel region waiting for them would hang (seen with
    # more than one intra-op thread); as torch's DataLoader does in its forked workers.
    torch.set_num_threads(1)
    while True:
        try:
            model, logits, options = conn.recv()
        except (EOFError, OSError):
            return
        try:
            conn.send((True, runners[model].decode_here(torch.from_numpy(logits), options)))
        except Exception as err:  # noqa: BLE001 - the worker's request fails, the child goes on
            conn.send((False, f"{type(err).__name__}: {err}"))


def decode_elsewhere(worker: Worker, not_inherited: tuple[Any, ...] = ()) -> DecodeProcess | None:
    """A :class:`DecodeProcess` for ``worker``'s recognizers, which then hand it their beam searches; None when it
    has none, or they are on a GPU (a process that has set up CUDA must not fork), or it cannot fork."""
    recognizers = {name: runner for name, runner in worker.runners.items() if hasattr(runner, "beam_search_elsewhere")}
    if not recognizers or not hasattr(os, "fork") or any(r.device.type != "cpu" for r in worker.runners.values()):
        return None
    decoder = DecodeProcess(worker.runners, not_inherited)
    for name, runner in recognizers.items():
        runner.beam_search_elsewhere = functools.partial(decoder.decode, name)
    return decoder


def serve(conn: Any, spec: WorkerSpec) -> None:
    """Child-process entry point: load, report ``("ready", cards)``, then answer jobs until told to stop.

    A reader thread drains the pipe into a local queue at all times, so the service process never blocks on
    a full pipe while this worker computes. EOF on the pipe (the service died) stops the worker too.
    """
    from model_zoo.runtime import freeze_loaded_objects, keep_freed_memory

    logging.basicConfig(level=os.environ.get("CENTAURUS_WORKER_LOG_LEVEL", "WARNING"))
    keep_freed_memory()  # a worker reuses the same large buffers request after request
    worker = Worker(spec)
    try:
        cards = worker.load()
    except Exception as err:  # noqa: BLE001 - reported to the service, which decides what to do
        conn.send(("fatal", f"{type(err).__name__}: {err}"))
        return
    freeze_loaded_objects()  # the models stay for the process's life: full collections skip them
    decoder = decode_elsewhere(worker, (conn,))
    conn.send(("ready", {"cards": cards, "pid": os.getpid()}))
    inbox: queue.Queue = queue.Queue()

    def read() -> None:
        try:
            while True:
                inbox.put(conn.recv())
        except (EOFError, OSError):
            inbox.put(None)

    threading.Thread(target=read, name="worker-reader", daemon=True).start()
    sending = threading.Lock()  # results come from two threads

    def answer(job: Job) -> None:
        outcomes = worker.handle(job)
        with sending:
            conn.send(("result", job.id, outcomes))

    # Finals its runner allows (beside_steps) run one at a time on a thread of their own, which waits for the beam
    # search of the decoding process, so the other streams' steps go on meanwhile. A stream's own calls never
    # overlap (the pool sends its next call after this one's answer), so each session has one user at a time.
    finals = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="worker-finals")
    while (job := inbox.get()) is not None:
        if worker.beside_steps(job):
            finals.submit(answer, job)
        else:
            answer(job)
    finals.shutdown(wait=True)
    if decoder is not None:
        decoder.close()
