"""An endpoint's final in the websocket transcription protocol (app.streaming.protocols.TranscribeProtocol): the
stream steps on while it is decoded, and the messages keep their order: the final, then the next utterance's
newest partial."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np

from app.streaming.messages import SessionStart
from app.streaming.protocols import TranscribeProtocol
from model_zoo.nets.ctc import Transcript
from model_zoo.pipelines.endpoint import RecognizerStep


class Sent:
    """The connection: what was sent, in order."""

    def __init__(self) -> None:
        self.messages: list = []

    async def send(self, message) -> None:
        self.messages.append((message.type, getattr(message, "text", None), getattr(message, "segment", None)))


class Cuts:
    """Utterances whose next push ends the utterance when told to, and whose finals the test releases."""

    def __init__(self) -> None:
        self.rewound, self.end_next, self.finals = 0, False, []

    def push(self, blank):
        ended, self.end_next = self.end_next, False
        return SimpleNamespace(speech_start=0.0) if ended else None

    async def cut(self) -> asyncio.Future:
        self.finals.append(asyncio.get_running_loop().create_future())
        return self.finals[-1]


def step(text: str) -> RecognizerStep:
    return RecognizerStep(text, np.zeros(1, np.float32))


def test_the_stream_steps_on_while_an_endpoints_final_is_decoded_and_messages_keep_their_order():
    async def main():
        sent = Sent()
        protocol = TranscribeProtocol(sent, SessionStart(type="session.start"), SimpleNamespace(sample_rate=16000),
                                      None)
        protocol.stream = SimpleNamespace(stepped=0)
        protocol.utterances = cuts = Cuts()
        await protocol.on_step(step("hello"))
        cuts.end_next = True
        await protocol.on_step(step("hello"))  # the endpoint: returns at once, its final not decoded yet
        await protocol.on_step(step("new"))
        await protocol.on_step(step("new words"))
        assert sent.messages == [("transcript.partial", "hello", 0)]  # the next utterance's partials wait
        cuts.finals[0].set_result(Transcript("hello there", ()))
        for _ in range(3):  # sent as soon as decoded, without waiting for a step
            await asyncio.sleep(0)
        assert sent.messages == [("transcript.partial", "hello", 0), ("transcript.final", "hello there", 0),
                                 ("transcript.partial", "new words", 1)]  # only the newest partial held
        await protocol.on_step(step("new words"))  # unchanged text: nothing new
        assert len(sent.messages) == 3
        await protocol.on_step(step("new words here"))
        assert sent.messages[-1] == ("transcript.partial", "new words here", 1)

    asyncio.run(main())


def test_a_failed_final_ends_the_stream_at_its_next_step():
    async def main():
        protocol = TranscribeProtocol(Sent(), SessionStart(type="session.start"), SimpleNamespace(sample_rate=16000),
                                      None)
        protocol.stream = SimpleNamespace(stepped=0)
        protocol.utterances = cuts = Cuts()
        cuts.end_next = True
        await protocol.on_step(step("hi"))
        cuts.finals[0].set_exception(RuntimeError("worker lost"))
        await asyncio.sleep(0)
        try:
            await protocol.on_step(step("hi"))
        except RuntimeError as err:
            assert "worker lost" in str(err)
        else:
            raise AssertionError("the final's failure was not raised")

    asyncio.run(main())
