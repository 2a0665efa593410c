"""The dependencies HTTP and websockets share: one API-key check, one model lookup; and the upload reader."""

from __future__ import annotations

import asyncio
import io
from types import SimpleNamespace

import pytest
import torch
from fastapi import UploadFile
from service_testkit import signal, wav_bytes
from starlette.requests import HTTPConnection, Request

from app.audio.decode import decode
from app.errors import InvalidParameter, NotFound, Unauthorized
from app.http import dependencies
from app.http.dependencies import check_key, resolve_model, served_name
from app.http.schemas import AudioForm
from app.settings import Settings

KEYED = Settings(api_keys=["k1", "k2"])


def connection(headers: dict[str, str] | None = None, query: str = "") -> HTTPConnection:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return HTTPConnection({"type": "http", "headers": raw, "query_string": query.encode(), "path": "/"})


def refusal(conn: HTTPConnection, **options) -> str | None:
    try:
        check_key(conn, KEYED, **options)
    except Unauthorized as err:
        assert err.status == 401 and err.headers == {"WWW-Authenticate": "Bearer"}
        return err.message
    return None


def test_the_key_check_reads_bearer_then_x_api_key():
    for accepted in ({"Authorization": "Bearer k2"}, {"Authorization": "bearer  k1 "}, {"X-API-Key": "k1"}):
        assert refusal(connection(accepted)) is None, accepted
    assert refusal(connection({"X-API-Key": "nope"})) == "invalid API key"
    # A bearer token wins over X-API-Key, even an empty one.
    assert refusal(connection({"Authorization": "Bearer nope", "X-API-Key": "k1"})) == "invalid API key"
    assert refusal(connection({"Authorization": "Bearer ", "X-API-Key": "k1"})).startswith("missing API key")
    assert refusal(connection({"Authorization": "Basic k1"})).startswith("missing API key")
    assert check_key(connection(), Settings()) is None  # no keys configured: open


def test_only_websockets_also_take_the_key_from_the_query_string():
    assert refusal(connection(query="api_key=k1")) == ("missing API key: send Authorization: Bearer KEY or "
                                                       "X-API-Key: KEY")
    assert refusal(connection(query="api_key=k1"), query=True) is None
    assert refusal(connection(query="api_key=no"), query=True) == "invalid API key"
    assert refusal(connection(), query=True) == ("missing API key: send Authorization: Bearer KEY, X-API-Key: KEY "
                                                 "or ?api_key=KEY")
    # Headers come first: a wrong header key is not rescued by a right query key.
    assert refusal(connection({"X-API-Key": "no"}, query="api_key=k1"), query=True) == "invalid API key"


ENGINE = SimpleNamespace(cards={"asr-a": SimpleNamespace(task="asr"), "asr-b": SimpleNamespace(task="asr"),
                                "kws": SimpleNamespace(task="kws")})  # the attributes of a ModelCard it reads
ALIASES = Settings(model_aliases={"whisper-1": "asr-b", "dangling": "missing", "kw": "kws"})


def test_models_resolve_by_name_or_alias_else_the_first_of_the_task():
    assert resolve_model(ENGINE, ALIASES, None, "asr") == "asr-a"
    assert resolve_model(ENGINE, ALIASES, "asr-b", "asr") == "asr-b"
    assert resolve_model(ENGINE, ALIASES, "whisper-1", "asr") == "asr-b"
    assert resolve_model(ENGINE, ALIASES, "dangling", "asr") == "asr-a"  # an alias of nothing served: the default
    with pytest.raises(NotFound, match="'nope' is not served") as missing:
        resolve_model(ENGINE, ALIASES, "nope", "asr", "denoise_model")
    assert missing.value.code == "model_not_found" and missing.value.param == "denoise_model"
    with pytest.raises(InvalidParameter, match="model 'kw' is a kws model, not asr") as wrong:
        resolve_model(ENGINE, ALIASES, "kw", "asr")
    assert wrong.value.code == "wrong_model_task"
    with pytest.raises(NotFound, match="no denoise model is served"):
        resolve_model(ENGINE, ALIASES, None, "denoise")
    assert served_name(ENGINE, ALIASES, "whisper-1") == "asr-b" and served_name(ENGINE, ALIASES, "dangling") is None


@pytest.mark.parametrize("seconds", [1.0, 3.0])
def test_small_pcm_uploads_decode_on_the_event_loop_and_larger_ones_in_a_thread(monkeypatch, seconds):
    """A one-second WAV is decoded inline (cheaper than the hop to a thread); past INLINE_PCM_BYTES, or for
    anything FFmpeg decodes, the decode runs in a thread. Either way the result is the same."""
    threaded = []
    real_to_thread = asyncio.to_thread

    async def counting_to_thread(func, *args, **kwargs):
        threaded.append(func)
        return await real_to_thread(func, *args, **kwargs)

    monkeypatch.setattr(dependencies.asyncio, "to_thread", counting_to_thread)
    data = wav_bytes(signal(seconds, 16000, 1), 16000)
    request = Request({"type": "http", "method": "POST", "path": "/", "query_string": b"", "headers": []})
    audio = asyncio.run(dependencies.read_audio(UploadFile(io.BytesIO(data)), AudioForm(), Settings(), request))
    assert torch.equal(audio.samples, decode(data).samples) and audio.sample_rate == 16000
    assert len(threaded) == (0 if 2 * 16000 * seconds <= dependencies.INLINE_PCM_BYTES else 1)
