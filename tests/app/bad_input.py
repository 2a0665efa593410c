"""Hypothesis strategies for uploads a careless or hostile client sends, and how to send them over HTTP.

An :class:`Upload` is one request to an audio endpoint: the file's bytes, its name and part content type, the
form fields and query parameters, and how the body travels (a proper multipart body, a truncated one, a
broken boundary, or the bytes with some other ``Content-Type``). The file is drawn from:

* WAV files whose header lies: any sample rate (0, 1 Hz, coprime, 2^32 - 1), channel count (0 to 65535),
  sample width, and data size that disagree with the bytes that follow;
* raw PCM with any stated encoding, rate and channel count, of any byte length (odd lengths included), whose
  float samples may be NaN or infinite;
* real files of every container (made by ffmpeg once per session), truncated anywhere or with bytes flipped;
* zero-length, one-sample and random bytes.

Form fields mix sensible and absurd values: unknown models, models of another task, path-like model names,
NaN thresholds, unknown response formats, empty keyword lists.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field

import httpx
import numpy as np
from hypothesis import strategies as st

__all__ = ["Upload", "uploads", "wav_with_header", "request_for", "ENDPOINT_FIELDS", "INTERNALS"]

# What no error body may show, whatever was sent: a library's source file or installed path, or a traceback.
INTERNALS = re.compile(r"[/\\][\w.-]+\.(?:py|pyx|cpp|cc|cxx|c|h|hpp|so)\b|site-packages|dist-packages|Traceback")

RAW_ENCODINGS = {"pcm_s16le": "<i2", "pcm_s32le": "<i4", "pcm_f32le": "<f4"}
ODD_RATES = [0, 1, 7, 999, 1000, 8000, 11025, 16000, 44100, 44101, 48000, 383999, 384000, 384001, 2**31 - 1,
             2**32 - 1]


@dataclass(frozen=True)
class Upload:
    """One request to an audio endpoint, however wrong."""

    data: bytes
    filename: str = "clip.wav"
    part_type: str = "application/octet-stream"
    fields: dict[str, str | list[str]] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    transport: str = "multipart"  # multipart | truncated | bad_boundary | bare_body
    bare_type: str = "application/octet-stream"  # Content-Type sent with transport=bare_body
    cut: float = 0.5  # where a truncated multipart body is cut, as a fraction of its length
    # Known when the upload is valid raw PCM: the exact sample count a 200 must preserve (denoise).
    frames: int | None = None

    def describe(self) -> str:
        return (f"{self.transport} {self.filename!r} {len(self.data)} B fields={self.fields} query={self.query} "
                f"head={self.data[:48]!r}")


def wav_with_header(samples: bytes, *, rate: int, channels: int, bits: int = 16, fmt_tag: int = 1,
                    data_size: int | None = None, riff_size: int | None = None) -> bytes:
    """A RIFF/WAVE file whose header says whatever it is told, followed by ``samples`` as they are."""
    block = max(0, channels * bits // 8)
    fmt = struct.pack("<HHIIHH", fmt_tag & 0xFFFF, channels & 0xFFFF, rate & 0xFFFFFFFF,
                      (rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits & 0xFFFF)
    declared = len(samples) if data_size is None else data_size
    riff = 36 + len(samples) if riff_size is None else riff_size
    return (b"RIFF" + struct.pack("<I", riff & 0xFFFFFFFF) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data"
            + struct.pack("<I", declared & 0xFFFFFFFF) + samples)


def _pcm16(frames: int, channels: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(frames * channels) * 3000).astype("<i2").tobytes()


@st.composite
def lying_wavs(draw) -> Upload:
    rate = draw(st.sampled_from(ODD_RATES) | st.integers(0, 2**32 - 1))
    channels = draw(st.sampled_from([0, 1, 2, 3, 8, 32, 33, 255, 65535]))
    frames = draw(st.sampled_from([0, 1, 2, 160, 1600]) | st.integers(0, 4000))
    payload = _pcm16(frames, max(1, min(channels, 8)), draw(st.integers(0, 2**16)))
    header = dict(rate=rate, channels=channels,
                  bits=draw(st.sampled_from([16, 16, 0, 1, 8, 12, 24, 32, 64, 65535])),
                  fmt_tag=draw(st.sampled_from([1, 1, 3, 0, 2, 0xFFFE, 0xFFFF])),
                  data_size=draw(st.none() | st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF]) | st.integers(0, 10**6)),
                  riff_size=draw(st.none() | st.integers(0, 2**32 - 1)))
    return Upload(wav_with_header(payload, **header), "lying.wav")


@st.composite
def raw_pcm(draw) -> Upload:
    encoding = draw(st.sampled_from([*RAW_ENCODINGS, "pcm_u8", "mulaw", ""]))
    rate = draw(st.sampled_from(ODD_RATES + [-16000]) | st.integers(-10, 400000))
    channels = draw(st.sampled_from([0, 1, 2, 3, 32, 33, -1]))
    dtype = RAW_ENCODINGS.get(encoding, "<i2")
    count = draw(st.integers(0, 3000))
    if dtype == "<f4":
        specials = st.sampled_from([math.nan, math.inf, -math.inf, 1e30, -1e-45, 0.0])
        values = draw(st.lists(st.floats(-1, 1, width=32) | specials, min_size=count, max_size=count)
                      if count <= 200 else st.just(list(np.linspace(-0.5, 0.5, count))))
        data = np.array(values, "<f4").tobytes()
    else:
        data = _pcm16(count, 1, draw(st.integers(0, 2**16)))
        if dtype == "<i4":
            data = (np.frombuffer(data, "<i2").astype("<i4") * 65536).astype("<i4").tobytes()
    data = data[: len(data) - draw(st.sampled_from([0, 0, 0, 1, 3]))]  # odd byte lengths too
    fields = {"encoding": encoding, "sample_rate": str(rate), "channels": str(channels)}
    if draw(st.booleans()):
        fields.pop(draw(st.sampled_from(["sample_rate", "channels", "encoding"])))
    valid = (fields.get("encoding") in RAW_ENCODINGS and "sample_rate" in fields and 1000 <= rate <= 384000
             and 1 <= int(fields.get("channels", "1")) <= 32)
    width = int(dtype[-1]) * int(fields.get("channels", "1")) if valid else 0
    frames = len(data) // width if valid and len(data) % width == 0 and data else None
    in_query = draw(st.booleans())
    return Upload(data, "clip.pcm", fields={} if in_query else fields, query=fields if in_query else {},
                  frames=frames)


@st.composite
def damaged_files(draw, corpus: dict[str, bytes]) -> Upload:
    """A real file of some container, cut short or with bytes changed (or both)."""
    name = draw(st.sampled_from(sorted(corpus)))
    data = bytearray(corpus[name])
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    for _ in range(draw(st.integers(0, 8))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()) and data:  # splice a run of garbage in the middle
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(max_size=64))
    return Upload(bytes(data), draw(st.sampled_from([name, "clip.wav", "noextension", "x.mp3"])))


def odd_sizes() -> st.SearchStrategy[Upload]:
    one_sample = wav_with_header(b"\x10\x00", rate=16000, channels=1)
    # One sample at 48 kHz is none at the models' 16 kHz: this once hung a worker (an FFT of length 0).
    one_fast_sample = wav_with_header(b"\x10\x00", rate=48000, channels=1)
    header_only = wav_with_header(b"", rate=16000, channels=1)
    return st.sampled_from([
        Upload(b""), Upload(b"\x00"), Upload(one_sample), Upload(one_fast_sample), Upload(header_only), Upload(b"RIFF"),
        Upload(b"\x10\x00", "clip.pcm", fields={"encoding": "pcm_s16le", "sample_rate": "16000"}, frames=1),
        Upload(b"\x10\x00", "clip.pcm", fields={"encoding": "pcm_s16le", "sample_rate": "44100"}),
    ]) | st.binary(max_size=512).map(Upload)


MODELS = ["asr", "kws", "denoise", "nope", "", "../../../etc/passwd", "/tmp/x.json", "asr.json", "whisper-1",
          "gpt-4o-transcribe", "ASR", "asr\x00", "%2e%2e%2f", "a" * 300]
NUMBERS = ["0", "1", "-1", "0.5", "nan", "NaN", "inf", "-inf", "1e309", "", "abc", "0x10", "1" * 40, "1e-300"]
BOOLS = ["true", "false", "1", "0", "yes", "maybe", ""]

# Per endpoint: field -> strategy of the values sent as that form field.
ENDPOINT_FIELDS: dict[str, dict[str, st.SearchStrategy]] = {
    "/transcribe": {"model": st.sampled_from(MODELS), "word_timestamps": st.sampled_from(BOOLS),
                    "beam_search": st.sampled_from(BOOLS), "denoise": st.sampled_from(BOOLS),
                    "denoise_model": st.sampled_from(MODELS)},
    "/v1/audio/transcriptions": {
        "model": st.sampled_from(MODELS),
        "response_format": st.sampled_from(["json", "text", "srt", "vtt", "verbose_json", "xml", ""]),
        "timestamp_granularities[]": st.lists(st.sampled_from(["word", "segment", "frame", ""]), max_size=3),
        "temperature": st.sampled_from(NUMBERS), "language": st.text(max_size=8), "prompt": st.text(max_size=40),
        "stream": st.sampled_from(BOOLS)},
    "/denoise": {"model": st.sampled_from(MODELS), "response_format": st.sampled_from(["wav", "flac", "pcm", "mp3", ""])},
    "/keywords": {"model": st.sampled_from(MODELS), "threshold": st.sampled_from(NUMBERS),
                  "hop": st.sampled_from(NUMBERS + ["0.01", "0.25"]),
                  "keywords[]": st.lists(st.sampled_from(["yes", "no", "up", "_silence_", "_unknown_", "", "x" * 500]),
                                         max_size=4)},
}


@st.composite
def uploads(draw, endpoint: str, corpus: dict[str, bytes]) -> Upload:
    """One bad (or occasionally good) request for ``endpoint``."""
    upload = draw(st.one_of(lying_wavs(), raw_pcm(), damaged_files(corpus), odd_sizes(),
                            st.sampled_from(sorted(corpus)).map(lambda name: Upload(corpus[name], name))))
    extra = {}
    for name, values in ENDPOINT_FIELDS[endpoint].items():
        if draw(st.integers(0, 3)) == 0:  # each option present a quarter of the time
            extra[name] = draw(values)
    transport = draw(st.sampled_from(["multipart"] * 6 + ["truncated", "bad_boundary", "bare_body"]))
    return Upload(upload.data, upload.filename, draw(st.sampled_from(["application/octet-stream", "audio/wav",
                                                                     "text/plain", "", "x/\x7f"])),
                  {**upload.fields, **extra}, upload.query, transport,
                  draw(st.sampled_from(["application/octet-stream", "application/json", "text/plain",
                                        "multipart/form-data", "multipart/form-data; boundary=",
                                        "application/x-www-form-urlencoded", "audio/wav"])),
                  draw(st.floats(0, 1)), upload.frames)


def request_for(client: httpx.Client, endpoint: str, upload: Upload) -> httpx.Request:
    """The HTTP request that ``upload`` describes (the body mangled as its transport says)."""
    part_type = upload.part_type if all(32 <= ord(c) < 127 for c in upload.part_type) else "application/octet-stream"
    proper = client.build_request("POST", endpoint, params=upload.query, data=upload.fields,
                                  files={"file": (upload.filename, upload.data, part_type or None)})
    body = proper.read()
    if upload.transport == "multipart":
        return proper
    headers = {k: v for k, v in proper.headers.items() if k.lower() not in ("content-length", "content-type")}
    if upload.transport == "truncated":
        body, content_type = body[: int(len(body) * upload.cut)], proper.headers["content-type"]
    elif upload.transport == "bad_boundary":
        content_type = "multipart/form-data; boundary=not-the-one-used"
    else:
        body, content_type = upload.data, upload.bare_type
    return client.build_request("POST", endpoint, params=upload.query, content=body,
                                headers={**headers, "Content-Type": content_type})
