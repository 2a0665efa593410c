"""Loaders for the real training corpora, each reading a local copy in its official folder layout.

None of them downloads anything: a missing or misplaced corpus raises :class:`FileNotFoundError` naming
the folder or file that was expected. :mod:`.asterisk` is an evaluation-only set of real speech (the Asterisk
voice prompts, from Debian packages), never trained on.
"""

from __future__ import annotations

from .asterisk import AsteriskASR, AsteriskDenoise, AsteriskKWS, AsteriskNotInstalled
from .librispeech import LibriSpeech
from .speech_commands import SpeechCommands, load_mono
from .voicebank_demand import VoiceBankDemand

__all__ = ["SpeechCommands", "VoiceBankDemand", "LibriSpeech", "load_mono", "AsteriskASR", "AsteriskKWS",
           "AsteriskDenoise", "AsteriskNotInstalled"]
