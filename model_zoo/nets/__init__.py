"""The task networks and the registry that maps a task name to its config and network classes.

:data:`TASKS` is the one list of tasks. Every other per-task table (training's ``TASK_SPECS``, the service's
runners and stream protocols) is built through :func:`for_every_task`, which fails at import when the table
misses a task or names one that does not exist, so adding a task cannot silently leave one out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar, get_args

from torch import nn

from .asr import ASR_SIZES, ASRConfig, ASRNet
from .denoise import DENOISE_SIZES, DenoiseConfig, DenoiseNet
from .kws import KWS_SIZES, KWSConfig, KWSNet

__all__ = ["TASKS", "Task", "TaskName", "build_network", "for_every_task", "parameter_count", "KWSNet", "DenoiseNet",
           "ASRNet"]

V = TypeVar("V")


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

# The task names as a type, for schemas (their order is the order the API documents them in).
TaskName = Literal["asr", "kws", "denoise"]


def for_every_task(entries: Mapping[str, V], registry: str) -> dict[str, V]:
    """``entries`` (task name -> entry) as a dict, once checked to hold exactly the tasks of :data:`TASKS`;
    ``ValueError`` naming ``registry`` and what it misses or has too many."""
    missing, unknown = sorted(set(TASKS) - set(entries)), sorted(set(entries) - set(TASKS))
    if missing or unknown:
        raise ValueError(f"{registry} must have one entry per task of model_zoo.nets.TASKS {sorted(TASKS)}: "
                         f"missing {missing}, unknown {unknown}")
    return dict(entries)


for_every_task(dict.fromkeys(get_args(TaskName)), "model_zoo.nets.TaskName")


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
