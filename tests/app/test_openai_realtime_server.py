"""OpenAI Realtime transcription sessions (``/v1/realtime``) through the official ``openai`` package's realtime
client, against a real server (``centaurus-speech serve``) with the shipped recognizer (it hears pauses).

GA (``client.realtime.connect``) and beta (``client.beta.realtime.connect``) session messages, turns ended by
server_vad (the endpoint rules) or by commit, bad input answered with OpenAI's ``error`` event while the session
goes on, and a wrong key refused. The server's 20 s idle timeout bounds every wait for an event.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torchaudio
from service_testkit import SPEECH_SAMPLE, start_server, stop_server

from app.audio.decode import decode

openai = pytest.importorskip("openai")  # a test dependency
from websockets.exceptions import ConnectionClosed  # noqa: E402

KEY = "realtime-key"
RATE = 24000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server({"asr": "asr"}, tmp_path_factory.mktemp("realtime") / "server.log", ready_timeout=300,
                           api_keys=KEY, stream_idle_timeout_seconds="20")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def sdk(server):
    return openai.OpenAI(base_url=f"{server.base}/v1", api_key=KEY, max_retries=0)


def sentence(rate: int = RATE) -> np.ndarray:
    speech = decode(SPEECH_SAMPLE.read_bytes()).samples
    return torchaudio.functional.resample(speech, 16000, rate).numpy().astype(np.float32)


def quiet(seconds: float, seed: int = 0, rate: int = RATE) -> np.ndarray:
    return (0.001 * np.random.default_rng(seed).standard_normal(int(seconds * rate))).astype(np.float32)


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).round().astype("<i2").tobytes()


def append_audio(connection, samples: np.ndarray, chunk_seconds: float = 0.1, rate: int = RATE) -> None:
    step = int(chunk_seconds * rate)
    for start in range(0, len(samples), step):
        connection.input_audio_buffer.append(audio=base64.b64encode(pcm16(samples[start:start + step])).decode())


def events_until(connection, kind: str, count: int = 1) -> list:
    """Every event received until the ``count``-th of type ``kind`` (inclusive)."""
    seen, found = [], 0
    while found < count:
        event = connection.recv()
        seen.append(event)
        found += event.type == kind
    return seen


def of(events: list, kind: str) -> list:
    return [e for e in events if e.type == kind]


def offline_text(server, samples: np.ndarray, rate: int = RATE) -> str:
    """What ``/v1/audio/transcriptions`` makes of the same audio, through the same SDK."""
    client = openai.OpenAI(base_url=f"{server.base}/v1", api_key=KEY, max_retries=0)
    raw = ("a.pcm", pcm16(samples), "application/octet-stream")
    return client.audio.transcriptions.create(model="whisper-1", file=raw,
                                              extra_body={"encoding": "pcm_s16le", "sample_rate": rate}).text


def test_two_sentences_with_a_pause_give_two_completed_items_without_commit(sdk, server):
    one, pause = sentence(), quiet(1.5)
    with sdk.realtime.connect(model="gpt-4o-transcribe", extra_query={"intent": "transcription"}) as connection:
        created = connection.recv()
        assert created.type == "session.created" and created.session.type == "transcription"
        connection.session.update(session={
            "type": "transcription",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                                "turn_detection": {"type": "server_vad", "silence_duration_ms": 1000}}}})
        updated = connection.recv()
        assert updated.type == "session.updated", updated
        session = updated.session.model_dump() if hasattr(updated.session, "model_dump") else updated.session
        assert session["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 1000
        append_audio(connection, np.concatenate([one, pause, one, quiet(2.0, seed=1)]))
        events = events_until(connection, "conversation.item.input_audio_transcription.completed", 2)
    started, stopped = of(events, "input_audio_buffer.speech_started"), of(events, "input_audio_buffer.speech_stopped")
    committed = of(events, "input_audio_buffer.committed")
    completed = of(events, "conversation.item.input_audio_transcription.completed")
    assert not of(events, "error"), of(events, "error")
    assert len(started) == len(stopped) == len(committed) == len(completed) == 2
    items = [c.item_id for c in completed]
    assert len(set(items)) == 2 and [s.item_id for s in started] == items == [c.item_id for c in committed]
    assert committed[0].previous_item_id is None and committed[1].previous_item_id == items[0]
    # The first turn ends in the pause, 1 s (silence_duration_ms) after the end of speech or a little later.
    end_of_speech_ms = 1000 * (len(one) / RATE - 0.25)  # the sample ends with 0.25 s of silence
    assert end_of_speech_ms + 900 <= stopped[0].audio_end_ms <= 1000 * (len(one) + len(pause)) / RATE
    assert started[0].audio_start_ms < stopped[0].audio_end_ms < started[1].audio_start_ms < stopped[1].audio_end_ms
    expected = offline_text(server, one)
    for item, done in zip(items, completed):
        deltas = [e.delta for e in of(events, "conversation.item.input_audio_transcription.delta") if e.item_id == item]
        assert "".join(deltas) == done.transcript and done.transcript
        assert done.usage.type == "duration" and done.usage.seconds > 1.0
    assert completed[0].transcript == expected  # the same sentence, alone in its turn


def test_commit_without_server_vad_gives_one_item_beta_session(server):
    one = sentence()
    # The beta client always dials wss:// from base_url; a plain-HTTP server is named by websocket_base_url.
    sdk = openai.OpenAI(base_url=f"{server.base}/v1", websocket_base_url=f"{server.base.replace('http', 'ws')}/v1",
                        api_key=KEY, max_retries=0)
    with sdk.beta.realtime.connect(model="whisper-1", extra_query={"intent": "transcription"}) as connection:
        created = connection.recv()
        assert created.type == "transcription_session.created", created
        connection.transcription_session.update(session={
            "input_audio_format": "pcm16", "input_audio_transcription": {"model": "whisper-1"},
            "turn_detection": None})
        updated = connection.recv()
        assert updated.type == "transcription_session.updated" and updated.session.turn_detection is None
        append_audio(connection, np.concatenate([one, quiet(1.5), one]))
        connection.input_audio_buffer.commit()
        events = events_until(connection, "conversation.item.input_audio_transcription.completed")
        # The buffer is empty now: committing again is a mistake, and the session goes on.
        connection.input_audio_buffer.commit()
        error = connection.recv()
    assert not of(events, "input_audio_buffer.speech_started") and not of(events, "input_audio_buffer.speech_stopped")
    assert [e.type for e in events if e.type != "conversation.item.input_audio_transcription.delta"] == [
        "input_audio_buffer.committed", "conversation.item.input_audio_transcription.completed"]
    done = events[-1]
    assert done.transcript and done.item_id == events[0].item_id
    assert error.type == "error" and error.error.code == "input_audio_buffer_commit_empty"


def test_bad_input_gets_an_error_event_and_the_session_keeps_working(sdk):
    mistakes = [
        ({"type": "response.create"}, "unknown_event"),
        ({"type": "input_audio_buffer.append", "audio": "not base64!!", "event_id": "evt_1"}, "invalid_base64"),
        ({"type": "input_audio_buffer.append"}, "invalid_event"),
        ({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcmu"}}}}}, "unsupported_audio_format"),
        ({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": 12345}}}}}, "unsupported_audio_format"),
        ({"type": "transcription_session.update", "session": {"input_audio_format": "g711_ulaw"}},
         "unsupported_audio_format"),
        ({"type": "session.update", "session": {"type": "realtime"}}, "unsupported_session_type"),
        ({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "transcription": {"language": "fr"}}}}}, "unsupported_language"),
        ({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "transcription": {"model": "no-such-model"}}}}}, "model_not_found"),
        ({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "turn_detection": {"type": "semantic_vad"}}}}}, "unsupported_turn_detection"),
        ({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "turn_detection": {"type": "server_vad", "silence_duration_ms": -5}}}}}, "invalid_event"),
        ({"type": "input_audio_buffer.commit"}, "input_audio_buffer_commit_empty"),
    ]
    with sdk.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        assert connection.recv().type == "session.created"
        connection.send_raw("{not json")
        error = connection.recv()
        assert error.type == "error" and error.error.code == "invalid_json"
        for event, code in mistakes:
            connection.send_raw(json.dumps(event))
            error = connection.recv()
            assert error.type == "error" and error.error.code == code, (event, error)
            assert error.error.type in ("invalid_request_error", "not_found_error") and error.error.message
        assert error.error.event_id is None
        connection.send_raw('{"type": "input_audio_buffer.append", "audio": "%%%", "event_id": "evt_42"}')
        assert connection.recv().error.event_id == "evt_42"
        # Audio needs no session.update (session.created is a working default: audio/pcm at 24 kHz, server_vad).
        append_audio(connection, sentence())
        connection.input_audio_buffer.clear()
        events = events_until(connection, "input_audio_buffer.cleared")  # after speech_started (server_vad)
        assert of(events, "input_audio_buffer.speech_started") and not of(events, "input_audio_buffer.committed")
        connection.session.update(session={"type": "transcription", "audio": {"input": {"turn_detection": None}}})
        events_until(connection, "session.updated")
        append_audio(connection, sentence())
        connection.input_audio_buffer.commit()
        done = events_until(connection, "conversation.item.input_audio_transcription.completed")
        assert len(of(done, "input_audio_buffer.committed")) == 1 and done[-1].transcript
        # The format cannot change once audio has been appended.
        connection.session.update(session={"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": 16000}}}})
        assert connection.recv().error.code == "session_active"


def test_a_wrong_key_is_refused(server):
    wrong = openai.OpenAI(base_url=f"{server.base}/v1", api_key="wrong-key", max_retries=0)
    with wrong.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        error = connection.recv()
        assert error.type == "error" and error.error.code == "invalid_api_key"
        with pytest.raises(ConnectionClosed) as closed:
            connection.recv()
    assert closed.value.rcvd.code == 1008
    # A conversation (not transcription) intent is refused the same way.
    right = openai.OpenAI(base_url=f"{server.base}/v1", api_key=KEY, max_retries=0)
    with right.realtime.connect(model="gpt-realtime", extra_query={"intent": "conversation"}) as connection:
        assert connection.recv().error.code == "unsupported_intent"


def test_an_abrupt_disconnect_frees_the_session_and_others_are_served(server, sdk):
    import socket
    import time

    from websockets.sync.client import connect

    url = f"{server.base.replace('http', 'ws')}/v1/realtime?intent=transcription"
    ws = connect(url, additional_headers={"Authorization": f"Bearer {KEY}"})
    assert json.loads(ws.recv())["type"] == "session.created"
    one = sentence()
    ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm16(one)).decode()}))
    assert json.loads(ws.recv())["type"] == "input_audio_buffer.speech_started"  # the session is resident
    assert server.metric("centaurus_active_streams") >= 1
    ws.send(json.dumps({"type": "input_audio_buffer.commit"}))  # a turn in flight, then the line drops
    ws.socket.shutdown(socket.SHUT_RDWR)
    ws.socket.close()
    end = time.monotonic() + 20
    while server.metric("centaurus_active_streams") != 0:
        assert time.monotonic() < end, "the dropped session's state was never freed"
        time.sleep(0.1)
    with sdk.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        assert connection.recv().type == "session.created"
        append_audio(connection, one)
        connection.input_audio_buffer.commit()
        assert events_until(connection, "conversation.item.input_audio_transcription.completed")[-1].transcript
