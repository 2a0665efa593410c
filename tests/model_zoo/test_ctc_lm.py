"""The general-English n-gram path: the ARPA builder (training/lm) and beam search over an ARPA file."""

from __future__ import annotations

import dataclasses
import json
import gzip
import math
from pathlib import Path

import pytest
import torch

from model_zoo.checkpoint import read_card
from model_zoo.nets.ctc import (
    BeamSearchDecoder, NgramLanguageModel, WordLanguageModel, arpa_unigrams, decoder_from_card,
)
from model_zoo.vocab import ASR_VOCAB
from training.lm.build import DEBIAN_SOURCE, build_arpa, estimate, find_source, read_trie, write_arpa

TEXT = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "a cat and a dog",
    "and then the cat ran",
    "and then the dog sat",
    "the zebra ran",
]


def _read_arpa(path: Path) -> tuple[dict[int, int], dict[int, dict[tuple[str, ...], tuple[float, float | None]]]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    header: dict[int, int] = {}
    sections: dict[int, dict] = {}
    order = 0
    with opener(path, "rt") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line.startswith("ngram "):
                n, count = line[6:].split("=")
                header[int(n)] = int(count)
            elif line.endswith("-grams:"):
                order = int(line[1])
                sections[order] = {}
            elif line == "\\end\\":
                order = 0
            elif order and line:
                fields = line.split("\t")
                words = tuple(fields[1].split())
                assert len(words) == order, line
                sections[order][words] = (float(fields[0]), float(fields[2]) if len(fields) > 2 else None)
    return header, sections


def _prob(sections, history: tuple[str, ...], word: str) -> float:
    """log10 P(word | history) by the ARPA back-off rule."""
    if not history:
        return sections[1][(word,)][0]
    if history + (word,) in sections[len(history) + 1]:
        return sections[len(history) + 1][history + (word,)][0]
    backoff = sections[len(history)].get(history, (0.0, 0.0))[1] or 0.0
    return backoff + _prob(sections, history[1:], word)


def test_builder_writes_a_valid_normalized_arpa(tmp_path):
    ngrams = build_arpa(estimate(TEXT), extra_words={"giraffe"}, bigrams=10, trigrams=6)
    path = write_arpa(ngrams, tmp_path / "tiny.arpa")
    header, sections = _read_arpa(path)
    assert header == {n: len(sections[n]) for n in (1, 2, 3)}
    assert header[2] >= 10 and header[3] == 6  # context and suffix bigrams of the kept trigrams come along
    for order in (1, 2, 3):
        for words, (prob, backoff) in sections[order].items():
            assert prob <= 0.0
            assert (backoff is not None) == (order < 3), words
    # Every context's distribution over the vocabulary sums to one after pruning and renormalization.
    vocabulary = [w for (w,) in sections[1] if w not in ("<s>", "<unk>")]
    assert "giraffe" in vocabulary and "zebra" in vocabulary
    for history in [(), ("the",), ("<s>",), ("and", "then"), ("the", "cat"), ("sat", "on"), ("giraffe",)]:
        total = sum(10 ** _prob(sections, history, w) for w in vocabulary)
        assert total == pytest.approx(1.0, abs=2e-3), history


def test_builder_is_deterministic(tmp_path):
    for name in ("a.arpa.gz", "b.arpa.gz"):
        write_arpa(build_arpa(estimate(TEXT), bigrams=8, trigrams=4), tmp_path / name)
    assert (tmp_path / "a.arpa.gz").read_bytes() == (tmp_path / "b.arpa.gz").read_bytes()
    assert gzip.decompress((tmp_path / "a.arpa.gz").read_bytes()).startswith(b"\\data\\\nngram 1=")


def _cmu_source() -> Path | None:
    try:
        return find_source()
    except FileNotFoundError:
        return None


@pytest.mark.skipif(_cmu_source() is None, reason=f"needs pocketsphinx or {DEBIAN_SOURCE}")
def test_reads_the_cmu_trie():
    model = read_trie(_cmu_source())
    assert len(model.words) == 72547 and model.words[0] == "'bout"
    assert model.unigram_prob[0] == pytest.approx(-6.2831, abs=1e-3)  # as pocketsphinx's ARPA writer says
    assert len(model.bi_prob) == 2051541 and len(model.tri_prob) == 1669625
    the, of = model.words.index("the"), model.words.index("of")
    pair = (model.bi_context == of) & (model.bi_word == the)  # "of the" is common
    assert pair.sum() == 1 and model.bi_prob[pair][0] > -1.0


def _emissions(segments: list[dict[str, float]], frames: int = 3) -> torch.Tensor:
    """``(vocab, frames)`` log-probabilities: each segment holds ``frames`` frames of its characters'
    probabilities, then one blank frame."""
    columns = []
    for segment in segments:
        column = torch.full((len(ASR_VOCAB),), 1e-4)
        for char, p in segment.items():
            column[ASR_VOCAB.index(char)] = p
        columns += [column] * frames + [torch.eye(len(ASR_VOCAB))[0] + 1e-4]
    return torch.stack(columns, dim=1).log()


def _spell(text: str) -> list[dict[str, float]]:
    return [{c: 0.9} for c in text]


def _arpa(tmp_path: Path, sentences: list[str], name: str) -> Path:
    return write_arpa(build_arpa(estimate(sentences)), tmp_path / name)


def test_beam_search_over_an_arpa_file_decodes_its_words(tmp_path):
    arpa = _arpa(tmp_path, TEXT, "tiny.arpa")
    decoder = BeamSearchDecoder(language_model=NgramLanguageModel(arpa, lm_weight=0.5))
    assert decoder.words == sorted(arpa_unigrams(arpa))
    transcript = decoder(_emissions(_spell("the zebra ran")), 0.03)
    assert transcript.text == "the zebra ran"
    assert [w.text for w in transcript.words] == ["the", "zebra", "ran"]
    assert transcript.words[0].start < transcript.words[1].start < transcript.words[2].start
    # "zebra" is a word only the n-gram's lexicon knows: the bigram's search cannot spell it.
    bigram = WordLanguageModel.from_transcripts(["the cat ran", "the dog ran"])
    assert "zebra" not in bigram.words
    assert "zebra" not in BeamSearchDecoder(language_model=bigram)(_emissions(_spell("the zebra ran")), 0.03).text


def test_the_language_model_decides_between_spellings(tmp_path):
    # "then" and "thin" are equally likely acoustically; the LM's text decides.
    ambiguous = _emissions(_spell("and th") + [{"e": 0.45, "i": 0.45}] + _spell("n"))
    then = _arpa(tmp_path, ["and then", "and then the cat", "thin"], "then.arpa.gz")
    thin = _arpa(tmp_path, ["and thin", "and thin ice", "then"], "thin.arpa.gz")
    assert BeamSearchDecoder(language_model=then, lm_weight=1.0)(ambiguous, 0.03).text == "and then"
    assert BeamSearchDecoder(language_model=thin, lm_weight=1.0)(ambiguous, 0.03).text == "and thin"


def test_lexicon_option_restricts_the_words(tmp_path):
    arpa = _arpa(tmp_path, TEXT, "tiny.arpa")
    (tmp_path / "words.txt").write_text("the\nran\ncat\n")
    decoder = BeamSearchDecoder(language_model=NgramLanguageModel(arpa, lexicon=tmp_path / "words.txt"))
    assert decoder.words == ["cat", "ran", "the"]
    assert "zebra" not in decoder(_emissions(_spell("the zebra ran")), 0.03).text


def test_card_names_the_language_model(tmp_path):
    _arpa(tmp_path, TEXT, "english.arpa.gz")
    shipped = dataclasses.replace(read_card("asr"), vocab=ASR_VOCAB, beam_search=None)
    card = dataclasses.replace(shipped, beam_search={"language_model": "english.arpa.gz", "lm_weight": 0.7,
                                                     "word_score": 0.5, "beam_size": 16})
    bigram = WordLanguageModel.from_transcripts(["the cat ran"])
    decoder = decoder_from_card(card, tmp_path, word_model=bigram)
    assert isinstance(decoder.language_model, NgramLanguageModel)
    assert decoder.language_model.lm_weight == 0.7 and decoder.language_model.word_score == 0.5
    assert decoder(_emissions(_spell("the zebra ran")), 0.03).text == "the zebra ran"
    # Without the entry: the checkpoint's bigram, as before; without a card, the default vocabulary.
    for old in (decoder_from_card(shipped, tmp_path, word_model=bigram),
                decoder_from_card(None, tmp_path, word_model=bigram)):
        assert old.language_model is bigram
        assert old(_emissions(_spell("the cat ran")), 0.03).text == "the cat ran"
    with pytest.raises(FileNotFoundError):
        decoder_from_card(dataclasses.replace(shipped, beam_search={"language_model": "missing.arpa"}), tmp_path)


def test_bigram_and_lexicon_free_paths_still_work():
    bigram = WordLanguageModel.from_transcripts(["turn the light on", "turn the light off"])
    emissions = _emissions(_spell("turn the light on"))
    assert BeamSearchDecoder(language_model=bigram)(emissions, 0.03).text == "turn the light on"
    assert BeamSearchDecoder()(emissions, 0.03).text == "turn the light on"
    assert math.isfinite(bigram.log_prob("the", "light"))


def test_a_loaded_recognizer_decodes_with_the_language_model_its_card_names(tmp_path):
    """model_zoo.pipelines.asr.beam_decoder, the one way the service, evaluation and benchmarks build it."""
    import shutil

    import model_zoo
    from model_zoo.checkpoint import CHECKPOINT_DIR
    from model_zoo.pipelines.asr import beam_decoder, ships_language_model

    for suffix in (".json", ".safetensors", ".lm.json"):
        shutil.copy(CHECKPOINT_DIR / f"asr{suffix}", tmp_path / f"mine{suffix}")
    card = json.loads((tmp_path / "mine.json").read_text())
    card.pop("beam_search", None)  # first the bigram beside the checkpoint, whatever the shipped card names
    (tmp_path / "mine.json").write_text(json.dumps(card))
    model = model_zoo.load(tmp_path / "mine.json")
    assert ships_language_model(model) and beam_decoder(model).language_model is model.language_model
    card["beam_search"] = {"language_model": "english.arpa.gz", "lm_weight": 0.7, "beam_size": 16}
    (tmp_path / "mine.json").write_text(json.dumps(card))
    _arpa(tmp_path, TEXT, "english.arpa.gz")  # beside the card, where the card's name points
    decoder = beam_decoder(model_zoo.load(tmp_path / "mine.json"))
    assert isinstance(decoder.language_model, NgramLanguageModel) and decoder.language_model.lm_weight == 0.7
    assert decoder.language_model.path == tmp_path / "english.arpa.gz"
    (tmp_path / "mine.lm.json").unlink()
    del card["beam_search"]
    (tmp_path / "mine.json").write_text(json.dumps(card))
    assert not ships_language_model(model_zoo.load(tmp_path / "mine.json"))
