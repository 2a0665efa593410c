"""Bad input on the Wyoming server (Home Assistant's protocol, raw TCP), against the shared loopback server
(conftest serves Wyoming on ``loopback_server.wyoming_port``).

hypothesis writes, in any order: header lines that are not JSON, not an object, with no type or a type of the
wrong kind, bad UTF-8, data that is not an object; unknown events and events only servers send; ``transcribe``
and ``detect`` with absurd languages, models and wake-word lists; audio before any request, formats with absurd
or wrong-type rates, widths and channel counts, a format changed mid-stream, payloads of odd lengths; whole
transcriptions and wake-word requests. The last frame may be one that cannot be read in step (a negative, huge
or non-integer length, a header over 64 KiB) or an event cut short. Then the client waits for a ``ping``
sentinel's ``pong``, half-closes and reads to the end, or drops the connection (RST).

Every server event must read back as Wyoming framing and be one a server sends; every ``error`` has a ``code`` and
a ``text`` for the client (no traceback, no path, never ``internal_error``); a transcript's chunks concatenate
to its text. The server closes a connection only after an error that says it must (``event_too_large``,
``malformed_event`` for lengths that cannot be trusted). Afterwards no wake-word session is left, no worker was
replaced, and a good ``describe`` and a good transcription succeed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct

import numpy as np
import pytest
from fuzz_testkit import FUZZ, REQUEST_TIMEOUT, assert_public, assert_still_serving, cases_tried, wait_no_sessions
from fuzz_testkit import report_counts, server  # noqa: F401 - the fuzz modules' shared fixtures
from hypothesis import given
from hypothesis import strategies as st
from service_testkit import signal

pytest.importorskip("wyoming")

SERVER_EVENTS = {"info", "pong", "error", "transcript", "transcript-start", "transcript-chunk", "transcript-stop",
                 "detection", "not-detected"}
FATAL = {"event_too_large", "malformed_event"}  # the codes after which the server may close
SENTINEL = "fuzz-sentinel"


# ---- framing -------------------------------------------------------------------------------------------------
def frame(kind, data: dict | None = None, payload: bytes | None = None, *, inline: bool = False,
          **header) -> bytes:
    """One event as Wyoming writes it (data after the header line; ``inline``: in it), ``header`` overriding."""
    head: dict = {"type": kind, "version": "1.5.0"}
    body = b""
    if data is not None:
        if inline:
            head["data"] = data
        else:
            body = json.dumps(data).encode()
            head["data_length"] = len(body)
    if payload:
        head["payload_length"] = len(payload)
    head.update(header)
    return json.dumps(head).encode() + b"\n" + body + (payload or b"")


def pcm16(seconds: float, rate: int, channels: int = 1) -> bytes:
    return (np.repeat(signal(seconds, rate)[0], channels) * 32767).astype("<i2").tobytes()


async def read_server_event(reader: asyncio.StreamReader) -> dict | None:
    """The next server event, read strictly (None at the end of the stream)."""
    line = await reader.readline()
    if not line:
        return None
    assert line.endswith(b"\n"), line[:200]
    header = json.loads(line)
    assert isinstance(header, dict) and isinstance(header.get("type"), str), header
    data = dict(header.get("data") or {})
    if header.get("data_length"):
        data.update(json.loads(await reader.readexactly(header["data_length"])))
    if header.get("payload_length"):
        await reader.readexactly(header["payload_length"])
    return {"type": header["type"], "data": data}


# ---- what a careless or hostile client writes ------------------------------------------------------------------
def optional(**fields) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({}, optional=fields)


RATES = st.sampled_from([16000, 22050, 48000, 8000, 44101, 383999, 384001, 999, 1, 0, -1, 10**12, "16000", None,
                         True, 16000.0])
WIDTHS = st.sampled_from([2, 4, 1, 3, 0, -2, "2", None])
CHANNELS = st.sampled_from([1, 2, 8, 9, 0, -1, "1", None])
FORMAT = optional(rate=RATES, width=WIDTHS, channels=CHANNELS, timestamp=st.sampled_from([0, -5, "x", None, 10**20]))
GOOD_FORMAT = st.fixed_dictionaries({"rate": st.sampled_from([16000, 48000, 22050]), "width": st.sampled_from([2, 4]),
                                     "channels": st.sampled_from([1, 2])})
PAYLOAD = st.one_of(st.binary(max_size=700), st.sampled_from([0.05, 0.3]).map(lambda s: pcm16(s, 16000)))
NAMES = st.sampled_from(["asr", "kws", "denoise", "nope", "", None, 5, ["asr"], "../asr"])
LANGUAGES = st.sampled_from(["en", "en_US", "EN-gb", "fr", "", None, 1, ["en"]])
WAKE_NAMES = st.sampled_from([None, [], ["yes"], ["no", "up"], ["nope"], "yes", [1], [None], {"yes": 1}])

EVENTS = st.one_of(
    st.builds(lambda d: frame("transcribe", d), optional(name=NAMES, language=LANGUAGES, context=st.just({}))),
    st.builds(lambda d: frame("detect", d), optional(names=WAKE_NAMES)),
    st.builds(lambda d: frame("audio-start", d), FORMAT),
    st.builds(lambda d, p: frame("audio-chunk", d, p), FORMAT, PAYLOAD),
    st.builds(lambda d: frame("audio-stop", d), optional(timestamp=st.sampled_from([0, "x"])) | st.none()),
    st.builds(lambda d, inline: frame("describe", d, inline=inline), st.none() | st.just({}), st.booleans()),
    st.builds(lambda d: frame("ping", d), optional(text=st.sampled_from(["hi", "", None, 5]))),
    st.builds(lambda d: frame("select-program", d), optional(name=st.sampled_from(["centaurus-asr", "centaurus-wake",
                                                                                  "nope", None, 3]))),
    st.builds(lambda kind: frame(kind, {"text": "x", "name": "yes"}), st.sampled_from(
        ["info", "transcript", "transcript-chunk", "error", "detection", "not-detected", "pong", "run-pipeline",
         "synthesize", "x" * 300, " describe"])),
)


@st.composite
def requests(draw) -> bytes:
    """A whole request, a proper one or with a flaw: transcribe or detect, audio-start, chunks, audio-stop (left
    out one time in four: the next event, or the end of the connection, comes mid-stream)."""
    kind = draw(st.sampled_from(["transcribe", "detect"]))
    head = frame(kind, {"language": "en"} if kind == "transcribe" else draw(optional(names=WAKE_NAMES)))
    fmt = draw(GOOD_FORMAT | FORMAT)
    chunks = [frame("audio-chunk", fmt if draw(st.integers(0, 5)) else draw(FORMAT), draw(PAYLOAD))
              for _ in range(draw(st.integers(0, 4)))]
    start = [frame("audio-start", fmt)] if draw(st.integers(0, 3)) else []  # audio-start is optional
    return head + b"".join(start + chunks) + (frame("audio-stop") if draw(st.integers(0, 3)) else b"")


MALFORMED = st.sampled_from([
    b"not json\n", b"[1, 2]\n", b"null\n", b'"describe"\n', b'{"no": "type"}\n', b'{"type": 5}\n', b'{"type": ""}\n',
    b'{"type": null}\n', b"\xff\xfe{\n", b'{"type": "describe", "data": [1]}\n', b'{"type": "ping", "data": "x"}\n',
    b"\n", b"   \n", b'{"type": "ping", "data_length": 3}\n[1]', b'{"type": "ping", "data_length": 4}\nnope',
    b'{"type": "describe", "data_length": 0, "payload_length": 0}\n', b'{"type": "describe"}' + b" " * 1000 + b"\n",
])
# Frames the server cannot read in step: an error, then the close.
UNREADABLE_FRAMES = [
    b'{"type": "audio-chunk", "payload_length": -1}\n', b'{"type": "describe", "data_length": "5"}\n',
    b'{"type": "describe", "data_length": 1.5}\n', b'{"type": "describe", "data_length": true}\n',
    b'{"type": "describe", "data_length": 1000000000}\n', b'{"type": "audio-chunk", "payload_length": 5000000}\n',
    b'{"type": "describe", "x": "' + b"y" * 70000 + b'"}\n',
]
UNREADABLE = st.sampled_from(UNREADABLE_FRAMES)
# An event cut short: the client then goes (a half-close or a drop).
CUT_SHORT = st.sampled_from([
    frame("audio-chunk", {"rate": 16000, "width": 2, "channels": 1}, b"\x00" * 1000)[:-10],
    frame("transcribe", {"language": "en"})[:-3], b'{"type": "describe"', b"{",
])
TAILS = st.one_of(st.none(), UNREADABLE.map(lambda b: ("unreadable", b)), CUT_SHORT.map(lambda b: ("cut", b)))


# ---- a client connection -----------------------------------------------------------------------------------------
async def exchange(port: int, frames: list[bytes], tail: tuple[str, bytes] | None,
                   ending: str) -> tuple[list[dict], str]:
    """Write the frames (and the tail), then end as ``ending`` says: ``sentinel`` (a ping, then read until its
    pong), ``close`` (half-close, read to the end) or ``drop`` (RST). Returns the server's events and how the
    connection ended: ``answered`` (the sentinel's pong), ``eof`` (the server closed), ``reset``, or ``dropped``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    events: list[dict] = []
    try:
        try:
            for data in frames + ([tail[1]] if tail else []):
                writer.write(data)
                await writer.drain()
            if ending == "drop":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return events, "dropped"
            if ending == "sentinel":
                writer.write(frame("ping", {"text": SENTINEL}))
            else:
                writer.write_eof()
            await writer.drain()
        except ConnectionError:
            pass  # the server closed first: what it said is read below
        while True:
            event = await asyncio.wait_for(read_server_event(reader), REQUEST_TIMEOUT)  # a hang fails
            if event is None:
                return events, "eof"
            events.append(event)
            if event["type"] == "pong" and event["data"].get("text") == SENTINEL:
                return events, "answered"
    except ConnectionResetError:
        return events, "reset"
    finally:
        writer.close()


def assert_wyoming_events(events: list[dict]) -> None:
    """Server events only; errors for the client; each transcript's chunks concatenate to its text."""
    chunks: list[str] | None = None
    for event in events:
        kind, data = event["type"], event["data"]
        assert kind in SERVER_EVENTS, event
        if kind == "error":
            assert isinstance(data.get("code"), str) and data["code"] != "internal_error", event
            assert_public(data.get("text"))
        elif kind == "transcript-start":
            assert chunks is None, events
            chunks = []
        elif kind == "transcript-chunk":
            chunks.append(data["text"])
        elif kind == "transcript":
            assert chunks is not None and "".join(chunks) == data["text"], events
        elif kind == "transcript-stop":
            chunks = None
    assert chunks is None, "a transcript that never stopped"


def test_wyoming_abuse_gets_error_events_or_a_close(server):
    @FUZZ
    @given(frames=st.lists(st.one_of(requests(), EVENTS, EVENTS, MALFORMED), max_size=8), tail=TAILS,
           ending=st.sampled_from(["sentinel", "close", "drop"]))
    def check(frames, tail, ending):
        if tail is not None and ending == "sentinel":
            ending = "close"  # after an unreadable or cut-short event nothing more is read in step
        events, ended = asyncio.run(exchange(server.wyoming_port, frames, tail, ending))
        cases_tried["TCP wyoming"] += 1
        shown = [f[:100] for f in frames] + ([tail[0]] if tail else [])
        assert_wyoming_events(events)
        if ending == "sentinel":  # everything was read in step and answered, and the connection is still open
            assert ended == "answered", (ended, events[-3:], shown)
        elif tail is not None and tail[0] == "unreadable" and ending != "drop":
            # The server closed on its own: only after an error that says why (a reset may have cut it off).
            assert (events and events[-1]["type"] == "error" and events[-1]["data"]["code"] in FATAL) or \
                ended == "reset", (ended, events[-3:], shown)

    check()
    wait_no_sessions(server)  # wake-word sessions of dropped connections are freed
    assert_still_serving(server)
    assert_good_requests(server)


def assert_good_requests(server) -> None:
    """describe -> info; a transcription -> transcript-start, chunks, transcript, transcript-stop."""
    audio = pcm16(1.0, 16000)
    fmt = {"rate": 16000, "width": 2, "channels": 1}
    frames = [frame("describe"), frame("transcribe", {"language": "en"}), frame("audio-start", fmt),
              frame("audio-chunk", fmt, audio[:16000]), frame("audio-chunk", fmt, audio[16000:]), frame("audio-stop")]
    events, ended = asyncio.run(exchange(server.wyoming_port, frames, None, "sentinel"))
    assert ended == "answered", events
    assert [e["type"] for e in events][0] == "info" and "transcript" in [e["type"] for e in events], events
    assert_wyoming_events(events)
    assert events[1]["type"] == "transcript-start" and events[-2]["type"] == "transcript-stop", events


@pytest.mark.parametrize("request_event", ["detect", "transcribe"])
def test_connections_gone_mid_request_leave_no_session(server, request_event):
    """A request whose audio never stops, on a connection that then ends every way a client can end it (a close
    after the server answered, a half-close, a reset, a close cut mid-chunk): its wake-word session is freed."""
    fmt = {"rate": 16000, "width": 2, "channels": 1}
    frames = [frame(request_event), frame("audio-start", fmt), frame("audio-chunk", fmt, pcm16(0.3, 16000))]
    for ending, tail in [("sentinel", None), ("close", None), ("drop", None), ("close", ("cut", frames[-1][:-7]))]:
        events, ended = asyncio.run(exchange(server.wyoming_port, frames, tail, ending))
        assert_wyoming_events(events)
        assert not [e for e in events if e["type"] == "error"], events
    cases_tried["TCP wyoming"] += 4
    wait_no_sessions(server)
    assert_still_serving(server)


def test_oversized_events_close_only_that_connection_and_held_audio_is_bounded(server):
    """Each length the server cannot trust closes that connection after an error; others are served meanwhile.
    A transcription's audio over the upload limit is an error, and the connection goes on."""
    async def scenario() -> None:
        keeper_reader, keeper = await asyncio.open_connection("127.0.0.1", server.wyoming_port)
        for bad in UNREADABLE_FRAMES:
            events, ended = await exchange(server.wyoming_port, [], ("unreadable", bad), "close")
            assert ended == "reset" or (events[-1]["type"] == "error" and events[-1]["data"]["code"] in FATAL), \
                (bad[:80], events)
            keeper.write(frame("ping", {"text": "still here"}))
            pong = await asyncio.wait_for(read_server_event(keeper_reader), REQUEST_TIMEOUT)
            assert pong == {"type": "pong", "data": {"text": "still here"}}, pong
        keeper.close()

    asyncio.run(scenario())
    # A transcription is held until audio-stop: no more bytes than an upload may have (2 MB here), whatever its
    # duration (1 MB of 8 channels of 32-bit audio at 48 kHz is 0.7 s).
    fmt = {"rate": 48000, "width": 4, "channels": 8}
    frames = [frame("transcribe"), frame("audio-start", fmt)] + [frame("audio-chunk", fmt, bytes(1_000_000))] * 3
    events, ended = asyncio.run(exchange(server.wyoming_port, frames + [frame("audio-stop")], None, "sentinel"))
    assert ended == "answered" and [(e["type"], e["data"].get("code")) for e in events] == [
        ("error", "payload_too_large"), ("pong", None)], events
    cases_tried["TCP wyoming"] += len(UNREADABLE_FRAMES) + 1
    assert_still_serving(server)
    assert_good_requests(server)
