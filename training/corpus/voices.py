"""The voice inventory of the synthetic corpus and its held-out split.

Synthesizers (all Debian packages, all offline):

* ``espeak-ng`` 1.51 (formant): 8 English accents x 99 voice variants (plus the plain voice).
* ``flite`` (diphone and clustergen): ``kal`` (8 kHz), ``kal16``, ``awb``, ``rms``, ``slt``.
* ``festival`` 2.5 (diphone and HTS): ``kal_diphone``, ``ked_diphone``, ``cmu_us_slt_arctic_hts``.

Held out of training (the ``valid`` and ``test`` splits use only these):

* espeak-ng: every voice whose accent is ``en-029`` (Caribbean) or whose variant is one of
  ``m3 f4 klatt2 whisperf Annie boris edward2 iven3 steph2 travis robosoft3 grandma``;
* flite: ``rms``;
* festival: the whole synthesizer, in ``test`` only, as a cross-synthesizer test (``valid`` never has it,
  so choosing checkpoints on ``valid`` does not tune to festival).

``train`` uses every other espeak-ng voice and flite ``kal kal16 awb slt``. Note that
festival's ``kal_diphone`` shares its diphone database with flite's ``kal`` and festival's HTS ``slt`` is the
same speaker as flite's clustergen ``slt``: the festival test measures a new engine more than new speakers.
``awb_time`` (flite) is left out: it is a limited-domain voice that only speaks clock times. The old
``espeak`` 1.48 is not used: for English it gives byte-identical audio to espeak-ng (its ``en-wi`` is
espeak-ng's held-out ``en-029``), so it would add nothing but a leak.

espeak-ng voices are named ``<accent file>+<variant>``. The accent must be the voice *file* name
(``en``, not the language code ``en-gb``): with ``en-gb+m2`` espeak-ng silently falls back to the plain
default voice and ignores the variant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "SYNTHESIZERS",
    "SPLITS",
    "Voice",
    "Prosody",
    "ESPEAK_NG_ACCENTS",
    "ESPEAK_NG_VARIANTS",
    "ESPEAK_NG_HELDOUT_ACCENTS",
    "ESPEAK_NG_HELDOUT_VARIANTS",
    "FLITE_VOICES",
    "FLITE_HELDOUT",
    "FESTIVAL_VOICES",
    "SPLIT_SYNTH_WEIGHTS",
    "all_voices",
    "voices_for_split",
    "voice_split_summary",
    "sample_voice",
    "sample_prosody",
]

SYNTHESIZERS: tuple[str, ...] = ("espeak-ng", "flite", "festival")
SPLITS: tuple[str, ...] = ("train", "valid", "test")

# Hard-coded rather than listed from the data folders, so that the corpus a seed gives does not change
# when a package update adds a variant file.
ESPEAK_NG_ACCENTS: tuple[str, ...] = (
    "en-us", "en", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029",
    "en-us-nyc",
)
ESPEAK_NG_VARIANTS: tuple[str, ...] = (
    "", "Alex", "Alicia", "Andrea", "Andy", "Annie", "AnxiousAndy", "Demonic", "Denis", "Diogo", "Gene",
    "Gene2", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen",
    "RicishayMax", "RicishayMax2", "RicishayMax3", "Storm", "Tweaky", "UniRobot", "adam", "anika",
    "anikaRobot", "announcer", "antonio", "aunty", "belinda", "benjamin", "boris", "caleb", "croak",
    "david", "ed", "edward", "edward2", "f1", "f2", "f3", "f4", "f5", "fast", "grandma", "grandpa",
    "gustave", "iven", "iven2", "iven3", "iven4", "john", "kaukovalta", "klatt", "klatt2", "klatt3",
    "klatt4", "klatt5", "klatt6", "linda", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "marcelo",
    "max", "michel", "miguel", "norbert", "pablo", "paul", "pedro", "quincy", "rob", "robert",
    "robosoft", "robosoft2", "robosoft3", "robosoft4", "robosoft5", "robosoft6", "robosoft7",
    "robosoft8", "sandro", "shelby", "steph", "steph2", "steph3", "travis", "victor", "whisper",
    "whisperf", "zac",
)
ESPEAK_NG_HELDOUT_ACCENTS: tuple[str, ...] = ("en-029",)
# A spread of kinds: male, female, Klatt glottal source, whisper, robotic, elderly.
ESPEAK_NG_HELDOUT_VARIANTS: tuple[str, ...] = (
    "m3", "f4", "klatt2", "whisperf", "Annie", "boris", "edward2", "iven3", "steph2", "travis",
    "robosoft3", "grandma",
)
FLITE_VOICES: tuple[str, ...] = ("kal", "kal16", "awb", "rms", "slt")
FLITE_HELDOUT: tuple[str, ...] = ("rms",)
FESTIVAL_VOICES: tuple[str, ...] = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")

# How often each synthesizer speaks in a split. espeak-ng has hundreds of voices but sounds least
# natural, so flite's four voices still get 40% of the training speech.
SPLIT_SYNTH_WEIGHTS: dict[str, dict[str, float]] = {
    "train": {"espeak-ng": 0.60, "flite": 0.40},
    "valid": {"espeak-ng": 0.60, "flite": 0.40},
    "test": {"espeak-ng": 0.40, "flite": 0.25, "festival": 0.35},
}


@dataclass(frozen=True)
class Voice:
    """One synthesizer voice; ``name`` is what the synthesizer's command line takes."""

    synth: str
    name: str

    @property
    def id(self) -> str:
        return f"{self.synth}:{self.name}"


@dataclass(frozen=True)
class Prosody:
    """Synthesizer-independent speaking style, mapped to each engine's own options in :mod:`.tts`.

    ``rate`` multiplies the speaking rate, ``pitch`` shifts the mean F0 in semitones, ``range`` scales
    the F0 excursion, ``gap`` adds pause between words (in 10 ms units, espeak only).
    """

    rate: float = 1.0
    pitch: float = 0.0
    range: float = 1.0
    gap: int = 0

    def faster(self, factor: float) -> Prosody:
        return Prosody(self.rate * factor, self.pitch, self.range, self.gap)


def _espeak_ng_heldout(name: str) -> bool:
    accent, _, variant = name.partition("+")
    return accent in ESPEAK_NG_HELDOUT_ACCENTS or variant in ESPEAK_NG_HELDOUT_VARIANTS


def all_voices() -> list[Voice]:
    """Every voice of every synthesizer, in a fixed order."""
    voices = [Voice("espeak-ng", f"{a}+{v}" if v else a) for a in ESPEAK_NG_ACCENTS for v in ESPEAK_NG_VARIANTS]
    voices += [Voice("flite", v) for v in FLITE_VOICES]
    voices += [Voice("festival", v) for v in FESTIVAL_VOICES]
    return voices


def _is_heldout(voice: Voice) -> bool:
    if voice.synth == "espeak-ng":
        return _espeak_ng_heldout(voice.name)
    if voice.synth == "flite":
        return voice.name in FLITE_HELDOUT
    return voice.synth == "festival"


def voices_for_split(split: str, synths: tuple[str, ...] = SYNTHESIZERS) -> dict[str, list[Voice]]:
    """Voices a split may use, grouped by synthesizer, restricted to ``synths``.

    ``train`` gets the voices not held out; ``valid`` the held-out ones except festival; ``test`` all the
    held-out ones.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    allowed = SPLIT_SYNTH_WEIGHTS[split]
    out: dict[str, list[Voice]] = {}
    for voice in all_voices():
        if voice.synth not in synths or voice.synth not in allowed:
            continue
        if _is_heldout(voice) == (split != "train"):
            out.setdefault(voice.synth, []).append(voice)
    return out


def voice_split_summary(synths: tuple[str, ...] = SYNTHESIZERS) -> dict[str, dict[str, list[str]]]:
    """Split -> synthesizer -> voice names, for ``corpus.json``."""
    return {
        split: {s: [v.name for v in vs] for s, vs in voices_for_split(split, synths).items()} for split in SPLITS
    }


def sample_voice(rng: np.random.Generator, pool: dict[str, list[Voice]], split: str) -> Voice:
    """A synthesizer by the split's weights (renormalised over ``pool``), then one of its voices."""
    synths = [s for s in SPLIT_SYNTH_WEIGHTS[split] if pool.get(s)]
    weights = np.array([SPLIT_SYNTH_WEIGHTS[split][s] for s in synths])
    synth = synths[int(rng.choice(len(synths), p=weights / weights.sum()))]
    voices = pool[synth]
    return voices[int(rng.integers(len(voices)))]


def sample_prosody(rng: np.random.Generator, sentence: bool) -> Prosody:
    """Speaking style drawn around each engine's default; word gaps only matter for sentences."""
    rate = float(np.exp(rng.uniform(np.log(0.75), np.log(1.3))))
    pitch = float(rng.uniform(-4.0, 4.0))
    f0_range = float(np.exp(rng.uniform(np.log(0.4), np.log(1.8))))
    gap = int(rng.choice([0, 0, 0, 1, 2, 4])) if sentence else 0
    return Prosody(round(rate, 3), round(pitch, 2), round(f0_range, 3), gap)
