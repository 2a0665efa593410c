"""Wyoming's audio: ``rate``, ``width`` (bytes per sample) and ``channels`` in every ``audio-start`` and
``audio-chunk``, little-endian signed PCM in the payload. Converted by :mod:`app.audio` (the one PCM codec, the
raw-PCM decode of uploads, the resamplers), never by a codec of our own.

Widths 2 and 4 (16- and 32-bit) are the codec's; 1 (unsigned 8-bit) and 3 (24-bit) are refused. Channels are
averaged to mono, as uploads are. A transcription accepts any rate an upload does; a wake-word stream is
resampled as it arrives, at the rates of the websocket streams (:data:`STREAM_SAMPLE_RATES`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..audio.decode import RawFormat
from ..audio.pcm import PcmCodec
from ..streaming.messages import STREAM_SAMPLE_RATES

__all__ = ["WIDTHS", "MAX_CHANNELS", "Format", "format_problem", "MonoDecoder"]

WIDTHS = {2: "pcm_s16le", 4: "pcm_s32le"}
MAX_CHANNELS = 8
MAX_RATE = 384_000


@dataclass(frozen=True)
class Format:
    rate: int
    width: int
    channels: int

    @classmethod
    def of(cls, data: dict) -> Format:
        """From an ``audio-start`` or ``audio-chunk``'s data; KeyError when a field is missing."""
        return cls(data["rate"], data["width"], data["channels"])

    @property
    def raw(self) -> RawFormat:
        return RawFormat(WIDTHS[self.width], self.rate, self.channels)  # type: ignore[arg-type]

    @property
    def frame_bytes(self) -> int:
        return self.width * self.channels

    def __str__(self) -> str:
        return f"{self.rate} Hz, {self.width} byte(s), {self.channels} channel(s)"


def format_problem(fmt: Format, live: bool) -> str | None:
    """Why ``fmt`` cannot be used (None: it can); ``live``: resampled as it arrives (wake words)."""
    for name in ("rate", "width", "channels"):
        value = getattr(fmt, name)
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{name} must be an integer"
    if fmt.width not in WIDTHS:
        return f"width {fmt.width} is not supported: send 16-bit (width 2) or 32-bit (width 4) PCM"
    if not 1 <= fmt.channels <= MAX_CHANNELS:
        return f"channels must be 1 to {MAX_CHANNELS}"
    if live and fmt.rate not in STREAM_SAMPLE_RATES:
        return f"rate {fmt.rate} is not supported for wake words: use one of {', '.join(map(str, STREAM_SAMPLE_RATES))}"
    if not 1000 <= fmt.rate <= MAX_RATE:
        return f"rate must be 1000 to {MAX_RATE} Hz"
    return None


class MonoDecoder:
    """Payloads of any size (a frame split across chunks is fine) -> mono float32 at the stream's rate."""

    def __init__(self, fmt: Format) -> None:
        self.codec, self.channels = PcmCodec(WIDTHS[fmt.width]), fmt.channels
        self._rest = np.zeros(0, np.float32)

    def decode(self, payload: bytes) -> np.ndarray:
        samples = self.codec.decode(payload)
        if self.channels == 1:
            return samples
        samples = np.concatenate([self._rest, samples]) if len(self._rest) else samples
        whole = len(samples) - len(samples) % self.channels
        self._rest = samples[whole:]
        return samples[:whole].reshape(-1, self.channels).mean(axis=1, dtype=np.float32)
