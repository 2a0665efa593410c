"""One rule for what a streaming step may reuse: values derived from a layer's parameters.

The inference step of every layer here caches what it derives from the parameters for a chunk length (block
matrices, impulse-response spectra, power tables, Krylov operators). :class:`DerivedCache` holds them and
drops them all as soon as any source tensor changes, as told by its stamp, per tensor::

    (data_ptr, _version, dtype, device, shape)    and, once, whether inference mode is on

* ``_version`` counts in-place writes through the tensor: an optimiser step, ``load_state_dict`` (``copy_``
  under ``no_grad``), ``p.mul_(...)`` under ``no_grad``.
* ``data_ptr`` changes when the storage is swapped: ``p.data = new`` leaves ``_version`` as it was, so
  versions alone would keep serving the old parameters' values (``tests/model_zoo/test_step_caches.py``).
  ``module.to(...)`` swaps storage too.
* dtype, device and shape: the same storage seen as another tensor (``p.data = p.data.view(...)``).
  A freed storage's address can be reused by the next allocation, so the cache keeps the storages it was built
  from alive until it is rebuilt: while it holds them, an equal ``data_ptr`` is the same storage. (Layers clear
  their caches in ``nn.Module._apply``, so ``.to(...)`` does not keep the old copies alive.)
* inference mode: tensors made under ``torch.inference_mode`` cannot be saved for backward later, so values
  built there are not served outside it, nor the other way round.

Not seen: an in-place write through ``.data`` (``p.data.mul_(2)``) bypasses the version counter and keeps the
storage, and only comparing values could tell; call :meth:`DerivedCache.clear` after one.

The stamp costs about a microsecond per tensor, small beside the step it saves (a one-sample step of a small
layer is tens of microseconds).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor

__all__ = ["DerivedCache", "source_stamp"]

V = TypeVar("V")


def source_stamp(sources: Iterable[Tensor | None]) -> tuple:
    """What identifies the current values of ``sources`` (``None`` entries skipped): see the module docstring."""
    return (torch.is_inference_mode_enabled(),
            *((t.data_ptr(), t._version, t.dtype, t.device, t.shape) for t in sources if t is not None))


class DerivedCache:
    """Values derived from some tensors, by key (a chunk length, a dtype), valid while the tensors are unchanged.

    ``capacity`` bounds the entries: the oldest goes first (a few chunk lengths are in use at a time).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._stamp: tuple | None = None
        self._storages: tuple = ()  # of the stamped sources: their addresses stay theirs (module docstring)
        self._entries: dict[Hashable, Any] = {}

    def get(self, sources: Sequence[Tensor | None], key: Hashable, build: Callable[[], V]) -> V:
        """The value under ``key``, from ``build()`` when there is none yet or ``sources`` changed since."""
        stamp = source_stamp(sources)
        if stamp != self._stamp:
            self._entries.clear()
            self._stamp = stamp
            self._storages = tuple(t.untyped_storage() for t in sources if t is not None)
        elif key in self._entries:
            return self._entries[key]
        value = build()
        if len(self._entries) >= self.capacity:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = value
        return value

    def clear(self) -> None:
        self._entries.clear()
        self._stamp, self._storages = None, ()

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Hashable]:
        return iter(list(self._entries))
