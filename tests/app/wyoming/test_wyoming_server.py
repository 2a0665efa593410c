"""The Wyoming server (Home Assistant) of a real ``centaurus-speech serve``, driven by the ``wyoming`` package's
own ``AsyncTcpClient`` and event types, with the shipped recognizer and keyword spotter (so a sentence has words
and ``yes`` is spotted).

describe -> info; transcribe + audio -> the streaming transcript events and the same text as ``/transcribe``, in
any format Wyoming allows and we take; detect + audio -> detection or not-detected, for the keyword model's words
and any other the recognizer can spell. Bad input gets an ``error`` event, and the server goes on serving the same
client and the next ones.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import wave

import httpx
import numpy as np
import pytest
import torch
import torchaudio
from service_testkit import SPEECH_SAMPLE, free_port, start_server, stop_server

wyoming = pytest.importorskip("wyoming")
from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop  # noqa: E402
from wyoming.audio import AudioChunk, AudioStart, AudioStop  # noqa: E402
from wyoming.client import AsyncTcpClient  # noqa: E402
from wyoming.error import Error  # noqa: E402
from wyoming.event import Event, async_read_event  # noqa: E402
from wyoming.info import Describe, Info  # noqa: E402
from wyoming.ping import Ping, Pong  # noqa: E402
from wyoming.wake import Detect, Detection, NotDetected  # noqa: E402

from app.audio.decode import decode  # noqa: E402

YES = SPEECH_SAMPLE.with_name("yes.wav")
TIMEOUT = 60.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    running = start_server({"asr": "asr", "kws": "kws"}, tmp_path_factory.mktemp("wyoming") / "server.log",
                           wyoming_uri=f"tcp://127.0.0.1:{port}", stream_idle_timeout_seconds="5")
    running.wyoming_port = port
    yield running
    stop_server(running)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, TIMEOUT))


def wyoming_client(server) -> AsyncTcpClient:
    return AsyncTcpClient("127.0.0.1", server.wyoming_port, read_timeout=TIMEOUT)


def pcm(samples: np.ndarray, width: int) -> bytes:
    """``(C, L)`` float in [-1, 1] -> interleaved little-endian PCM of ``width`` bytes."""
    scale, dtype = {2: (32767, "<i2"), 4: (2147483647, "<i4")}[width]
    return (np.clip(samples.T, -1, 1) * scale).round().astype(dtype).tobytes()


def wav_file(data: bytes, rate: int, width: int, channels: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data)
    return buffer.getvalue()


def audio_events(data: bytes, rate: int, width: int, channels: int, samples_per_chunk: int = 1024) -> list[Event]:
    """audio-start, audio-chunks with timestamps (as Home Assistant sends them), audio-stop."""
    step = samples_per_chunk * width * channels
    events = [AudioStart(rate=rate, width=width, channels=channels).event()]
    for i, first in enumerate(range(0, len(data), step)):
        events.append(AudioChunk(rate=rate, width=width, channels=channels, audio=data[first:first + step],
                                 timestamp=1000 + i * samples_per_chunk * 1000 // rate).event())
    return events + [AudioStop().event()]


async def exchange(c: AsyncTcpClient, events: list[Event], until: tuple[str, ...]) -> list[Event]:
    """Send ``events``, then read until one of the types ``until`` (included)."""
    for event in events:
        await c.write_event(event)
    received = []
    while True:
        event = await c.read_event()
        assert event is not None, f"the server closed the connection after {[e.type for e in received]}"
        received.append(event)
        if event.type in until:
            return received


def transcribe_http(server, upload: bytes) -> str:
    r = httpx.post(f"{server.base}/transcribe", files={"file": ("a.wav", upload)}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    return r.json()["text"]


def sessions(server) -> int:
    return sum(w["sessions"] for w in httpx.get(f"{server.base}/health/ready", timeout=10).json()["workers"])


def test_describe_lists_the_recognizer_and_the_keywords_as_wake_words(server):
    async def go():
        async with wyoming_client(server) as c:
            (event,) = await exchange(c, [Describe().event()], ("info",))
            pong = await exchange(c, [Ping(text="hi").event()], ("pong",))
        return Info.from_event(event), Pong.from_event(pong[-1])

    info, pong = run(go())
    assert pong.text == "hi"
    (asr,) = info.asr
    assert asr.supports_transcript_streaming and asr.installed
    assert [(m.name, m.languages) for m in asr.models] == [("asr", ["en"])]
    (wake,) = info.wake
    words = [m.name for m in wake.models]
    assert len(words) == 35 and {"yes", "marvin", "sheila"} <= set(words) and "_unknown_" not in words
    assert all(m.languages == ["en"] and m.phrase == m.name for m in wake.models)


def test_transcribe_streams_the_same_text_as_the_http_endpoint(server):
    upload = SPEECH_SAMPLE.read_bytes()
    expected = transcribe_http(server, upload)
    assert expected.strip()
    with wave.open(str(SPEECH_SAMPLE)) as w:
        data, rate, width, channels = w.readframes(w.getnframes()), w.getframerate(), w.getsampwidth(), w.getnchannels()

    async def go():
        async with wyoming_client(server) as c:
            return await exchange(c, [Transcribe(language="en").event(), *audio_events(data, rate, width, channels)],
                                  ("transcript-stop",))

    events = run(go())
    types = [e.type for e in events]
    assert types[0] == "transcript-start" and types[-2:] == ["transcript", "transcript-stop"], types
    assert set(types[1:-2]) == {"transcript-chunk"}
    assert TranscriptStart.from_event(events[0]).language == "en"
    transcript = Transcript.from_event(events[-2])
    assert transcript.text == expected and transcript.language == "en"
    assert "".join(TranscriptChunk.from_event(e).text for e in events[1:-2]) == expected
    assert TranscriptStop.is_type(events[-1].type)


@pytest.mark.parametrize("rate,width,channels", [(44100, 4, 2), (22050, 2, 3), (8000, 2, 1)])
def test_any_rate_width_and_channels_are_converted_like_uploads(server, rate, width, channels):
    speech = decode(SPEECH_SAMPLE.read_bytes()).samples
    resampled = torchaudio.functional.resample(speech, 16000, rate).numpy()
    data = pcm(np.stack([resampled * (1.0 - 0.2 * c) for c in range(channels)]), width)
    expected = transcribe_http(server, wav_file(data, rate, width, channels))  # the same samples, as a file

    async def go():
        async with wyoming_client(server) as c:
            # Odd chunk sizes: frames split across chunks are put back together.
            return await exchange(c, [Transcribe().event(), *audio_events(data, rate, width, channels, 777)],
                                  ("transcript-stop",))

    assert Transcript.from_event(run(go())[-2]).text == expected


def test_detect_spots_the_keyword_and_reports_none_otherwise(server):
    with wave.open(str(YES)) as w:
        yes = w.readframes(w.getnframes())
    padded = bytes(8000 * 2) + yes + bytes(16000 * 2)  # silence around the word, as a microphone would send it
    silence = bytes(32000 * 2)

    async def go():
        async with wyoming_client(server) as c:
            # As Home Assistant does: audio until a detection comes, no audio-stop before it (it is spotted live).
            spotted = await exchange(c, [Detect().event(), *audio_events(padded, 16000, 2, 1)[:-1]],
                                     ("detection", "not-detected"))
            await c.write_event(AudioStop().event())  # a stream with a detection ends without not-detected
            filtered = await exchange(c, [Detect(names=["marvin"]).event(), *audio_events(padded, 16000, 2, 1)],
                                      ("detection", "not-detected"))
            quiet = await exchange(c, [Detect(names=["yes"]).event(), *audio_events(silence, 16000, 2, 1)],
                                   ("detection", "not-detected"))
        return spotted, filtered, quiet

    spotted, filtered, quiet = run(go())
    detection = Detection.from_event(spotted[-1])
    assert spotted[-1].type == "detection" and detection.name == "yes", spotted
    # The word ends about 1.5 s into the stream, whose first chunk is stamped 1000 ms.
    assert 1500 <= detection.timestamp <= 3500, detection
    assert [e.type for e in filtered] == ["not-detected"] and NotDetected.is_type(quiet[-1].type)
    assert [e.type for e in quiet] == ["not-detected"]


def test_detect_searches_names_the_keyword_model_does_not_know_with_the_recognizer(server):
    """A name outside the 35 is searched for in the recognizer's output (POST /keywords' search, live): the word
    of the sample the shipped recognizer is surest of is detected where POST /keywords finds it; a name not said
    is not; describe still lists the 35."""
    upload = SPEECH_SAMPLE.read_bytes()
    words = httpx.post(f"{server.base}/transcribe", files={"file": ("a.wav", upload)}, data={"beam_search": "false"},
                       timeout=TIMEOUT).json()["words"]
    heard = max((w for w in words if len(w["word"]) >= 4), key=lambda w: w["confidence"])["word"]
    offline = httpx.post(f"{server.base}/keywords", files={"file": ("a.wav", upload)}, data={"keywords": heard},
                         timeout=TIMEOUT).json()["detections"]
    assert [d["keyword"] for d in offline] == [heard]
    with wave.open(str(SPEECH_SAMPLE)) as w:
        speech = w.readframes(w.getnframes())
    audio = speech + bytes(16000 * 2)  # a second of silence after the sentence, as a microphone goes on

    async def go():
        async with wyoming_client(server) as c:
            spotted = await exchange(c, [Detect(names=[heard.upper(), "marvin"]).event(),
                                         *audio_events(audio, 16000, 2, 1)[:-1]], ("detection", "not-detected"))
            await c.write_event(AudioStop().event())
            absent = await exchange(c, [Detect(names=["zebra", "hey computer #0.4"]).event(),
                                        *audio_events(audio, 16000, 2, 1)], ("detection", "not-detected"))
        return spotted, absent

    spotted, absent = run(go())
    detection = Detection.from_event(spotted[-1])
    assert spotted[-1].type == "detection" and detection.name == heard, spotted  # lower-cased, as POST /keywords
    assert detection.timestamp == 1000 + round(offline[0]["end"] * 1000)  # the first chunk is stamped 1000 ms
    assert [e.type for e in absent] == ["not-detected"]


def test_detect_resamples_other_rates(server):
    speech = decode(YES.read_bytes()).samples
    at_48k = torchaudio.functional.resample(torch.cat([torch.zeros(8000), speech, torch.zeros(16000)]), 16000, 48000)
    data = pcm(at_48k.numpy()[None], 2)

    async def go():
        async with wyoming_client(server) as c:
            return await exchange(c, [Detect(names=["yes"]).event(), *audio_events(data, 48000, 2, 1, 4800)],
                                  ("detection", "not-detected"))

    assert Detection.from_event(run(go())[-1]).name == "yes"


# ---- bad input ---------------------------------------------------------------------------------------------------
def error_of(event: Event) -> Error:
    assert event.type == "error", event
    error = Error.from_event(event)
    assert error.text and error.code
    return error


def test_mistakes_get_error_events_and_the_connection_goes_on(server):
    tone = pcm(np.sin(np.arange(16000) / 5)[None] * 0.3, 2)

    async def go():
        async with wyoming_client(server) as c:
            answers = {}
            answers["before"] = await exchange(c, audio_events(tone, 16000, 2, 1)[:2], ("error",))
            await c.write_event(AudioStop().event())  # ends the stray stream quietly
            answers["unknown"] = await exchange(c, [Event(type="make-coffee")], ("error",))
            answers["server_only"] = await exchange(c, [Transcript(text="hi").event()], ("error",))
            answers["width"] = await exchange(c, [Transcribe().event(), AudioStart(16000, 3, 1).event()], ("error",))
            await c.write_event(AudioChunk(16000, 3, 1, b"\0" * 300).event())  # dropped with its stream
            await c.write_event(AudioStop().event())
            answers["language"] = await exchange(c, [Transcribe(language="de").event()], ("error",))
            answers["wake_word"] = await exchange(c, [Detect(names=["r2-d2"]).event()], ("error",))
            answers["missing"] = await exchange(c, [Transcribe().event(), Event("audio-start", {"rate": 16000})],
                                                ("error",))
            answers["changed"] = await exchange(c, [*audio_events(tone, 16000, 2, 1)[:2],
                                                    AudioChunk(8000, 2, 1, tone[:800]).event()], ("error",))
            await c.write_event(AudioStop().event())
            answers["stop"] = await exchange(c, [AudioStop().event()], ("error",))
            # And the same connection still transcribes.
            answers["ok"] = await exchange(c, [Transcribe().event(), *audio_events(tone, 16000, 2, 1)],
                                           ("transcript-stop",))
        return answers

    answers = run(go())
    codes = {name: error_of(events[-1]).code for name, events in answers.items() if name != "ok"}
    assert codes == {"before": "no_request", "unknown": "unknown_event", "server_only": "unexpected_event",
                     "width": "unsupported_audio_format", "language": "unsupported_language",
                     "wake_word": "unknown_wake_word", "missing": "invalid_event", "changed": "audio_format_changed",
                     "stop": "no_request"}
    # One error per mistake: the stray chunk and stop of the refused streams were dropped without a word.
    assert all(len(events) == 1 for name, events in answers.items() if name != "ok"), answers
    assert [e.type for e in answers["ok"]][-2:] == ["transcript", "transcript-stop"]


async def raw_exchange(server, data: bytes) -> list[Event]:
    """Bytes a broken client might send, straight onto the socket; every event until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.wyoming_port)
    writer.write(data)
    await writer.drain()
    events = []
    while (event := await asyncio.wait_for(async_read_event(reader), TIMEOUT)) is not None:
        events.append(event)
        if len(events) > 10:
            break
    writer.close()
    return events


def line(event: dict) -> bytes:
    return json.dumps(event).encode() + b"\n"


def test_malformed_and_oversized_events(server):
    describe = line({"type": "describe"})
    # Bad JSON and an event without a type are answered, and the next line is read in step: info follows.
    malformed = run(raw_exchange(server, b"{not json\n" + line({"data": {}}) + describe + line({"type": "x" * 10})
                                 + b"\xff\xfe\n"))
    assert [e.type for e in malformed][:3] == ["error", "error", "info"]
    assert error_of(malformed[0]).code == "malformed_event" and error_of(malformed[1]).code == "malformed_event"
    # Lengths past the limits cannot be trusted: an error, then the server closes this connection.
    huge = run(raw_exchange(server, line({"type": "audio-chunk", "data": {"rate": 16000, "width": 2, "channels": 1},
                                          "payload_length": 1 << 40})))
    assert [error_of(e).code for e in huge] == ["event_too_large"]
    negative = run(raw_exchange(server, line({"type": "describe", "data_length": -5})))
    assert [error_of(e).code for e in negative] == ["malformed_event"]
    long_header = run(raw_exchange(server, b'{"type": "describe", "pad": "' + b"a" * 100_000 + b'"}\n'))
    assert [error_of(e).code for e in long_header] == ["event_too_large"]


def test_abrupt_disconnects_free_their_sessions_and_others_are_served(server):
    with wave.open(str(YES)) as w:
        yes = w.readframes(w.getnframes())

    async def vanish():
        c = wyoming_client(server)
        await c.connect()
        for event in [Detect().event(), *audio_events(yes, 16000, 2, 1)[:8]]:
            await c.write_event(event)
        await asyncio.sleep(0.5)
        c._writer.transport.abort()  # a reset, not a goodbye

    async def cut_mid_event():
        reader, writer = await asyncio.open_connection("127.0.0.1", server.wyoming_port)
        writer.write(line({"type": "transcribe"}) + line({"type": "audio-chunk", "payload_length": 4000,
                                                          "data": {"rate": 16000, "width": 2, "channels": 1}}))
        writer.write(b"\0" * 1000)  # a quarter of the payload it announced
        await writer.drain()
        writer.close()

    run(vanish())
    run(cut_mid_event())
    end = time.monotonic() + 30
    while sessions(server):
        assert time.monotonic() < end, "a Wyoming stream's session was left open"
        time.sleep(0.1)

    async def next_client():
        async with wyoming_client(server) as c:
            return await exchange(c, [Detect().event(), *audio_events(bytes(8000 * 2) + yes + bytes(16000 * 2),
                                                                        16000, 2, 1)], ("detection", "not-detected"))

    assert Detection.from_event(run(next_client())[-1]).name == "yes"


def test_an_idle_connection_is_closed_with_an_error(server):
    async def go():
        reader, writer = await asyncio.open_connection("127.0.0.1", server.wyoming_port)
        started = time.monotonic()
        event = await asyncio.wait_for(async_read_event(reader), TIMEOUT)
        closed = await asyncio.wait_for(async_read_event(reader), TIMEOUT)
        writer.close()
        return event, closed, time.monotonic() - started

    event, closed, waited = run(go())
    assert error_of(event).code == "idle_timeout" and closed is None and 4 <= waited < 30
