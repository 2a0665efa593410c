"""The service's responses to a fixed set of requests, recorded from a checkout and compared between two.

A refactor promises that no response changes. This script makes the promise checkable: ``record`` starts the
service of a checkout (its own ``app`` and shipped checkpoints, this interpreter), sends every request of
``REQUESTS`` and every stream of ``STREAMS`` over HTTP and websockets, and writes what came back as JSON;
``compare`` lists every difference between two recordings. The audio is made here, the same bytes every time
(espeak-ng and a seeded noise), and the recording keeps its hash, so two recordings heard the same input.

    python bench/responses.py record --source /tmp/before --out before.json
    python bench/responses.py record --source . --out after.json
    python bench/responses.py compare before.json after.json

What varies between two runs of the same code (ids, clocks, CPU times, process ids) is dropped before writing
(``VOLATILE``); recording one checkout twice and comparing shows that nothing else varies. Binary bodies (the
denoised WAV) are kept as their SHA-256, length and content type.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import wave
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from service import start_server, wav_bytes  # noqa: E402

VOLATILE = {"id", "session_id", "request_id", "created", "created_at", "pid", "pids", "uptime_s", "rtf",
            "processing_seconds", "processing_ms", "elapsed_s", "elapsed_ms", "started_at", "last_batch_at"}
SENTENCE = "turn on the kitchen light and set a timer for seven minutes"
DIGITS = "one two three"


def spoken(text: str, folder: Path) -> np.ndarray:
    """espeak-ng's default voice at 16 kHz, as float samples (espeak-ng writes 22.05 kHz; resampled by torchaudio,
    which, unlike sox's default dither, gives the same samples every time)."""
    from training.corpus.tts import read_wav, to_16k

    raw = folder / "raw.wav"
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True)
    return to_16k(*read_wav(raw))


def make_audio() -> dict[str, bytes]:
    """The input clips, by name: the same bytes on every run."""
    with tempfile.TemporaryDirectory() as folder:
        sentence, digits = spoken(SENTENCE, Path(folder)), spoken(DIGITS, Path(folder))
    noise = 0.05 * np.random.default_rng(0).standard_normal(len(sentence)).astype(np.float32)
    return {"sentence": wav_bytes(sentence), "digits": wav_bytes(digits), "noisy": wav_bytes(sentence + noise),
            "sentence_8k": wav_bytes(sentence[::2], 8000), "silence": wav_bytes(np.zeros(16000, np.float32)),
            "empty": b"", "not_audio": b"this is not audio at all" * 10}


# (name, method, path, form data, file name in make_audio or None)
REQUESTS: list[tuple[str, str, str, dict[str, Any], str | None]] = [
    ("models", "GET", "/v1/models", {}, None),
    ("model_alias", "GET", "/v1/models/whisper-1", {}, None),
    ("model_unknown", "GET", "/v1/models/no-such-model", {}, None),
    ("transcribe", "POST", "/transcribe", {}, "sentence"),
    ("transcribe_greedy", "POST", "/transcribe", {"beam_search": "false"}, "sentence"),
    ("transcribe_words", "POST", "/transcribe", {"word_timestamps": "true"}, "sentence"),
    ("transcribe_denoise", "POST", "/transcribe", {"denoise": "true"}, "noisy"),
    ("transcribe_8k", "POST", "/transcribe", {}, "sentence_8k"),
    ("transcribe_silence", "POST", "/transcribe", {}, "silence"),
    ("transcribe_empty", "POST", "/transcribe", {}, "empty"),
    ("transcribe_not_audio", "POST", "/transcribe", {}, "not_audio"),
    ("transcribe_no_file", "POST", "/transcribe", {}, None),
    ("transcribe_bad_bool", "POST", "/transcribe", {"beam_search": "perhaps"}, "sentence"),
    ("transcribe_unknown_model", "POST", "/transcribe", {"model": "nope"}, "sentence"),
] + [
    (f"openai_{fmt}", "POST", "/v1/audio/transcriptions", {"model": "whisper-1", "response_format": fmt}, "sentence")
    for fmt in ("json", "text", "srt", "vtt", "verbose_json")
] + [
    ("openai_bad_format", "POST", "/v1/audio/transcriptions", {"model": "whisper-1", "response_format": "xml"},
     "sentence"),
    ("openai_language", "POST", "/v1/audio/transcriptions", {"model": "whisper-1", "language": "fr"}, "sentence"),
    ("openai_greedy", "POST", "/v1/audio/transcriptions", {"model": "whisper-1", "beam_search": "false"},
     "sentence"),
    ("keywords", "POST", "/keywords", {}, "digits"),
    ("keywords_threshold", "POST", "/keywords", {"threshold": "0.2"}, "digits"),
    ("keywords_sentence", "POST", "/keywords", {}, "sentence"),
    ("keywords_bad_threshold", "POST", "/keywords", {"threshold": "2"}, "digits"),
    ("denoise", "POST", "/denoise", {}, "noisy"),
    ("denoise_8k", "POST", "/denoise", {}, "sentence_8k"),
    ("denoise_empty", "POST", "/denoise", {}, "empty"),
]

# (name, path, session.start options, audio clip, samples per frame)
STREAMS: list[tuple[str, str, dict[str, Any], str, int]] = [
    ("stream_transcribe", "/v1/stream/transcribe", {"interim_results": True}, "sentence", 1600),
    ("stream_keywords", "/v1/stream/keywords", {}, "digits", 1600),
    ("stream_denoise", "/v1/stream/denoise", {}, "noisy", 1600),
    ("stream_no_start", "/v1/stream/transcribe", None, "sentence", 1600),
]


def scrub(value: Any) -> Any:
    """``value`` without the keys in ``VOLATILE``, at any depth."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k.lower() not in VOLATILE}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def body_of(content_type: str, content: bytes) -> Any:
    if content_type.startswith("application/json"):
        return scrub(json.loads(content))
    if content_type.startswith("text/"):
        return content.decode()
    return {"sha256": hashlib.sha256(content).hexdigest(), "bytes": len(content)}


def record_request(client: httpx.Client, audio: dict[str, bytes], method: str, path: str, data: dict,
                   clip: str | None) -> dict:
    files = {"file": (f"{clip}.wav", audio[clip], "audio/wav")} if clip else None
    response = client.request(method, path, data=data or None, files=files)
    content_type = response.headers.get("content-type", "")
    return {"status": response.status_code, "content_type": content_type,
            "body": body_of(content_type, response.content)}


def record_stream(base: str, audio: dict[str, bytes], path: str, options: dict | None, clip: str,
                  frame: int) -> list:
    """Every message of one session, in order; binary messages as their hash and length."""
    with wave.open(io.BytesIO(audio[clip])) as w:
        pcm, rate = w.readframes(w.getnframes()), w.getframerate()
    messages: list = []
    with connect(base.replace("http", "ws", 1) + path, max_size=None) as ws:
        if options is not None:
            ws.send(json.dumps({"type": "session.start", "sample_rate": rate, "encoding": "pcm_s16le", **options}))
        for start in range(0, len(pcm), 2 * frame):
            ws.send(pcm[start:start + 2 * frame])
        ws.send(json.dumps({"type": "session.end"}))
        try:
            for message in ws:
                messages.append(scrub(json.loads(message)) if isinstance(message, str)
                                else {"sha256": hashlib.sha256(message).hexdigest(), "bytes": len(message)})
        except Exception as err:  # the server may close with an error code; that is part of the record
            messages.append({"closed": type(err).__name__})
    return messages


def record(source: Path, out: Path) -> None:
    audio = make_audio()
    process, base = start_server("process", None, 1, cwd=source)
    try:
        result: dict[str, Any] = {"inputs": {k: hashlib.sha256(v).hexdigest() for k, v in audio.items()}}
        with httpx.Client(base_url=base, timeout=300) as client:
            for name, method, path, data, clip in REQUESTS:
                result[name] = record_request(client, audio, method, path, data, clip)
        for name, path, options, clip, frame in STREAMS:
            result[name] = record_stream(base, audio, path, options, clip, frame)
    finally:
        process.terminate()
        process.wait(60)
    out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"{len(result) - 1} responses from {source} -> {out}")


def differences(before: Any, after: Any, where: str = "") -> list[str]:
    """Each place where ``after`` differs from ``before``, as ``path: before -> after``."""
    if isinstance(before, dict) and isinstance(after, dict):
        rows = []
        for key in sorted(set(before) | set(after)):
            if key not in after:
                rows.append(f"{where}/{key}: removed")
            elif key not in before:
                rows.append(f"{where}/{key}: added")
            else:
                rows += differences(before[key], after[key], f"{where}/{key}")
        return rows
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [row for i, (b, a) in enumerate(zip(before, after)) for row in differences(b, a, f"{where}[{i}]")]
    if before != after:
        return [f"{where}: {json.dumps(before)[:160]} -> {json.dumps(after)[:160]}"]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("record", help="start a checkout's service and record its responses")
    rec.add_argument("--source", type=Path, default=Path("."), help="the checkout whose app serves")
    rec.add_argument("--out", type=Path, required=True)
    cmp = commands.add_parser("compare", help="list the differences between two recordings")
    cmp.add_argument("before", type=Path)
    cmp.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    if args.command == "record":
        record(args.source.resolve(), args.out)
        return 0
    rows = differences(json.loads(args.before.read_text()), json.loads(args.after.read_text()))
    print("\n".join(rows) if rows else "no differences")
    print(json.dumps({"differences": len(rows)}))
    return 1 if rows else 0


if __name__ == "__main__":
    sys.exit(main())
