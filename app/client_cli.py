"""The client commands of ``centaurus-speech``: ``transcribe``, ``denoise``, ``keywords`` and ``stream``, on
:class:`app.client.Client`.

Each takes ``--url`` (default ``$CENTAURUS_URL``, else ``http://127.0.0.1:8000``) and ``--api-key`` (default
``$CENTAURUS_API_KEY``). Results go to stdout; progress goes to stderr only when stderr is a terminal. Any
failure (no server, a missing file, audio the server cannot decode, a wrong key) is one line on stderr and
exit status 1; never a traceback.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, TextIO

__all__ = ["add_client_commands"]

SPINNER = "|/-\\"


class Progress:
    """One self-erasing status line on ``stream`` (stderr) while a command waits, if it is a terminal: the
    upload's percentage, then the seconds the server has been working; or the seconds of audio streamed."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.label, self.detail, self.since = label, "", time.monotonic()
        self._stop, self._lock = threading.Event(), threading.Lock()
        self._thread: threading.Thread | None = None

    def upload(self, done: int, total: int) -> None:
        if done >= total:
            self.since, self.detail = time.monotonic(), "processing"
        else:
            self.detail = f"uploading {100 * done / max(1, total):.0f}% of {total / 1e6:.1f} MB"

    def streamed(self, sent: float, total: float) -> None:
        self.detail = f"streaming {sent:.1f} of {total:.1f} s"

    def clear(self) -> None:
        if self.enabled:
            with self._lock:
                self.stream.write("\r\033[K")
                self.stream.flush()

    def __enter__(self) -> "Progress":
        if self.enabled:
            self._thread = threading.Thread(target=self._draw, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1)
        self.clear()

    def _draw(self) -> None:
        for frame in itertools.cycle(SPINNER):
            if self._stop.wait(0.1):
                return
            detail = self.detail
            if detail == "processing":
                detail = f"processing {time.monotonic() - self.since:.0f} s"
            with self._lock:
                self.stream.write(f"\r\033[K{frame} {self.label} {detail}")
                self.stream.flush()


def _client(args: argparse.Namespace):
    from .client import Client

    return Client(args.url, args.api_key)


def _need_file(path: str) -> Path:
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(2, "No such file", path)
    if not file.is_file():
        raise IsADirectoryError(21, "Not a file", path)
    return file


# ---- the commands ------------------------------------------------------------------------------------------------
def _transcribe(args: argparse.Namespace) -> int:
    file = _need_file(args.file)
    with _client(args) as client, Progress(f"transcribing {file.name}:") as progress:
        result = client.transcribe(file, format=args.format, beam_search=False if args.greedy else None,
                                   denoise=args.denoise, model=args.model, progress=progress.upload)
    if args.format == "json":
        print(json.dumps(result, indent=2))
    else:
        sys.stdout.write(result if result.endswith("\n") else result + "\n")
    return 0


def _denoise(args: argparse.Namespace) -> int:
    file = _need_file(args.input)
    if args.output != "-" and not Path(args.output).resolve().parent.is_dir():
        raise FileNotFoundError(2, "No such directory", str(Path(args.output).parent))
    fmt = args.format or {".flac": "flac", ".pcm": "pcm", ".raw": "pcm"}.get(Path(args.output).suffix.lower(), "wav")
    with _client(args) as client, Progress(f"denoising {file.name}:") as progress:
        audio = client.denoise(file, format=fmt, model=args.model, progress=progress.upload)
    if args.output == "-":
        sys.stdout.buffer.write(audio)
        sys.stdout.flush()
    else:
        Path(args.output).write_bytes(audio)
        print(f"wrote {args.output} ({fmt}, {len(audio) / 1e6:.2f} MB)", file=sys.stderr)
    return 0


def _keywords(args: argparse.Namespace) -> int:
    file = _need_file(args.file)
    with _client(args) as client, Progress(f"spotting keywords in {file.name}:") as progress:
        result = client.keywords(file, threshold=args.threshold, keywords=args.keywords, model=args.model,
                                 progress=progress.upload)
    if args.format == "json":
        print(json.dumps(result, indent=2))
        return 0
    for d in result["detections"]:
        print(f"{d['keyword']} {d['start']:.2f}-{d['end']:.2f} {d['score']:.3f}")
    if not result["detections"]:
        bar = "the server's threshold" if args.threshold is None else args.threshold
        print(f"no keyword scored {bar} or more in {result['duration']:.2f} s", file=sys.stderr)
    return 0


def _stream(args: argparse.Namespace) -> int:
    import numpy as np

    file = _need_file(args.file)
    denoised: list[np.ndarray] = []
    warnings: list[str] = []
    rate = 16000
    with _client(args) as client, Progress(f"{file.name}:") as progress:
        def say(text: str, stream: TextIO) -> None:
            progress.clear()
            print(text, file=stream, flush=True)

        messages = client.stream(file, args.task, model=args.model, partials=args.partials, threshold=args.threshold,
                                 keywords=args.keywords, chunk_ms=args.chunk_ms, speed=args.speed,
                                 progress=progress.streamed)
        for event in messages:
            kind = event["type"]
            if kind == "audio":
                denoised.append(event["samples"])
                rate = event["sample_rate"]
            elif kind == "session.started":
                say(f"session {event['session_id']}: {event['model']} at {event['sample_rate']} Hz, "
                    f"latency {event['algorithmic_latency_ms']} ms", sys.stderr)
            elif kind == "transcript.partial":
                say(f"... {event['text']}", sys.stdout)
            elif kind == "transcript.final":
                say(f"[{event['start']:.2f}-{event['end']:.2f}] {event['text']}", sys.stdout)
            elif kind == "keyword.detected":
                say(f"{event['keyword']} {event['start']:.2f}-{event['end']:.2f} {event['score']:.3f}", sys.stdout)
            elif kind == "session.ended":
                say(f"{event['audio_seconds']} s of audio, real-time factor {event['rtf']}", sys.stderr)
            elif kind == "error":
                warnings.append(f"{event['message']} ({event['code']})")
    for warning in warnings:  # errors the server reported and then carried on
        print(f"centaurus-speech stream: warning: {warning}", file=sys.stderr)
    if denoised:
        import torch

        from .audio.encode import encode

        target = Path(args.output) if args.output else file.with_suffix(".denoised.wav")
        target.write_bytes(encode(torch.from_numpy(np.concatenate(denoised).copy()), rate, "wav"))
        print(f"wrote {target}", file=sys.stderr)
    return 0


def _guarded(command: Callable[[argparse.Namespace], int], name: str) -> Callable[[argparse.Namespace], int]:
    """Runs a command; every failure becomes one line on stderr and exit status 1 (130 on Ctrl-C)."""

    def run(args: argparse.Namespace) -> int:
        from .client import CentaurusError

        try:
            return command(args)
        except CentaurusError as err:
            problem = str(err)
        except OSError as err:  # a missing or unreadable input, an unwritable output
            problem = f"{(err.strerror or str(err)).lower()}: {err.filename}" if err.filename else str(err)
        except KeyboardInterrupt:
            print(f"\ncentaurus-speech {name}: interrupted", file=sys.stderr)
            return 130
        except Exception as err:  # noqa: BLE001 - a bug still gets one line, not a traceback
            problem = f"unexpected {type(err).__name__}: {err}"
        print(f"centaurus-speech {name}: {problem}", file=sys.stderr)
        return 1

    return run


# ---- the parser ----------------------------------------------------------------------------------------------------
def _connection() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--url", help="server base URL, http:// or ws:// (default: $CENTAURUS_URL, else "
                                      "http://127.0.0.1:8000)")
    parent.add_argument("--api-key", help="API key (default: $CENTAURUS_API_KEY)")
    parent.add_argument("--model", help="model id (default: the server's first of the task)")
    return parent


def add_client_commands(commands: Any) -> None:
    """Adds ``transcribe``, ``denoise``, ``keywords`` and ``stream`` to ``commands`` (argparse subparsers)."""
    parent = [_connection()]
    transcribe = commands.add_parser(
        "transcribe", parents=parent, help="transcribe a file (POST /transcribe)",
        description="Transcribe an audio file (any container FFmpeg reads) on a running server.")
    transcribe.add_argument("file", help="audio file")
    transcribe.add_argument("--format", choices=["text", "json", "srt", "vtt"], default="text",
                            help="text (default): the transcript; json: with word times and confidence; srt/vtt: "
                                 "subtitles")
    transcribe.add_argument("--greedy", action="store_true", help="greedy decoding instead of beam search")
    transcribe.add_argument("--denoise", action="store_true", help="run the denoiser first")
    transcribe.set_defaults(run=_guarded(_transcribe, "transcribe"))

    denoise = commands.add_parser(
        "denoise", parents=parent, help="denoise a file (POST /denoise)",
        description="Denoise an audio file: OUT has the input's length and sample rate.")
    denoise.add_argument("input", help="audio file")
    denoise.add_argument("output", help="where to write the result; - for stdout")
    denoise.add_argument("--format", choices=["wav", "flac", "pcm"],
                         help="output format (default: from OUT's suffix: .flac, .pcm/.raw, else wav)")
    denoise.set_defaults(run=_guarded(_denoise, "denoise"))

    keywords = commands.add_parser(
        "keywords", parents=parent, help="spot keywords in a file (POST /keywords)",
        description="Spot keywords in an audio file; prints 'keyword start-end score' per detection.")
    keywords.add_argument("file", help="audio file")
    keywords.add_argument("--threshold", type=float, help="minimum score of a detection (0-1; default: the server's)")
    keywords.add_argument("--keywords", nargs="+", help="only these keywords; any other word or phrase (quoted) "
                          "is searched for by the recognizer")
    keywords.add_argument("--format", choices=["text", "json"], default="text",
                          help="json: the whole response, with the ranked classes of a one-second clip")
    keywords.set_defaults(run=_guarded(_keywords, "keywords"))

    stream = commands.add_parser(
        "stream", parents=parent, help="stream a file over the websocket API and print the results",
        description="Stream an audio file to a running server in real-time-sized chunks.")
    stream.add_argument("file", help="audio file (any container FFmpeg reads)")
    stream.add_argument("--task", choices=["transcribe", "asr", "keywords", "kws", "denoise"], default="transcribe")
    stream.add_argument("--chunk-ms", type=float, default=100.0, help="audio per websocket frame")
    stream.add_argument("--speed", type=float, default=1.0, help="pace in multiples of real time; 0 = unpaced")
    stream.add_argument("--partials", action="store_true", help="print partial transcripts too")
    stream.add_argument("--keywords", nargs="+", help="only these keywords; any other word or phrase (quoted) "
                        "is searched for by the recognizer")
    stream.add_argument("--threshold", type=float, help="keyword detection threshold (default: the server's)")
    stream.add_argument("--output", "-o", help="denoised WAV (default: FILE.denoised.wav)")
    stream.set_defaults(run=_guarded(_stream, "stream"))
