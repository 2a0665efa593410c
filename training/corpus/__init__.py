"""The embedded synthetic speech corpus: the default training data when no real corpus is at hand.

Speech comes from three offline Debian synthesizers (espeak-ng, flite, festival; see
:mod:`.voices` for the voice inventory and which voices are held out for valid/test), noise from seeded
generators (:mod:`.noise`). :func:`build_corpus` (or ``python -m training corpus TASK --out DIR``) stores
the dry utterances once; the datasets of :mod:`.dataset` augment them on the fly.
"""

from __future__ import annotations

from .build import GENERATOR_VERSION, PRESETS, TASKS, build_corpus, parse_size
from .dataset import ASRCorpus, DenoiseCorpus, KWSCorpus, asr_collate
from .noise import HELDOUT_NOISE_TYPES, NOISE_TYPES
from .tts import APT_PACKAGES

__all__ = [
    "APT_PACKAGES",
    "GENERATOR_VERSION",
    "PRESETS",
    "TASKS",
    "NOISE_TYPES",
    "HELDOUT_NOISE_TYPES",
    "build_corpus",
    "parse_size",
    "KWSCorpus",
    "ASRCorpus",
    "DenoiseCorpus",
    "asr_collate",
]
