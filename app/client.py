"""A Python client of the service: the upload endpoints over HTTP (``httpx``) and the streams over websockets.

::

    from app.client import Client, CentaurusError

    client = Client("http://127.0.0.1:8000", api_key=None)   # defaults: $CENTAURUS_URL, $CENTAURUS_API_KEY
    client.transcribe("samples/turn-on-the-lights.wav")["text"]
    client.transcribe("speech.mp3", format="srt", beam_search=False, denoise=True)
    open("clean.wav", "wb").write(client.denoise("samples/noisy.wav"))
    client.keywords("samples/yes.wav", threshold=0.6)["detections"]
    for message in client.stream("samples/turn-on-the-lights.wav", task="transcribe"):
        print(message)

Every failure the server or the connection reports is raised as :class:`CentaurusError` with the server's JSON
error (``message``, ``code``, ``type``, ``param``) and the HTTP ``status``; a missing file is the usual
``FileNotFoundError``. The command line (``centaurus-speech transcribe|denoise|keywords|stream``) is built on
this module; ``docs/client.md`` documents both.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

import httpx

from .streaming.client import StreamError, StreamOptions, session

__all__ = ["Client", "CentaurusError", "DEFAULT_URL"]

DEFAULT_URL = "http://127.0.0.1:8000"
Audio = str | os.PathLike | bytes | BinaryIO
Progress = Callable[[int, int], None]


class CentaurusError(Exception):
    """The server's error envelope (``{"error": {"message", "type", "code", "param"}}``) with its HTTP ``status``.

    Connection failures have ``code`` ``connection_failed`` (or ``timeout``) and no ``status``; a stream closed
    with an error also has the websocket ``close_code``.
    """

    def __init__(self, message: str, code: str, *, status: int | None = None, type: str | None = None,
                 param: str | None = None, close_code: int | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.status, self.type, self.param = message, code, status, type, param
        self.close_code = close_code

    def __str__(self) -> str:
        where = " ".join(str(part) for part in (self.status, self.code) if part is not None)
        return f"{self.message} ({where})"


class _Counting(io.RawIOBase):
    """A readable file that reports how much of it has been read (httpx reads uploads in 64 kB chunks)."""

    def __init__(self, inner: BinaryIO, total: int, progress: Progress) -> None:
        self.inner, self.total, self.progress = inner, total, progress

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self.inner.read(size)
        self.progress(min(self.inner.tell(), self.total), self.total)
        return chunk

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.inner.seek(offset, whence)

    def tell(self) -> int:
        return self.inner.tell()


class Client:
    """``url``: the server's base URL (``http://`` or ``ws://``); ``api_key``: sent as ``Authorization: Bearer``.
    ``timeout``: seconds per HTTP request (long files take a while: the server's own deadline grows with the
    audio). Use it as a context manager, or call :meth:`close`."""

    def __init__(self, url: str | None = None, api_key: str | None = None, *, timeout: float = 600.0) -> None:
        self.url = (url or os.environ.get("CENTAURUS_URL") or DEFAULT_URL).rstrip("/")
        if "://" not in self.url:  # host:port
            self.url = "http://" + self.url
        self.api_key = api_key if api_key is not None else os.environ.get("CENTAURUS_API_KEY") or None
        http_url = "http" + self.url[2:] if self.url.startswith("ws") else self.url
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._http = httpx.Client(base_url=http_url, headers=headers, timeout=httpx.Timeout(timeout, connect=10.0))

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- uploads -----------------------------------------------------------------------------------------------
    def transcribe(self, audio: Audio, *, format: Literal["json", "text", "srt", "vtt"] = "json",
                   beam_search: bool | None = None, denoise: bool = False, word_timestamps: bool = True,
                   model: str | None = None, progress: Progress | None = None) -> Any:
        """``POST /transcribe``. ``json``: the response (``text``, ``duration``, ``words`` with times and
        confidence, ``model``); ``text``: the transcript; ``srt`` / ``vtt``: subtitles cut at pauses, as
        ``/v1/audio/transcriptions`` makes them. ``beam_search=None`` keeps the server's default (beam search)."""
        if format not in ("json", "text", "srt", "vtt"):
            raise ValueError("format must be json, text, srt or vtt")
        fields = {"denoise": denoise, "word_timestamps": word_timestamps or format in ("srt", "vtt"),
                  "beam_search": beam_search, "model": model}
        result = self._post("/transcribe", audio, fields, progress).json()
        if format == "json":
            return result
        if format == "text":
            return result["text"]
        from model_zoo.nets.ctc import Word

        from .http import formats

        words = [Word(w["word"], w["start"], w["end"], w["confidence"]) for w in result.get("words") or []]
        return (formats.srt if format == "srt" else formats.vtt)(formats.segments(words))

    def denoise(self, audio: Audio, *, format: Literal["wav", "flac", "pcm"] = "wav", model: str | None = None,
                progress: Progress | None = None) -> bytes:
        """``POST /denoise``: the enhanced audio, as long as the input and at its sample rate (``pcm``: raw 16-bit
        mono)."""
        return self._post("/denoise", audio, {"response_format": format, "model": model}, progress).content

    def keywords(self, audio: Audio, *, threshold: float | None = None, keywords: list[str] | None = None,
                 hop: float | None = None, model: str | None = None, progress: Progress | None = None) -> dict:
        """``POST /keywords``: ``detections`` (keyword, start, end, score) and, for a clip of about a second,
        ``scores`` of every class. ``keywords`` may name any word or phrase (``"hey computer #0.4"``): those the
        keyword model does not know are searched for by the recognizer."""
        fields = {"threshold": threshold, "hop": hop, "model": model, "keywords[]": keywords}
        return self._post("/keywords", audio, fields, progress).json()

    def models(self) -> list[dict]:
        """``GET /v1/models``: the served models with their task, sample rate and latency."""
        return self._request("GET", "/v1/models").json()["data"]

    # ---- streams -----------------------------------------------------------------------------------------------
    def stream(self, audio: str | os.PathLike | bytes, task: str = "transcribe", *, model: str | None = None,
               partials: bool = False, threshold: float | None = None, keywords: list[str] | None = None,
               chunk_ms: float = 100.0, speed: float = 1.0, progress: Callable[[float, float], None] | None = None,
               **start: Any) -> Iterator[dict]:
        """Stream a file over ``/v1/stream/{task}`` (``transcribe``/``asr``, ``keywords``/``kws``, ``denoise``) and
        yield the server's messages as dicts (``session.started``, ``transcript.partial``, ``transcript.final``,
        ``keyword.detected``, ``session.ended``, ``error``) and the denoised audio as ``{"type": "audio",
        "samples", "sample_rate"}``. ``speed``: multiples of real time (0: unpaced); ``progress(sent, total)``
        in seconds; ``keywords`` as for :meth:`keywords`; other keyword arguments go into ``session.start`` (e.g.
        ``word_timestamps=False``)."""
        if not isinstance(audio, bytes) and not Path(audio).is_file():
            raise FileNotFoundError(f"no such file: {audio}")
        options = StreamOptions(task=task, url=self.url, api_key=self.api_key, model=model, chunk_ms=chunk_ms,
                                speed=speed, partials=partials, keywords=keywords, threshold=threshold, extra=start,
                                progress=progress)
        try:
            yield from session(audio if isinstance(audio, bytes) else Path(audio), options)
        except StreamError as err:
            raise CentaurusError(err.message, err.code, status=err.status, close_code=err.close_code) from None

    # ---- plumbing ----------------------------------------------------------------------------------------------
    def _post(self, path: str, audio: Audio, fields: dict[str, Any], progress: Progress | None) -> httpx.Response:
        data = {k: (str(v).lower() if isinstance(v, bool) else v if isinstance(v, list) else str(v))
                for k, v in fields.items() if v is not None}
        name, handle, owned = _open(audio)
        try:
            upload: BinaryIO | _Counting = handle
            if progress is not None:
                total = handle.seek(0, io.SEEK_END)
                handle.seek(0)
                upload = _Counting(handle, total, progress)
            return self._request("POST", path, data=data, files={"file": (name, upload)})
        finally:
            if owned:
                handle.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise CentaurusError(f"no answer from {self._http.base_url} in time", "timeout") from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL):
            raise CentaurusError(f"not a server URL: {self.url}", "invalid_url") from None
        except httpx.TransportError as err:
            raise CentaurusError(f"cannot connect to {str(self._http.base_url).rstrip('/')}: {_reason(err)}",
                                 "connection_failed") from None
        if response.status_code >= 400:
            raise _error(response)
        return response


def _open(audio: Audio) -> tuple[str, BinaryIO, bool]:
    """(file name, readable binary file, whether we opened it)."""
    if isinstance(audio, bytes):
        return "audio", io.BytesIO(audio), True
    if isinstance(audio, (str, os.PathLike)):
        path = Path(audio)
        return path.name, open(path, "rb"), True  # FileNotFoundError for a missing file, as open() says it
    return Path(str(getattr(audio, "name", "audio"))).name, audio, False


def _reason(err: Exception) -> str:
    text = str(err)
    if "refused" in text.lower():
        return "connection refused (is the server running?)"
    return text.split("] ", 1)[-1] or type(err).__name__


def _error(response: httpx.Response) -> CentaurusError:
    try:
        error = response.json()["error"]
        return CentaurusError(error["message"], error["code"], status=response.status_code, type=error.get("type"),
                              param=error.get("param"))
    except (ValueError, KeyError, TypeError):
        text = " ".join(response.text.split())[:200]
        return CentaurusError(f"HTTP {response.status_code}{': ' + text if text else ''}",
                              f"http_{response.status_code}", status=response.status_code)
