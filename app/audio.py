"""Audio in and out: decode any container FFmpeg knows (or raw PCM), downmix, resample, validate; encode.

Decoding uses torchcodec's ``AudioDecoder`` straight from bytes (Debian's FFmpeg underneath: WAV, FLAC, Ogg
Vorbis, Opus, MP3, WebM, M4A, ...). Raw PCM has no header, so the caller states encoding, rate and channels.
Everything here is CPU work that the routes run in a thread, off the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import torch
import torchaudio

from .errors import AudioDecodeError, BadRequest, PayloadTooLarge

__all__ = ["Audio", "RawFormat", "decode", "resample", "resampling_rates", "encode", "warm_up", "PCM_ENCODINGS",
           "OUTPUT_FORMATS"]

PCM_ENCODINGS: dict[str, tuple[torch.dtype, float]] = {
    # encoding -> (little-endian dtype, scale to [-1, 1])
    "pcm_s16le": (torch.int16, 2.0**15),
    "pcm_s32le": (torch.int32, 2.0**31),
    "pcm_f32le": (torch.float32, 1.0),
}
PcmEncoding = Literal["pcm_s16le", "pcm_s32le", "pcm_f32le"]
OUTPUT_FORMATS = {"wav": "audio/wav", "flac": "audio/flac", "pcm": "audio/pcm"}


@dataclass(frozen=True)
class RawFormat:
    """What a headerless upload contains: interleaved little-endian samples."""

    encoding: PcmEncoding
    sample_rate: int
    channels: int = 1


@dataclass(frozen=True)
class Audio:
    """A mono clip: ``samples (L,)`` float32 in [-1, 1] at ``sample_rate``; ``channels`` it arrived with."""

    samples: torch.Tensor
    sample_rate: int
    channels: int

    @property
    def duration(self) -> float:
        return self.samples.shape[-1] / self.sample_rate


def decode(data: bytes, *, raw: RawFormat | None = None, max_seconds: float | None = None) -> Audio:
    """Bytes -> mono :class:`Audio` at the file's own rate. Raises 415 (undecodable), 400 (empty, NaN/inf),
    413 (longer than ``max_seconds``)."""
    if not data:
        raise BadRequest("the uploaded file is empty", code="empty_audio", param="file")
    samples, rate = _decode_raw(data, raw) if raw is not None else _decode_container(data, max_seconds)
    if samples.numel() == 0 or samples.shape[-1] == 0:
        raise BadRequest("the audio contains no samples", code="empty_audio", param="file")
    if not bool(torch.isfinite(samples).all()):
        raise BadRequest("the audio contains NaN or infinite samples", code="invalid_audio", param="file")
    if max_seconds is not None and samples.shape[-1] / rate > max_seconds:
        raise _too_long(samples.shape[-1] / rate, max_seconds)
    channels = samples.shape[0]
    # Downmix by averaging: keeps the level of a mono source recorded on two identical channels.
    mono = samples.mean(dim=0) if channels > 1 else samples[0]
    return Audio(mono.contiguous(), rate, channels)


def _too_long(seconds: float, limit: float) -> PayloadTooLarge:
    return PayloadTooLarge(f"audio is {seconds:.1f} s long; the limit is {limit:g} s", code="audio_too_long",
                           param="file")


def _decode_raw(data: bytes, raw: RawFormat) -> tuple[torch.Tensor, int]:
    dtype, scale = PCM_ENCODINGS[raw.encoding]
    frame_bytes = dtype.itemsize * raw.channels
    if len(data) % frame_bytes:
        raise BadRequest(f"{len(data)} bytes is not a whole number of {raw.encoding} frames of {raw.channels} "
                         f"channel(s)", code="invalid_audio", param="file")
    # bytearray: frombuffer wants a writable buffer; the copy is one pass over the upload.
    flat = torch.frombuffer(bytearray(data), dtype=dtype)
    samples = flat.reshape(-1, raw.channels).T.to(torch.float32) / scale
    return samples, raw.sample_rate


def _decode_container(data: bytes, max_seconds: float | None) -> tuple[torch.Tensor, int]:
    from torchcodec.decoders import AudioDecoder

    try:
        decoder = AudioDecoder(data)
    except (RuntimeError, ValueError) as err:
        raise AudioDecodeError(f"cannot decode the upload as audio: {_first_line(err)}", param="file") from err
    # Refuse long files from the header before paying for the full decode.
    header = decoder.metadata.duration_seconds_from_header
    if max_seconds is not None and header is not None and header > max_seconds * 1.01 + 1:
        raise _too_long(header, max_seconds)
    try:
        decoded = decoder.get_all_samples()
    except (RuntimeError, ValueError) as err:
        raise AudioDecodeError(f"cannot decode the audio stream: {_first_line(err)}", param="file") from err
    return decoded.data.to(torch.float32), int(decoded.sample_rate)


def _first_line(err: Exception) -> str:
    """FFmpeg errors come with a C++ source location first; the reason is the last clause."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text.rsplit(": ", 1)[-1] if ".cpp:" in text else text


# torchaudio's sinc kernel has to/g rows of from/g + 2 width taps (g = gcd of the rates): 44100 -> 16000 Hz is
# 160 x 455, but a coprime rate such as 44101 Hz needs 16000 x 44135 floats (2.8 GB) and 383999 Hz 24 GB, which
# a client can ask for with one header. Past this many kernel cells the ratio is approximated instead.
_EXACT_RATIO_CELLS = 1_000_000
_APPROXIMATE_TERMS = 1000


def resampling_rates(from_rate: int, to_rate: int) -> tuple[int, int]:
    """The rates to give the sinc filter: the true ones when their reduced ratio is small (every common rate),
    else the nearest ratio with both terms at most 1000, a speed change below 0.1% that no one hears."""
    exact = Fraction(to_rate, from_rate)
    if exact.numerator * exact.denominator <= _EXACT_RATIO_CELLS:
        return from_rate, to_rate
    # Approximate the ratio below 1, so numerator and denominator are both bounded.
    near = (exact.limit_denominator(_APPROXIMATE_TERMS) if exact < 1
            else 1 / (1 / exact).limit_denominator(_APPROXIMATE_TERMS))
    return near.denominator, near.numerator


def resample(samples: torch.Tensor, from_rate: int, to_rate: int) -> torch.Tensor:
    """``(..., L)`` at ``from_rate`` -> ``(..., round(L * to_rate / from_rate))`` at ``to_rate``.

    Raises 400 when a non-empty clip would become empty (one sample at 44.1 kHz is none at 16 kHz): the networks
    need at least one sample, and a zero-length input must never reach them.
    """
    if from_rate == to_rate:
        return samples
    if samples.shape[-1] and round(samples.shape[-1] * to_rate / from_rate) == 0:
        raise BadRequest(f"the audio is too short: {samples.shape[-1]} sample(s) at {from_rate} Hz is less than one "
                         f"sample at {to_rate} Hz", code="audio_too_short", param="file")
    out = torchaudio.functional.resample(samples, *resampling_rates(from_rate, to_rate))
    target = round(samples.shape[-1] * to_rate / from_rate)
    # resample's length is ceil(); keep durations exact to the sample so round trips preserve length.
    return out[..., :target] if out.shape[-1] >= target else torch.nn.functional.pad(out, (0, target - out.shape[-1]))


def encode(samples: torch.Tensor, sample_rate: int, fmt: str) -> bytes:
    """Mono ``(L,)`` float -> WAV (16-bit PCM), FLAC (16-bit) or raw little-endian 16-bit PCM bytes."""
    clipped = samples.detach().float().clamp(-1.0, 1.0)
    if fmt == "pcm":
        return (clipped * 32767.0).round().to(torch.int16).numpy().tobytes()
    if fmt not in ("wav", "flac"):
        raise BadRequest(f"unknown audio format {fmt!r}", code="invalid_parameter", param="response_format")
    from torchcodec.encoders import AudioEncoder

    return bytes(AudioEncoder(clipped[None], sample_rate=sample_rate).to_tensor(fmt).numpy())


def warm_up() -> None:
    """Decode, resample and encode a short clip once: the first FFmpeg call loads its libraries (seconds)."""
    clip = torch.zeros(1600)
    audio = decode(encode(clip, 16000, "wav"))
    encode(resample(audio.samples, 16000, 8000), 8000, "flac")
