"""Checkpoint round trips and errors; CTC decoding with word times."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import model_zoo
from model_zoo.checkpoint import CheckpointError, load, save
from model_zoo.nets import build_network
from model_zoo.nets.ctc import BeamSearchDecoder, GreedyPath, WordLanguageModel, best_path, greedy_decode
from model_zoo.vocab import ASR_VOCAB


@pytest.mark.parametrize("task,size", [("kws", "small"), ("denoise", "small"), ("asr", "tiny")])
def test_round_trip(tmp_path, task, size):
    torch.manual_seed(0)
    model = build_network(task, size).eval()
    path = save(model, tmp_path / task, name=task, task=task, recipe={"steps": 0}, scores={"x": 1.0})
    loaded = model_zoo.load(str(path) + ".json")
    x = torch.randn(1, 4096)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded.card.scores == {"x": 1.0} and loaded.card.task == task
    assert not loaded.training


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(CheckpointError, match="unknown model 'nope'"):
        load("nope")
    with pytest.raises(CheckpointError, match="not found"):
        load(tmp_path / "missing.json")
    model = build_network("kws")
    path = save(model, tmp_path / "k", name="k", task="kws")
    # corrupt weights
    (tmp_path / "k.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load(path.with_suffix(".json"))
    # weights of another architecture
    save(build_network("denoise"), tmp_path / "d", name="d", task="denoise")
    (tmp_path / "k.safetensors").write_bytes((tmp_path / "d.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="do not match"):
        load(path.with_suffix(".json"))
    # a card that is not ours, and one with a bad task
    (tmp_path / "k.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read checkpoint card"):
        load(path.with_suffix(".json"))
    (tmp_path / "k.json").write_text(json.dumps({"format": "centaurus-speech/1", "task": "tts"}))
    with pytest.raises(CheckpointError, match="unknown task"):
        load(path.with_suffix(".json"))


def test_shipped_models_load_and_are_listed():
    listed = {m["name"]: m for m in model_zoo.list_models()}
    for name in listed:
        model = model_zoo.load(name)
        assert model.card.name == name
        assert listed[name]["algorithmic_latency_samples"] == model.algorithmic_latency


def emissions(spelling: str) -> torch.Tensor:
    """Log-probs (vocab, frames) that spell ``spelling`` with '-' for blank."""
    lp = torch.full((len(ASR_VOCAB), len(spelling)), -10.0)
    for t, c in enumerate(spelling):
        lp[0 if c == "-" else ASR_VOCAB.index(c), t] = 0.0
    return lp.log_softmax(0)


def test_greedy_decode_collapses_and_times_words():
    t = greedy_decode(emissions("hh-i-- -yy-o"), frame_seconds=0.02, offset=1.0)
    assert t.text == "hi yo"
    assert [w.text for w in t.words] == ["hi", "yo"]
    assert t.words[0].start == pytest.approx(1.0) and t.words[0].end == pytest.approx(1.08)
    assert t.words[1].start == pytest.approx(1.16) and t.words[1].end == pytest.approx(1.24)
    assert all(0.99 < w.confidence <= 1.0 for w in t.words)
    assert greedy_decode(emissions("l-l"), 0.02).text == "ll"  # a blank separates repeated letters


@pytest.mark.parametrize("seed", range(4))
def test_a_greedy_path_read_in_pieces_equals_greedy_decode_of_the_whole(seed):
    """Pieces split runs of a letter, words and the blanks between repeats: the stream's partial after each piece
    is the whole decoding of the frames so far."""
    rng = np.random.default_rng(seed)
    # Runs of 1-4 frames of random tokens (blank, space and letters), each frame's best token clear of the rest.
    tokens = np.repeat(rng.integers(0, len(ASR_VOCAB), 120), rng.integers(1, 5, 120))[:300]
    lp = torch.from_numpy(rng.standard_normal((len(ASR_VOCAB), len(tokens))).astype(np.float32))
    lp[torch.from_numpy(tokens), torch.arange(len(tokens))] += 6.0
    path, at, text = GreedyPath(0.03, offset=2.0), 0, ""
    while at < lp.shape[1]:
        size = int(rng.integers(1, 12))
        grew = path.push(lp[:, at:at + size])
        at = min(lp.shape[1], at + size)
        assert path.transcript() == greedy_decode(lp[:, :at], 0.03, offset=2.0)
        assert path.text() == path.transcript().text
        # It tells whether characters were added: the text changes only then (a space alone may leave it as it was).
        assert grew == (len(path.transcript().text.replace(" ", "")) > len(text.replace(" ", "")))
        text = path.transcript().text
    assert path.frames == len(tokens) and path.transcript().text


def test_the_best_path_of_a_batch_is_each_rows():
    """best_path reads a batch of streams' logits at once, as GreedyPath reads one stream's."""
    logits = torch.from_numpy(np.random.default_rng(0).standard_normal((5, len(ASR_VOCAB), 7)).astype(np.float32))
    tokens, probs = best_path(logits)
    assert tokens.shape == probs.shape == (5, 7)
    for row in range(5):
        one_tokens, one_probs = best_path(logits[row])
        assert torch.equal(tokens[row], one_tokens) and torch.allclose(probs[row], one_probs)
        assert torch.equal(one_tokens, logits[row].argmax(0))
        assert torch.allclose(one_probs, logits[row].softmax(0).max(0).values)


def test_the_beam_search_reads_a_slice_at_a_time_and_finds_what_one_search_of_the_whole_finds(monkeypatch):
    """flashlight's binding holds the GIL while it searches: the search goes SEARCH_SLICE_FRAMES at a time,
    releasing it between slices, and its hypotheses are those of flashlight's own search of the whole clip."""
    import model_zoo.nets.ctc as ctc

    rng = np.random.default_rng(0)
    lm = WordLanguageModel.from_transcripts(["hi yo", "hi there", "yo yo hi"])
    decoder = BeamSearchDecoder(beam_size=8, language_model=lm)
    for frames in (1, 16, 50):
        lp = torch.from_numpy(rng.standard_normal((len(ASR_VOCAB), frames)).astype(np.float32) * 3)
        emissions = lp.log_softmax(dim=0).T.contiguous()
        whole = decoder.decoder(emissions[None])[0]
        sleeps = []
        monkeypatch.setattr(ctc.time, "sleep", sleeps.append)
        sliced = decoder._search(emissions)
        monkeypatch.undo()
        assert len(sleeps) == -(-frames // ctc.SEARCH_SLICE_FRAMES)  # the GIL is released after every slice
        assert [(h.tokens.tolist(), h.words, h.timesteps.tolist(), h.score) for h in sliced] == \
            [(h.tokens.tolist(), h.words, h.timesteps.tolist(), h.score) for h in whole]


def test_beam_search_agrees_with_greedy_on_clear_input():
    lp = emissions("hh-i-- -yy-o")
    beam = BeamSearchDecoder(beam_size=8)(lp, frame_seconds=0.02)
    greedy = greedy_decode(lp, 0.02)
    assert beam.text == greedy.text == "hi yo"
    assert [w.start for w in beam.words] == [w.start for w in greedy.words]


def soft_emissions(frames: list[dict[str, float]]) -> torch.Tensor:
    """Log-probs (vocab, frames) from per-frame probabilities of a few tokens ('-' is blank), the rest tiny."""
    lp = torch.full((len(ASR_VOCAB), len(frames)), 1e-4)
    for t, probs in enumerate(frames):
        for c, p in probs.items():
            lp[0 if c == "-" else ASR_VOCAB.index(c), t] = p
    return (lp / lp.sum(0)).log()


TRANSCRIPTS = ["hello world", "hello there", "the world is wide", "hello world again"]


def test_language_model_is_a_distribution_and_round_trips():
    lm = WordLanguageModel.from_transcripts(TRANSCRIPTS)
    assert lm.words == sorted({w for t in TRANSCRIPTS for w in t.split()})
    outcomes = lm.words + ["</s>"]
    for previous in ("<s>", "hello", "wide", "never-seen"):
        total = sum(math.exp(lm.log_prob(previous, w)) for w in outcomes)
        # The rest of the mass goes to unknown words, through the unigram floor.
        assert 0.95 < total <= 1.0 + 1e-9
    assert lm.log_prob("hello", "world") > lm.log_prob("hello", "wide")
    again = WordLanguageModel.from_dict(json.loads(json.dumps(lm.to_dict())))
    assert again.log_prob("hello", "there") == lm.log_prob("hello", "there")
    with pytest.raises(ValueError, match="word-bigram"):
        WordLanguageModel.from_dict({"kind": "kenlm"})


def test_language_model_carries_its_beam_search_weights():
    lm = WordLanguageModel.from_transcripts(TRANSCRIPTS)
    lm.lm_weight, lm.word_score = 1.5, -1.0
    again = WordLanguageModel.from_dict(json.loads(json.dumps(lm.to_dict())))
    assert (again.lm_weight, again.word_score) == (1.5, -1.0)
    older = {k: v for k, v in lm.to_dict().items() if k not in ("lm_weight", "word_score")}
    assert (WordLanguageModel.from_dict(older).lm_weight, WordLanguageModel.from_dict(older).word_score) == (0.5, 0.0)


def test_beam_search_with_language_model_spells_known_words():
    # The acoustics lean to "wurld"; the lexicon only knows "world".
    frames = [{"w": 0.9}, {"-": 0.9}, {"u": 0.5, "o": 0.4}, {"-": 0.9}, {"r": 0.9}, {"l": 0.9}, {"d": 0.9}]
    lp = soft_emissions(frames)
    assert greedy_decode(lp, 0.02).text == "wurld"
    decoder = BeamSearchDecoder(beam_size=8, language_model=WordLanguageModel.from_transcripts(TRANSCRIPTS))
    transcript = decoder(lp, frame_seconds=0.02)
    assert transcript.text == "world"
    assert transcript.words[0].start == pytest.approx(0.0) and transcript.words[0].end == pytest.approx(0.14)


def test_recognizer_checkpoint_carries_its_language_model(tmp_path):
    path = save(build_network("asr", "tiny"), tmp_path / "r", name="r", task="asr")
    assert load(path.with_suffix(".json")).language_model is None
    lm = WordLanguageModel.from_transcripts(TRANSCRIPTS)
    lm.save(tmp_path / "r.lm.json")
    assert load(path.with_suffix(".json")).language_model.words == lm.words
    (tmp_path / "r.lm.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="cannot read language model"):
        load(path.with_suffix(".json"))
    assert all(not m["name"].endswith(".lm") for m in model_zoo.list_models())
