"""A stateful resampler for live streams whose concatenated output equals offline resampling.

Offline, :func:`app.audio.resample.resample` calls ``torchaudio.functional.resample``: a polyphase
windowed-sinc filter (Hann window, 6 zero crossings, roll-off 0.99) applied as one strided convolution over the
clip padded with ``width`` zeros in front and ``width + orig`` behind, cropped to ``round(L * new / orig)``.
That function has no state, so resampling each websocket frame on its own would click at every frame boundary.

:class:`StreamResampler` runs the very same convolution incrementally: it keeps the input not yet fully used
(the filter's history and look-ahead) and emits every output block whose input window is complete. The filter
taps come from torchaudio itself (so both paths share one kernel, and a test compares them sample by
sample); ``flush`` appends the trailing zeros and fits the total to the offline length
(:func:`model_zoo.samples.fit_length`, the rule the offline path applies).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torchaudio.functional.functional import _get_sinc_resample_kernel

from model_zoo.samples import fit_length

__all__ = ["StreamResampler"]


class StreamResampler:
    """``push(samples) -> samples at the new rate so far``; ``flush() -> the rest``; rates in Hz."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self.from_rate, self.to_rate = int(from_rate), int(to_rate)
        self.samples_in = 0
        self.samples_out = 0
        self.finished = False
        if self.from_rate == self.to_rate:
            return
        gcd = math.gcd(self.from_rate, self.to_rate)
        self._orig, self._new = self.from_rate // gcd, self.to_rate // gcd
        self._kernel, self._width = _get_sinc_resample_kernel(self.from_rate, self.to_rate, gcd,
                                                              dtype=torch.float32)
        # The offline path pads ``width`` zeros in front; the buffer starts with them.
        self._buffer = torch.zeros(self._width)

    @property
    def passthrough(self) -> bool:
        return self.from_rate == self.to_rate

    @property
    def lookahead(self) -> int:
        """Input samples that must arrive after a sample before its output can be emitted."""
        return 0 if self.passthrough else self._width + self._orig

    def push(self, samples: np.ndarray) -> np.ndarray:
        """More input ``(T,)`` float32 -> every output sample now fully determined."""
        if self.finished:
            raise RuntimeError("push after flush")
        samples = np.asarray(samples, dtype=np.float32)
        self.samples_in += len(samples)
        if self.passthrough:
            self.samples_out += len(samples)
            return samples
        self._buffer = torch.cat([self._buffer, torch.from_numpy(np.ascontiguousarray(samples))])
        return self._emit()

    def flush(self) -> np.ndarray:
        """The end of the stream: the remaining output, so the total is ``round(L * to / from)`` samples."""
        if self.finished:
            return np.zeros(0, np.float32)
        self.finished = True
        target = round(self.samples_in * self.to_rate / self.from_rate)
        if self.passthrough:
            return np.zeros(0, np.float32)
        # The offline path pads ``width + orig`` zeros behind the clip.
        self._buffer = torch.cat([self._buffer, torch.zeros(self._width + self._orig)])
        missing = target - self.samples_out
        tail = fit_length(self._emit(), missing)
        self.samples_out = target
        return tail

    def _emit(self) -> np.ndarray:
        """Convolve every block whose window is in the buffer; keep what later blocks still need."""
        taps = self._kernel.shape[-1]  # 2 * width + orig
        blocks = (self._buffer.shape[0] - taps) // self._orig + 1 if self._buffer.shape[0] >= taps else 0
        if blocks <= 0:
            return np.zeros(0, np.float32)
        used = self._buffer[: (blocks - 1) * self._orig + taps]
        out = F.conv1d(used[None, None], self._kernel, stride=self._orig)  # (1, new, blocks)
        out = out[0].transpose(0, 1).reshape(-1)
        self._buffer = self._buffer[blocks * self._orig:]
        self.samples_out += out.shape[0]
        return out.numpy()
