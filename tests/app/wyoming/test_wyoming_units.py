"""The Wyoming wing's pieces on their own: the setting, the bounded event reader, audio formats and conversion."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from pydantic import ValidationError

from app.settings import Settings
from app.wyoming.audio import Format, MonoDecoder, format_problem
from app.wyoming.connection import word_chunks
from app.wyoming.framing import MAX_PAYLOAD_BYTES, FramingError, read_event


@pytest.mark.parametrize("uri", ["tcp://0.0.0.0:10300", "tcp://[::1]:10300", "unix:///tmp/wyoming.sock"])
def test_the_setting_takes_tcp_and_unix_uris(uri):
    assert Settings(wyoming_uri=uri).wyoming_uri == uri


@pytest.mark.parametrize("uri", ["tcp://0.0.0.0", "http://0.0.0.0:10300", "tcp://:10300", "tcp://h:99999", "10300"])
def test_the_setting_refuses_other_uris(uri):
    with pytest.raises(ValidationError):
        Settings(wyoming_uri=uri)


def test_wyoming_is_off_by_default():
    assert Settings().wyoming_uri is None and Settings(wyoming_uri="").wyoming_uri is None


def read_all(data: bytes) -> list:
    """Every event (or FramingError) the reader finds in ``data``, until the end or a fatal error."""
    async def go():
        reader = asyncio.StreamReader(limit=64 * 1024)
        reader.feed_data(data)
        reader.feed_eof()
        found = []
        while True:
            try:
                event = await read_event(reader)
            except FramingError as err:
                found.append(err)
                if err.fatal:
                    return found
                continue
            if event is None:
                return found
            found.append(event)
    return asyncio.run(go())


def test_the_reader_splits_data_and_payload_and_merges_data():
    data = json.dumps({"width": 2, "channels": 1}).encode()
    head = {"type": "audio-chunk", "data": {"rate": 16000}, "data_length": len(data), "payload_length": 4}
    (event,) = read_all(json.dumps(head).encode() + b"\n" + data + b"\x01\x02\x03\x04")
    assert event.type == "audio-chunk" and event.data == {"rate": 16000, "width": 2, "channels": 1}
    assert event.payload == b"\x01\x02\x03\x04"


def test_the_reader_recovers_from_a_bad_line_but_not_from_bad_lengths():
    found = read_all(b"{oops\n\n[1, 2]\n" + b'{"type": ""}\n' + b'{"type": "describe"}\n')
    assert [getattr(f, "code", None) for f in found[:3]] == ["malformed_event"] * 3
    assert found[3].type == "describe" and len(found) == 4
    for header, code in [({"type": "x", "payload_length": MAX_PAYLOAD_BYTES + 1}, "event_too_large"),
                         ({"type": "x", "data_length": "12"}, "malformed_event"),
                         ({"type": "x", "payload_length": True}, "malformed_event")]:
        (error,) = read_all(json.dumps(header).encode() + b"\n" + b'{"type": "describe"}\n')
        assert error.fatal and error.code == code
    (error,) = read_all(b"x" * 70_000 + b"\n")
    assert error.fatal and error.code == "event_too_large"


def test_the_reader_ends_quietly_on_a_cut_event():
    assert read_all(b'{"type": "audio-chunk", "payload_length": 10}\n12345') == []
    assert read_all(b'{"type": "describe"') == []


def test_formats():
    assert format_problem(Format(16000, 2, 1), live=True) is None
    assert format_problem(Format(44101, 4, 2), live=False) is None  # any rate for a transcription
    assert "wake words" in format_problem(Format(44101, 2, 1), live=True)
    assert "width 3" in format_problem(Format(16000, 3, 1), live=False)
    assert "width 1" in format_problem(Format(16000, 1, 1), live=False)
    assert "channels" in format_problem(Format(16000, 2, 0), live=False)
    assert "integer" in format_problem(Format("16000", 2, 1), live=False)
    assert "rate" in format_problem(Format(10, 2, 1), live=False)


def test_mono_decoder_joins_split_frames_and_averages_channels():
    stereo = np.array([[1000, 3000], [-2000, 2000], [500, 1500]], "<i2")  # (frames, channels)
    data = stereo.tobytes()
    decoder = MonoDecoder(Format(16000, 2, 2))
    out = np.concatenate([decoder.decode(data[:3]), decoder.decode(data[3:7]), decoder.decode(data[7:])])
    assert np.allclose(out, stereo.mean(axis=1) / 32768) and out.dtype == np.float32


def test_transcript_chunks_concatenate_to_the_text():
    assert word_chunks("") == []
    assert word_chunks("turn on the lights") == ["turn", " on", " the", " lights"]
    assert "".join(word_chunks("a b  c")) == "a b  c"


def test_connections_past_the_limit_are_refused_and_stop_ends_the_rest():
    """In-process, on a stand-in engine (describe needs only the cards): one connection allowed."""
    from types import SimpleNamespace

    from service_testkit import free_port
    from wyoming.client import AsyncTcpClient
    from wyoming.info import Describe, Info

    from app.wyoming import WyomingServer

    cards = {"asr": SimpleNamespace(task="asr"),
             "kws": SimpleNamespace(task="kws", labels=("yes", "no", "_unknown_", "_silence_"))}
    port = free_port()
    settings = Settings(wyoming_uri=f"tcp://127.0.0.1:{port}", stream_max_sessions=1)

    async def go():
        server = WyomingServer(SimpleNamespace(cards=cards), settings)
        await server.start()
        first = AsyncTcpClient("127.0.0.1", port, read_timeout=10)
        await first.connect()
        await first.write_event(Describe().event())
        info = Info.from_event(await first.read_event())
        async with AsyncTcpClient("127.0.0.1", port, read_timeout=10) as second:
            refused = await second.read_event()
            closed = await second.read_event()
        await server.stop()
        ended = await first.read_event()
        await first.disconnect()
        return info, refused, closed, ended, server.clients

    info, refused, closed, ended, clients = asyncio.run(asyncio.wait_for(go(), 30))
    assert [m.name for m in info.wake[0].models] == ["yes", "no"] and info.asr[0].models[0].name == "asr"
    assert refused.type == "error" and refused.data["code"] == "too_many_connections" and closed is None
    assert ended is None and clients == 0


def test_a_transcription_holds_no_more_bytes_than_an_upload_may():
    """A transcription's audio is held until audio-stop: bounded by the upload limit as well as by its duration
    (an hour of 8 channels of 32-bit audio at 384 kHz is 44 GB). Found while fuzzing Wyoming."""
    from app.wyoming.connection import AudioIn, Request, WyomingConnection
    from app.wyoming.framing import Problem

    connection = WyomingConnection(None, None, None, Settings(max_upload_mb=1, max_audio_seconds=3600))
    fmt = Format(384000, 4, 8)
    audio = AudioIn(Request("asr", "asr"), fmt)
    connection._take(audio, fmt, bytes(600_000))  # 0.05 s, 0.6 MB: taken
    with pytest.raises(Problem) as refused:
        connection._take(audio, fmt, bytes(600_000))  # 1.2 MB in all
    assert refused.value.code == "payload_too_large" and "1 MB" in refused.value.text


def test_detect_names_are_split_between_the_classifier_and_the_recognizer_as_post_keywords_does():
    """On a stand-in engine (the rule needs only the cards): the keyword model's words are its own, any other the
    recognizer can spell is searched for (with its marks); with no recognizer served, it is an unknown wake word."""
    from types import SimpleNamespace

    from wyoming.wake import Detect

    from app.wyoming.connection import WyomingConnection
    from app.wyoming.framing import Problem
    from model_zoo.pipelines.open_keywords import OpenKeyword
    from model_zoo.vocab import ASR_VOCAB

    kws = SimpleNamespace(task="kws", labels=("yes", "no", "_unknown_", "_silence_"))
    both = WyomingConnection(None, None, SimpleNamespace(cards={"kws": kws, "asr": SimpleNamespace(
        task="asr", vocab=ASR_VOCAB)}), Settings())
    asyncio.run(both.handle(Detect(names=["yes", "Hey  Computer #0.4"]).event()))
    keywords = both.request.keywords
    assert keywords.watched == ["yes"] and keywords.open == (OpenKeyword("hey computer", 0.4),)
    assert keywords.recognizer == "asr"
    asyncio.run(both.handle(Detect().event()))
    assert both.request.keywords is None  # every word of the keyword model
    for names, words in ((["r2-d2"], "cannot spell"), (["yes #0.4"], "its own words use threshold")):
        with pytest.raises(Problem) as refused:
            asyncio.run(both.handle(Detect(names=names).event()))
        assert refused.value.code == "unknown_wake_word" and words in refused.value.text
    alone = WyomingConnection(None, None, SimpleNamespace(cards={"kws": kws}), Settings())
    with pytest.raises(Problem) as refused:
        asyncio.run(alone.handle(Detect(names=["alexa"]).event()))
    assert refused.value.code == "unknown_wake_word" and "unknown keywords ['alexa']" in refused.value.text
