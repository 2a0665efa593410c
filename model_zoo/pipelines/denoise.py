"""Denoising rules: the enhancer's block, and the end of a stream. The output has as many samples as the input.

The enhancer works in blocks of ``block_length`` samples (its coarsest frame, :attr:`DenoiseNet.block_length
<model_zoo.nets.denoise.DenoiseNet.block_length>`). A whole clip is padded to a multiple of the block and cropped
back by the network's ``forward`` itself; a batch padded to the block at once (:func:`padded_length`) is not
padded again. A stream emits whole blocks as they complete; at its end the last, partial block is completed
with zeros and cropped (:func:`stream_end`), so a stream's output and a clip's agree sample for sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["NOISY_SHARE_FOR_RECOGNIZER", "for_recognizer", "padded_length", "stream_end"]

# What the recognizer hears when a transcription asks to denoise first: half the input put back. The enhanced
# audio alone made transcripts worse (real Asterisk sentences in held-out noise at 0/5/10 dB, 60 sentences,
# beam-search WER: noisy 83.2%, denoised 85.8%, a quarter of the input back 83.4%, half back 82.5%;
# bench/denoise_asr.py): the recognizer trained on noisy speech knows residual noise, not the enhancer's
# artefacts. Re-measure when either network is retrained.
NOISY_SHARE_FOR_RECOGNIZER = 0.5


def padded_length(model: nn.Module, length: int) -> int:
    """``length`` samples rounded up to a whole number of the enhancer's blocks."""
    block = int(model.block_length)
    return length + -length % block


def stream_end(model: nn.Module, state: Any, kept: list[np.ndarray], samples_in: int,
               samples_out: int) -> tuple[np.ndarray, Any]:
    """The rest of a stream's output at its end, and the state after it.

    ``kept``: outputs ``(T_i,)`` held back so far (a long upload keeps them all; a live stream none);
    ``samples_in``: the samples the stream took; ``samples_out``: those already handed out. The last block is
    completed with zeros (``model.flush``) -> ``(samples_in - samples_out,)`` float32, so the stream's output
    totals its input.
    """
    with torch.inference_mode():
        tail, state = model.flush(state)
    rest = np.concatenate([*kept, tail[0].float().cpu().numpy()])
    return rest[: samples_in - samples_out], state


def for_recognizer(noisy: np.ndarray, denoised: np.ndarray) -> np.ndarray:
    """The audio a recognizer is given after denoising: ``(T,)`` noisy and enhanced at one rate -> ``(T,)``
    float32, :data:`NOISY_SHARE_FOR_RECOGNIZER` of the input mixed back in."""
    share = NOISY_SHARE_FOR_RECOGNIZER
    return (share * noisy + (1.0 - share) * denoised).astype(np.float32, copy=False)
