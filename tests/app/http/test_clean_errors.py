"""Error messages are for clients: no library's source path or traceback, and a sent value is quoted only in part.

A corpus of bad uploads (``bad_input``: lying WAV headers, damaged files of every container, absurd fields)
goes to every audio endpoint; no error body may show internals. Values of 100 kB in every field that an error
message quotes come back cut to a prefix, over HTTP and over the streaming websockets.
"""

from __future__ import annotations

import json

import pytest
from bad_input import INTERNALS, request_for, uploads, wav_with_header
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_testkit import FORMATS, encoded, settings_for, signal, wait_ready, wav_bytes

from app.audio.decode import _reason
from app.errors import ECHO_CHARS, echo, public_message
from app.main import create_app

ENDPOINTS = ["/transcribe", "/v1/audio/transcriptions", "/denoise", "/keywords"]
HUGE = "x" * 100_000
CUT = repr("x" * ECHO_CHARS) + "..."  # how a quoted 100 kB value must look
CLIP = wav_bytes(signal(0.5), 16000)
# A header of a WAV of unknown length (data size 0xFFFFFFFF, as streaming recorders write it) and no samples:
# torchcodec's error about it carried the path of its C++ source into the message.
HEADER_ONLY_STREAMING_WAV = wav_with_header(b"", rate=16000, channels=1, data_size=0xFFFFFFFF)


@pytest.fixture(scope="module")
def app_client(tiny_models):
    with TestClient(create_app(settings_for(tiny_models, worker_mode="thread"))) as c:
        wait_ready(c)
        yield c


@pytest.fixture(scope="module")
def corpus() -> dict[str, bytes]:
    return {f"clip.{fmt}": encoded(fmt, 0.3, 22050, 2) for fmt in FORMATS}


def assert_clean(response) -> dict:
    """An error envelope whose body shows no internals; its error object."""
    assert response.status_code >= 400, response.text[:300]
    assert not INTERNALS.search(response.text), response.text[:500]
    return response.json()["error"]


# ---- no internals ------------------------------------------------------------------------------------------------
def test_a_header_only_wav_of_unknown_length_gets_a_clean_415(app_client):
    for endpoint in ENDPOINTS:
        error = assert_clean(app_client.post(endpoint, files={"file": ("clip.wav", HEADER_ONLY_STREAMING_WAV)}))
        assert error["message"] == "could not decode the audio: no audio frames were decoded", error
        assert error["code"] == "unsupported_audio"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_no_error_over_the_bad_input_corpus_shows_internals(app_client, corpus, endpoint):
    @settings(max_examples=30, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(data=st.data())
    def check(data):
        sent = data.draw(uploads(endpoint, corpus), label="upload")
        response = app_client.send(request_for(app_client, endpoint, sent))
        if response.status_code >= 400:
            assert_clean(response)

    check()
    # Every container cut short at a few places (a cut file may still decode), and with its header damaged.
    errors = 0
    for name, data in corpus.items():
        broken = bytes(b ^ 0x5A if 4 <= i < 64 else b for i, b in enumerate(data))
        for sent in (data[:12], data[:44], data[:200], data[: len(data) // 2], broken):
            response = app_client.post(endpoint, files={"file": (name, sent)})
            if response.status_code >= 400:
                assert_clean(response)
                errors += 1
    assert errors >= len(corpus)


def test_decode_reasons_drop_the_source_location_and_the_advice():
    location = "/__w/torchcodec/torchcodec/src/torchcodec/_core/SingleStreamDecoder.cpp"
    assert _reason(RuntimeError(f"SingleStreamDecoder, {location}:70, Failed to open input buffer: End of file")) \
        == "end of file"
    assert _reason(RuntimeError(f"get_frames_played_in_range_audio, {location}:1217, No audio frames were decoded. "
                                "This is probably because start_seconds is too high(0)")) == "no audio frames were decoded"
    assert _reason(ValueError("The best audio stream is unknown and there is no specified stream. \nThis should never "
                              "happen. Please report an issue")) == "no audio stream found"
    assert _reason(RuntimeError("Failed: /usr/lib/x86_64-linux-gnu/libavformat.so.61")) == "not a supported audio format"
    assert _reason(RuntimeError("Input/output error")) == "input/output error"


def test_public_message_strips_paths_and_tracebacks_and_keeps_api_paths():
    assert public_message("RuntimeError: bad shape at /opt/venv/lib/python3.11/site-packages/torch/nn/functional.py:42") \
        == "RuntimeError: bad shape at <internal>"
    assert public_message("decode_av_frame, /__w/x/y/SingleStreamDecoder.cpp:1493, Could not push packet") \
        == "decode_av_frame, <internal>, Could not push packet"
    assert public_message("boom\nTraceback (most recent call last):\n  File \"/app/x.py\", line 1") == "boom"
    assert public_message("failed Traceback (most recent call last): ...") == "failed"
    assert public_message("model 'x' is not served; GET /v1/models lists the models") \
        == "model 'x' is not served; GET /v1/models lists the models"


def test_a_worker_failure_reaches_the_client_without_internals(app_client, monkeypatch):
    """A model call that raises with torch-like text (a C++ location, then a stack) answers a 500 whose message
    is the exception's first line with the path replaced."""
    runner = app_client.app.state.pool.handles[0].worker.runners["denoise"]  # a thread worker: in this process

    def failing(items):
        raise RuntimeError("The size of tensor a (3) must match at /pytorch/aten/src/ATen/native/Resize.cpp:35\n"
                           "frame #0: c10::Error::Error(...) + 0x9c (0x7f in /usr/lib/python3/libc10.so)")

    monkeypatch.setattr(runner, "forward", failing)
    response = app_client.post("/denoise", files={"file": ("clip.wav", CLIP)})
    assert response.status_code == 500
    error = assert_clean(response)
    assert error["message"] == "RuntimeError: The size of tensor a (3) must match at <internal>", error


# ---- echoed values are cut ---------------------------------------------------------------------------------------
def test_echo_cuts_long_values_and_lists():
    assert echo("asr") == "'asr'"
    assert echo(HUGE) == CUT
    assert echo("y" * ECHO_CHARS) == repr("y" * ECHO_CHARS)
    assert echo(["a", HUGE]) == f"['a', {CUT}]"
    assert echo([str(i) for i in range(100)]) == "['0', '1', '2', '3', '4', ...]"


@pytest.mark.parametrize("endpoint, fields, code", [
    ("/transcribe", {"model": HUGE}, "model_not_found"),
    ("/transcribe", {"denoise": "true", "denoise_model": HUGE}, "model_not_found"),
    ("/v1/audio/transcriptions", {"model": HUGE}, "model_not_found"),
    ("/v1/audio/transcriptions", {"language": HUGE}, "unsupported_language"),
    ("/denoise", {"model": HUGE}, "model_not_found"),
    ("/keywords", {"model": HUGE}, "model_not_found"),
    ("/keywords", {"keywords[]": [HUGE, "yes"]}, "invalid_parameter"),
])
def test_a_100_kb_value_is_quoted_only_in_part(app_client, endpoint, fields, code):
    error = assert_clean(app_client.post(endpoint, files={"file": ("clip.wav", CLIP)}, data=fields))
    assert error["code"] == code, error
    assert CUT in error["message"] and len(error["message"]) < 1000, error["message"][:300]


def test_a_long_model_id_in_the_path_is_quoted_only_in_part(app_client):
    error = assert_clean(app_client.get("/v1/models/" + "x" * 5000))
    assert error["code"] == "model_not_found" and CUT in error["message"] and len(error["message"]) < 200


def test_stream_errors_quote_only_a_prefix(app_client):
    with app_client.websocket_connect("/v1/stream/transcribe") as ws:
        ws.send_text(json.dumps({"type": HUGE}))
        mistake = json.loads(ws.receive_text())
        assert mistake["code"] == "unknown_message_type" and CUT in mistake["message"], mistake["message"][:300]
        ws.send_text(json.dumps({"type": "session.start", "model": HUGE}))
        error = json.loads(ws.receive_text())
        assert error["code"] == "model_not_found" and CUT in error["message"] and len(error["message"]) < 200
    with app_client.websocket_connect("/v1/stream/keywords") as ws:
        ws.send_text(json.dumps({"type": "session.start", "keywords": [HUGE]}))
        error = json.loads(ws.receive_text())
        assert CUT in error["message"] and len(error["message"]) < 200, error["message"][:300]


def test_hundreds_of_invalid_items_are_summed_up(app_client):
    response = app_client.post("/v1/audio/transcriptions", files={"file": ("clip.wav", CLIP)},
                               data={"timestamp_granularities[]": ["bogus"] * 900})
    error = assert_clean(response)
    assert error["code"] == "invalid_parameter" and error["param"] == "timestamp_granularities[].0"
    assert error["message"].endswith("; and 895 more") and len(error["message"]) < 600, error["message"][:300]
