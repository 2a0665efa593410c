"""Speech denoising: an hourglass (U-Net) of SSM stages on the raw waveform, causal, ``(B, L) -> (B, L)``.

Encoder level k: SSM stage (LayerNorm over channels, SiLU) whose output is kept as the skip, then a strided
downsampling by ``factors[k]``. Bottleneck: two s5 stages. Decoder level k (reverse order): upsampling
(1x1 convolution to ``r * C`` channels unfolded in time), plus the skip, then an SSM stage. Output: an SSM stage
and a final linear SSM layer to one channel, added to the input (the network predicts the correction).

Algorithmic latency: an output sample needs the whole coarsest frame it belongs to, so up to
``prod(factors) - 1`` samples of look-ahead. ``forward`` pads a clip to a multiple of ``prod(factors)`` and
crops; streaming emits output in blocks of ``prod(factors)`` samples and ``flush`` completes the last block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import Downsample, LayerSpec, SSMStage, Upsample

__all__ = ["DenoiseConfig", "DenoiseNet", "DENOISE_SIZES"]


@dataclass
class DenoiseConfig:
    channels: tuple[int, ...] = (16, 32, 64, 96)
    factors: tuple[int, ...] = (4, 4, 2, 2)
    layer: LayerSpec = field(default_factory=lambda: LayerSpec(mode="dws", state_dim=16))
    bottleneck: LayerSpec = field(default_factory=lambda: LayerSpec(mode="s5", state_dim=16, blocks=4))
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        self.channels, self.factors = tuple(self.channels), tuple(self.factors)
        if isinstance(self.layer, dict):
            self.layer = LayerSpec(**self.layer)
        if isinstance(self.bottleneck, dict):
            self.bottleneck = LayerSpec(**self.bottleneck)
        if len(self.channels) != len(self.factors):
            raise ValueError("channels and factors need one entry per level")


DENOISE_SIZES: dict[str, DenoiseConfig] = {
    "small": DenoiseConfig(),
    # aTENNuate's widths and factors (centaurus.md).
    "paper": DenoiseConfig(channels=(16, 32, 64, 96, 128, 256), factors=(4, 4, 2, 2, 2, 2)),
}


class DenoiseNet(nn.Module):
    """``forward``: noisy waveform ``(B, L)`` -> enhanced waveform ``(B, L)``."""

    def __init__(self, config: DenoiseConfig) -> None:
        super().__init__()
        self.config = config
        chans = config.channels
        self.encoder = nn.ModuleList()
        self.down = nn.ModuleList()
        previous = 1
        for channels, factor in zip(chans, config.factors):
            self.encoder.append(SSMStage(config.layer, previous, channels))
            self.down.append(Downsample(channels, channels, factor))
            previous = channels
        self.bottleneck = nn.ModuleList([SSMStage(config.bottleneck, previous, previous) for _ in range(2)])
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for channels, factor in reversed(list(zip(chans, config.factors))):
            self.up.append(Upsample(previous, channels, factor))
            self.decoder.append(SSMStage(config.layer, channels, channels))
            previous = channels
        self.out_stage = SSMStage(config.layer, previous, previous)
        self.out_layer = config.layer.build(previous, 1)

    @property
    def block_length(self) -> int:
        """Samples per coarsest frame: inputs are padded to, and streams emit, multiples of this."""
        return math.prod(self.config.factors)

    @property
    def algorithmic_latency(self) -> int:
        return self.block_length - 1

    def forward(self, noisy: Tensor) -> Tensor:
        """``(B, L)`` -> ``(B, L)``; L need not be a multiple of :attr:`block_length` (padded, then cropped)."""
        length = noisy.shape[-1]
        x = F.pad(noisy, (0, -length % self.block_length))[:, None, :]
        skips = []
        h = x
        for stage, down in zip(self.encoder, self.down):
            h = stage(h)
            skips.append(h)
            h = down(h)
        for stage in self.bottleneck:
            h = stage(h)
        for up, stage, skip in zip(self.up, self.decoder, reversed(skips)):
            h = stage(up(h) + skip)
        y = self.out_layer(self.out_stage(h)) + x
        return y[:, 0, :length]

    # ---- streaming ---------------------------------------------------------------------------------------------
    def init_state(self, batch_size: int, device=None, dtype=None) -> dict:
        ref = next(self.parameters())
        device, dtype = device or ref.device, dtype or ref.dtype
        init = lambda m: m.init_state(batch_size, device=device, dtype=dtype)  # noqa: E731
        return {
            "encoder": [init(m) for m in self.encoder],
            "down": [init(m) for m in self.down],
            "bottleneck": [init(m) for m in self.bottleneck],
            "decoder": [init(m) for m in self.decoder],
            # Skip frames wait here until the decoder's upsampled frames catch up.
            "skips": [torch.zeros(batch_size, c, 0, device=device, dtype=dtype) for c in self.config.channels],
            # Input samples wait for their output, for the residual connection.
            "input": torch.zeros(batch_size, 1, 0, device=device, dtype=dtype),
            "out_stage": init(self.out_stage),
            "out_layer": init(self.out_layer),
        }

    def step(self, noisy: Tensor, state: dict) -> tuple[Tensor, dict]:
        """Chunk ``(B, T)`` -> the output samples completed so far ``(B, k * block_length)`` and the new state."""
        s = {key: list(v) if isinstance(v, list) else v for key, v in state.items()}
        h = noisy[:, None, :]
        s["input"] = torch.cat([s["input"], h], dim=-1)
        for k, (stage, down) in enumerate(zip(self.encoder, self.down)):
            h, s["encoder"][k] = stage.step(h, s["encoder"][k])
            s["skips"][k] = torch.cat([s["skips"][k], h], dim=-1)
            h, s["down"][k] = down.step(h, s["down"][k])
        if h.shape[-1] == 0:
            return noisy.new_zeros(noisy.shape[0], 0), s
        for k, stage in enumerate(self.bottleneck):
            h, s["bottleneck"][k] = stage.step(h, s["bottleneck"][k])
        levels = len(self.encoder)
        for k, (up, stage) in enumerate(zip(self.up, self.decoder)):
            level = levels - 1 - k
            h = up(h)
            n = h.shape[-1]
            skip, s["skips"][level] = s["skips"][level][..., :n], s["skips"][level][..., n:]
            h, s["decoder"][k] = stage.step(h + skip, s["decoder"][k])
        h, s["out_stage"] = self.out_stage.step(h, s["out_stage"])
        h, s["out_layer"] = self.out_layer.step(h, s["out_layer"])
        n = h.shape[-1]
        y = h + s["input"][..., :n]
        s["input"] = s["input"][..., n:]
        return y[:, 0], s

    def flush(self, state: dict) -> tuple[Tensor, dict]:
        """Pad the stream with zeros to the end of its block: the remaining output ``(B, pending)``."""
        pending = state["input"].shape[-1]
        if pending == 0:
            return state["input"][:, 0], state
        pad = -pending % self.block_length
        y, state = self.step(state["input"].new_zeros(state["input"].shape[0], pad), state)
        return y[:, :pending], state
