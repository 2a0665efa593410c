"""The event loop's handle on a streaming session resident in one worker.

The model state of a stream stays on the worker that opened it (states of SSM models are KBs to MBs, too big
to ship per 20 ms chunk), and that worker steps all of its sessions of one model together as one batch. Long
uploads use sessions to run chunk by chunk in bounded memory; the websockets (:mod:`app.streaming`) use them
for live audio. The worker's side of a session is :class:`app.execution.runners.WorkerSession`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import WorkerLost
from .supervisor import WorkerSlot

if TYPE_CHECKING:
    from .pool import Pool

__all__ = ["SessionHandle"]


class SessionHandle:
    """A stream resident on one worker. Calls are sequential (a lock keeps chunks in order).

    ``step(chunk)`` sends a chunk ``(T,)`` at the model's rate and returns the partial output (denoised audio,
    ASR logits are kept for the end); ``finish()`` returns the final result (a transcript, the flushed audio)
    and frees the state. If the worker dies, every call fails with :class:`WorkerLost`.
    """

    def __init__(self, pool: Pool, slot: WorkerSlot, model: str, session_id: str) -> None:
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
            return await self.pool.submit("step", self.model, (self.id, chunk), 1, deadline, self.slot)

    async def segment(self, deadline: float) -> Any:
        """The result of the audio since the last segment (a final transcript); the stream goes on."""
        async with self._lock:
            self._check_alive()
            return await self.pool.submit("segment", self.model, self.id, 1, deadline, self.slot)

    async def finish(self, deadline: float, drop_frames: int = 0) -> Any:
        """The final result; ``drop_frames``: the last output frames stepped are left out of it (a recognizer's
        utterance that ended inside a call of several steps, :mod:`app.streaming.utterances`)."""
        async with self._lock:
            try:
                self._check_alive()
                return await self.pool.submit("finish", self.model, (self.id, drop_frames), 1, deadline, self.slot)
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
            job = self.pool.new_job("close", self.model, [self.id])
            try:
                # Shielded: a caller cancelled right now (a server tearing the connection down) must not cancel
                # the close job itself, or a thread worker would never free the state.
                await asyncio.shield(self.slot.handle.run(job))
            except Exception:  # noqa: BLE001 - best effort
                pass
