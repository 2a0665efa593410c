"""Bad uploads with ``stream=true`` on ``POST /v1/audio/transcriptions`` (OpenAI's server-sent events), against
the shared loopback server (conftest).

Every request is one of ``bad_input``'s uploads (lying WAV headers, raw PCM of any stated format, damaged files
of every container, odd sizes, broken multipart bodies, absurd fields) with ``stream`` set, greedy or beam
search. The answer must be a JSON 4xx error before any event, or a well-formed event stream: deltas, then one
``transcript.text.done`` whose text they concatenate to, or a last ``error`` event in the error envelope; never
a 5xx, a traceback or a library path, never a hang. A quarter of the clients hang up after the first chunk
(the greedy path holds a resident session while it streams: it must be freed). Afterwards no session is left,
no worker was replaced, and a good streamed request gives the same text as the plain one.
"""

from __future__ import annotations

from dataclasses import replace

import httpx
import numpy as np
import pytest
from bad_input import Upload, damaged_files, lying_wavs, raw_pcm, request_for, uploads, wav_with_header
from fuzz_testkit import (CLIENT_ERRORS, FUZZ, REQUEST_TIMEOUT, assert_error_envelope, assert_sound_events, assert_still_serving,
                          cases_tried, sse_events, wait_no_sessions)
from fuzz_testkit import report_counts, server  # noqa: F401 - the fuzz modules' shared fixtures
from hypothesis import given
from hypothesis import strategies as st
from service_testkit import FORMATS, encoded, signal

ENDPOINT = "/v1/audio/transcriptions"


@pytest.fixture(scope="module")
def corpus() -> dict[str, bytes]:
    # 2.5 s files: longer than the server's 1 s chunks, so greedy streaming sends deltas before the end.
    return {f"clip.{fmt}": encoded(fmt, 2.5, 48000 if fmt in ("opus", "webm") else 22050, 2) for fmt in FORMATS}


def streamed_upload(corpus) -> st.SearchStrategy[Upload]:
    """Half of them any bad upload of ``bad_input`` (mostly refused before the stream starts), half a file,
    damaged or not, in a proper request with sane fields, so that most of those stream."""
    @st.composite
    def build(draw) -> Upload:
        if draw(st.booleans()):
            upload = draw(st.one_of(st.sampled_from(sorted(corpus)).map(lambda name: Upload(corpus[name], name)),
                                    damaged_files(corpus), lying_wavs(), raw_pcm()))
            sane = st.fixed_dictionaries({}, optional={"model": st.sampled_from(["whisper-1", "asr"]),
                                                       "response_format": st.sampled_from(["json", "text"]),
                                                       "language": st.just("en")})
            upload = replace(upload, fields={**upload.fields, **draw(sane)})
        else:
            upload = draw(uploads(ENDPOINT, corpus))
        stream = draw(st.sampled_from(["true", "true", "1", "True", "on"]))
        beam = draw(st.sampled_from(["false", "true", None, "maybe"]))
        fields = {**upload.fields, "stream": stream, **({"beam_search": beam} if beam is not None else {})}
        return replace(upload, fields=fields)

    return build()


def send(client: httpx.Client, upload: Upload, hang_up: bool) -> tuple[int, str, bytes]:
    """The status, content type and body (``hang_up``: only the first chunk of a 200, then the connection is
    closed mid-stream)."""
    response = client.send(request_for(client, ENDPOINT, upload), stream=True)
    try:
        status, kind = response.status_code, response.headers.get("content-type", "")
        if hang_up and status == 200:
            return status, kind, next(response.iter_raw(), b"")
        return status, kind, response.read()
    finally:
        response.close()


def test_sse_uploads_get_a_json_4xx_before_any_event_or_sound_events(server, corpus):
    @FUZZ
    @given(upload=streamed_upload(corpus), hang_up=st.sampled_from([False, False, False, True]))
    def check(upload, hang_up):
        with httpx.Client(base_url=server.base, timeout=REQUEST_TIMEOUT) as client:
            status, kind, body = send(client, upload, hang_up)
        cases_tried[f"POST {ENDPOINT} stream=true"] += 1
        assert status == 200 or status in CLIENT_ERRORS, f"{status} {body[:300]!r} for {upload.describe()}"
        if status != 200:
            assert_error_envelope(kind, body)  # a 4xx is JSON, never an event
            return
        assert kind.startswith("text/event-stream"), (kind, upload.describe())
        text = body.decode()
        if hang_up:  # whole events so far, the first of them a delta or the done event
            complete = text[: text.rfind("\n\n") + 2]
            assert_sound_events(sse_events(complete) if complete else [], complete=False)
        else:
            assert_sound_events(sse_events(text))

    check()
    wait_no_sessions(server)  # the streams of the clients that hung up were freed too
    assert_still_serving(server)
    # A good streamed request still works, greedy and with beam search, and says what the plain request says.
    good = Upload(wav_with_header((signal(2.5)[0] * 32767).astype("<i2").tobytes(), rate=16000, channels=1))
    with httpx.Client(base_url=server.base, timeout=REQUEST_TIMEOUT) as client:
        for beam in ("false", "true"):
            plain = client.send(request_for(client, ENDPOINT, replace(good, fields={"beam_search": beam})))
            streamed = client.send(request_for(client, ENDPOINT, replace(good, fields={"beam_search": beam,
                                                                                        "stream": "true"})))
            assert plain.status_code == 200 and streamed.status_code == 200, (plain.text, streamed.text)
            events = sse_events(streamed.text)
            assert_sound_events(events)
            assert events[-1] == {"type": "transcript.text.done", "text": plain.json()["text"]}


EDGES = {  # decodable, yet nothing (or nothing finite) to transcribe: refused before the stream starts
    "one sample at 48 kHz": Upload(wav_with_header(b"\x10\x00", rate=48000, channels=1)),
    "header only": Upload(wav_with_header(b"", rate=16000, channels=1)),
    "NaN floats": Upload(np.full(1600, np.nan, "<f4").tobytes(), "clip.pcm",
                         fields={"encoding": "pcm_f32le", "sample_rate": "16000"}),
}


@pytest.mark.parametrize("edge", sorted(EDGES))
@pytest.mark.parametrize("beam", ["false", "true"])
def test_audio_with_nothing_to_transcribe_is_a_json_error_not_an_event(server, edge, beam):
    upload = replace(EDGES[edge], fields={**EDGES[edge].fields, "stream": "true", "beam_search": beam})
    with httpx.Client(base_url=server.base, timeout=REQUEST_TIMEOUT) as client:
        status, kind, body = send(client, upload, hang_up=False)
    cases_tried[f"POST {ENDPOINT} stream=true"] += 1
    assert status in CLIENT_ERRORS, (status, body[:300])
    assert_error_envelope(kind, body)


def test_a_stream_cut_after_its_first_event_frees_its_session(server):
    """The greedy path streams a long file through a resident session: a client gone after one event, or before
    the first, must not leave it on the worker, and the next client is served. (The tiny random recognizer
    settles few words, so most of these bodies are written whole before the client's close is noticed; that a
    stream closed mid-way frees its session is unit-tested in ``http/test_openai_stream.py``.)"""
    pcm = (np.tile(signal(2.0)[0], 10) * 32767).astype("<i2").tobytes()  # 20 s: many steps still to go
    upload = Upload(wav_with_header(pcm, rate=16000, channels=1), fields={"stream": "true", "beam_search": "false"})
    with httpx.Client(base_url=server.base, timeout=REQUEST_TIMEOUT) as client:
        for _ in range(3):
            status, kind, first = send(client, upload, hang_up=True)
            assert status == 200 and first.startswith(b"data: "), (status, first[:200])
    # And clients that hang up before the first event (while the first steps run).
    for _ in range(3):
        with httpx.Client(base_url=server.base, timeout=httpx.Timeout(REQUEST_TIMEOUT, read=0.01)) as client:
            with pytest.raises(httpx.ReadTimeout):
                client.send(request_for(client, ENDPOINT, upload))
    cases_tried[f"POST {ENDPOINT} stream=true"] += 6
    wait_no_sessions(server)
    assert_still_serving(server)
