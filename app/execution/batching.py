"""Micro-batching rules of the pool: what one queued call is, which calls are stale, which go together.

Pure functions over a queue (a ``deque`` of :class:`Call`), so the rules read (and test) without workers.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..errors import DeadlineExceeded

__all__ = ["Call", "drop_stale", "take_batch"]


@dataclass(eq=False)
class Call:
    """One request's piece of work waiting for (or in) a batch."""

    op: str
    model: str
    payload: Any
    rows: int
    future: asyncio.Future
    deadline: float
    length: int = 0  # samples per row: clips of very different lengths are not padded into one batch
    enqueued: float = field(default_factory=time.monotonic)


def drop_stale(queue: deque[Call], now: float) -> None:
    """Pop calls at the head whose caller gave up or whose deadline passed (those get :class:`DeadlineExceeded`)."""
    while queue and (queue[0].future.done() or queue[0].deadline <= now):
        call = queue.popleft()
        if not call.future.done():
            call.future.set_exception(DeadlineExceeded("the request waited in the queue past its deadline"))


def take_batch(queue: deque[Call], max_rows: int) -> list[Call]:
    """The head call plus queued calls that fit in ``max_rows`` and are within 2x of its length, in order.

    Padding a 1 s clip to 20 s to share a call would cost more than it saves; skipped calls keep their place
    at the front of the queue for the next batch.
    """
    head = queue.popleft()
    calls, taken, kept = [head], head.rows, []
    while queue and taken < max_rows:
        call = queue.popleft()
        if call.future.done():
            continue
        similar = call.length <= 2 * head.length and head.length <= 2 * call.length
        if similar and taken + call.rows <= max_rows:
            calls.append(call)
            taken += call.rows
        else:
            kept.append(call)
    queue.extendleft(reversed(kept))
    return calls
