"""What the corpus says: keywords, other words for ``_unknown_``, and sentences for ASR and denoising.

Sentences come from two offline sources: Debian's fortune databases (a selection of the milder ones,
split into sentences) and a small template grammar of everyday requests and statements. A sentence is
kept only if a synthesizer will read it the way :func:`model_zoo.vocab.normalize_transcript` writes it:
no digits, no abbreviations or all-capital tokens (engines spell those out), no symbols, at most
:data:`MAX_CHARS` characters.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from model_zoo.vocab import SPEECH_COMMANDS_WORDS, normalize_transcript

__all__ = [
    "MAX_CHARS",
    "FORTUNE_DIR",
    "FORTUNE_DATABASES",
    "unknown_word_pool",
    "split_unknown_words",
    "keyword_free",
    "fortune_sentences",
    "template_sentences",
    "sentence_pool",
    "acceptable_sentence",
]

MAX_CHARS = 120
FORTUNE_DIR = Path("/usr/share/games/fortunes")
# The milder databases of fortunes-min and fortunes; computers, definitions, politics and the like are
# left out for jargon, odd formatting or content.
FORTUNE_DATABASES: tuple[str, ...] = (
    "fortunes", "literature", "riddles", "art", "cookie", "education", "food", "humorists", "kids",
    "love", "miscellaneous", "people", "pets", "platitudes", "science", "sports", "wisdom", "work",
)

# Homophones of keywords would be keyword audio under the wrong label. Those whose phonemes differ from the
# keyword's in espeak-ng's lexicon only by an unstressed vowel ("for" /fO@/ against "four" /fo@/) are
# listed by hand; exact homophones are found by :func:`unknown_word_pool`.
_KEYWORD_SOUNDALIKES = {"for", "fore", "to", "too", "ate", "won", "know", "write", "rite", "wright", "of",
                        "wrights", "knows", "nos", "tues", "bye"}
# Inflections of a keyword contain the keyword's sound: a window on "stopped" may fairly call "stop".
_KEYWORD_SUFFIXES = ("", "s", "es", "ed", "d", "ing", "er", "ers", "ly", "y", "th", "ty", "teen", "self")
# Words whose audio is, or contains, a keyword: the keywords, their inflections and the soundalikes.
_KEYWORD_SOUNDS = frozenset({k + s for k in SPEECH_COMMANDS_WORDS for s in _KEYWORD_SUFFIXES} | _KEYWORD_SOUNDALIKES)
_UNKNOWN_CANDIDATES = 12_000  # the most frequent English words considered for ``_unknown_`` (wordfreq)


def _espeak_phonemes(words: Sequence[str]) -> list[str]:
    """espeak-ng's phoneme strings (``-x``, stress marks dropped) of ``words``: one word a line in, one
    clause a line out, in one process."""
    proc = subprocess.run(["espeak-ng", "-q", "-x", "-v", "en-us"], input="\n".join(words), capture_output=True,
                          text=True, check=True)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if len(lines) != len(words):
        raise RuntimeError(f"espeak-ng gave {len(lines)} phoneme lines for {len(words)} words")
    return [re.sub(r"[\s',_]", "", line) for line in lines]


def _edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


@lru_cache(maxsize=1)
def unknown_word_pool() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(words, near_misses)``: everyday English words for ``_unknown_``, and the subset that sounds almost
    like a keyword.

    The candidates are the :data:`_UNKNOWN_CANDIDATES` most frequent English words of ``wordfreq`` that are
    plain lower-case words of 2-14 letters. Left out: keywords, their inflections (``_KEYWORD_SUFFIXES``),
    hand-listed soundalikes and every word whose espeak-ng phonemes equal a keyword's (homophones: their audio
    *is* the keyword). A near miss is a word whose phoneme string is within a small edit distance of a
    keyword's (one edit for short keywords, two for long ones): "heaven" for "seven", "hollow" for "follow".
    """
    from wordfreq import top_n_list

    candidates = [w for w in top_n_list("en", _UNKNOWN_CANDIDATES)
                  if re.fullmatch(r"[a-z]{2,14}", w) and w not in _KEYWORD_SOUNDS]
    phonemes = _espeak_phonemes(list(SPEECH_COMMANDS_WORDS) + candidates)
    keyword_phonemes = phonemes[: len(SPEECH_COMMANDS_WORDS)]
    words, near = [], []
    for word, ph in zip(candidates, phonemes[len(SPEECH_COMMANDS_WORDS):]):
        distances = [_edit_distance(ph, k) for k in keyword_phonemes]
        if min(distances) == 0:
            continue
        words.append(word)
        if any(d <= (1 if len(k) <= 5 else 2) for d, k in zip(distances, keyword_phonemes)):
            near.append(word)
    return tuple(sorted(words)), tuple(sorted(near))


def split_unknown_words(seed: int, held_out_fraction: float = 0.2) -> tuple[list[str], list[str]]:
    """(train words, valid/test words): disjoint, so ``_unknown_`` is tested on words never trained on.
    Near misses are split on their own, so both sides get their share of them."""
    words, near = unknown_word_pool()
    near_set = set(near)
    train: list[str] = []
    held: list[str] = []
    for k, group in enumerate((list(near), [w for w in words if w not in near_set])):
        order = np.random.default_rng([seed, 7, k]).permutation(len(group))
        cut = int(round(len(order) * held_out_fraction))
        held += [group[i] for i in order[:cut]]
        train += [group[i] for i in order[cut:]]
    return sorted(train), sorted(held)


def keyword_free(text: str) -> bool:
    """Whether a sentence has no keyword, no inflection of one and no soundalike: any one-second window of it
    is ``_unknown_`` (running speech for the keyword spotter)."""
    return not set(normalize_transcript(text).split()) & _KEYWORD_SOUNDS


_ALLOWED = re.compile(r"^[A-Za-z ,.;:!?'\"-]+$")
_ABBREVIATION = re.compile(r"\b(?:mr|mrs|ms|dr|st|jr|sr|vs|etc|ie|eg|no|co|inc|ltd|mt|ft|lb|oz)\.", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"']?\s+(?=[\"']?[A-Z])")


def acceptable_sentence(text: str) -> bool:
    """Whether every engine reads ``text`` as its normalised transcript says (see module docstring)."""
    if not 12 <= len(text) <= MAX_CHARS or not _ALLOWED.match(text) or _ABBREVIATION.search(text):
        return False
    tokens = re.findall(r"[A-Za-z']+", text)
    if len(tokens) < 3:
        return False
    for token in tokens:
        bare = token.strip("'")
        if len(bare) > 1 and bare.isupper():  # acronyms and shouting are spelled letter by letter
            return False
        if len(bare) == 1 and bare not in ("a", "A", "I"):
            return False
        if len(bare) > 15 or "''" in token:
            return False
    return bool(normalize_transcript(text))


def _clean(text: str) -> str:
    text = text.replace("\u2019", "'").replace("`", "'").replace("--", ", ")
    text = re.sub(r"\s+", " ", text).strip()
    # Drop unmatched quotes so that espeak's SSML and festival's Scheme see balanced text.
    if text.count('"') % 2:
        text = text.replace('"', "")
    return text.strip(" ,;:")


def fortune_sentences(folder: Path = FORTUNE_DIR, databases: tuple[str, ...] = FORTUNE_DATABASES) -> list[str]:
    """Acceptable sentences of the fortune databases that exist in ``folder``, in file order."""
    sentences: list[str] = []
    for name in databases:
        path = folder / name
        if not path.is_file():
            continue
        for entry in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            # Attribution lines ("-- Mark Twain") and indented verse credits are not read aloud.
            lines = [ln for ln in entry.splitlines() if not ln.strip().startswith("--")]
            body = _clean(" ".join(lines))
            for sentence in _SENTENCE_END.split(body):
                sentence = _clean(sentence)
                if acceptable_sentence(sentence):
                    sentences.append(sentence)
    return sentences


_SLOTS: dict[str, tuple[str, ...]] = {
    "room": ("kitchen", "bedroom", "living room", "bathroom", "garage", "hallway", "office", "garden"),
    "device": ("lights", "lamp", "heater", "fan", "radio", "television", "music", "oven", "alarm"),
    "adj": ("old", "little", "happy", "quiet", "green", "heavy", "bright", "tired", "small", "lovely",
            "cold", "busy", "clever", "strange", "warm", "empty"),
    "animal": ("dog", "cat", "horse", "bird", "rabbit", "fox", "duck", "cow", "mouse", "sheep"),
    "noun": ("house", "river", "garden", "window", "table", "bridge", "road", "market", "school",
             "station", "library", "forest", "kitchen", "village", "boat", "hill"),
    "verb_past": ("walked to", "ran past", "looked at", "waited near", "jumped over", "sat by",
                  "slept under", "stopped at", "came back to", "hid behind"),
    "time": ("this morning", "last night", "on monday", "after lunch", "every day", "tomorrow",
             "before dinner", "in the evening", "next week", "right now"),
    "name": ("anna", "peter", "maria", "john", "sarah", "tom", "lucy", "david", "emma", "james"),
    "food": ("coffee", "tea", "sandwich", "bowl of soup", "piece of cake", "glass of water",
             "cup of milk", "salad", "slice of bread", "orange juice"),
    "count": ("one", "two", "three", "four", "five", "ten", "twenty", "thirty", "forty five"),
    "unit": ("minutes", "seconds", "hours"),
    "place": ("london", "paris", "the city", "the mountains", "the coast", "town", "the park"),
    "action": ("call", "text", "email", "meet", "visit", "remind", "help", "thank"),
}
_TEMPLATES: tuple[str, ...] = (
    "please turn {on_off} the {room} {device}",
    "turn the {device} {on_off} in the {room}",
    "set a timer for {count} {unit}",
    "wake me up in {count} {unit}",
    "what is the weather like in {place} {time}",
    "the {adj} {animal} {verb_past} the {noun}",
    "{name} {verb_past} the {adj} {noun} {time}",
    "can you {action} {name} {time}",
    "I would like a {food} and a {food} please",
    "remind me to {action} {name} {time}",
    "is the {noun} open {time}",
    "my {adj} {animal} is sleeping in the {room}",
    "we are going to {place} {time}",
    "how far is the {noun} from here",
    "{name} said the {noun} was too {adj}",
)


def template_sentences(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct sentences from the template grammar (fewer if it runs out of combinations)."""
    out: dict[str, None] = {}
    tries = 0
    while len(out) < count and tries < 50 * count:
        tries += 1
        template = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))]
        text = re.sub(
            r"\{(\w+)\}",
            lambda m: ("on", "off")[int(rng.integers(2))] if m.group(1) == "on_off"
            else _SLOTS[m.group(1)][int(rng.integers(len(_SLOTS[m.group(1)])))],
            template,
        )
        out.setdefault(text[0].upper() + text[1:] + ".", None)
    return list(out)


def sentence_pool(seed: int, template_share: float = 0.3, fortune_dir: Path = FORTUNE_DIR) -> list[str]:
    """Fortune sentences plus template sentences (``template_share`` of the pool), deduplicated by
    transcript and shuffled by ``seed``; callers cut it into disjoint per-split slices."""
    rng = np.random.default_rng([seed, 11])
    fortunes = fortune_sentences(fortune_dir)
    n_templates = int(len(fortunes) * template_share / (1 - template_share)) if fortunes else 2000
    seen: dict[str, str] = {}
    for text in fortunes + template_sentences(rng, n_templates):
        seen.setdefault(normalize_transcript(text), text)
    pool = list(seen.values())
    return [pool[i] for i in rng.permutation(len(pool))]
