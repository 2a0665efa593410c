"""Building blocks shared by the task networks, each with the streaming interface of the SSM layers.

Every block maps ``(B, C, L)`` to ``(B, C', L')``. Stateful blocks have ``init_state(batch_size)`` and
``step(x, state) -> (y, state)``; pointwise blocks (norms in eval mode, activations, 1x1 convolutions) have
neither and are stepped by calling them. Chunks may be empty (``T = 0``) after a downsampling buffer; every
block passes an empty chunk through without touching its state.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
import torchaudio
from torch import Tensor, nn

from ..ssm import build_layer

__all__ = [
    "LayerSpec", "LogMel", "SpecAugment", "WINDOW", "HOP", "ChannelNorm", "Pointwise", "Downsample", "Upsample", "StreamingSequential", "SSMStage", "step_module",
]


@dataclass(frozen=True)
class LayerSpec:
    """Which SSM layer a stage uses: ``kind`` is ``centaurus``, ``lssl`` or ``liquid_s4``; ``mode``, ``blocks``
    and ``groups`` apply to Centaurus layers."""

    kind: str = "centaurus"
    mode: str = "dws"
    state_dim: int = 16
    blocks: int = 4
    groups: int = 1
    # Initial time steps. The paper's [1e-3, 1e-1] suits raw audio; on 10-30 ms frames it makes the fastest
    # kernel forget over 20 frames, too slow for characters (a first ASR run stalled at 55% CER), hence the
    # frame-rate networks use [1e-2, 1].
    dt_min: float = 1e-3
    dt_max: float = 1e-1

    def build(self, in_channels: int, out_channels: int) -> nn.Module:
        options = {"mode": self.mode, "blocks": self.blocks, "groups": self.groups} if self.kind == "centaurus" else {}
        return build_layer(self.kind, in_channels, out_channels, self.state_dim, dt_min=self.dt_min,
                           dt_max=self.dt_max, **options)


def step_module(module: nn.Module, x: Tensor, state: Any) -> tuple[Tensor, Any]:
    """Step any block: stateful blocks through ``step``, pointwise ones by calling them."""
    if hasattr(type(module), "step"):  # on the class: a miss on the instance goes through nn.Module.__getattr__
        return module.step(x, state)
    if isinstance(module, nn.BatchNorm1d) and not module.training:
        return batch_norm_inference(module, x), state
    return module(x), state


def batch_norm_inference(norm: nn.BatchNorm1d, x: Tensor) -> Tensor:
    """``norm(x)`` at inference with running statistics, as one op: the module call and its checks cost more
    than the normalisation of a streaming chunk's few frames."""
    if norm.running_mean is None:
        return norm(x)
    params = norm._parameters  # straight from the dict: nn.Module attribute lookup costs ~1 us a name
    return torch.batch_norm(x, params["weight"], params["bias"], norm.running_mean, norm.running_var, False, 0.0,
                            norm.eps, False)


def init_module_state(module: nn.Module, batch_size: int, device: torch.device, dtype: torch.dtype) -> Any:
    return module.init_state(batch_size, device=device, dtype=dtype) if hasattr(type(module), "init_state") else None


class ChannelNorm(nn.Module):
    """LayerNorm over channels at every time step: ``(B, C, L) -> (B, C, L)``; pointwise in time."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        # The op itself, parameters straight from the dict: no module call, no functional wrapper, no attribute
        # lookups (streaming is dispatch-bound).
        norm = self._modules["norm"]
        params = norm._parameters
        return torch.layer_norm(x.transpose(1, 2), norm.normalized_shape, params["weight"], params["bias"],
                                norm.eps).transpose(1, 2)


class Pointwise(nn.Conv1d):
    """``nn.Conv1d(in, out, 1)`` computed as a matrix product: ``(B, C_in, L) -> (B, C_out, L)``.

    Same parameters as the convolution, but on the CPU the oneDNN 1x1 convolution was 4x slower than the matmul
    forward and slower still backward (measured on the ASR feed-forward layers).
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight[:, :, 0]
        if x.shape[0] == 1 and self.bias is not None:
            # One sample (streaming): a 2-D addmm. The batched matmul of a (1, C, T) input with a few frames
            # T > 1 was 4x slower, and the separate bias add is one more op.
            return torch.addmm(self.bias[:, None], weight, x[0]).unsqueeze(0)
        y = torch.matmul(weight, x)
        return y if self.bias is None else y + self.bias[:, None]


def _strided(conv: nn.Conv1d, x: Tensor) -> Tensor:
    """A convolution with kernel = stride = r as a matrix product over non-overlapping frames."""
    b, c, length = x.shape
    r = conv.kernel_size[0]
    frames = x[..., : length - length % r].reshape(b, c, -1, r).permute(0, 2, 1, 3).reshape(b, -1, c * r)
    weight = conv.weight.reshape(conv.out_channels, c * r).T
    if b == 1 and conv.bias is not None:  # one sample (streaming): a 2-D addmm with the bias, one op
        return torch.addmm(conv.bias, frames[0], weight).T.unsqueeze(0)
    y = torch.matmul(frames, weight).transpose(1, 2)
    return y if conv.bias is None else y + conv.bias[:, None]


class Downsample(nn.Module):
    """Strided 1-D convolution with kernel = stride = ``factor``: ``(B, C_in, L) -> (B, C_out, L // factor)``.

    Causal: output frame m sees input samples ``[m r, m r + r)``. Streaming keeps the incomplete frame's
    samples, ``(B, C_in, < r)``, in the state.
    """

    def __init__(self, in_channels: int, out_channels: int, factor: int) -> None:
        super().__init__()
        self.factor, self.out_channels = factor, out_channels
        self.conv = nn.Conv1d(in_channels, out_channels, factor, stride=factor)

    def forward(self, x: Tensor) -> Tensor:
        return _strided(self.conv, x)

    def init_state(self, batch_size: int, device=None, dtype=None) -> Tensor:
        weight = self.conv.weight
        return weight.new_zeros(batch_size, self.conv.in_channels, 0, device=device, dtype=dtype)

    def step(self, x: Tensor, pending: Tensor) -> tuple[Tensor, Tensor]:
        """x ``(B, C_in, T)`` -> ``(B, C_out, (pending + T) // r)`` and the samples still pending."""
        x = torch.cat([pending.to(x.dtype), x], dim=-1)
        usable = x.shape[-1] - x.shape[-1] % self.factor
        if usable == 0:
            return x.new_zeros(x.shape[0], self.out_channels, 0), x
        return _strided(self.conv, x[..., :usable]), x[..., usable:]


class Upsample(nn.Module):
    """Each input frame becomes ``factor`` output samples through a 1x1 convolution to ``factor * C_out``
    channels, unfolded in time: ``(B, C_in, L) -> (B, C_out, L * factor)``; pointwise per input frame."""

    def __init__(self, in_channels: int, out_channels: int, factor: int) -> None:
        super().__init__()
        self.factor, self.out_channels = factor, out_channels
        self.conv = Pointwise(in_channels, out_channels * factor)

    def forward(self, x: Tensor) -> Tensor:
        b, _, length = x.shape
        y = self.conv(x).reshape(b, self.out_channels, self.factor, length)
        return y.transpose(2, 3).reshape(b, self.out_channels, length * self.factor)


class SpecAugment(nn.Module):
    """Masks bands and stretches of a normalised spectrogram while training (SpecAugment, Park et al. 2019):
    ``(B, F, T) -> (B, F, T)``, each example masked independently; the identity at inference.

    ``freq_masks`` bands of up to ``freq_width`` bins, and one stretch of up to ``time_width`` frames per
    ``frames_per_time_mask`` frames (so long clips get as many per second as short ones). Masked values are 0, the
    mean of the batch-normalised features it follows. Why: a recognizer trained on few synthetic voices learns
    their exact spectra; hiding parts of them makes it use the rest, the standard cure for small-data ASR."""

    def __init__(self, freq_masks: int = 2, freq_width: int = 15, time_width: int = 20,
                 frames_per_time_mask: int = 100) -> None:
        super().__init__()
        self.freq_masks, self.frames_per_time_mask = freq_masks, frames_per_time_mask
        self.freq = torchaudio.transforms.FrequencyMasking(freq_width, iid_masks=True)
        self.time = torchaudio.transforms.TimeMasking(time_width, iid_masks=True)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or x.shape[-1] == 0:
            return x
        for _ in range(self.freq_masks):
            x = self.freq(x)
        for _ in range(max(1, x.shape[-1] // self.frames_per_time_mask)):
            x = self.time(x)
        return x


# Blocks that are the identity at inference: streaming skips their call.
_EVAL_IDENTITY = (nn.Dropout, nn.Dropout1d, nn.Identity, SpecAugment)


class StreamingSequential(nn.Sequential):
    """``nn.Sequential`` that also streams: its state is the list of its blocks' states."""

    def init_state(self, batch_size: int, device=None, dtype=None) -> list:
        param = next(self.parameters())
        device, dtype = device or param.device, dtype or param.dtype
        return [init_module_state(m, batch_size, device, dtype) for m in self]

    def step(self, x: Tensor, state: list) -> tuple[Tensor, list]:
        new_state = list(state)
        for index, module in enumerate(self):
            if x.shape[-1] == 0:  # nothing reached this block: keep the states, pass nothing on
                return self._empty_output(x, index), new_state
            if not module.training and isinstance(module, _EVAL_IDENTITY):
                continue  # dropout at inference: skip the call (streaming is dispatch-bound)
            x, new_state[index] = step_module(module, x, state[index])
        return x, new_state

    def _empty_output(self, x: Tensor, index: int) -> Tensor:
        """The empty ``(B, C, 0)`` output for an empty chunk at block ``index``: C from the last block that
        declares ``out_channels`` (else the input's)."""
        channels = x.shape[1]
        for module in list(self)[index:]:
            channels = getattr(module, "out_channels", channels)
        return x.new_zeros(x.shape[0], channels, 0)


class SSMStage(StreamingSequential):
    """SSM layer -> norm -> activation (-> dropout): the unit every network stacks. ``(B, C_in, L) -> (B, C_out, L)``."""

    def __init__(
        self, spec: LayerSpec, in_channels: int, out_channels: int, norm: str = "layer", activation: str = "silu",
        dropout: float = 0.0,
    ) -> None:
        layers: list[nn.Module] = [spec.build(in_channels, out_channels)]
        layers.append(nn.BatchNorm1d(out_channels) if norm == "batch" else ChannelNorm(out_channels))
        layers.append(nn.ReLU() if activation == "relu" else nn.SiLU())
        if dropout > 0:
            layers.append(nn.Dropout1d(dropout))
        super().__init__(*layers)

    def step(self, x: Tensor, state: list) -> tuple[Tensor, list]:
        """At inference: the layer's step, then norm and activation as plain functions. A 20 ms chunk is a few
        frames, so calls, not arithmetic, are the cost: this saves three module calls per stage."""
        if self.training or x.shape[-1] == 0:
            return super().step(x, state)
        layer, norm, activation = list(self._modules.values())[:3]
        y, layer_state = step_module(layer, x, state[0])
        if isinstance(norm, nn.BatchNorm1d):
            y = batch_norm_inference(norm, y)
        else:
            y = norm.forward(y)  # ChannelNorm: its forward is already functional
        y = torch.relu(y) if isinstance(activation, nn.ReLU) else nn.functional.silu(y)
        return y, [layer_state, *state[1:]]


WINDOW, HOP = 400, 160


class LogMel(nn.Module):
    """``(B, L)`` -> ``(B, n_mels, 1 + (L - 400) // 160)`` log-mel frames; frame f covers samples
    ``[160 f, 160 f + 400)``. Streaming keeps the samples of frames not yet complete."""

    def __init__(self, n_mels: int, sample_rate: int) -> None:
        super().__init__()
        self.out_channels = n_mels
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=WINDOW, win_length=WINDOW, hop_length=HOP, n_mels=n_mels, center=False
        )

    def forward(self, waveform: Tensor) -> Tensor:
        if waveform.shape[-1] < WINDOW:
            return waveform.new_zeros(waveform.shape[0], self.out_channels, 0)
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            return torch.log(self.mel(waveform.float()) + 1e-6).to(waveform.dtype)

    def init_state(self, batch_size: int, device=None, dtype=None) -> Tensor:
        return torch.zeros(batch_size, 0, device=device, dtype=dtype)

    def step(self, waveform: Tensor, pending: Tensor) -> tuple[Tensor, Tensor]:
        """Chunk ``(B, T)`` -> the frames it completes ``(B, n_mels, F)`` and the samples still needed.

        The same spectrogram as :meth:`forward`, computed directly (windowed frames, rfft, power, mel matrix)
        rather than through torchaudio's transforms, whose argument handling cost more than the maths for the
        two frames of a 20 ms chunk."""
        buffered = torch.cat([pending, waveform], dim=-1)  # a copy: the state never aliases the caller's chunk
        count = 0 if buffered.shape[-1] < WINDOW else 1 + (buffered.shape[-1] - WINDOW) // HOP
        if count == 0:
            return waveform.new_zeros(waveform.shape[0], self.out_channels, 0), buffered
        # The buffers straight from their dicts: each nn.Module attribute lookup costs about a microsecond.
        window = self.mel.spectrogram._buffers["window"]
        filterbank = self.mel.mel_scale._buffers["fb"]
        frames = buffered.unfold(-1, WINDOW, HOP)  # (B, F, WINDOW), a view
        if frames.dtype != torch.float32:  # the spectrogram in float32 whatever the stream's dtype
            frames = frames.float()
        power = torch.fft.rfft(frames * window).abs().pow_(2)  # (B, F, WINDOW // 2 + 1)
        # The mel product in float32, as forward does; entering the autocast context only when autocast is on,
        # since entering it costs more than this chunk's maths.
        device = frames.device.type
        with torch.autocast(device, enabled=False) if torch.is_autocast_enabled(device) else contextlib.nullcontext():
            features = torch.matmul(power, filterbank)
        features = features.add_(1e-6).log_().transpose(1, 2)
        return features.to(waveform.dtype), buffered[:, count * HOP:]
