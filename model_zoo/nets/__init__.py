"""The task networks and the registry that maps a task name to its config and network classes."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .asr import ASR_SIZES, ASRConfig, ASRNet
from .denoise import DENOISE_SIZES, DenoiseConfig, DenoiseNet
from .kws import KWS_SIZES, KWSConfig, KWSNet

__all__ = ["TASKS", "Task", "build_network", "parameter_count", "KWSNet", "DenoiseNet", "ASRNet"]


@dataclass(frozen=True)
class Task:
    config: type
    network: type[nn.Module]
    sizes: dict


TASKS: dict[str, Task] = {
    "kws": Task(KWSConfig, KWSNet, KWS_SIZES),
    "denoise": Task(DenoiseConfig, DenoiseNet, DENOISE_SIZES),
    "asr": Task(ASRConfig, ASRNet, ASR_SIZES),
}


def build_network(task: str, size: str = "small", **overrides) -> nn.Module:
    """A freshly initialised network of ``task`` at a named size (``small`` for CPU serving, ``paper``, ...)."""
    import dataclasses

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASKS)}")
    sizes = TASKS[task].sizes
    if size not in sizes:
        raise ValueError(f"unknown size {size!r} for {task}; expected one of {sorted(sizes)}")
    return TASKS[task].network(dataclasses.replace(sizes[size], **overrides))


def parameter_count(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
