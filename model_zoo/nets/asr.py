"""Speech recognition: a CTC network over characters (``ASR_VOCAB``: blank, space, apostrophe, a-z).

Front end, selectable: ``"mel"`` (default) is an 80-band log-mel spectrogram (torchaudio, 25 ms window, 10 ms
hop, no centring so it is causal) followed by a strided convolution to 30 ms frames; ``"waveform"`` is the
paper's purely state-space front end, SSM stages with strided downsampling straight from the raw waveform to
20 ms frames. The default is mel because on a 2-core CPU it trains several times faster per step (the
first waveform stages run at 16 kHz), and the training budget here is two hours.

Body: pre-norm residual blocks, each an SSM sublayer and a pointwise feed-forward sublayer. Head: LayerNorm and
a 1x1 projection to the vocabulary. Everything is causal, so padding at the end of a clip never changes earlier
frames, and streaming reproduces ``forward`` exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..vocab import ASR_VOCAB
from .blocks import (HOP, WINDOW, ChannelNorm, Downsample, LayerSpec, LogMel, Pointwise, SpecAugment, SSMStage,
                     StreamingSequential)

__all__ = ["ASRConfig", "ASRNet", "ASR_SIZES"]


@dataclass
class ASRConfig:
    frontend: str = "mel"
    n_mels: int = 80
    subsample: int = 3  # mel frames (10 ms) per output frame
    waveform_channels: tuple[int, ...] = (32, 64, 128, 192)
    waveform_factors: tuple[int, ...] = (4, 4, 4, 5)  # product: samples per output frame
    width: int = 160
    depth: int = 6
    layer: LayerSpec = field(default_factory=lambda: LayerSpec(mode="dws", state_dim=16, dt_min=1e-2, dt_max=1.0))
    ffn_multiplier: int = 2
    dropout: float = 0.0
    spec_augment: bool = False  # mask the mel features while training (blocks.SpecAugment); off keeps old layouts
    vocab: tuple[str, ...] = ASR_VOCAB
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        self.waveform_channels, self.waveform_factors = tuple(self.waveform_channels), tuple(self.waveform_factors)
        self.vocab = tuple(self.vocab)
        if isinstance(self.layer, dict):
            self.layer = LayerSpec(**self.layer)
        if self.frontend not in ("mel", "waveform"):
            raise ValueError(f"frontend must be 'mel' or 'waveform', not {self.frontend!r}")
        if self.frontend == "waveform" and math.prod(self.waveform_factors) != 160 * self.subsample:
            raise ValueError("waveform_factors must multiply to 160 * subsample samples per frame")


ASR_SIZES: dict[str, ASRConfig] = {
    # Four blocks rather than six: a 20 ms chunk streams 22% faster at the same parameters, because at one frame
    # per block step the cost is per call (bench/README.md). Width 256 (1.44M parameters): the 192-wide network
    # (833k) ended its training run underfit (train loss 0.93), and width costs streaming little (CPU time per
    # 20 ms chunk, one thread: 42x real time at 192, 37x at 256, 31x at 320).
    "small": ASRConfig(width=256, depth=4),
    "tiny": ASRConfig(width=64, depth=2, n_mels=40),
    # About 30M parameters like the paper's recognizer, with its purely state-space front end.
    "paper": ASRConfig(frontend="waveform", subsample=2, width=768, depth=10, dropout=0.1, layer=LayerSpec(),
                       waveform_channels=(64, 128, 256, 512)),
}

class ResidualSSMBlock(nn.Module):
    """``x + SiLU(SSM(norm(x)))`` then ``x + FFN(norm(x))``: ``(B, D, L) -> (B, D, L)``."""

    def __init__(self, spec: LayerSpec, width: int, ffn_multiplier: int, dropout: float) -> None:
        super().__init__()
        self.ssm_norm, self.ssm = ChannelNorm(width), spec.build(width, width)
        self.ffn = nn.Sequential(
            ChannelNorm(width), Pointwise(width, ffn_multiplier * width), nn.SiLU(),
            Pointwise(ffn_multiplier * width, width),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.dropout(nn.functional.silu(self.ssm(self.ssm_norm(x))))
        return x + self.dropout(self.ffn(x))

    def init_state(self, batch_size: int, device=None, dtype=None):
        return self.ssm.init_state(batch_size, device=device, dtype=dtype)

    def step(self, x: Tensor, state) -> tuple[Tensor, object]:
        if self.training:
            y, state = self.ssm.step(self.ssm_norm(x), state)
            x = x + self.dropout(nn.functional.silu(y))
            return x + self.dropout(self.ffn(x)), state
        # Inference: the same maths with the children's forward called directly and no dropout. A 20 ms chunk
        # is one frame here, so module calls, not arithmetic, are the cost (bench/README.md).
        norm, expand, _, project = self.ffn
        y, state = self.ssm.step(self.ssm_norm.forward(x), state)
        x = x + nn.functional.silu(y)
        return x + project.forward(nn.functional.silu(expand.forward(norm.forward(x)))), state


class ASRNet(nn.Module):
    """``forward``: waveform ``(B, L)`` -> CTC logits ``(B, vocab, frames)``, one frame per ``frame_seconds``
    (30 ms: 10 ms mel hop times ``subsample`` 3)."""

    def __init__(self, config: ASRConfig) -> None:
        super().__init__()
        self.config = config
        if config.frontend == "mel":
            frontend: list[nn.Module] = [
                LogMel(config.n_mels, config.sample_rate), nn.BatchNorm1d(config.n_mels),
                *([SpecAugment()] if config.spec_augment else []),
                Downsample(config.n_mels, config.width, config.subsample),
            ]
        else:
            frontend, previous = [], 1
            for channels, factor in zip(config.waveform_channels, config.waveform_factors):
                frontend += [SSMStage(config.layer, previous, channels), Downsample(channels, channels, factor)]
                previous = channels
            frontend.append(Pointwise(previous, config.width))
        blocks = [ResidualSSMBlock(config.layer, config.width, config.ffn_multiplier, config.dropout)
                  for _ in range(config.depth)]
        head = [ChannelNorm(config.width), Pointwise(config.width, len(config.vocab))]
        self.net = StreamingSequential(*frontend, *blocks, *head)

    @property
    def frame_seconds(self) -> float:
        return HOP * self.config.subsample / self.config.sample_rate

    @property
    def algorithmic_latency(self) -> int:
        """Samples from the start of an output frame until all its input has arrived."""
        if self.config.frontend == "mel":
            return WINDOW + HOP * (self.config.subsample - 1)
        return math.prod(self.config.waveform_factors) - 1

    def output_lengths(self, input_lengths: Tensor) -> Tensor:
        """Valid output frames for clips of ``input_lengths`` samples (padding comes after, so it is harmless)."""
        if self.config.frontend == "mel":
            mel_frames = torch.where(input_lengths >= WINDOW, (input_lengths - WINDOW) // HOP + 1, 0)
            return mel_frames // self.config.subsample
        return input_lengths // math.prod(self.config.waveform_factors)

    def forward(self, waveform: Tensor) -> Tensor:
        """``(B, L)`` -> ``(B, vocab, frames)``; a clip too short for one frame gives zero frames."""
        if int(self.output_lengths(torch.tensor(waveform.shape[-1]))) == 0:
            return waveform.new_zeros(waveform.shape[0], len(self.config.vocab), 0)
        x = waveform if self.config.frontend == "mel" else waveform[:, None, :]
        return self.net(x)

    def init_state(self, batch_size: int, device=None, dtype=None) -> list:
        return self.net.init_state(batch_size, device, dtype)

    def step(self, waveform: Tensor, state: list) -> tuple[Tensor, list]:
        """Chunk ``(B, T)`` -> logits of the frames completed ``(B, vocab, F)`` and the new state."""
        x = waveform if self.config.frontend == "mel" else waveform[:, None, :]
        y, state = self.net.step(x, state)
        if y.shape[-1] == 0:
            y = waveform.new_zeros(waveform.shape[0], len(self.config.vocab), 0)
        return y, state
