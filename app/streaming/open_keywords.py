"""Keywords of the caller's choosing, live: the keyword stream's and Wyoming's words the classifier does not know.

They are searched for in the served recognizer's output, as ``POST /keywords`` searches an upload
(:mod:`model_zoo.pipelines.open_keywords`), on a second resident session, of the recognizer, fed the same audio as
the classifier's: a live recognizer session with the pool option ``open_keywords`` searches its frames as they
come and returns, step by step, the detections that became final (each one ``LOOKAHEAD_SECONDS`` after its last
frame), so a stream's detections equal the upload's for the same audio. Which words go where is
:func:`app.keywords.choose_keywords`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Awaitable, Callable

from model_zoo.pipelines.kws import Detection
from model_zoo.pipelines.open_keywords import OpenKeyword

from ..engine import open_keyword_options
from .live import LiveStream

__all__ = ["Follow", "OpenKeywordStream"]

# Opens a stream of another model on the same audio: (model, pool options, deliver) -> its LiveStream
# (app.streaming.live.open_live with the client's rate and step).
Follow = Callable[[str, dict, Callable[[Any], Awaitable[None]]], Awaitable[LiveStream]]


class OpenKeywordStream:
    """The recognizer's session searching for ``keywords``; ``deliver`` gets each step's final detections (a
    list, often empty) in order. Whoever feeds the classifier's stream pushes the same audio into :attr:`stream`,
    drains it and watches it for failure."""

    def __init__(self, keywords: Sequence[OpenKeyword], deliver: Callable[[list[Detection]], Awaitable[None]]) -> None:
        self.keywords, self.deliver = tuple(keywords), deliver
        self.stream: LiveStream | None = None

    @classmethod
    async def open(cls, follow: Follow, recognizer: str, keywords: Sequence[OpenKeyword], *, offset: float,
                   deliver: Callable[[list[Detection]], Awaitable[None]]) -> OpenKeywordStream:
        """``offset``: the stream's time (seconds) of the first sample this session gets: detections are on the
        stream's clock."""
        searched = cls(keywords, deliver)
        options = {"live": True, "open_keywords": open_keyword_options(keywords), "offset": offset}
        searched.stream = await follow(recognizer, options, deliver)
        return searched

    async def flush(self) -> None:
        """``input.flush``: what was heard so far, decided as at the end of the audio; the search goes on."""
        await self.stream.drain()
        await self.deliver(await self.stream.call(self.stream.session.segment))

    async def finish(self) -> None:
        """The end of the audio: the rest of it through the recognizer and every candidate decided."""
        await self.stream.drain(end=True)
        await self.deliver(await self.stream.call(self.stream.session.finish))

    async def close(self) -> None:
        """Free the session at once (after finish, or when the client went away)."""
        if self.stream is not None:
            await self.stream.close()
