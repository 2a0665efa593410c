"""Cutting an utterance (app.streaming.utterances): the old session's final and the fresh session are asked for
at once, the cut returns once the fresh one is open (the final comes later, as a future), and when either fails
nothing is left resident in a worker; an utterance that ends inside a call of several steps ends after its own
step."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from app.streaming.utterances import Utterances
from model_zoo.nets.ctc import Transcript
from model_zoo.pipelines.endpoint import EndpointRules


class FakeSession:
    def __init__(self, name: str, log: list, finish_error: Exception | None = None) -> None:
        self.name, self.log, self.finish_error, self.closed = name, log, finish_error, False
        self.dropped: int | None = None

    async def finish(self, deadline: float, drop_frames: int = 0) -> Transcript:
        self.dropped = drop_frames
        self.log.append(f"{self.name} finish starts")
        await asyncio.sleep(0.01)
        if self.finish_error is not None:
            raise self.finish_error
        self.log.append(f"{self.name} finished")
        return Transcript(text="hello", words=())

    async def close(self) -> None:
        self.closed = True


class FakeStream:
    """What Utterances uses of a LiveStream: 30 ms frames, 90 ms steps, 1 s stepped so far."""

    model_rate, quantum, step = 16000, 480, 1440

    def __init__(self, session: FakeSession) -> None:
        self.session, self.stepped, self.rewinds = session, 16000, []

    async def call(self, op):
        return await op(0.0)

    def rewind(self, samples: int) -> None:
        self.rewinds.append(samples)
        self.stepped -= samples


def utterances(session: FakeSession, reopen, rules: EndpointRules | None = EndpointRules()) -> Utterances:
    return Utterances(FakeStream(session), reopen, rules, 0.03)


def test_a_cut_opens_the_next_session_while_the_last_one_finishes():
    log: list[str] = []

    async def reopen():
        log.append("open starts")
        await asyncio.sleep(0.01)
        return FakeSession("new", log)

    async def main():
        cutter = utterances(FakeSession("old", log), reopen)
        final = await cutter.cut()
        assert log.index("old finish starts") < log.index("open starts")  # concurrent, not one after the other
        assert cutter.stream.session.name == "new"
        assert (await final).text == "hello" and "old finished" in log

    asyncio.run(main())


def test_a_cut_returns_once_the_fresh_session_is_open_without_waiting_for_the_final():
    """The stream steps on while the old session's final is decoded (a slow beam search held every stream that
    ended an utterance up by that long)."""
    log: list[str] = []

    class SlowFinal(FakeSession):
        async def finish(self, deadline: float, drop_frames: int = 0) -> Transcript:
            await asyncio.sleep(0.5)
            return await super().finish(deadline, drop_frames)

    async def reopen():
        return FakeSession("new", log)

    async def main():
        cutter = utterances(SlowFinal("old", log), reopen)
        final = await asyncio.wait_for(cutter.cut(), 0.25)
        assert cutter.stream.session.name == "new" and not final.done()
        assert (await final).text == "hello"

    asyncio.run(main())


@pytest.mark.parametrize("silent_steps, rewound", [(13, 9), (12, 6), (11, 3), (10, 0)])
def test_an_utterance_ending_inside_a_call_of_several_steps_ends_after_its_own_step(silent_steps, rewound):
    """Rule 2 at 1.2 s is 40 silent frames after speech. A call of four 3-frame steps holds the 40th: the
    utterance ends after that step, and the frames of the call's later steps go back to the stream and out of
    the final, as if the stream had stepped one step per call."""
    async def main():
        async def reopen():
            return FakeSession("new", [])

        old = FakeSession("old", [])
        cutter = utterances(old, reopen, EndpointRules(silence_after_speech=1.2))
        speech, silence = np.zeros(3, np.float32), np.ones(3, np.float32)
        assert cutter.push(np.concatenate([speech] + [silence] * silent_steps)) is None  # blank = 1: silent
        endpoint = cutter.push(np.concatenate([silence] * 4))
        assert endpoint is not None and endpoint.rule == 2 and endpoint.frame == 3 + 40
        assert cutter.rewound == rewound and cutter.stream.rewinds == [480 * rewound]
        await (await cutter.cut())
        assert old.dropped == rewound and cutter.rewound == 0
        assert cutter.start == cutter.session_start == 16000 - 480 * rewound

    asyncio.run(main())


def test_without_endpointing_every_frame_of_a_call_stays():
    async def main():
        cutter = utterances(FakeSession("old", []), None, rules=None)
        assert cutter.push(np.ones(3 * 400, np.float32)) is None
        assert cutter.rewound == 0 and cutter.stream.rewinds == []

    asyncio.run(main())


def test_a_failed_final_fails_its_future_and_the_stream_holds_the_fresh_session():
    """The failure reaches whoever waits for the final (the protocol, which ends the stream with it); the fresh
    session is the stream's, so the stream's close frees it."""
    async def reopen():
        return FakeSession("new", [])

    async def main():
        cutter = utterances(FakeSession("old", [], finish_error=RuntimeError("worker lost")), reopen)
        final = await cutter.cut()
        with pytest.raises(RuntimeError, match="worker lost"):
            await final
        assert cutter.stream.session.name == "new"

    asyncio.run(main())


def test_a_failed_open_fails_the_cut():
    async def reopen():
        raise RuntimeError("no worker is ready")

    async def main():
        cutter = utterances(FakeSession("old", []), reopen)
        with pytest.raises(RuntimeError, match="no worker is ready"):
            await cutter.cut()

    asyncio.run(main())
