"""Build the general-English word 3-gram (ARPA) that the recognizer's beam search can use.

Source: CMU Sphinx's generic US English 3-gram ``en-us.lm.bin`` (72,547 words; BSD-2-Clause), shipped by
the PyPI package ``pocketsphinx`` and by Debian's ``pocketsphinx-en-us`` (byte-identical file, checked
by its SHA-256). pocketsphinx's own ARPA writer crashes on this file (its header counts six bigrams more
than its trie holds), so :func:`read_trie` reads the binary trie format itself (``src/lm/lm_trie.c`` of
pocketsphinx 5.1.1: a reversed, bit-packed trie with 16-bit quantized probabilities in log base 1.0001).

The build then, deterministically:

1. keeps the words our character vocabulary spells (``a-z`` and apostrophe; hyphenated words and spelled
   letters like ``a.`` go) plus every word of the training transcripts (the synthetic corpus's
   :func:`training.corpus.text.sentence_pool` minus its first ``held_out`` sentences, the valid and test
   splits); transcript words the source does not know get the source's rarest unigram probability;
2. renormalizes the unigrams over that vocabulary;
3. prunes bigrams and trigrams to the ``bigrams`` / ``trigrams`` best by a relative-entropy-like score
   (context probability x n-gram probability x |log ratio to its back-off estimate|), keeping the
   context and suffix bigram of every kept trigram;
4. recomputes every back-off weight so each context's distribution sums to one again;
5. writes ARPA (``%.4f`` log10 values, n-grams sorted by their words), gzip-compressed when ``out`` ends
   in ``.gz`` (KenLM inside flashlight-text reads that; the gzip header carries no time or name).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "SOURCE_SHA256", "DEBIAN_SOURCE", "find_source", "read_trie", "TrieModel", "estimate", "training_words",
    "build_arpa", "write_arpa", "build", "NGrams",
]

SOURCE_SHA256 = "db21d0642286677699e6dbc859d2e5395570222361999387ce60f6e1d01995d6"  # pocketsphinx 5.1.1 (PyPI) = pocketsphinx-en-us 0.8+5prealpha+1-15 (Debian)
DEBIAN_SOURCE = Path("/usr/share/pocketsphinx/model/en-us/en-us.lm.bin")
_TRIE_HEADER = b"Trie Language Model"
_LOG10_BASE = math.log10(1.0001)  # pocketsphinx's logmath base for stored scores
_SPELLABLE = re.compile(r"[a-z']*[a-z][a-z']*")
SENTENCE_START, SENTENCE_END, UNKNOWN = "<s>", "</s>", "<unk>"


def find_source() -> Path:
    """The CMU en-us 3-gram: the ``pocketsphinx`` package's copy, else Debian's ``pocketsphinx-en-us``."""
    spec = importlib.util.find_spec("pocketsphinx")
    candidates = []
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "model" / "en-us" / "en-us.lm.bin" for p in spec.submodule_search_locations]
    candidates.append(DEBIAN_SOURCE)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        "CMU en-us language model not found: `pip install pocketsphinx==5.1.1` or `apt-get install pocketsphinx-en-us`")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _required_bits(value: int) -> int:
    return int(value).bit_length()


def _bits(mem: np.ndarray, offsets: np.ndarray, width: int) -> np.ndarray:
    """Little-endian bit fields of ``width`` bits at bit ``offsets`` of ``mem`` (as pocketsphinx's bitarr)."""
    offsets = np.asarray(offsets, np.int64)
    byte = offsets >> 3
    padded = np.concatenate([mem, np.zeros(8, np.uint8)])
    value = np.zeros(len(offsets), np.uint64)
    for i in range(8):
        value |= padded[byte + i].astype(np.uint64) << np.uint64(8 * i)
    shifted = value >> (offsets & 7).astype(np.uint64)
    return (shifted & np.uint64((1 << width) - 1)).astype(np.int64)


@dataclass
class TrieModel:
    """A 3-gram in log10: ``unigram_prob/backoff[word]``; bigram ``(bi_context, bi_word)`` with
    ``bi_prob/bi_backoff``; trigram ``(tri_first, tri_context, tri_word)`` with ``tri_prob``."""

    words: list[str]
    unigram_prob: np.ndarray
    unigram_backoff: np.ndarray
    bi_context: np.ndarray
    bi_word: np.ndarray
    bi_prob: np.ndarray
    bi_backoff: np.ndarray
    tri_first: np.ndarray
    tri_context: np.ndarray
    tri_word: np.ndarray
    tri_prob: np.ndarray


def read_trie(path: str | Path) -> TrieModel:
    """Read pocketsphinx's trie binary LM (order 3) without pocketsphinx."""
    data = Path(path).read_bytes()
    if not data.startswith(_TRIE_HEADER):
        raise ValueError(f"{path}: not a pocketsphinx trie language model")
    pos = len(_TRIE_HEADER)
    order = data[pos]
    pos += 1
    if order != 3:
        raise ValueError(f"{path}: order {order}, only 3-grams are read")
    counts = struct.unpack_from("<3I", data, pos)
    pos += 12 + 4  # counts, then a dummy int (the old quantization type)
    n_values = (order - 2) * 2 * 65536 + 65536  # bigram prob and backoff bins, trigram prob bins
    bins = np.frombuffer(data, "<f4", n_values, pos).astype(np.float64) * _LOG10_BASE
    pos += 4 * n_values
    unigrams = np.frombuffer(data, np.dtype([("prob", "<f4"), ("bo", "<f4"), ("next", "<u4")]), counts[0] + 1, pos)
    pos += 12 * (counts[0] + 1)
    word_bits = _required_bits(counts[0])
    next_bits = _required_bits(counts[2])
    bi_bits, tri_bits = word_bits + 32 + next_bits, word_bits + 16
    bi_size = ((1 + counts[1]) * bi_bits + 7) // 8 + 8
    tri_size = ((1 + counts[2]) * tri_bits + 7) // 8 + 8
    bi_mem = np.frombuffer(data, np.uint8, bi_size, pos)
    tri_mem = np.frombuffer(data, np.uint8, tri_size, pos + bi_size)
    pos += bi_size + tri_size
    (n_chars,) = struct.unpack_from("<I", data, pos)
    words = [w.decode("utf-8") for w in data[pos + 4: pos + 4 + n_chars].split(b"\0")[:-1]]
    if len(words) != counts[0]:
        raise ValueError(f"{path}: {len(words)} words for {counts[0]} unigrams")

    # The trie is reversed: under unigram w sit the bigrams "h w"; under bigram "h w" the trigrams "x h w".
    # The header may count more bigrams than the trie holds (padding): the unigrams' pointers say how many.
    nexts = unigrams["next"].astype(np.int64)
    n_bi = int(nexts[-1])
    index = np.arange(n_bi + 1, dtype=np.int64) * bi_bits
    bi_word = np.repeat(np.arange(counts[0], dtype=np.int64), np.diff(nexts))
    bi_context = _bits(bi_mem, index[:-1], word_bits)
    bi_backoff = bins[65536:131072][_bits(bi_mem, index[:-1] + word_bits, 16)]
    bi_prob = bins[:65536][_bits(bi_mem, index[:-1] + word_bits + 16, 16)]
    tri_next = _bits(bi_mem, index + word_bits + 32, next_bits)
    n_tri = int(tri_next[-1])
    tri_of = np.repeat(np.arange(n_bi, dtype=np.int64), np.diff(tri_next))
    tri_index = np.arange(n_tri, dtype=np.int64) * tri_bits
    return TrieModel(
        words=words,
        unigram_prob=unigrams["prob"][:-1].astype(np.float64) * _LOG10_BASE,
        unigram_backoff=unigrams["bo"][:-1].astype(np.float64) * _LOG10_BASE,
        bi_context=bi_context, bi_word=bi_word, bi_prob=bi_prob, bi_backoff=bi_backoff,
        tri_first=_bits(tri_mem, tri_index, word_bits), tri_context=bi_context[tri_of], tri_word=bi_word[tri_of],
        tri_prob=bins[131072:][_bits(tri_mem, tri_index + word_bits, 16)],
    )


def estimate(sentences: list[str], discount: float = 0.5) -> TrieModel:
    """A small 3-gram from text (absolute discounting; back-offs are recomputed by :func:`build_arpa`), in
    the shape :func:`read_trie` gives: for tests and for text sources without a ready model."""
    from collections import Counter

    c1: Counter = Counter()
    c2: Counter = Counter()
    c3: Counter = Counter()
    for text in sentences:
        seq = [SENTENCE_START, *text.split(), SENTENCE_END]
        c1.update(seq[1:])
        c2.update(zip(seq[:-1], seq[1:]))
        c3.update(zip(seq[:-2], seq[1:-1], seq[2:]))
    words = sorted({w for key in c2 for w in key})
    index = {w: i for i, w in enumerate(words)}
    total = sum(c1.values())
    uni = np.array([math.log10(c1[w] / total) if c1[w] else -99.0 for w in words])
    history2: Counter = Counter()
    for (h, _), c in c2.items():
        history2[h] += c
    history3: Counter = Counter()
    for (x, h, _), c in c3.items():
        history3[(x, h)] += c
    bi = sorted(c2)
    tri = sorted(c3)
    return TrieModel(
        words=words, unigram_prob=uni, unigram_backoff=np.zeros(len(words)),
        bi_context=np.array([index[h] for h, _ in bi], np.int64), bi_word=np.array([index[w] for _, w in bi], np.int64),
        bi_prob=np.array([math.log10((c2[k] - discount) / history2[k[0]]) for k in bi]),
        bi_backoff=np.zeros(len(bi)),
        tri_first=np.array([index[x] for x, _, _ in tri], np.int64),
        tri_context=np.array([index[h] for _, h, _ in tri], np.int64),
        tri_word=np.array([index[w] for _, _, w in tri], np.int64),
        tri_prob=np.array([math.log10((c3[k] - discount) / history3[k[:2]]) for k in tri]),
    )


def training_words(seed: int = 0, held_out: int = 500) -> set[str]:
    """Words of the synthetic corpus's training transcripts: ``sentence_pool(seed)`` without its first
    ``held_out`` sentences (test and valid take those: 300 + 200 in the shipped recognizer's corpus)."""
    from model_zoo.vocab import normalize_transcript
    from training.corpus.text import sentence_pool

    return {w for text in sentence_pool(seed)[held_out:] for w in normalize_transcript(text).split()}


@dataclass
class NGrams:
    """The pruned model, word indices into ``words``; log10 values."""

    words: list[str]
    unigram_prob: np.ndarray
    unigram_backoff: np.ndarray
    bigrams: np.ndarray  # (n, 2) context, word
    bi_prob: np.ndarray
    bi_backoff: np.ndarray
    trigrams: np.ndarray  # (n, 3)
    tri_prob: np.ndarray
    added: list[str]  # words the source lacks (from the transcripts), at the source's rarest unigram probability


def _pair_index(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Positions of ``queries`` in ``keys`` (int64 codes), -1 where absent."""
    order = np.argsort(keys, kind="stable")
    found = np.searchsorted(keys, queries, sorter=order)
    found = np.minimum(found, len(keys) - 1)
    hit = keys[order[found]] == queries
    return np.where(hit, order[found], -1)


def build_arpa(model: TrieModel, extra_words: set[str] = frozenset(), bigrams: int = 400_000,
               trigrams: int = 200_000) -> NGrams:
    """Restrict ``model`` to spellable words plus ``extra_words``, prune, renormalize (see the module doc)."""
    n_src = len(model.words)
    src_index = {w: i for i, w in enumerate(model.words)}
    keep = np.array([w in (SENTENCE_START, SENTENCE_END) or bool(_SPELLABLE.fullmatch(w)) for w in model.words])
    start, end = src_index[SENTENCE_START], src_index[SENTENCE_END]

    # Vocabulary: kept source words, then the transcript words it lacks, then <unk>; sorted by spelling.
    added = sorted(w for w in extra_words if w not in src_index and _SPELLABLE.fullmatch(w))
    kept_src = [w for w, k in zip(model.words, keep) if k]
    words = sorted(kept_src + added + [UNKNOWN])
    new_index = {w: i for i, w in enumerate(words)}
    remap = np.full(n_src, -1, np.int64)
    for i, w in enumerate(model.words):
        if keep[i]:
            remap[i] = new_index[w]
    floor = float(model.unigram_prob[keep & (model.unigram_prob > -90)].min())

    # Unigrams, renormalized over the new vocabulary (<s> and <unk> are never predicted: -99).
    n = len(words)
    uni = np.full(n, floor)
    uni[remap[keep]] = model.unigram_prob[keep]
    uni[new_index[SENTENCE_START]] = uni[new_index[UNKNOWN]] = -99.0
    predicted = uni > -90
    uni[predicted] -= math.log10(np.power(10.0, uni[predicted]).sum())

    # Candidate n-grams: all words kept.
    bi_ok = keep[model.bi_context] & keep[model.bi_word]
    tri_ok = keep[model.tri_first] & keep[model.tri_context] & keep[model.tri_word]
    src_uni = model.unigram_prob.copy()
    src_uni[start] = src_uni[end]  # weight of the sentence-start context: the sentence rate
    bi_keys = model.bi_context * n_src + model.bi_word
    # Bigram score: P(h) p(w|h) |log p(w|h) - log(bo(h) p(w))|.
    bi_score = np.power(10.0, src_uni[model.bi_context] + model.bi_prob) * np.abs(
        model.bi_prob - model.unigram_backoff[model.bi_context] - model.unigram_prob[model.bi_word])
    # Trigram score: P(x) P(h|x) p(w|xh) |log p(w|xh) - log(bo(xh) p(w|h))|.
    prefix = _pair_index(bi_keys, model.tri_first * n_src + model.tri_context)
    suffix = _pair_index(bi_keys, model.tri_context * n_src + model.tri_word)
    tri_ok &= (prefix >= 0) & (suffix >= 0)
    prefix_prob = np.where(prefix >= 0, model.bi_prob[prefix], -99.0)
    prefix_bo = np.where(prefix >= 0, model.bi_backoff[prefix], 0.0)
    tri_score = np.power(10.0, src_uni[model.tri_first] + prefix_prob + model.tri_prob) * np.abs(
        model.tri_prob - prefix_bo - model.bi_prob[np.maximum(suffix, 0)])

    def top(score: np.ndarray, ok: np.ndarray, count: int) -> np.ndarray:
        candidates = np.flatnonzero(ok)
        # Stable: ties go to the lower index, so the selection is deterministic.
        ranked = candidates[np.argsort(-score[candidates], kind="stable")]
        return np.sort(ranked[:count])

    tri_sel = top(tri_score, tri_ok, trigrams)
    bi_mask = np.zeros(len(bi_keys), bool)
    bi_mask[top(bi_score, bi_ok, bigrams)] = True
    bi_mask[prefix[tri_sel]] = True
    bi_mask[suffix[tri_sel]] = True
    bi_sel = np.flatnonzero(bi_mask)

    bg = np.stack([remap[model.bi_context[bi_sel]], remap[model.bi_word[bi_sel]]], axis=1)
    bi_prob = np.minimum(model.bi_prob[bi_sel], 0.0)
    tg = np.stack([remap[model.tri_first[tri_sel]], remap[model.tri_context[tri_sel]],
                   remap[model.tri_word[tri_sel]]], axis=1)
    tri_prob = np.minimum(model.tri_prob[tri_sel], 0.0)

    # Back-off weights so that sum_w P(w | context) = 1 over the vocabulary.
    uni_bo = _backoffs(bg[:, 0], np.power(10.0, bi_prob), np.power(10.0, uni[bg[:, 1]]), n)
    new_bi_keys = bg[:, 0] * n + bg[:, 1]
    suffix_new = _pair_index(new_bi_keys, tg[:, 1] * n + tg[:, 2])
    lower = np.where(suffix_new >= 0, bi_prob[np.maximum(suffix_new, 0)], uni_bo[tg[:, 1]] + uni[tg[:, 2]])
    context = _pair_index(new_bi_keys, tg[:, 0] * n + tg[:, 1])
    assert (context >= 0).all(), "a kept trigram lost its context bigram"
    bi_bo = _backoffs(context, np.power(10.0, tri_prob), np.power(10.0, lower), len(bg))
    uni_bo[new_index[SENTENCE_END]] = 0.0
    return NGrams(words, uni, uni_bo, bg, bi_prob, bi_bo, tg, tri_prob, added)


def _backoffs(context: np.ndarray, kept: np.ndarray, lower: np.ndarray, n_contexts: int) -> np.ndarray:
    """log10 back-off per context: (1 - kept mass) / (1 - lower-order mass of the same words)."""
    kept_mass = np.bincount(context, weights=kept, minlength=n_contexts)
    lower_mass = np.bincount(context, weights=lower, minlength=n_contexts)
    # Quantized source probabilities can overshoot a little: keep both masses below one.
    numerator = np.maximum(1.0 - kept_mass, 1e-6)
    denominator = np.maximum(1.0 - lower_mass, 1e-6)
    return np.log10(numerator / denominator)


def _fmt(values: np.ndarray) -> list[str]:
    # Rounded first, so that -0.00001 is written 0.0000 rather than -0.0000.
    return [f"{v:.4f}" for v in np.round(values, 4) + 0.0]


def write_arpa(ngrams: NGrams, out: str | Path) -> Path:
    """Write ARPA text, sorted by words; gzip (deterministic header) when ``out`` ends in ``.gz``."""
    words = ngrams.words  # sorted, so word index order is spelling order
    buffer = io.StringIO()
    buffer.write("\\data\\\n")
    buffer.write(f"ngram 1={len(words)}\nngram 2={len(ngrams.bigrams)}\nngram 3={len(ngrams.trigrams)}\n")
    buffer.write("\n\\1-grams:\n")
    for word, p, b in zip(words, _fmt(ngrams.unigram_prob), _fmt(ngrams.unigram_backoff)):
        buffer.write(f"{p}\t{word}\t{b}\n")
    buffer.write("\n\\2-grams:\n")
    order = np.lexsort((ngrams.bigrams[:, 1], ngrams.bigrams[:, 0]))
    probs, backoffs = _fmt(ngrams.bi_prob[order]), _fmt(ngrams.bi_backoff[order])
    for (h, w), p, b in zip(ngrams.bigrams[order].tolist(), probs, backoffs):
        buffer.write(f"{p}\t{words[h]} {words[w]}\t{b}\n")
    buffer.write("\n\\3-grams:\n")
    order = np.lexsort((ngrams.trigrams[:, 2], ngrams.trigrams[:, 1], ngrams.trigrams[:, 0]))
    for (x, h, w), p in zip(ngrams.trigrams[order].tolist(), _fmt(ngrams.tri_prob[order])):
        buffer.write(f"{p}\t{words[x]} {words[h]} {words[w]}\n")
    buffer.write("\n\\end\\\n")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = buffer.getvalue().encode("utf-8")
    if out.name.endswith(".gz"):
        with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                  compresslevel=9) as handle:
            handle.write(data)
    else:
        out.write_bytes(data)
    return out


def build(out: str | Path, source: str | Path | None = None, bigrams: int = 400_000, trigrams: int = 200_000,
          transcripts: bool = True, seed: int = 0, held_out: int = 500) -> dict:
    """The whole build: ``out`` (ARPA, ``.gz`` for gzip) from the CMU model; returns a summary."""
    source = Path(source) if source is not None else find_source()
    digest = sha256(source)
    if source.name == "en-us.lm.bin" and digest != SOURCE_SHA256:
        raise ValueError(f"{source}: unexpected SHA-256 {digest} (expected {SOURCE_SHA256}: pocketsphinx 5.1.1)")
    extra = training_words(seed, held_out) if transcripts else set()
    ngrams = build_arpa(read_trie(source), extra, bigrams, trigrams)
    path = write_arpa(ngrams, out)
    return {"out": str(path), "bytes": path.stat().st_size, "source": str(source), "source_sha256": digest,
            "order": 3, "unigrams": len(ngrams.words), "bigrams": len(ngrams.bigrams),
            "trigrams": len(ngrams.trigrams), "transcript_words": len(extra),
            "transcript_words_added": len(ngrams.added)}
