"""Bad input against a real server: every answer is a correct result or a 4xx JSON error, never a 5xx or a hang.

Two fuzzers, both against ``centaurus-speech serve`` on loopback with one worker process:

* hypothesis, with the strategies of ``bad_input`` (lying headers, truncated and corrupted files, NaN and
  infinite samples, absurd rates and channel counts, wrong content types, unknown models and parameters);
* schemathesis, generating valid and invalid requests from the service's own ``/openapi.json``.

After each run the server must still be ready with no worker replaced (a crashed worker would show as a
restart). The server is the session's shared loopback server (conftest): 2 MB uploads, 30 s of audio. The
websocket streams get malformed and unknown messages, absurd options (the endpoint rules' lengths among them)
and audio before ``session.start``. The other protocols have their own modules: ``test_fuzz_sse.py``
(``stream=true``), ``test_fuzz_realtime.py`` (``/v1/realtime``), ``test_fuzz_wyoming.py``. Example counts,
the tally of cases and its report: ``fuzz_testkit``.
"""

from __future__ import annotations

import json
import math

import httpx
import numpy as np
import pytest
from bad_input import Upload, request_for, uploads, wav_with_header
from fuzz_testkit import (CLIENT_ERRORS, EXAMPLES, FUZZ, REQUEST_TIMEOUT, assert_error_envelope, assert_public,
                          assert_sound_events, assert_still_serving, cases_tried, sse_events, wait_no_sessions)
from fuzz_testkit import report_counts, server  # noqa: F401 - the fuzz modules' shared fixtures
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from service_testkit import FORMATS, encoded, signal


@pytest.fixture(scope="module")
def corpus() -> dict[str, bytes]:
    """One short real file per container (stereo, 22.05 kHz or opus's 48 kHz), to damage."""
    return {f"clip.{fmt}": encoded(fmt, 0.3, 48000 if fmt in ("opus", "webm") else 22050, 2) for fmt in FORMATS}


def assert_correct_answer(endpoint: str, upload: Upload, response: httpx.Response) -> None:
    """A 200 must be a sound result, not just any 200."""
    if endpoint == "/denoise":
        rate = int(response.headers["x-sample-rate"])
        duration = float(response.headers["x-duration"])
        assert rate > 0 and math.isfinite(duration) and duration > 0
        if response.headers["content-type"] == "audio/pcm":
            samples = len(response.content) // 2
            assert abs(samples - duration * rate) <= 1
            if upload.frames is not None:  # raw PCM in: exactly as many samples out
                assert samples == upload.frames
        return
    if response.headers["content-type"].startswith("text/event-stream"):  # stream=true
        assert_sound_events(sse_events(response.text))
        return
    if endpoint == "/v1/audio/transcriptions" and not response.headers["content-type"].startswith("application/json"):
        assert isinstance(response.text, str)
        return
    body = response.json()
    if endpoint == "/keywords":
        # Durations are rounded to the millisecond: one sample at 16 kHz is 0.0.
        assert body["duration"] >= 0 and all(0 <= d["start"] <= d["end"] for d in body["detections"])
        assert all(0 <= d["score"] <= 1 for d in body["detections"])
    elif endpoint == "/transcribe":
        assert isinstance(body["text"], str) and body["duration"] >= 0 and body["model"] == "asr"
    else:
        assert isinstance(body["text"], str)


@pytest.mark.parametrize("endpoint", ["/transcribe", "/v1/audio/transcriptions", "/denoise", "/keywords"])
def test_bad_uploads_get_a_4xx_or_a_correct_answer(server, corpus, endpoint):
    @FUZZ
    @given(upload=st.data())
    def check(upload):
        sent = upload.draw(uploads(endpoint, corpus), label="upload")
        with httpx.Client(base_url=server.base, timeout=REQUEST_TIMEOUT) as client:
            response = client.send(request_for(client, endpoint, sent))
        cases_tried[f"POST {endpoint}"] += 1
        assert response.status_code == 200 or response.status_code in CLIENT_ERRORS, \
            f"{response.status_code} {response.text[:300]} for {sent.describe()}"
        if response.status_code == 200:
            assert_correct_answer(endpoint, sent, response)
        else:
            assert_error_envelope(response.headers.get("content-type", ""), response.content)

    check()
    assert_still_serving(server)
    # And still answers correctly (with few examples, the fuzzer itself may not have sent a valid upload).
    good = Upload(wav_with_header((np.sin(np.arange(16000) / 5) * 8000).astype("<i2").tobytes(), rate=16000,
                                  channels=1), frames=16000)
    with httpx.Client(base_url=server.base, timeout=REQUEST_TIMEOUT) as client:
        response = client.send(request_for(client, endpoint, good))
    assert response.status_code == 200, response.text
    assert_correct_answer(endpoint, good, response)


def test_schemathesis_against_our_own_openapi(server):
    """Valid and invalid requests generated from /openapi.json, for every operation in it."""
    schemathesis = pytest.importorskip("schemathesis")
    from schemathesis.generation.modes import GenerationMode

    schema = schemathesis.openapi.from_dict(httpx.get(f"{server.base}/openapi.json", timeout=10).json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9  # transcribe, openai, denoise, keywords, models x2, health x2, metrics
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @FUZZ
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case):
                response = case.call(base_url=server.base, timeout=REQUEST_TIMEOUT)
                cases_tried[f"{operation.method.upper()} {operation.path}"] += 1
                assert response.status_code < 500, f"{response.status_code} {response.text[:300]}\n{case.as_curl_command()}"
                if response.status_code >= 400:
                    assert_error_envelope(response.headers.get("content-type", [""])[0], response.content)

            try:
                check()
            except Unsatisfiable:  # no invalid request exists for an operation without parameters
                assert mode is GenerationMode.NEGATIVE
    assert_still_serving(server)


def test_oversized_and_over_long_uploads_get_413(server):
    big = np.zeros(1_100_000, "<i2").tobytes()  # 2.2 MB > the 2 MB limit
    with httpx.Client(base_url=server.base, timeout=REQUEST_TIMEOUT) as client:
        declared = client.post("/transcribe", files={"file": ("big.pcm", big)},
                               data={"encoding": "pcm_s16le", "sample_rate": "16000"})
        assert declared.status_code == 413 and declared.json()["error"]["code"] == "payload_too_large"
        # No Content-Length: the server counts the bytes of a well-formed multipart body as they arrive.
        body = (b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n' + big
                + b"\r\n--x--\r\n")
        chunked = client.post("/denoise", content=iter([body[i:i + 65536] for i in range(0, len(body), 65536)]),
                              headers={"Content-Type": "multipart/form-data; boundary=x"})
        assert chunked.status_code == 413
        # 1.2 MB of 1 kHz PCM is 600 s of audio: under the byte limit, over the 30 s duration limit.
        long = client.post("/keywords", files={"file": ("long.pcm", big[: 1_200_000])},
                           data={"encoding": "pcm_s16le", "sample_rate": "1000"})
        assert long.status_code == 413 and long.json()["error"]["code"] == "audio_too_long"
        # A WAV header claiming 1 Hz: 1600 samples are 1600 s.
        slow = client.post("/transcribe", files={"file": ("slow.wav", wav_with_header(big[:3200], rate=1, channels=1))})
        assert slow.status_code == 413, slow.text
    cases_tried["POST /transcribe"] += 2
    cases_tried["POST /denoise"] += 1
    cases_tried["POST /keywords"] += 1
    assert_still_serving(server)


# ---- websockets ----------------------------------------------------------------------------------------------
STREAMS = ["/v1/stream/denoise", "/v1/stream/transcribe", "/v1/stream/keywords"]
SERVER_MESSAGES = {"session.started", "transcript.partial", "transcript.final", "keyword.detected", "session.ended",
                   "error"}
# 1000 done, 1007 bad UTF-8, 1008 policy, 1009 frame too big, 1013 overload. Never 1011 (internal error) or an
# abrupt drop without a close frame (1006).
ACCEPTABLE_CLOSES = {1000, 1007, 1008, 1009, 1013}


# The endpoint rules' lengths (seconds, above 0 and at most 3600) and their switch, as a careless client sends them.
SECONDS = st.one_of(st.sampled_from([1.2, 0.5, 3600, 3600.5, 0, -0.0, -1, 1e-9, 5e-324, 10**30, math.inf, math.nan,
                                     "1.5", "abc", "", None, [], {}, True, False]),
                    st.floats(-10, 4000, allow_nan=False))
ENDPOINT_RULES = ("endpoint_silence_after_speech", "endpoint_silence_without_speech", "endpoint_max_utterance")
ENDPOINT_OPTIONS = {"endpointing": st.sampled_from([True, False, 0, 1, 2, 0.5, "yes", "off", "maybe", "", None, []]),
                    **{name: SECONDS for name in ENDPOINT_RULES}}


def seconds_ok(value) -> bool:
    """Whether the protocol takes ``value`` as an endpoint rule's length (JSON numbers, numeric strings and
    booleans are read as numbers, as for every option)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return False
    if not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and 0 < value <= 3600


def switch_ok(value) -> bool:
    if isinstance(value, str):
        return value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0", "t", "f", "y", "n")
    return value in (0, 1) and not isinstance(value, float)


def endpoint_options_ok(options: dict, *, update: bool) -> bool:
    """The oracle: whether a ``session.start`` (``update``: ``session.update``) with these options is taken."""
    return all((update and value is None) or (switch_ok(value) if name == "endpointing" else seconds_ok(value))
               for name, value in options.items())


def start_messages() -> st.SearchStrategy[str]:
    options = st.fixed_dictionaries({}, optional={
        "model": st.sampled_from(["asr", "kws", "denoise", "nope", "../asr", None]),
        "sample_rate": st.sampled_from([8000, 16000, 44100, 48000, 44101, 0, -1, 10**9, "16000", None]),
        "encoding": st.sampled_from(["pcm_s16le", "pcm_f32le", "pcm_s32le", "mulaw", "", None]),
        "interim_results": st.sampled_from([True, False, "yes", None]),
        "keywords": st.sampled_from([None, [], ["yes"], ["nope"], "yes"]),
        "threshold": st.sampled_from([0.0, 0.5, 1.0, 2.0, -1, "nan"]),
        "hop": st.sampled_from([0.05, 0.25, 1.0, 0.0, 100]),
        "extra_field": st.integers(), **ENDPOINT_OPTIONS})
    return options.map(lambda o: json.dumps({"type": "session.start", **o}))


def update_messages() -> st.SearchStrategy[str]:
    options = st.fixed_dictionaries({}, optional={
        "interim_results": st.sampled_from([True, None, "x"]), "keywords": st.sampled_from([None, ["up"], "up"]),
        "threshold": st.sampled_from([0.2, -1, None]), "bogus": st.integers(), **ENDPOINT_OPTIONS})
    return options.map(lambda o: json.dumps({"type": "session.update", **o}))


def stream_events() -> st.SearchStrategy[list[tuple[str, bytes | str]]]:
    """What a stream client sends, in any order: starts with absurd options, malformed JSON, unknown types,
    updates, flushes and ends (also twice), PCM frames of odd byte lengths, NaN and infinite float samples."""
    text = st.one_of(
        start_messages(),
        st.text(max_size=60),  # mostly not JSON at all
        st.sampled_from(['{"type": "session.end"}', '{"type": "input.flush"}', '{"type": "nope"}', "{}", "[]",
                         "null", '{"type": 1}', '{"type": "session.update", "threshold": 0.2}',
                         '{"type": "session.update", "keywords": ["up"], "bogus": 1}', '{"type": "session.started"}']),
        update_messages(),
    )
    floats = st.lists(st.floats(width=32) | st.sampled_from([math.nan, math.inf]), max_size=400).map(
        lambda values: np.array(values, "<f4").tobytes())
    binary = st.one_of(st.binary(max_size=3001), floats, st.integers(0, 40).map(lambda k: b"\x00\x10" * 800 * k))
    return st.lists(st.one_of(text.map(lambda t: ("text", t)), binary.map(lambda b: ("binary", b))),
                    min_size=1, max_size=10)


def play(url: str, events: list[tuple[str, bytes | str]]) -> tuple[list, int | None]:
    """Send the events, then session.end; read until the server closes. Returns (text messages, close code)."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    messages = []
    with connect(url, open_timeout=REQUEST_TIMEOUT, close_timeout=10, max_size=None) as ws:
        try:
            for kind, payload in events + [("text", '{"type": "session.end"}')]:
                ws.send(payload)
            while True:
                reply = ws.recv(timeout=REQUEST_TIMEOUT)  # a hang raises TimeoutError and fails the example
                if isinstance(reply, str):
                    messages.append(json.loads(reply))
        except ConnectionClosed:
            pass
        return messages, ws.close_code


# A fuzzed stream that never starts a session costs the server's idle timeout (3 s here): fewer examples.
STREAM_FUZZ = settings(FUZZ, max_examples=max(5, EXAMPLES // 8))


@pytest.mark.parametrize("path", STREAMS)
def test_stream_protocol_abuse_gets_errors_and_clean_closes(server, path):
    pytest.importorskip("websockets")

    @STREAM_FUZZ
    @given(events=stream_events())
    def check(events):
        messages, code = play(server.base.replace("http", "ws", 1) + path, events)
        cases_tried[f"WS {path}"] += 1
        assert code in ACCEPTABLE_CLOSES, (code, messages[-3:], [(k, p[:80]) for k, p in events])
        for message in messages:
            assert message["type"] in SERVER_MESSAGES, message
            if message["type"] == "error":
                assert message.get("code") != "internal_error", message

    check()
    wait_no_sessions(server)  # every session the fuzzer opened is gone, and the worker survived it all
    assert_still_serving(server)
    # A proper session still works: start, a second of audio, end -> session.ended and a normal close.
    proper = [("text", json.dumps({"type": "session.start"})), ("binary", np.zeros(16000, "<i2").tobytes())]
    messages, code = play(server.base.replace("http", "ws", 1) + path, proper)
    assert code == 1000 and messages[0]["type"] == "session.started" and messages[-1]["type"] == "session.ended", \
        (code, messages)


def speech_frames(seconds: float, frames: int) -> list[bytes]:
    """The speech-like test signal as 16 kHz pcm_s16le, in ``frames`` pieces."""
    pcm = (signal(seconds)[0] * 32767).astype("<i2").tobytes()
    step = -(-len(pcm) // frames) // 2 * 2
    return [pcm[i:i + step] for i in range(0, len(pcm), step)]


@pytest.mark.parametrize("path", ["/v1/stream/transcribe"])
def test_endpoint_options_out_of_range_or_of_a_wrong_type_are_refused_and_the_session_goes_on(server, path):
    """session.start and session.update with the endpoint rules' options drawn from sensible, absurd and
    wrong-type values: exactly the ones the oracle refuses get ``invalid_message`` (a refused start leaves the
    connection open for a proper one), the ones it takes run the session to its end (even a rule of 5e-324 s,
    which ends an utterance at every step), with a final, session.ended and close 1000."""
    pytest.importorskip("websockets")
    options = st.fixed_dictionaries({}, optional=ENDPOINT_OPTIONS)

    @settings(FUZZ, max_examples=max(4, EXAMPLES // 4))
    @given(start=options, update=options)
    def check(start, update):
        good_start, good_update = endpoint_options_ok(start, update=False), endpoint_options_ok(update, update=True)
        audio = speech_frames(1.5, 6)
        events = [("text", json.dumps({"type": "session.start", **start}))]
        if not good_start:
            events.append(("text", json.dumps({"type": "session.start"})))  # the connection is still open
        events += [("binary", frame) for frame in audio[:3]]
        events += [("text", json.dumps({"type": "session.update", **update}))]
        events += [("binary", frame) for frame in audio[3:]]
        messages, code = play(server.base.replace("http", "ws", 1) + path, events)
        cases_tried[f"WS {path} endpoint options"] += 1
        errors = [m for m in messages if m["type"] == "error"]
        assert [e["code"] for e in errors] == ["invalid_message"] * (2 - good_start - good_update), (messages, start,
                                                                                                    update)
        for error in errors:
            assert_public(error["message"])
        assert code == 1000 and [m["type"] for m in messages].count("session.started") == 1, (code, messages)
        assert [m["type"] for m in messages[-2:]] == ["transcript.final", "session.ended"], messages

    check()
    wait_no_sessions(server)
    assert_still_serving(server)
