"""hibari-tts's bundled voice, with the same speaker perturbation as :mod:`.kokoro`.

hibari-tts 0.2.1 ships one acoustic model in its wheel, ``heart`` (American female, distilled from
Kokoro's ``af_heart``); its other voices (emma, fable, fenrir, kore) are downloaded on first use, which
the corpus must never do, so they are not used. The G2P ships both ways of reading: American and
British (misaki's gb lexicon and a British OOV net), so a hibari speaker is ``heart`` reading with the
``us`` or ``gb`` G2P, at its own speed, pitch and formant factor (see :func:`.kokoro.render_plan`).

The model predicts, per 12.5 ms frame, a harmonic envelope, noise envelope, a free-phase branch and F0;
:func:`hibari.dsp.synth` turns them into audio. The pitch shift scales that F0 curve (the envelopes, and so
the formants, stay); the formant shift is the same resampling trick as Kokoro's. The noise component is
drawn from a generator seeded by the job (:func:`.kokoro.job_seed`), so the same job gives the same audio.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from .kokoro import RenderPlan, g2p, job_seed, per_process, phonemize, render_plan
from .voices import NeuralSpeaker, Prosody

__all__ = ["HIBARI_RATE", "HIBARI_PACKAGES", "hibari_available", "HibariEngine", "engine", "synthesize"]

HIBARI_RATE = 24_000
HIBARI_PACKAGES: tuple[str, ...] = ("onnxruntime", "hibari")
_VOICE = "heart"
_MAX_PHONEMES = 400  # hibari.tts.MAX_PHONEMES


def hibari_available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in HIBARI_PACKAGES)


class HibariEngine:
    """The bundled ``heart`` model with one thread; never resolves a voice that would be downloaded."""

    def __init__(self) -> None:
        from hibari import Hibari
        from hibari.voices import ASSETS, VOICES

        info = VOICES[_VOICE]
        if not info.get("bundled"):
            raise RuntimeError(f"hibari voice {_VOICE!r} is not bundled in this hibari-tts")
        self.tts = Hibari(voice=_VOICE, model=os.path.join(ASSETS, info["file"]), threads=1, g2p=g2p("us"))

    def run(self, phonemes: str, plan: RenderPlan, rng: np.random.Generator) -> np.ndarray:
        """One phoneme string -> float32 audio at 24 kHz, F0 scaled by ``plan.f0_scale``."""
        from hibari import dsp

        ids = self.tts.ids(phonemes)
        if len(ids) < 3:
            return np.zeros(0, np.float32)
        out = self.tts.sess.run(None, {"ids": np.asarray([ids], np.int64), "speed": np.asarray([plan.speed], np.float32)})
        lh, th, ln, lr, phi, f0 = (o[0] for o in out)
        return np.asarray(dsp.synth(lh, th, ln, lr, phi, f0 * np.float32(plan.f0_scale), rng), dtype=np.float32)


engine = per_process(HibariEngine)


def synthesize(text: str, speaker: NeuralSpeaker, prosody: Prosody = Prosody()) -> tuple[np.ndarray, int, list[str]]:
    """(audio, the rate to read it at, phoneme chunks), like :func:`.kokoro.synthesize`."""
    plan = render_plan(speaker, prosody)
    chunks = phonemize(text, speaker.accent, _MAX_PHONEMES, pack=False)  # one sentence per call, as hibari does
    rng = np.random.default_rng(job_seed(speaker.id, text, plan))
    eng = engine()
    parts = [eng.run(ps, plan, rng) for ps in chunks]
    audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return audio, plan.source_rate, chunks
