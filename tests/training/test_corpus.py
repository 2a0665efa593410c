"""The synthetic corpus: tiny builds of each task in tmp_path, checked for determinism, the held-out voice
split, audio format, label and transcript sets, denoising SNR, augmentation and the Dataset contracts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from model_zoo.vocab import ASR_VOCAB, KWS_LABELS, SILENCE, SPEECH_COMMANDS_WORDS, UNKNOWN, normalize_transcript
from training.corpus import ASRCorpus, DenoiseCorpus, KWSCorpus, asr_collate, build_corpus, parse_size
from training.corpus import augment as A
from training.corpus import build as B
from training.corpus.noise import GENERATORS, HELDOUT_NOISE_TYPES, TRAIN_NOISE_TYPES, generate
from training.corpus.text import acceptable_sentence, keyword_free, split_unknown_words, unknown_word_pool
from training.corpus.tts import SAMPLE_RATE, SynthJob, available_synthesizers, synthesize_batch, trim_silence
from training.corpus.voices import Prosody, Voice, is_heldout, voices_for_split

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("corpus")
    out = {}
    for name, task, seed in (("kws", "kws", 0), ("kws_again", "kws", 0), ("kws_seed1", "kws", 1),
                             ("asr", "asr", 0), ("denoise", "denoise", 0)):
        build_corpus(task, base / name, seed=seed, size="tiny", workers=2, progress=False)
        out[name] = base / name
    return out


def manifest(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]


def data_files(root: Path) -> dict[str, bytes]:
    """Every file but corpus.json (which records build times)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != "corpus.json"}


# --- determinism -----------------------------------------------------------------------------------

def test_same_seed_gives_identical_files(corpora: dict[str, Path]) -> None:
    a, b = data_files(corpora["kws"]), data_files(corpora["kws_again"])
    assert a.keys() == b.keys()
    assert len([k for k in a if k.endswith(".wav")]) > 100
    assert [k for k in a if a[k] != b[k]] == []


def test_an_interrupted_build_resumes_to_the_same_files(corpora: dict[str, Path], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    real_work, calls = B._work, []

    class Killed(Exception):
        pass

    def dies_on_the_third_chunk(task):
        calls.append(task[1])
        if calls == ["00000", "00001", "00002"]:  # the first build only
            raise Killed
        return real_work(task)

    monkeypatch.setattr(B, "_work", dies_on_the_third_chunk)
    with pytest.raises(Killed):
        build_corpus("kws", tmp_path / "kws", seed=0, size="tiny", workers=1, progress=False)
    assert len(list((tmp_path / "kws" / ".build").glob("0*.json"))) == 2 and not (tmp_path / "kws" / "corpus.json").exists()
    calls.clear()
    build_corpus("kws", tmp_path / "kws", seed=0, size="tiny", workers=1, progress=False)
    assert "00000" not in calls and "00001" not in calls and "00002" in calls  # only the unfinished chunks ran
    assert data_files(tmp_path / "kws") == data_files(corpora["kws"])
    assert not (tmp_path / "kws" / ".build").exists()


def test_different_seed_gives_different_corpus(corpora: dict[str, Path]) -> None:
    a, c = manifest(corpora["kws"]), manifest(corpora["kws_seed1"])
    assert [r["voice"] for r in a] != [r["voice"] for r in c]
    fa, fc = data_files(corpora["kws"]), data_files(corpora["kws_seed1"])
    common = [k for k in fa if k in fc and k.endswith(".wav")]
    assert sum(fa[k] != fc[k] for k in common) > len(common) // 2


# --- voices and splits -----------------------------------------------------------------------------

def heldout(voice_id: str) -> bool:
    synth, name = voice_id.split(":", 1)
    return is_heldout(Voice(synth, name))


@pytest.mark.parametrize("name", ["kws", "asr", "denoise"])
def test_heldout_voices_never_in_train(corpora: dict[str, Path], name: str) -> None:
    rows = [r for r in manifest(corpora[name]) if r["voice"]]
    train = {r["voice"] for r in rows if r["split"] == "train"}
    evaluation = {r["voice"] for r in rows if r["split"] != "train"}
    assert train and evaluation and not train & evaluation
    assert not any(heldout(v) for v in train)
    assert all(heldout(v) for v in evaluation)
    assert not any(r["synth"] == "festival" for r in rows if r["split"] == "valid")
    meta = json.loads((corpora[name] / "corpus.json").read_text())
    for split in ("train", "valid", "test"):
        listed = {f"{s}:{v}" for s, names in meta["voices"][split].items() for v in names}
        assert {r["voice"] for r in rows if r["split"] == split} <= listed


def test_voice_inventory_split_is_disjoint_and_covers_every_synth() -> None:
    train = {v for vs in voices_for_split("train").values() for v in vs}
    valid = {v for vs in voices_for_split("valid").values() for v in vs}
    test = {v for vs in voices_for_split("test").values() for v in vs}
    assert not train & (valid | test)
    # The engines' held-out voices serve valid and test alike; the neural speakers have a slot set per split.
    neural = {"kokoro", "hibari"}
    assert {v for v in valid if v.synth not in neural} <= test and not {v for v in valid if v.synth in neural} & test
    assert {v.synth for v in train} == {"espeak-ng", "flite", "kokoro", "hibari"}
    assert {v.synth for v in test} == {"espeak-ng", "flite", "festival", "kokoro", "hibari"}
    assert Voice("flite", "rms") in valid and Voice("flite", "slt") in train


# --- audio format, labels, transcripts -------------------------------------------------------------

@pytest.mark.parametrize("name,limit", [("kws", 0.98), ("asr", 12.0), ("denoise", 12.0)])
def test_wavs_are_16k_mono_pcm16_within_length(corpora: dict[str, Path], name: str, limit: float) -> None:
    for row in manifest(corpora[name]):
        if row["path"] is None:
            continue
        if row.get("running"):  # a keyword-free sentence, cropped to windows by the dataset
            limit = 12.0
        with wave.open(str(corpora[name] / row["path"])) as handle:
            assert (handle.getframerate(), handle.getnchannels(), handle.getsampwidth()) == (16000, 1, 2)
            assert 0 < handle.getnframes() <= limit * 16000
            assert abs(handle.getnframes() - row["seconds"] * 16000) <= 8  # seconds are rounded to 1 ms


def test_kws_label_set(corpora: dict[str, Path]) -> None:
    rows = manifest(corpora["kws"])
    for split in ("train", "valid", "test"):
        assert {r["label"] for r in rows if r["split"] == split} == set(KWS_LABELS)
    for r in rows:
        if r["label"] == UNKNOWN:
            assert r["text"] not in SPEECH_COMMANDS_WORDS
        elif r["label"] == SILENCE:
            assert r["path"] is None
        else:
            assert r["text"] == r["label"]
    train_words, held_words = split_unknown_words(0)
    assert len(train_words) >= 5000 and len(held_words) >= 1000 and not set(train_words) & set(held_words)
    words = [r for r in rows if r["label"] == UNKNOWN and not r.get("running")]
    assert {r["text"] for r in words if r["split"] == "train"} <= set(train_words)
    assert {r["text"] for r in words if r["split"] != "train"} <= set(held_words)
    running = [r for r in rows if r.get("running")]
    assert {r["split"] for r in running} == {"train", "valid"}  # test keeps to single words
    assert all(r["label"] == UNKNOWN and keyword_free(r["text"]) for r in running)
    assert not {r["text"] for r in running if r["split"] == "train"} & {r["text"] for r in running if r["split"] == "valid"}


def test_unknown_words_leave_out_keyword_sounds_and_keep_near_misses() -> None:
    words, near = unknown_word_pool()
    assert len(words) >= 10000 and set(near) <= set(words)
    # Homophones and inflections of keywords would be keyword audio labelled _unknown_.
    for word in ("four", "for", "two", "to", "won", "know", "right", "write", "sevens", "going", "eighty"):
        assert word not in words
    for word in ("heaven", "hollow", "bad"):  # near misses of seven, follow, bed
        assert word in near
    assert {"table", "because", "window"} <= set(words) - set(near)
    assert not keyword_free("please set a timer for ten minutes") and keyword_free("the quick brown fox")


@pytest.mark.parametrize("name", ["asr", "denoise"])
def test_transcripts_within_vocabulary(corpora: dict[str, Path], name: str) -> None:
    rows = manifest(corpora[name])
    allowed = set(ASR_VOCAB[1:])
    for r in rows:
        assert r["transcript"] and set(r["transcript"]) <= allowed
        assert r["transcript"] == normalize_transcript(r["text"])
        assert len(r["text"]) <= 120 and not any(ch.isdigit() for ch in r["text"])
    by_split = {s: {r["transcript"] for r in rows if r["split"] == s} for s in ("train", "valid", "test")}
    assert not by_split["train"] & (by_split["valid"] | by_split["test"])


def test_sentence_filter() -> None:
    assert acceptable_sentence("The old man walked slowly down to the river.")
    for bad in ("He paid 20 dollars for it.", "Ask Mr. Smith about the plan.", "The NASA budget was cut.",
                "Send it to me @ home today.", "Too short.", "word " * 30):
        assert not acceptable_sentence(bad), bad


# --- denoising pairs -------------------------------------------------------------------------------

def test_denoise_pairs_have_the_requested_snr(corpora: dict[str, Path]) -> None:
    seen_kinds: dict[str, set[str]] = {}
    for split in ("train", "valid", "test"):
        ds = DenoiseCorpus(corpora["denoise"], split, seed=3, segment_seconds=1.3)
        assert ds.segment % 256 == 0
        snrs = []
        for epoch in range(6):
            ds.set_epoch(epoch)
            for i in range(len(ds)):
                noisy, clean = ds[i]
                info = ds.pair_info(i)
                assert noisy.shape == clean.shape == (ds.segment,)
                assert noisy.dtype == clean.dtype == torch.float32
                measured = A.snr_db(clean.numpy(), (noisy - clean).numpy())
                assert measured == pytest.approx(info["snr"], abs=0.05)
                assert -5.0 <= info["snr"] <= 20.0 and float(noisy.abs().max()) <= 1.0
                snrs.append(info["snr"])
                seen_kinds.setdefault(split, set()).add(info["noise"])
        assert max(snrs) - min(snrs) > 5.0  # drawn over the range, not a constant
    assert not seen_kinds["train"] & set(HELDOUT_NOISE_TYPES)
    assert not seen_kinds["valid"] & set(HELDOUT_NOISE_TYPES)


def test_denoise_whole_utterance_is_padded_to_256(corpora: dict[str, Path]) -> None:
    ds = DenoiseCorpus(corpora["denoise"], "test", segment_seconds=None)
    for i in range(len(ds)):
        noisy, clean = ds[i]
        assert len(noisy) % 256 == 0 and len(noisy) >= len(ds.dry(i))


# --- augmentation ----------------------------------------------------------------------------------

def test_augmentation_primitives_keep_shapes_and_finite_values() -> None:
    rng = np.random.default_rng(0)
    speech = (np.sin(np.arange(8000) * 0.05) * np.hanning(8000)).astype(np.float32)
    assert len(A.speed_perturb(speech, 1.1)) == pytest.approx(8000 / 1.1, rel=0.02)
    assert len(A.speed_perturb(speech, 0.9)) == pytest.approx(8000 / 0.9, rel=0.02)
    for rt60 in (0.15, 0.5, 1.2):
        rir = A.synthetic_rir(rng, rt60)
        wet = A.reverberate(speech, rir)
        assert wet.shape == speech.shape and np.isfinite(wet).all()
        tail = np.abs(rir[int(0.9 * len(rir)):]).max()
        assert tail < 0.05  # decays as an RT60 says
    noise = rng.standard_normal(16000).astype(np.float32)
    placed = A.place(speech, 16000, rng)
    mixed = A.mix_at_snr(placed, noise, 10.0)
    assert 20 * np.log10(A.active_rms(placed) / A.rms(mixed - placed)) == pytest.approx(10.0, abs=0.01)
    leveled = A.set_level(mixed, -20.0)
    assert 20 * np.log10(A.rms(leveled)) == pytest.approx(-20.0, abs=0.01)


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_noise_generators(kind: str) -> None:
    a = generate(kind, np.random.default_rng(1), 2.0)
    b = generate(kind, np.random.default_rng(1), 2.0)
    assert a.shape == (32000,) and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.array_equal(a, b) and 0.5 < np.abs(a).max() <= 0.9 + 1e-6
    spectrum = np.abs(np.fft.rfft(a)) ** 2
    centroid = float((spectrum * np.fft.rfftfreq(len(a), 1 / 16000)).sum() / spectrum.sum())
    if kind in ("brown", "hum", "engine"):
        assert centroid < 800
    if kind in ("white", "rain"):
        assert centroid > 2500


def test_trim_and_synthesis_produce_16k_speech() -> None:
    jobs = [SynthJob(f"k{i}", "seven", Voice(s, n), Prosody()) for i, (s, n) in enumerate(
        [("espeak-ng", "en-us+f2"), ("flite", "kal"), ("festival", "kal_diphone")]) if s in available_synthesizers()]
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        results = synthesize_batch(jobs, Path(tmp))
    for audio, _ in results:
        assert audio is not None and 0.2 * SAMPLE_RATE < len(audio) < 1.0 * SAMPLE_RATE
        assert np.abs(audio).max() == pytest.approx(0.9, abs=1e-4)
    padded = np.concatenate([np.zeros(8000), np.ones(1600) * 0.5, np.zeros(8000)]).astype(np.float32)
    assert len(trim_silence(padded, margin_s=0.05)) == 1600 + 2 * 800


# --- datasets --------------------------------------------------------------------------------------

def test_kws_dataset_items(corpora: dict[str, Path]) -> None:
    train = KWSCorpus(corpora["kws"], "train", seed=5)
    labels = set()
    for i in range(len(train)):
        wave_, label = train[i]
        assert isinstance(wave_, torch.Tensor) and wave_.shape == (16000,) and wave_.dtype == torch.float32
        assert isinstance(label, int) and 0 <= label < len(KWS_LABELS)
        assert torch.isfinite(wave_).all() and float(wave_.abs().max()) <= 1.0
        labels.add(label)
    assert labels == set(range(len(KWS_LABELS)))
    first = train[0][0].clone()
    assert torch.equal(first, train[0][0])  # same epoch, same item
    train.set_epoch(1)
    assert not torch.equal(first, train[0][0])  # a new augmentation each epoch
    valid_a, valid_b = KWSCorpus(corpora["kws"], "valid", seed=0), KWSCorpus(corpora["kws"], "valid", seed=9)
    valid_b.set_epoch(4)
    for i in range(len(valid_a)):
        assert torch.equal(valid_a[i][0], valid_b[i][0])  # fixed evaluation examples


def test_asr_dataset_and_collate(corpora: dict[str, Path]) -> None:
    ds = ASRCorpus(corpora["asr"], "train", seed=0)
    items = [ds[i] for i in range(len(ds))]
    for wave_, text in items:
        assert wave_.ndim == 1 and wave_.dtype == torch.float32 and isinstance(text, str) and text
        assert torch.isfinite(wave_).all()
    waves, lengths, texts = asr_collate(items)
    assert waves.shape == (len(items), int(lengths.max())) and lengths.dtype == torch.int64
    assert texts == [t for _, t in items]
    for i, (wave_, _) in enumerate(items):
        assert torch.equal(waves[i, : lengths[i]], wave_) and not waves[i, lengths[i]:].any()
    clean = ASRCorpus(corpora["asr"], "test", augment=False)
    assert np.array_equal(clean[0][0].numpy(), clean.dry(0))


def test_parse_size() -> None:
    assert parse_size("kws", "tiny") == ("tiny", {"train": 1, "valid": 1, "test": 1})
    assert parse_size("asr", "100,10,20") == ("custom", {"train": 100, "valid": 10, "test": 20})
    assert parse_size("denoise", "300")[1]["train"] == 300
    with pytest.raises(ValueError):
        parse_size("kws", "0,1,1")


def test_cli_builds_a_tiny_corpus(tmp_path: Path) -> None:
    out = tmp_path / "cli_kws"
    proc = subprocess.run([sys.executable, "-m", "training", "corpus", "kws", "--out", str(out), "--size", "tiny",
                           "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "corpus.json").read_text())
    # one of each keyword, UNKNOWN_FACTOR other words, RUNNING_FACTOR sentences and SILENCE_FACTOR silences
    expected = 35 + B.UNKNOWN_FACTOR + B.RUNNING_FACTOR + B.SILENCE_FACTOR
    assert meta["task"] == "kws" and meta["size"] == "tiny" and meta["splits"]["train"]["items"] == expected
    assert set(meta["noise"]["per_split"]["train"]["types"]) == set(TRAIN_NOISE_TYPES)


def test_every_espeak_ng_accent_applies_its_variant(tmp_path: Path) -> None:
    """espeak-ng silently ignores ``+variant`` after a language code it cannot map to a voice file (e.g.
    ``en-gb+m2`` speaks as plain ``en``); every accent of the inventory must really change the audio."""
    from training.corpus.voices import ESPEAK_NG_ACCENTS

    jobs = [SynthJob(f"{a}{v}", "water bottle", Voice("espeak-ng", a + v), Prosody())
            for a in ESPEAK_NG_ACCENTS for v in ("", "+m2")]
    audio = [a for a, _ in synthesize_batch(jobs, tmp_path)]
    assert all(a is not None for a in audio)
    assert len({a.tobytes() for a in audio}) == len(jobs)
