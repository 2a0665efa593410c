"""Speech denoising: an hourglass (U-Net) of SSM stages, causal, raw waveform in and out, ``(B, L) -> (B, L)``.

Two front ends, chosen by ``DenoiseConfig.frontend``:

- ``"waveform"`` (the paper's aTENNuate): the hourglass runs on the samples themselves and its output, one
  channel, is added to the input (the network predicts the correction).
- ``"filterbank"`` (the default ``small`` size): a learned analysis filterbank (a strided convolution with
  ``filters`` outputs over non-overlapping frames of ``frame`` samples, then ReLU) turns the waveform into
  frames, the hourglass runs at the frame rate and predicts a sigmoid mask over the filterbank channels, and a
  learned synthesis filterbank turns the masked frames back into samples, as in TasNet. Why: on a 2-core CPU the
  waveform hourglass spent most of its compute running SSMs at 16 kHz and, within our training budget, learned
  little more than the identity (+0.8 dB SI-SNR); at 1 ms frames every stage is 16x cheaper, and masking makes
  "remove what is not speech" the easy function to learn.

Hourglass: encoder level k is an SSM stage (LayerNorm over channels, SiLU) whose output is kept as the skip,
then a strided downsampling by ``factors[k]``. Bottleneck: ``bottleneck_stages`` s5 stages. Decoder level k
(reverse order): upsampling (1x1 convolution to ``r * C`` channels unfolded in time), plus the skip, then an SSM
stage; then an optional output stage and a final linear SSM layer.

Algorithmic latency: an output sample needs the whole coarsest frame it belongs to, so up to
``block_length - 1`` samples of look-ahead, ``block_length = frame * prod(factors)``. ``forward`` pads a clip
to a multiple of ``block_length`` and crops; streaming emits output in blocks of ``block_length`` samples and
``flush`` completes the last block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import Downsample, LayerSpec, SSMStage, Upsample

__all__ = ["DenoiseConfig", "DenoiseNet", "DENOISE_SIZES"]

FRONTENDS = ("waveform", "filterbank")


@dataclass
class DenoiseConfig:
    channels: tuple[int, ...] = (64, 96, 128)
    factors: tuple[int, ...] = (2, 2, 2)
    layer: LayerSpec = field(default_factory=lambda: LayerSpec(mode="dws", state_dim=16))
    bottleneck: LayerSpec = field(default_factory=lambda: LayerSpec(mode="s5", state_dim=16, blocks=4))
    frontend: str = "filterbank"
    filters: int = 64  # filterbank channels
    frame: int = 16  # filterbank frame length and hop, in samples
    bottleneck_stages: int = 2
    output_stage: bool = True  # an SSM stage before the final linear SSM layer
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        self.channels, self.factors = tuple(self.channels), tuple(self.factors)
        if isinstance(self.layer, dict):
            self.layer = LayerSpec(**self.layer)
        if isinstance(self.bottleneck, dict):
            self.bottleneck = LayerSpec(**self.bottleneck)
        if len(self.channels) != len(self.factors):
            raise ValueError("channels and factors need one entry per level")
        if self.frontend not in FRONTENDS:
            raise ValueError(f"unknown denoiser front end {self.frontend!r}; expected one of {FRONTENDS}")


DENOISE_SIZES: dict[str, DenoiseConfig] = {
    # One level (96 channels, 1 ms frames, downsampled 8x), one bottleneck stage, no output stage: four SSM
    # layers instead of the ten of the defaults. Streaming a 20 ms chunk at batch 1 costs calls, not arithmetic
    # (bench/README.md): against two levels of (64, 128) this streams 1.5x faster and trains 1.3x faster per
    # step. Latency: 16 x 8 - 1 = 127 samples.
    "small": DenoiseConfig(channels=(96,), factors=(8,), bottleneck_stages=1, output_stage=False),
    # aTENNuate's widths and factors (centaurus.md), on the raw waveform.
    "paper": DenoiseConfig(channels=(16, 32, 64, 96, 128, 256), factors=(4, 4, 2, 2, 2, 2), frontend="waveform"),
}


class DenoiseNet(nn.Module):
    """``forward``: noisy waveform ``(B, L)`` -> enhanced waveform ``(B, L)``."""

    def __init__(self, config: DenoiseConfig) -> None:
        super().__init__()
        self.config = config
        filterbank = config.frontend == "filterbank"
        frame_channels = config.filters if filterbank else 1
        # The waveform front end is the identity: one channel at the sample rate.
        self.analysis = Downsample(1, config.filters, config.frame) if filterbank else None
        self.encoder = nn.ModuleList()
        self.down = nn.ModuleList()
        previous = frame_channels
        for channels, factor in zip(config.channels, config.factors):
            self.encoder.append(SSMStage(config.layer, previous, channels))
            self.down.append(Downsample(channels, channels, factor))
            previous = channels
        self.bottleneck = nn.ModuleList(
            [SSMStage(config.bottleneck, previous, previous) for _ in range(config.bottleneck_stages)])
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for channels, factor in reversed(list(zip(config.channels, config.factors))):
            self.up.append(Upsample(previous, channels, factor))
            self.decoder.append(SSMStage(config.layer, channels, channels))
            previous = channels
        self.out_stage = SSMStage(config.layer, previous, previous) if config.output_stage else None
        self.out_layer = config.layer.build(previous, frame_channels)
        self.synthesis = Upsample(config.filters, 1, config.frame) if filterbank else None
        if filterbank:
            self._init_perfect_reconstruction()

    @torch.no_grad()
    def _init_perfect_reconstruction(self) -> None:
        """Start from filterbanks that reconstruct their input exactly: analysis filters ``+F`` and ``-F``
        (so ReLU keeps both signs), synthesis ``[P, -P]`` with ``P F = I``. Training then begins at the identity
        (with the mask near 1/2) instead of first having to learn to reconstruct speech at all."""
        filters, frame = self.config.filters, self.config.frame
        if filters % 2 or filters // 2 < frame:
            raise ValueError(f"filterbank needs an even number of filters >= 2 * frame, got {filters} for {frame}")
        basis = torch.randn(filters // 2, frame) / math.sqrt(frame)
        inverse = torch.linalg.pinv(basis)  # (frame, filters / 2)
        self.analysis.conv.weight.copy_(torch.cat([basis, -basis])[:, None, :])
        self.analysis.conv.bias.zero_()
        self.synthesis.conv.weight.copy_(torch.cat([inverse, -inverse], dim=1)[:, :, None])
        self.synthesis.conv.bias.zero_()

    @property
    def frame_length(self) -> int:
        """Samples per hourglass input frame (1 on the raw waveform)."""
        return self.config.frame if self.analysis is not None else 1

    @property
    def block_length(self) -> int:
        """Samples per coarsest frame: inputs are padded to, and streams emit, multiples of this."""
        return self.frame_length * math.prod(self.config.factors)

    @property
    def algorithmic_latency(self) -> int:
        return self.block_length - 1

    def _frames(self, noisy: Tensor) -> Tensor:
        """``(B, 1, L)`` -> the hourglass input ``(B, C, L / frame)``."""
        return self.analysis(noisy).relu() if self.analysis is not None else noisy

    def _output(self, frames: Tensor, hourglass_out: Tensor) -> Tensor:
        """Hourglass input and output frames -> enhanced samples ``(B, 1, L)``."""
        if self.synthesis is None:
            return hourglass_out + frames
        return self.synthesis(frames * torch.sigmoid(hourglass_out))

    def forward(self, noisy: Tensor) -> Tensor:
        """``(B, L)`` -> ``(B, L)``; L need not be a multiple of :attr:`block_length` (padded, then cropped)."""
        length = noisy.shape[-1]
        frames = self._frames(F.pad(noisy, (0, -length % self.block_length))[:, None, :])
        skips = []
        h = frames
        for stage, down in zip(self.encoder, self.down):
            h = stage(h)
            skips.append(h)
            h = down(h)
        for stage in self.bottleneck:
            h = stage(h)
        for up, stage, skip in zip(self.up, self.decoder, reversed(skips)):
            h = stage(up(h) + skip)
        if self.out_stage is not None:
            h = self.out_stage(h)
        y = self._output(frames, self.out_layer(h))
        return y[:, 0, :length]

    # ---- streaming ---------------------------------------------------------------------------------------------
    def init_state(self, batch_size: int, device=None, dtype=None) -> dict:
        ref = next(self.parameters())
        device, dtype = device or ref.device, dtype or ref.dtype
        init = lambda m: m.init_state(batch_size, device=device, dtype=dtype)  # noqa: E731
        frame_channels = self.config.filters if self.analysis is not None else 1
        return {
            # Samples of the incomplete filterbank frame (waveform front end: always empty).
            "analysis": init(self.analysis) if self.analysis is not None else None,
            "encoder": [init(m) for m in self.encoder],
            "down": [init(m) for m in self.down],
            "bottleneck": [init(m) for m in self.bottleneck],
            "decoder": [init(m) for m in self.decoder],
            # Skip frames wait here until the decoder's upsampled frames catch up.
            "skips": [torch.zeros(batch_size, c, 0, device=device, dtype=dtype) for c in self.config.channels],
            # Hourglass input frames wait for their output, for the mask or the residual connection.
            "frames": torch.zeros(batch_size, frame_channels, 0, device=device, dtype=dtype),
            # Input samples not yet emitted: for ``flush`` to know how many are pending.
            "pending": 0,
            "out_stage": init(self.out_stage) if self.out_stage is not None else None,
            "out_layer": init(self.out_layer),
        }

    def step(self, noisy: Tensor, state: dict) -> tuple[Tensor, dict]:
        """Chunk ``(B, T)`` -> the output samples completed so far ``(B, k * block_length)`` and the new state."""
        s = {key: list(v) if isinstance(v, list) else v for key, v in state.items()}
        s["pending"] = state["pending"] + noisy.shape[-1]
        h = noisy[:, None, :]
        if self.analysis is not None:
            h, s["analysis"] = self.analysis.step(h, s["analysis"])
            h = h.relu()
        s["frames"] = torch.cat([s["frames"], h], dim=-1)
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
        if self.out_stage is not None:
            h, s["out_stage"] = self.out_stage.step(h, s["out_stage"])
        h, s["out_layer"] = self.out_layer.step(h, s["out_layer"])
        n = h.shape[-1]
        y = self._output(s["frames"][..., :n], h)
        s["frames"] = s["frames"][..., n:]
        s["pending"] -= y.shape[-1]
        return y[:, 0], s

    def flush(self, state: dict) -> tuple[Tensor, dict]:
        """Pad the stream with zeros to the end of its block: the remaining output ``(B, pending)``."""
        pending = state["pending"]
        batch = state["frames"].shape[0]
        if pending == 0:
            return state["frames"].new_zeros(batch, 0), state
        y, state = self.step(state["frames"].new_zeros(batch, -pending % self.block_length), state)
        state["pending"] = 0
        return y[:, :pending], state
