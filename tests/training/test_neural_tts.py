"""The neural synthesizers of the corpus (Kokoro-82M and hibari-tts): deterministic speakers with disjoint
splits, plausible 16 kHz speech that is byte-identical when repeated, and the speech check that drops broken
clips. Skipped where the pip packages are missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.corpus.tts import SAMPLE_RATE, SynthJob, check_speech, synthesize_batch, synthesize_neural
from training.corpus.voices import (
    HELDOUT_MIN_DISTANCE, KOKORO_STYLES, NEURAL_SPEAKER_SLOTS, NEURAL_SYNTHESIZERS, SPLITS, SYNTH_SHARES, Prosody,
    Voice, draw_speaker, is_heldout, speaker_for_voice, speakers_for_split, voices_for_split,
)
from training.corpus.voices import _speaker_distance

SENTENCE = "Go left at the green door, then stop."


# --- speakers and splits (no model needed) ------------------------------------------------------------------

@pytest.mark.parametrize("synth", NEURAL_SYNTHESIZERS)
def test_speaker_draw_is_deterministic_and_in_range(synth: str) -> None:
    assert draw_speaker(synth, 7, 3) == draw_speaker(synth, 7, 3)
    assert draw_speaker(synth, 7, 3) != draw_speaker(synth, 7, 4) != draw_speaker(synth, 8, 4)
    for split in SPLITS:
        speakers = speakers_for_split(synth, split)
        assert len(speakers) == NEURAL_SPEAKER_SLOTS[synth][split]
        assert speakers == speakers_for_split(synth, split)
        for sp in speakers:
            assert speaker_for_voice(sp.voice) == sp and sp.synth == synth
            assert 0.8 <= sp.speed <= 1.2 and -3 <= sp.pitch <= 3 and 0.87 <= sp.formant <= 1.13
            assert sp.accent in ("us", "gb")
            if synth == "kokoro":
                assert len(sp.weights) == len(KOKORO_STYLES) and abs(sum(sp.weights) - 1) < 1e-6
                assert min(sp.weights) >= 0
            else:
                assert sp.weights == ()
    assert {sp.accent for sp in speakers_for_split(synth, "test")} == {"us", "gb"} or synth == "kokoro"


@pytest.mark.parametrize("synth", NEURAL_SYNTHESIZERS)
def test_neural_speaker_splits_are_disjoint(synth: str) -> None:
    by_split = {split: speakers_for_split(synth, split) for split in SPLITS}
    params = {split: {(sp.accent, sp.weights, sp.speed, sp.pitch, sp.formant) for sp in sps} for split, sps in by_split.items()}
    ids = {split: {sp.id for sp in sps} for split, sps in by_split.items()}
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        assert not params[a] & params[b] and not ids[a] & ids[b]
    for split in ("valid", "test"):
        far = [min(_speaker_distance(h, t) for t in by_split["train"]) >= HELDOUT_MIN_DISTANCE for h in by_split[split]]
        assert sum(far) >= len(far) - 1  # redrawn until far from train (best of 200 tries otherwise)
    pools = {split: voices_for_split(split) for split in SPLITS}
    assert set(pools["train"][synth]) == {sp.voice for sp in by_split["train"]}
    assert not any(is_heldout(v) for v in pools["train"][synth])
    assert all(is_heldout(v) for split in ("valid", "test") for v in pools[split][synth])


def test_synth_shares() -> None:
    assert SYNTH_SHARES["train"] == {"kokoro": 0.45, "hibari": 0.15, "espeak-ng": 0.28, "flite": 0.12}
    assert "festival" not in SYNTH_SHARES["train"] and "festival" not in SYNTH_SHARES["valid"]
    for split in SPLITS:
        assert abs(sum(SYNTH_SHARES[split].values()) - 1) < 1e-9
        assert {"kokoro", "hibari"} <= set(voices_for_split(split))
    assert "festival" not in voices_for_split("train") and "festival" in voices_for_split("test")


# --- the speech check --------------------------------------------------------------------------------------

def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Amplitude-modulated harmonics and noise: loud most of the time, like speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    voiced = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8))
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.2 * env * (voiced + 0.3 * rng.standard_normal(t.size))).astype(np.float32)


def test_check_speech_rejects_broken_clips() -> None:
    assert check_speech(_speechlike(0.45), n_phonemes=3, n_chars=3) is None  # "yes"
    assert check_speech(_speechlike(2.6), n_phonemes=33, n_chars=35) is None  # a sentence
    assert "silent" in check_speech(np.zeros(8000, np.float32), 3, 3)
    assert "silent" in check_speech(1e-5 * _speechlike(0.5), 3, 3)
    assert "per phoneme" in check_speech(_speechlike(6.0), 3, 3)  # "yes" for six seconds
    assert "per phoneme" in check_speech(_speechlike(0.3), 40, 40)  # a sentence squeezed into 0.3 s
    assert "too short" in check_speech(_speechlike(0.05), 1, 1)
    gappy = _speechlike(3.0)
    gappy[int(0.2 * SAMPLE_RATE): int(2.8 * SAMPLE_RATE)] = 0.0
    assert "mostly silent" in check_speech(gappy, 20, 20)
    assert "clipped" in check_speech(np.clip(5 * _speechlike(1.0), -0.5, 0.5), 10, 10)


# --- synthesis ---------------------------------------------------------------------------------------------

def _require(synth: str) -> None:
    from training.corpus.hibari import hibari_available
    from training.corpus.kokoro import kokoro_available

    if not (kokoro_available() if synth == "kokoro" else hibari_available()):
        pytest.skip(f"{synth}: pip packages not installed")


@pytest.mark.parametrize("synth,voice", [("kokoro", "train001"), ("hibari", "train000"), ("hibari", "test001")])
def test_neural_synthesis_is_plausible_and_byte_identical(synth: str, voice: str, tmp_path: Path) -> None:
    _require(synth)
    jobs = [SynthJob("yes", "yes", Voice(synth, voice), Prosody()),
            SynthJob("sentence", SENTENCE, Voice(synth, voice), Prosody(rate=1.1, pitch=1.0))]
    first = synthesize_batch(jobs, tmp_path)
    again = synthesize_batch(jobs, tmp_path)
    (word, _), (sentence, used) = first
    assert used == jobs[1].prosody
    for audio in (word, sentence):
        assert audio is not None and audio.dtype == np.float32 and audio.ndim == 1
        assert abs(float(np.abs(audio).max()) - 0.9) < 1e-4  # peak-normalised like the other engines
    assert 0.2 <= len(word) / SAMPLE_RATE <= 1.2
    assert 1.0 <= len(sentence) / SAMPLE_RATE <= 4.5
    assert [a.tobytes() for a, _ in first] == [a.tobytes() for a, _ in again]


def test_speakers_sound_different_and_engine_is_loaded_once() -> None:
    _require("hibari")
    from training.corpus import hibari

    a, why_a = synthesize_neural(SynthJob("a", "seven", Voice("hibari", "train000"), Prosody()), Prosody())
    engine = hibari.engine()
    b, why_b = synthesize_neural(SynthJob("b", "seven", Voice("hibari", "train002"), Prosody()), Prosody())
    assert why_a is None and why_b is None and a.tobytes() != b.tobytes()
    assert hibari.engine() is engine
