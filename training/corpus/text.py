"""What the corpus says: keywords, other words for ``_unknown_``, and sentences for ASR and denoising.

Sentences come from two offline sources: Debian's fortune databases (a selection of the milder ones,
split into sentences) and a small template grammar of everyday requests and statements. A sentence is
kept only if a synthesizer will read it the way :func:`model_zoo.vocab.normalize_transcript` writes it:
no digits, no abbreviations or all-capital tokens (engines spell those out), no symbols, at most
:data:`MAX_CHARS` characters.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from model_zoo.vocab import SPEECH_COMMANDS_WORDS, normalize_transcript

__all__ = [
    "MAX_CHARS",
    "FORTUNE_DIR",
    "FORTUNE_DATABASES",
    "UNKNOWN_WORDS",
    "split_unknown_words",
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

# Homophones of keywords would be keyword audio under the wrong label.
_KEYWORD_SOUNDALIKES = {"for", "fore", "to", "too", "ate", "won", "know", "write", "rite", "wright", "of"}
_UNKNOWN_TEXT = """
about above accept across act add afraid after again against age ago agree air all almost alone along
already always amount angry animal answer any apple area arm army around arrive art ask baby back bad
bag ball bank base basket bath battle beach bean bear beat beautiful because become bell belt bench
best better between big bike bill black blanket blue board boat body bone book border bottle bottom
bowl box boy brain bread break breakfast bridge bright bring brother brown brush build burn bus busy
butter button buy cake call camera camp candle candy car card care carry case castle chair chance
change cheap cheese chicken child chin church city clean clear climb clock close cloud coat coffee
cold color comb come common cook cool copy corn corner cost cotton count country course cover cow
crowd cry cup cut dance danger dark daughter day dead deep desk dinner dirty doctor door double dream
dress drink drive drop dry duck during dust early earth easy eat edge egg empty end engine enough
evening every face fact fall family far farm fast father feather feel fence field fight finger fire
first fish flag flat floor flower fly fog food foot forest fork free fresh friend front fruit full
funny game garden gate gentle gift girl give glass glove gold good grass gray great green ground group
grow guess hair half hall hammer hand hang hard hat head hear heart heavy help here hill hold hole home
hook hope horse hospital hot hour hungry hurry ice idea inch island jacket jelly job join juice jump
keep kettle key kind king kitchen kite knee knife lake lamp land large last late laugh lawn leaf leg
lemon letter library light line lion lip list listen little live lock long look loud love low lunch
machine map market match meal meat milk minute mirror money monkey month moon morning mother mountain
mouse mouth move music name narrow near neck needle nest never new news next nice night noise noon
north nose note number ocean office oil old onion open orange other oven owner page paint paper park
party pass past pencil people pepper pick picture piece pillow pink place plane plant plate play please
pocket point potato pretty price print pull purple push queen quick quiet rabbit rain read ready red
remember rest rice ring river road rock roof room rope round run salt sand school sea season seat
second see sell send shape sheep shelf ship shirt shoe short shoulder show sign silver simple sing
sister sit skin sky sleep slow small smell smile smoke snake snow soap soft song soon sound soup south
space speak spoon spring square stair star station stay step stick still stone store storm story
street strong sugar summer sun sweet table tail talk tall teacher teeth tell thank thick thin thing
think thunder ticket tiger time tired today together tomorrow tongue tooth top towel town toy train
travel truck true turn umbrella uncle under until valley village voice wait walk wall want warm wash
watch water wave weather week welcome west wet wheel white wide wife wind window wing winter wire
woman wood word work world yellow young
"""
UNKNOWN_WORDS: tuple[str, ...] = tuple(
    w for w in sorted(set(_UNKNOWN_TEXT.split())) if w not in SPEECH_COMMANDS_WORDS and w not in _KEYWORD_SOUNDALIKES
)


def split_unknown_words(seed: int, held_out_fraction: float = 0.2) -> tuple[list[str], list[str]]:
    """(train words, valid/test words): disjoint, so ``_unknown_`` is tested on words never trained on."""
    order = np.random.default_rng([seed, 7]).permutation(len(UNKNOWN_WORDS))
    cut = int(round(len(order) * held_out_fraction))
    held = sorted(UNKNOWN_WORDS[i] for i in order[:cut])
    return sorted(UNKNOWN_WORDS[i] for i in order[cut:]), held


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
