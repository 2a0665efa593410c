"""Loaders for the real training corpora, each reading a local copy in its official folder layout.

None of them downloads anything: a missing or misplaced corpus raises :class:`FileNotFoundError` naming
the folder or file that was expected.
"""

from __future__ import annotations

from .librispeech import LibriSpeech
from .speech_commands import SpeechCommands, fit_length, load_mono
from .voicebank_demand import VoiceBankDemand

__all__ = ["SpeechCommands", "VoiceBankDemand", "LibriSpeech", "load_mono", "fit_length"]
