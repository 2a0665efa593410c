"""Bad input on the OpenAI Realtime websocket (``/v1/realtime``), against the shared loopback server (conftest).

hypothesis sends, in any order: malformed JSON (not an object, no type, nested ten thousand deep), unknown and
server-only event types, binary frames, GA ``session.update`` and beta ``transcription_session.update`` with
absurd and wrong-type fields (formats and rates, models, languages, turn detection), ``input_audio_buffer.append``
with bad base64, no audio, odd byte counts, audio before any session update and after a format change,
commits and clears of empty buffers; then the client either waits for everything to be answered (a sentinel
event), closes, or drops the TCP connection. Every server event must be one of a transcription session's, in
the shape of the ``openai`` package's own types; every ``error`` in OpenAI's shape, with a message for the
client (no traceback, no path, never ``internal_error``); the server closes only with 1000, 1009 (a frame over
the size limit) or 1013 (overload), never 1011. Afterwards every session is freed, no worker was replaced, and a
good session transcribes a turn. Oversized messages have their own test.
"""

from __future__ import annotations

import base64
import json
import math
import socket
import typing

import numpy as np
import pytest
from fuzz_testkit import FUZZ, REQUEST_TIMEOUT, assert_public, assert_still_serving, cases_tried, wait_no_sessions
from fuzz_testkit import report_counts, server  # noqa: F401 - the fuzz modules' shared fixtures
from hypothesis import given
from hypothesis import strategies as st
from service_testkit import signal

pytest.importorskip("websockets")
openai_types = pytest.importorskip("openai.types.realtime")
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

SERVER_EVENTS = {"session.created", "session.updated", "transcription_session.created",
                 "transcription_session.updated", "input_audio_buffer.speech_started",
                 "input_audio_buffer.speech_stopped", "input_audio_buffer.committed", "input_audio_buffer.cleared",
                 "conversation.item.input_audio_transcription.delta",
                 "conversation.item.input_audio_transcription.completed", "error"}
# The openai package's GA model of each server event type (the beta session events are checked by hand: the
# package's beta TranscriptionSession requires a client_secret, which only OpenAI's own session endpoint issues).
GA_TYPES = {literal: cls for cls in typing.get_args(typing.get_args(openai_types.RealtimeServerEvent)[0])
            for literal in typing.get_args(cls.model_fields["type"].annotation)}
ACCEPTABLE_CLOSES = {1000, 1009, 1013}
SENTINEL = json.dumps({"type": "fuzz.sentinel", "event_id": "evt_sentinel"})  # answered with unknown_event
RATE = 24000


# ---- what a careless or hostile client sends -------------------------------------------------------------------
def optional(**fields) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({}, optional=fields)


def pcm(seconds: float, odd: int = 0) -> bytes:
    data = (signal(seconds, RATE)[0] * 32767).astype("<i2").tobytes()
    return data[: len(data) - odd]


AUDIO = st.one_of(
    st.tuples(st.sampled_from([0.0, 0.02, 0.1, 0.5, 1.0]), st.sampled_from([0, 0, 1])).map(
        lambda a: base64.b64encode(pcm(*a)).decode()),
    st.binary(max_size=301).map(lambda b: base64.b64encode(b).decode()),
    st.sampled_from(["not base64!!", "%%%", "AAA", "AAAA=", "AA==AA==", "", " ", "\u00e9t\u00e9", None, 5, [], {}]),
    st.text(max_size=40))
FORMAT = optional(type=st.sampled_from(["audio/pcm", "audio/pcmu", "audio/pcma", "pcm16", "", None, 1]),
                  rate=st.sampled_from([24000, 16000, 8000, 96000, 12345, 0, -1, 10**12, "24000", None, True, 24000.5]))
TRANSCRIPTION = optional(
    model=st.sampled_from(["gpt-4o-transcribe", "whisper-1", "asr", "kws", "denoise", "nope", "", None, 5, "../asr"]),
    language=st.sampled_from(["en", "EN", "en-US", "fr", "", None, 1]),
    prompt=st.sampled_from(["", "x" * 1000, None, 3]))
TURN = st.none() | optional(
    type=st.sampled_from(["server_vad", "semantic_vad", "none", None, 1]),
    silence_duration_ms=st.sampled_from([1, 200, 1200, 3600000, 3600001, 0, -5, "500", 1.5, None, 10**20, True]),
    prefix_padding_ms=st.sampled_from([0, 300, -1, 10**9, "x", None]),
    threshold=st.sampled_from([0.5, 0.0, 1.0, 1.5, -0.1, math.nan, "x", None]),
    create_response=st.booleans())
GA_SESSION = optional(
    type=st.sampled_from(["transcription", "transcription", "realtime", None, 1, ""]),
    audio=st.sampled_from([None, "x", []]) | optional(input=st.sampled_from([None, []]) | optional(
        format=FORMAT | st.sampled_from(["pcm16", None]), transcription=TRANSCRIPTION | st.sampled_from([None, "x"]),
        turn_detection=TURN, noise_reduction=st.just({"type": "near_field"}))))
BETA_SESSION = optional(input_audio_format=st.sampled_from(["pcm16", "g711_ulaw", "", None, 1]),
                        input_audio_transcription=TRANSCRIPTION | st.none(), turn_detection=TURN,
                        modalities=st.just(["text"]))
EVENT_ID = st.sampled_from(["evt_1", "", 5, None, "x" * 300])


def with_event_id(events: st.SearchStrategy[dict]) -> st.SearchStrategy[dict]:
    return st.tuples(events, st.none() | EVENT_ID).map(
        lambda pair: pair[0] if pair[1] is None else {**pair[0], "event_id": pair[1]})


# hypothesis favours the first branch of a one_of or sampled_from: the most telling come first.
EVENTS = with_event_id(st.one_of(
    st.fixed_dictionaries({"type": st.just("input_audio_buffer.append")}, optional={"audio": AUDIO}),
    st.fixed_dictionaries({"type": st.just("session.update"),
                           "session": GA_SESSION | st.sampled_from([None, [], "x"])}),
    st.fixed_dictionaries({"type": st.sampled_from(["input_audio_buffer.commit", "input_audio_buffer.clear"])}),
    st.fixed_dictionaries({"type": st.just("transcription_session.update"),
                           "session": BETA_SESSION | st.sampled_from([None, "x"])}),
    st.fixed_dictionaries({"type": st.sampled_from([
        "response.create", "conversation.item.create", "session.created", "input_audio_buffer.committed", "error",
        "transcription_session.created", "", "x" * 300, "input_audio_buffer.append "])}),
)).map(json.dumps)
VALID_AUDIO = st.tuples(st.sampled_from([0.1, 0.5, 1.0]), st.sampled_from([0, 1])).map(
    lambda a: json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm(*a)).decode()}))
RAW = st.one_of(st.text(max_size=60),
                st.sampled_from(["{}", "[]", "null", '{"type": 1}', '{"type": null}', "{not json", '"str"', "1e999",
                                 "[" * 10000, '{"type": "input_audio_buffer.append", "audio": "AAAA", "audio": 1}']))
FRAMES = st.lists(st.one_of(
    VALID_AUDIO.map(lambda text: ("text", text)),  # audio before, between and after the mistakes
    EVENTS.map(lambda text: ("text", text)),
    EVENTS.map(lambda text: ("text", text)),
    RAW.map(lambda text: ("text", text)),
    st.binary(max_size=500).map(lambda data: ("binary", data)),
), min_size=1, max_size=8)
ENDINGS = st.sampled_from(["sentinel", "drop", "close", "sentinel"])


# ---- a client session ------------------------------------------------------------------------------------------
def realtime_url(server) -> str:
    return server.base.replace("http", "ws", 1) + "/v1/realtime?intent=transcription"


def play(server, frames: list[tuple[str, str | bytes]], ending: str, beta: bool) -> tuple[list[dict], int | None]:
    """Send the frames, then end as ``ending`` says: ``sentinel`` (wait until every event is answered, then
    close), ``close`` (a close handshake at once) or ``drop`` (the TCP connection, without a close frame).
    Returns the server's events and its close code (None when this client closed)."""
    events: list[dict] = []
    with connect(realtime_url(server), open_timeout=REQUEST_TIMEOUT, close_timeout=10, max_size=None,
                 additional_headers={"OpenAI-Beta": "realtime=v1"} if beta else None) as ws:
        try:
            events.append(json.loads(ws.recv(timeout=REQUEST_TIMEOUT)))
            for _, payload in frames:
                ws.send(payload)
            if ending == "drop":
                ws.socket.shutdown(socket.SHUT_RDWR)
                return events, None
            if ending == "sentinel":
                ws.send(SENTINEL)
                while True:
                    event = json.loads(ws.recv(timeout=REQUEST_TIMEOUT))  # a hang raises TimeoutError: a failure
                    events.append(event)
                    if event["type"] == "error" and event["error"]["event_id"] == "evt_sentinel":
                        break
            return events, None
        except ConnectionClosed:
            return events, ws.close_code


def assert_openai_event(event: dict) -> None:
    assert event["type"] in SERVER_EVENTS, event
    assert isinstance(event.get("event_id"), str) and event["event_id"], event
    if event["type"] in GA_TYPES:
        GA_TYPES[event["type"]].model_validate(event)  # the openai package's own shape
    else:  # transcription_session.created / .updated (beta)
        assert isinstance(event["session"], dict) and event["session"]["input_audio_format"] == "pcm16", event
    if event["type"] == "error":
        error = event["error"]
        assert set(error) == {"type", "code", "message", "param", "event_id"}, error
        assert error["code"] != "internal_error" and isinstance(error["code"], str), error
        assert_public(error["message"])


def test_realtime_abuse_gets_openai_errors_and_clean_closes(server):
    @FUZZ
    @given(frames=FRAMES, ending=ENDINGS, beta=st.booleans())
    def check(frames, ending, beta):
        events, code = play(server, frames, ending, beta)
        cases_tried["WS /v1/realtime"] += 1
        shown = [(kind, payload[:80]) for kind, payload in frames]
        assert events and events[0]["type"] == ("transcription_session.created" if beta else "session.created"), \
            (events[:2], shown)
        for event in events:
            assert_openai_event(event)
        if code is not None:  # the server closed: only for a reason it told (an error event) or a frame too big
            assert code in ACCEPTABLE_CLOSES, (code, events[-3:], shown)
            assert code == 1009 or events[-1]["type"] == "error", (code, events[-3:], shown)
        elif ending == "sentinel":
            assert events[-1]["error"]["code"] == "unknown_event", events[-1]

    check()
    wait_no_sessions(server)
    assert_still_serving(server)
    assert_a_good_turn(server)


def assert_a_good_turn(server) -> None:
    """A proper session still works: audio without server_vad, a commit, the turn's transcript."""
    with connect(realtime_url(server), open_timeout=REQUEST_TIMEOUT, max_size=None) as ws:
        assert json.loads(ws.recv(timeout=REQUEST_TIMEOUT))["type"] == "session.created"
        ws.send(json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "turn_detection": None}}}}))
        assert json.loads(ws.recv(timeout=REQUEST_TIMEOUT))["type"] == "session.updated"
        ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm(1.0)).decode()}))
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        events = []
        while not events or events[-1]["type"] != "conversation.item.input_audio_transcription.completed":
            events.append(json.loads(ws.recv(timeout=REQUEST_TIMEOUT)))
            assert events[-1]["type"] != "error", events[-1]
        assert [e["type"] for e in events][0] == "input_audio_buffer.committed"
        assert isinstance(events[-1]["transcript"], str)
    wait_no_sessions(server)


def test_oversized_messages_and_a_large_append(server):
    """A frame over the websocket limit (16 MiB) ends the connection at once; a large append (OpenAI allows 15 MiB)
    is taken a piece at a time and transcribed; a message nested too deep for the JSON parser is invalid_json."""
    big = base64.b64encode(np.zeros(6 * 1024 * 1024, "<i2").tobytes()).decode()  # 16.8 MB of base64
    events, code = play(server, [("text", json.dumps({"type": "input_audio_buffer.append", "audio": big}))],
                        "sentinel", beta=False)
    # The server closes with 1009 as soon as the frame passes the limit. The client is still writing the rest of
    # it then (the server declines compression, so all 16.8 MB go over the wire), and when the server's socket
    # closes with that rest unread, the kernel resets the connection: the client may see 1006 instead of the 1009.
    assert code in (1009, 1006), (code, events[-2:])
    for event in events:
        assert_openai_event(event)
    large = base64.b64encode(pcm(12.0)).decode()  # 768 KB of audio, 1 MB of base64
    with connect(realtime_url(server), open_timeout=REQUEST_TIMEOUT, max_size=None) as ws:
        ws.recv(timeout=REQUEST_TIMEOUT)
        ws.send(json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "turn_detection": None}}}}))
        ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": large}))
        ws.send("[" * 100000)
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        events = [json.loads(ws.recv(timeout=REQUEST_TIMEOUT)) for _ in range(3)]
        assert [e["type"] for e in events] == ["session.updated", "error", "input_audio_buffer.committed"], events
        assert events[1]["error"]["code"] == "invalid_json"
        while events[-1]["type"] != "conversation.item.input_audio_transcription.completed":
            events.append(json.loads(ws.recv(timeout=REQUEST_TIMEOUT)))
        for event in events:
            assert_openai_event(event)
        assert events[-1]["usage"]["seconds"] == pytest.approx(12.0, abs=0.2)
    cases_tried["WS /v1/realtime"] += 2
    wait_no_sessions(server)
    assert_still_serving(server)
    assert_a_good_turn(server)
