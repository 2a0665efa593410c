"""The Python client (``app.client``) against a real server: every call answers what the endpoint answers, and
every failure is one :class:`CentaurusError` carrying the server's JSON error."""

from __future__ import annotations

import io
import time

import httpx
import numpy as np
import pytest
from service_testkit import SPEECH_SAMPLE, free_port

from app.audio.decode import decode
from app.client import CentaurusError, Client

SAMPLES = SPEECH_SAMPLE.parent


@pytest.fixture(scope="module")
def server(keyed_server):
    return keyed_server


@pytest.fixture()
def client(server):
    with Client(server.base, server.headers["X-API-Key"]) as c:
        yield c


def post(server, path: str, file, **fields) -> httpx.Response:
    with open(file, "rb") as f:
        r = httpx.post(server.base + path, files={"file": (file.name, f)}, data=fields, headers=server.headers,
                       timeout=120)
    assert r.status_code == 200, r.text
    return r


def test_transcribe_answers_what_the_endpoint_answers_in_every_format(server, client):
    expected = post(server, "/transcribe", SPEECH_SAMPLE).json()
    assert client.transcribe(SPEECH_SAMPLE) == expected
    assert client.transcribe(str(SPEECH_SAMPLE), format="text") == expected["text"]
    greedy = post(server, "/transcribe", SPEECH_SAMPLE, beam_search="false").json()["text"]
    assert greedy != expected["text"]  # the sample is chosen so that the two decodings differ
    assert client.transcribe(SPEECH_SAMPLE.read_bytes(), format="text", beam_search=False) == greedy
    denoised = post(server, "/transcribe", SPEECH_SAMPLE, denoise="true").json()["text"]
    with open(SPEECH_SAMPLE, "rb") as f:
        assert client.transcribe(f, format="text", denoise=True) == denoised
    # Subtitles are cut as OpenAI's endpoint cuts them.
    for fmt in ("srt", "vtt"):
        openai = post(server, "/v1/audio/transcriptions", SPEECH_SAMPLE, response_format=fmt).text
        assert client.transcribe(SPEECH_SAMPLE, format=fmt) == openai
    with pytest.raises(ValueError):
        client.transcribe(SPEECH_SAMPLE, format="docx")


def test_denoise_keywords_and_models(server, client):
    noisy = SAMPLES / "noisy.wav"
    clean = decode(client.denoise(noisy))
    source = decode(noisy.read_bytes())
    assert clean.sample_rate == source.sample_rate and clean.samples.shape == source.samples.shape
    assert client.denoise(noisy, format="flac")[:4] == b"fLaC"
    found = client.keywords(SAMPLES / "yes.wav", threshold=0.0)
    assert found == post(server, "/keywords", SAMPLES / "yes.wav", threshold="0").json() and found["detections"]
    assert client.keywords(SAMPLES / "yes.wav", threshold=1.0)["detections"] == []
    assert {m["task"] for m in client.models()} == {"asr", "kws", "denoise"}


def test_upload_progress_reaches_the_whole_file(client):
    seen: list[tuple[int, int]] = []
    client.keywords(SAMPLES / "yes.wav", progress=lambda done, total: seen.append((done, total)))
    size = (SAMPLES / "yes.wav").stat().st_size
    assert seen and seen[-1] == (size, size) and all(total == size for _, total in seen)


def test_errors_carry_the_servers_json_error(server, client):
    with pytest.raises(CentaurusError) as bad_audio:
        client.transcribe(b"this is not audio at all")
    assert bad_audio.value.status == 415 and bad_audio.value.code == "unsupported_audio"
    assert "decode" in bad_audio.value.message and "415 unsupported_audio" in str(bad_audio.value)
    with pytest.raises(CentaurusError) as bad_parameter:
        client.keywords(SAMPLES / "yes.wav", threshold=2.0)
    assert bad_parameter.value.status == 422 and bad_parameter.value.param == "threshold"
    with Client(server.base, "wrong") as wrong, pytest.raises(CentaurusError) as unauthorized:
        wrong.denoise(SAMPLES / "yes.wav")
    assert unauthorized.value.status == 401 and unauthorized.value.code == "invalid_api_key"
    with Client(f"http://127.0.0.1:{free_port()}") as down, pytest.raises(CentaurusError) as refused:
        down.models()
    assert refused.value.code == "connection_failed" and refused.value.status is None
    assert "connection refused" in refused.value.message
    with pytest.raises(FileNotFoundError):
        client.transcribe(SAMPLES / "missing.wav")


def test_url_and_key_come_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("CENTAURUS_URL", server.base.replace("http", "ws", 1))  # a ws:// URL works for HTTP too
    monkeypatch.setenv("CENTAURUS_API_KEY", server.headers["X-API-Key"])
    with Client() as c:
        assert c.url.startswith("ws://") and c.api_key == server.headers["X-API-Key"]
        assert c.keywords(SAMPLES / "yes.wav")["model"] == "kws"
    monkeypatch.delenv("CENTAURUS_URL")
    assert Client().url == "http://127.0.0.1:8000"
    with Client(server.base.removeprefix("http://")) as bare:  # host:port
        assert bare.url == server.base and bare.models()


def test_stream_yields_the_servers_messages(server, client):
    expected = post(server, "/transcribe", SPEECH_SAMPLE).json()["text"]
    messages = list(client.stream(SPEECH_SAMPLE, "asr", speed=0, partials=True))
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "session.started" and kinds[-1] == "session.ended" and "transcript.partial" in kinds
    finals = [m["text"] for m in messages if m["type"] == "transcript.final"]
    assert finals == [expected]  # a stream's final equals the upload's transcript
    sent: list[tuple[float, float]] = []
    audio = [m["samples"] for m in client.stream(SAMPLES / "noisy.wav", "denoise", speed=0,
                                                 progress=lambda s, t: sent.append((s, t)))
             if m["type"] == "audio"]
    assert sum(len(a) for a in audio) == decode((SAMPLES / "noisy.wav").read_bytes()).samples.shape[-1]
    assert sent[-1][0] == pytest.approx(sent[-1][1]) and all(isinstance(a, np.ndarray) for a in audio)
    keywords = [m for m in client.stream((SAMPLES / "yes.wav").read_bytes(), "kws", speed=0, threshold=0.0)
                if m["type"] == "keyword.detected"]
    assert keywords


def test_stream_errors_are_centaurus_errors(server, client):
    with Client(server.base, "wrong") as wrong, pytest.raises(CentaurusError) as unauthorized:
        list(wrong.stream(SPEECH_SAMPLE, speed=0))
    assert unauthorized.value.code == "invalid_api_key" and unauthorized.value.close_code == 1008
    with pytest.raises(CentaurusError) as bad_audio:
        list(client.stream(io.BytesIO(b"not audio").getvalue(), speed=0))
    assert bad_audio.value.status == 415 and bad_audio.value.code == "unsupported_audio"
    with Client(f"http://127.0.0.1:{free_port()}") as down, pytest.raises(CentaurusError) as refused:
        list(down.stream(SPEECH_SAMPLE, speed=0))
    assert refused.value.code == "connection_failed" and "connection refused" in refused.value.message
    with pytest.raises(FileNotFoundError):
        list(client.stream(SAMPLES / "missing.wav"))
    started = time.monotonic()  # a refused session.start ends the stream at once, not at the idle timeout
    with pytest.raises(CentaurusError) as refused_start:
        list(client.stream(SAMPLES / "yes.wav", "kws", keywords=["r2d2"], speed=0))  # no recognizer spells it
    assert refused_start.value.code == "invalid_parameter" and "r2d2" in refused_start.value.message
    assert time.monotonic() - started < 10
