"""Process-level runtime choices: which device to run on, how the C allocator treats large tensors, and what the
garbage collector walks."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

import torch

__all__ = ["select_device", "keep_freed_memory", "freeze_loaded_objects"]

log = logging.getLogger(__name__)

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def select_device(preference: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when a device is visible, else the CPU; ``"cpu"``, ``"cuda"``, ``"cuda:1"`` are
    taken literally, and asking for CUDA where there is none is an error rather than a silent fallback."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {preference!r} requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {preference!r} requested but only {torch.cuda.device_count()} GPUs are visible")
    return device


def keep_freed_memory() -> bool:
    """Make glibc serve large tensors from its heap and keep freed memory for reuse.

    By default every allocation above a few MB is a fresh ``mmap`` that the kernel zero-fills page by page and
    ``free`` gives back at once, so each large intermediate (an FFT buffer, a padded copy) pays page faults
    again: on the 2-core CPU this project is measured on, that made a padded copy 4x and a complex multiply 7x
    slower. The cost is that resident memory stays at its peak. Called by the command-line entry points
    (service, training, benchmarks), never on import. Returns False where glibc is not the allocator.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    except (OSError, AttributeError):
        ok = False
    if not ok:
        log.info("allocator tuning not available (not glibc)")
    return ok


def freeze_loaded_objects() -> int:
    """Move every object alive now out of reach of the garbage collector's full passes (``gc.freeze``).

    A process that has imported torch and loaded models holds 190-230 thousand tracked objects, and one full
    collection walks them all: 70 ms in a worker with the shipped models, 105 ms in the service process, on the
    2-core CPU. Live streams keep objects alive step after step, so full collections come every few seconds, and
    each one stalled every stream of that process. Loaded once and kept for the process's life, these objects
    are never garbage; freezing them leaves the passes only what was made since. Called by long-running entry
    points once loaded (the service, its workers), never on import. Returns the number of objects frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
