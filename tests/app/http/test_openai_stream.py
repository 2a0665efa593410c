"""``stream=true`` on ``/v1/audio/transcriptions``: OpenAI's server-sent events, through the app and in isolation.

The done text equals the same request without ``stream`` (beam search and greedy alike), the deltas
concatenate to it, greedy deltas are sent while the audio is still being decoded, errors before the first
event are the usual JSON errors and a failure after it is a last ``error`` event. The official ``openai``
client against a real server is in ``tests/app/test_openai_stream_server.py``.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from service_testkit import SPEECH_SAMPLE, signal, wav_bytes

from app.audio.decode import Audio
from app.errors import DeadlineExceeded
from app.http import sse
from model_zoo.nets.ctc import Transcript


def upload(data: bytes) -> dict:
    return {"file": ("clip.wav", data, "application/octet-stream")}


def events_of(response) -> list[dict]:
    """The ``data:`` events of an SSE body (blank-line separated, as OpenAI sends them)."""
    assert response.headers["content-type"].startswith("text/event-stream"), response.headers
    blocks = [b for b in response.text.split("\n\n") if b.strip()]
    assert all(b.startswith("data: ") and "\n" not in b for b in blocks), blocks
    return [json.loads(b[len("data: "):]) for b in blocks]


@pytest.mark.parametrize("beam_search", ["true", "false"])
def test_stream_done_text_equals_the_plain_response(client, beam_search):
    speech = upload(SPEECH_SAMPLE.read_bytes())
    options = {"model": "whisper-1", "beam_search": beam_search}
    plain = client.post("/v1/audio/transcriptions", files=speech, data=options)
    assert plain.status_code == 200 and plain.json()["text"].strip()
    streamed = client.post("/v1/audio/transcriptions", files=speech, data={**options, "stream": "true"})
    assert streamed.status_code == 200, streamed.text
    events = events_of(streamed)
    *deltas, done = events
    assert done == {"type": "transcript.text.done", "text": plain.json()["text"]}
    assert deltas and all(e["type"] == "transcript.text.delta" and e["delta"] for e in deltas)
    assert "".join(e["delta"] for e in deltas) == done["text"]
    assert len(deltas) >= 2  # word by word, not the whole text at once


def test_stream_of_a_long_clip_through_a_session(client):
    """Longer than chunk_seconds (1 s here): greedy steps run through a resident session; still the same text."""
    clip = upload(wav_bytes(signal(3.5, seed=7), 16000))
    options = {"beam_search": "false", "response_format": "text"}
    plain = client.post("/v1/audio/transcriptions", files=clip, data=options).text.removesuffix("\n")
    events = events_of(client.post("/v1/audio/transcriptions", files=clip, data={**options, "stream": "true"}))
    assert events[-1] == {"type": "transcript.text.done", "text": plain}
    assert "".join(e["delta"] for e in events[:-1]) == plain


def test_stream_errors_before_the_first_event_are_json(client):
    bad = client.post("/v1/audio/transcriptions", files=upload(b"not audio at all" * 50), data={"stream": "true"})
    assert bad.status_code == 415 and bad.headers["content-type"].startswith("application/json")
    assert bad.json()["error"]["code"] == "unsupported_audio"
    srt = client.post("/v1/audio/transcriptions", files=upload(wav_bytes(signal(0.5), 16000)),
                      data={"stream": "true", "response_format": "srt"})
    assert srt.status_code == 422 and srt.json()["error"]["param"] == "response_format"
    french = client.post("/v1/audio/transcriptions", files=upload(wav_bytes(signal(0.5), 16000)),
                         data={"stream": "true", "language": "fr"})
    assert french.status_code == 422 and french.json()["error"]["code"] == "unsupported_language"


def test_word_deltas_and_settled_words():
    assert sse.word_deltas("") == []
    assert sse.word_deltas("turn on the lights") == ["turn", " on", " the", " lights"]
    assert sse.settled("turn on the li") == "turn on the" and sse.settled("tur") == ""


class FakeEngine:
    """Greedy steps as the worker reports them; records what happened in order, with the events sent."""

    def __init__(self, partials: list[str], final: str, fail_after: int | None = None) -> None:
        self.partials, self.final, self.fail_after, self.log = partials, final, fail_after, []
        self.closed = False

    async def transcribe_greedy_steps(self, model, audio, *, deadline):
        try:
            for i, text in enumerate(self.partials):
                if self.fail_after is not None and i == self.fail_after:
                    raise DeadlineExceeded("the request took too long")
                self.log.append(("step", text))
                yield text
            self.log.append(("final", self.final))
            yield Transcript(self.final, ())
        finally:
            self.closed = True


async def collect(engine: FakeEngine) -> list[dict]:
    events = sse.transcript_events(engine, "asr", Audio(None, 16000, 1), beam_search=False, deadline=0.0)
    out = []
    async for event in events:
        engine.log.append(("event", event.get("delta", event.get("text"))))
        out.append(event)
    return out


def test_greedy_deltas_are_sent_while_decoding():
    engine = FakeEngine(["turn", "turn o", "turn on the", "turn on the lig"], "turn on the lights")
    events = asyncio.run(collect(engine))
    assert [e.get("delta") for e in events[:-1]] == ["turn", " on", " the", " lights"]
    assert events[-1] == {"type": "transcript.text.done", "text": "turn on the lights"}
    # The first delta went out before the later steps were even decoded: incremental, not after the fact.
    assert engine.log.index(("event", "turn")) < engine.log.index(("step", "turn on the"))
    assert engine.closed


def test_a_failure_after_the_first_event_is_an_error_event():
    engine = FakeEngine(["turn on", "turn on the", "turn on the lig"], "turn on the lights", fail_after=2)

    async def body() -> list[bytes]:
        events = sse.transcript_events(engine, "asr", Audio(None, 16000, 1), beam_search=False, deadline=0.0)
        return [chunk async for chunk in await sse.sse_stream(events)]

    chunks = [json.loads(c.decode().removeprefix("data: ")) for c in asyncio.run(body())]
    assert chunks[0] == {"type": "transcript.text.delta", "delta": "turn"}
    assert chunks[-1]["type"] == "error" and chunks[-1]["error"]["code"] == "deadline_exceeded"
    assert set(chunks[-1]["error"]) == {"message", "type", "code", "param"}
    assert engine.closed


def test_a_client_that_goes_away_frees_the_session():
    engine = FakeEngine(["a", "a b", "a b c", "a b c d"], "a b c d")

    async def first_only() -> None:
        events = sse.transcript_events(engine, "asr", Audio(None, 16000, 1), beam_search=False, deadline=0.0)
        body = await sse.sse_stream(events)
        await body.__anext__()
        await body.aclose()  # what the server does when the client disconnects

    asyncio.run(first_only())
    assert engine.closed and ("final", "a b c d") not in engine.log
