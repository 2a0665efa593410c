"""Plain PCM WAV without FFmpeg: the header read here, the samples decoded as raw PCM (:mod:`.pcm`).

Why: opening any upload with FFmpeg (torchcodec's ``AudioDecoder``) costs about 2.5 ms of CPU for probing alone,
more than the keyword model spends on a one-second clip in a batch, and it runs in the single HTTP process. A
16-bit, 32-bit or float WAV is raw PCM behind a few dozen header bytes, and the most common upload of API
clients. Anything else (8- or 24-bit, WAVE_FORMAT_EXTENSIBLE, compressed, a data size that does not match the
file) returns ``None`` and goes to FFmpeg as before, so this only ever takes the easy case.
"""

from __future__ import annotations

import struct

from .decode import RawFormat
from .pcm import sample_bytes

__all__ = ["split_pcm_wav"]

_PCM, _FLOAT = 1, 3
_ENCODINGS = {(_PCM, 16): "pcm_s16le", (_PCM, 32): "pcm_s32le", (_FLOAT, 32): "pcm_f32le"}
# The raw-PCM form fields accept these rates; outside them FFmpeg decides, as for any other upload.
_RATES = range(1000, 384001)


def split_pcm_wav(data: bytes) -> tuple[RawFormat, bytes] | None:
    """``(format, sample bytes)`` of a plain PCM WAV, else ``None`` (not a WAV, or not one read here)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    fmt: RawFormat | None = None
    position = 12
    while position + 8 <= len(data):
        chunk_id, size = data[position:position + 4], struct.unpack_from("<I", data, position + 4)[0]
        body = position + 8
        if chunk_id == b"fmt ":
            fmt = _read_fmt(data[body:body + size])
            if fmt is None:
                return None
        elif chunk_id == b"data":
            frame_bytes = _frame_bytes(fmt) if fmt is not None else 0
            # A streaming writer's placeholder size, a cut-off file or a partial frame: FFmpeg copes with those.
            if not frame_bytes or body + size > len(data) or size % frame_bytes:
                return None
            return fmt, data[body:body + size]
        position = body + size + (size & 1)  # chunks are padded to an even length
    return None


def _read_fmt(chunk: bytes) -> RawFormat | None:
    if len(chunk) < 16:
        return None
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", chunk)
    encoding = _ENCODINGS.get((tag, bits))
    if encoding is None or not 1 <= channels <= 32 or rate not in _RATES or block_align != channels * bits // 8:
        return None
    return RawFormat(encoding, rate, channels)


def _frame_bytes(fmt: RawFormat) -> int:
    return sample_bytes(fmt.encoding) * fmt.channels
