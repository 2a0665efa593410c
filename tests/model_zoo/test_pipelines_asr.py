"""The speech recognition rules shared by the service, the evaluation and the benchmarks."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import torch

import model_zoo
from model_zoo.nets import build_network
from model_zoo.nets.ctc import greedy_decode
from model_zoo.pipelines.asr import Recognizer, beam_decoder, clip_logits

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def read_sample(name: str) -> torch.Tensor:
    """A 16-bit mono WAV of ``samples/`` -> ``(L,)`` float32."""
    with wave.open(str(SAMPLES / name), "rb") as handle:
        pcm = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    return torch.from_numpy(pcm.astype(np.float32) / 32768.0)


def test_a_padded_batch_is_cut_back_to_each_clips_own_frames():
    torch.manual_seed(0)
    model = build_network("asr", "tiny").eval()
    clips = [torch.randn(4000), torch.randn(9000)]
    batch = torch.zeros(2, 9000)
    for b, clip in enumerate(clips):
        batch[b, : len(clip)] = clip
    with torch.no_grad():
        cut = clip_logits(model, model(batch), [len(c) for c in clips])
        alone = [model(c[None])[0] for c in clips]
    for got, want in zip(cut, alone):
        assert got.shape == want.shape  # causal: the padding after a clip leaves its own frames alone
        assert torch.allclose(got, want, atol=1e-5)


def test_the_recognizer_decodes_greedy_or_with_the_beam_search_it_ships_with():
    model = model_zoo.load("asr")
    recognizer = Recognizer(model)
    assert recognizer.vocab == model.card.vocab
    clip = read_sample("turn-on-the-lights.wav")
    with torch.inference_mode():
        logits = model(clip[None])[0]
    greedy = recognizer(clip, beam_search=False)
    assert greedy == greedy_decode(logits, model.frame_seconds, vocab=model.card.vocab)
    assert recognizer(clip, beam_search=True) == beam_decoder(model)(logits, model.frame_seconds)
    assert recognizer.beam is recognizer.beam  # built once
    assert greedy.words  # the sample is speech: the times below are checked on real words
    shifted = recognizer.decode(logits, beam_search=False, offset=2.0)
    assert [w.start for w in shifted.words] == pytest.approx([w.start + 2.0 for w in greedy.words], abs=1e-3)
