"""Uploads to audio: decode any container FFmpeg knows (or raw PCM), downmix, validate.

Decoding uses torchcodec's ``AudioDecoder`` straight from bytes (Debian's FFmpeg underneath: WAV, FLAC, Ogg
Vorbis, Opus, MP3, WebM, M4A, ...). Raw PCM has no header, so the caller states encoding, rate and channels.
This is CPU work that the routes run in a thread, off the event loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..errors import AudioDecodeError, BadRequest, PayloadTooLarge
from .pcm import PcmEncoding, pcm_to_float, sample_bytes

__all__ = ["Audio", "RawFormat", "decode"]


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
    """``(channels, L)`` float32 of interleaved raw PCM."""
    frame_bytes = sample_bytes(raw.encoding) * raw.channels
    if len(data) % frame_bytes:
        raise BadRequest(f"{len(data)} bytes is not a whole number of {raw.encoding} frames of {raw.channels} "
                         f"channel(s)", code="invalid_audio", param="file")
    flat = torch.from_numpy(pcm_to_float(data, raw.encoding))
    return flat.reshape(-1, raw.channels).T, raw.sample_rate


def _decode_container(data: bytes, max_seconds: float | None) -> tuple[torch.Tensor, int]:
    from torchcodec.decoders import AudioDecoder

    try:
        decoder = AudioDecoder(data)
    except (RuntimeError, ValueError) as err:
        raise AudioDecodeError(f"could not decode the audio: {_reason(err)}", param="file") from err
    # Refuse long files from the header before paying for the full decode.
    header = decoder.metadata.duration_seconds_from_header
    if max_seconds is not None and header is not None and header > max_seconds * 1.01 + 1:
        raise _too_long(header, max_seconds)
    try:
        decoded = decoder.get_all_samples()
    except (RuntimeError, ValueError) as err:
        raise AudioDecodeError(f"could not decode the audio: {_reason(err)}", param="file") from err
    return decoded.data.to(torch.float32), int(decoded.sample_rate)


# torchcodec's errors start with the C++ function and source location ("SingleStreamDecoder, /__w/torchcodec/.../
# SingleStreamDecoder.cpp:70, Failed to open input buffer: End of file"): internals no client should see.
_SOURCE_LOCATION = re.compile(r"^[^,]*,\s*\S+\.(?:cpp|cc|cxx|c|h|hpp):\d+,\s*")


def _reason(err: Exception) -> str:
    """FFmpeg's reason, in a few words: no source location, no function name, no advice about torchcodec's own
    parameters ("No audio frames were decoded. This is probably because start_seconds is too high(0)...")."""
    text = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
    text = _SOURCE_LOCATION.sub("", text).rsplit(": ", 1)[-1]  # FFmpeg's own reason is the last clause
    text = text.split(". ")[0].strip(" .")
    if "stream is unknown" in text:  # "The best audio stream is unknown and there is no specified stream"
        text = "no audio stream found"
    if not text or re.search(r"[/\\][\w.-]+[/\\]", text):  # a path left in: say nothing of it
        return "not a supported audio format"
    return text[:1].lower() + text[1:] if text[1:2].islower() else text
