"""Cutting an utterance (app.streaming.utterances): the old session's final and the fresh session are asked for
at once, and when either fails nothing is left resident in a worker."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from app.streaming.live import CATCH_UP_STEPS
from app.streaming.utterances import Utterances
from model_zoo.nets.ctc import Transcript
from model_zoo.pipelines.endpoint import EndpointRules


class FakeSession:
    def __init__(self, name: str, log: list, finish_error: Exception | None = None) -> None:
        self.name, self.log, self.finish_error, self.closed = name, log, finish_error, False

    async def finish(self, deadline: float) -> Transcript:
        self.log.append(f"{self.name} finish starts")
        await asyncio.sleep(0.01)
        if self.finish_error is not None:
            raise self.finish_error
        self.log.append(f"{self.name} finished")
        return Transcript(text="hello", words=())

    async def close(self) -> None:
        self.closed = True


def utterances(session: FakeSession, reopen) -> Utterances:
    async def call(op):
        return await op(0.0)

    stream = SimpleNamespace(session=session, call=call, stepped=16000, model_rate=16000, catch_up_steps=0)
    return Utterances(stream, reopen, EndpointRules(), 0.03)


def test_a_cut_opens_the_next_session_while_the_last_one_finishes():
    log: list[str] = []

    async def reopen():
        log.append("open starts")
        await asyncio.sleep(0.01)
        return FakeSession("new", log)

    async def main():
        cutter = utterances(FakeSession("old", log), reopen)
        assert cutter.stream.catch_up_steps == 1  # endpointing on: one step at a time
        final = await cutter.cut()
        assert final.text == "hello" and cutter.stream.session.name == "new"
        assert log.index("open starts") < log.index("old finished")  # concurrent, not one after the other
        cutter.set_rules(None)
        assert cutter.stream.catch_up_steps == CATCH_UP_STEPS

    asyncio.run(main())


def test_a_failed_final_closes_the_session_opened_for_the_next_utterance():
    opened: list[FakeSession] = []

    async def reopen():
        opened.append(FakeSession("new", []))
        return opened[-1]

    async def main():
        cutter = utterances(FakeSession("old", [], finish_error=RuntimeError("worker lost")), reopen)
        with pytest.raises(RuntimeError, match="worker lost"):
            await cutter.cut()
        await asyncio.sleep(0)
        assert opened and opened[0].closed and cutter.stream.session.name == "old"

    asyncio.run(main())


def test_a_failed_open_fails_the_cut():
    async def reopen():
        raise RuntimeError("no worker is ready")

    async def main():
        cutter = utterances(FakeSession("old", []), reopen)
        with pytest.raises(RuntimeError, match="no worker is ready"):
            await cutter.cut()

    asyncio.run(main())
