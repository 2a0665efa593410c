"""The real-speech evaluation set (Asterisk prompts) and the three-set ``python -m training evaluate``.

Transcript parsing, filtering and the KWS labelling rule run on a fake transcripts file and fake prompts
(encoded to G.722 with ffmpeg); the installed Debian package is checked only when present; the set selection
of ``evaluate`` runs on the tiny synthetic KWS corpus (built like tests/training/test_trainer.py builds it).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from model_zoo.vocab import KWS_LABELS, UNKNOWN
from training.corpus.augment import snr_db
from training.corpus.tts import read_wav, write_wav
from training.datasets import asterisk as A

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
installed = A.SOUNDS_DIR.is_dir() and A.TRANSCRIPTS_FILE.is_file()

FAKE_TRANSCRIPTS = """; Core Asterisk Sounds in English

hello: Hello big world.
digits/0: zero
digits/h-40: fourtieth
beep: [this is a simple beep tone]
press: Please press 1 now.
absent: This prompt has no file.
vm-no: no
hello: a second text for the same key is ignored
"""


# ---- transcripts -----------------------------------------------------------------------------------------------
def test_parse_transcripts_skips_comments_and_keeps_first_text() -> None:
    texts = A.parse_transcripts(FAKE_TRANSCRIPTS)
    assert list(texts) == ["hello", "digits/0", "digits/h-40", "beep", "press", "absent", "vm-no"]
    assert texts["hello"] == "Hello big world."
    assert texts["digits/0"] == "zero"


@pytest.mark.parametrize("text,transcript,dropped", [
    ("Hello world.", "hello world", None),
    ("I'm sorry.", "i'm sorry", None),
    ("Call-Forward on Busy.", "call forward on busy", None),
    ("To re-record it.", "to rerecord it", None),
    ("Un-indentified or witheld.", "unidentified or withheld", None),
    ("fourtieth", "fortieth", None),
    ("at [@]", "at", None),
    ("A.M.", "a m", None),
    ("... for ...", "for", None),
    ("[this is a simple beep tone]", "", "not speech"),
    ("(10 seconds of silence)", "", "not speech"),
    ("[sound of monkeys screaming]", "", "not speech"),
    ("Please leave your message after the tone. (simple tone sound plays)", "", "sound effect"),
    ("Please press 1 now.", "", "digits"),
    ("H.323", "", "digits"),
    ("SIP", "", "acronym"),
    ("USB Radio", "", "acronym"),
    ("...", "", "empty"),
])
def test_clean_transcript_rules(text, transcript, dropped) -> None:
    assert A.clean_transcript(text) == (transcript, dropped)


def test_kws_label_rule() -> None:
    assert A.kws_label("zero") == "zero"
    assert A.kws_label("no") == "no"
    assert A.kws_label("forward") == "forward"
    assert A.kws_label("oh") == UNKNOWN  # a single word outside the 35 is _unknown_
    assert A.kws_label("goodbye") == UNKNOWN
    assert A.kws_label("go away") is None  # several words: not a KWS clip, even starting with a keyword
    assert A.kws_label("") is None


# ---- a fake package: prompts encoded to G.722 ------------------------------------------------------------------
def _tone(seconds: float, freq: float, lead: float = 0.2) -> np.ndarray:
    t = np.arange(int(seconds * A.SAMPLE_RATE)) / A.SAMPLE_RATE
    voiced = 0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    pad = np.zeros(int(lead * A.SAMPLE_RATE))
    return np.concatenate([pad, voiced, pad]).astype(np.float32)


@pytest.fixture(scope="module")
def fake_package(tmp_path_factory) -> tuple[Path, Path]:
    """(sounds folder, gzipped transcripts) like the Debian packages', the prompts encoded to G.722."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    base = tmp_path_factory.mktemp("fake-asterisk")
    sounds = base / "sounds"
    for key, audio in {"hello": _tone(1.5, 220), "digits/0": _tone(0.5, 330), "digits/h-40": _tone(0.6, 300),
                       "beep": _tone(0.3, 1000), "press": _tone(1.0, 250), "vm-no": _tone(0.4, 260)}.items():
        wav = base / "wav" / f"{key}.wav"
        write_wav(wav, audio)
        (sounds / key).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(wav), "-c:a", "g722", "-f", "g722",
                        str(sounds / f"{key}.g722")], check=True)
    transcripts = base / "core-sounds-en.txt.gz"
    with gzip.open(transcripts, "wt") as handle:
        handle.write(FAKE_TRANSCRIPTS)
    return sounds, transcripts


@pytest.fixture(scope="module")
def fake_cache(fake_package, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fake-cache")
    A.build_cache(out, *fake_package)
    return out


def test_list_prompts_filters_and_sorts(fake_package) -> None:
    kept = A.list_prompts(*fake_package)
    assert [p.key for p in kept] == ["digits/0", "digits/h-40", "hello", "vm-no"]
    assert [p.transcript for p in kept] == ["zero", "fortieth", "hello big world", "no"]
    every = {p.key: p.dropped for p in A.list_prompts(*fake_package, include_dropped=True)}
    assert every["beep"] == "not speech" and every["press"] == "digits" and every["absent"] == "no audio file"


def test_decode_g722_gives_16k_mono_float(fake_package) -> None:
    audio = A.decode_g722(fake_package[0] / "hello.g722")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - int(1.9 * A.SAMPLE_RATE)) < 400  # 1.5 s of tone between 0.2 s pads
    assert 0.2 < np.abs(audio).max() < 0.6


def test_build_cache_counts_manifest_and_reuse(fake_package, fake_cache) -> None:
    summary = json.loads((fake_cache / "summary.json").read_text())
    assert summary["asr"]["clips"] == 4 and summary["asr"]["words"] == 6
    assert summary["kws"] == {"keyword_clips": 2, "unknown_clips": 1, "per_keyword": {"no": 1, "zero": 1},
                              "keywords_absent": summary["kws"]["keywords_absent"]}
    assert len(summary["kws"]["keywords_absent"]) == 33
    assert summary["dropped"] == {"digits": 1, "no audio file": 1, "not speech": 1}
    assert summary["denoise"]["sentences"] == 1
    rows = A.load_manifest(fake_cache)
    assert [r["key"] for r in rows] == ["digits/0", "digits/h-40", "hello", "vm-no"]
    audio, rate = read_wav(fake_cache / rows[2]["path"])
    assert rate == A.SAMPLE_RATE and rows[2]["seconds"] == pytest.approx(len(audio) / rate, abs=1e-3)
    before = (fake_cache / "manifest.jsonl").stat().st_mtime_ns
    assert A.build_cache(fake_cache, *fake_package) == summary  # reused, not rebuilt
    assert (fake_cache / "manifest.jsonl").stat().st_mtime_ns == before


def test_asr_and_kws_items_have_the_corpus_formats(fake_cache) -> None:
    asr = A.AsteriskASR(fake_cache)
    wave, text = asr[2]
    assert wave.dtype == torch.float32 and wave.dim() == 1 and text == "hello big world" == asr.transcript(2)
    kws = A.AsteriskKWS(fake_cache)
    assert [r["key"] for r in kws.rows] == ["digits/0", "digits/h-40", "vm-no"]
    assert kws.labels == [KWS_LABELS.index("zero"), KWS_LABELS.index(UNKNOWN), KWS_LABELS.index("no")]
    wave, label = kws[0]
    assert wave.shape == (16000,) and wave.dtype == torch.float32 and label == KWS_LABELS.index("zero")
    # trimmed and centred: the 0.5 s word sits in the middle of the second, silence on both sides
    energy = wave.abs()
    assert energy[:1500].max() < 0.01 and energy[-1500:].max() < 0.01 and energy[7000:9000].max() > 0.1
    assert len(A.AsteriskKWS(fake_cache, include_unknown=False)) == 2


def test_denoise_items_mix_at_the_stated_snrs(fake_cache) -> None:
    bank, source = A.heldout_noise_bank(None, seed=0)
    assert "generated" in source and "babble" not in bank.kinds
    data = A.AsteriskDenoise(bank, fake_cache)
    assert len(data) == 3  # one sentence of >= 3 words, at 0, 5 and 10 dB
    for i, snr in enumerate((0.0, 5.0, 10.0)):
        noisy, clean = data[i]
        assert len(noisy) == len(clean) and len(clean) % 256 == 0
        assert snr_db(clean.numpy(), (noisy - clean).numpy()) == pytest.approx(snr, abs=0.01)
        assert data.pair_info(i)["snr"] == snr
    assert torch.equal(data[1][0], A.AsteriskDenoise(bank, fake_cache)[1][0])  # deterministic


def test_missing_packages_give_one_line_with_the_apt_command(tmp_path, monkeypatch, capsys) -> None:
    with pytest.raises(A.AsteriskNotInstalled, match="apt-get install asterisk-core-sounds-en-g722 "
                                                     "asterisk-core-sounds-en"):
        A.list_prompts(tmp_path / "absent")
    monkeypatch.setattr(A, "SOUNDS_DIR", tmp_path / "absent")
    assert A.main(["--out", str(tmp_path / "cache")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "apt-get install" in err and "Traceback" not in err


@pytest.mark.skipif(not installed, reason="Debian packages asterisk-core-sounds-en-g722 and asterisk-core-sounds-en "
                                          "are not installed")
def test_installed_package_prompts() -> None:
    prompts = A.list_prompts()
    keys = {p.key: p for p in prompts}
    assert len(prompts) > 400
    assert keys["digits/0"].transcript == "zero" and keys["hello-world"].transcript == "hello world"
    assert "beep" not in keys and "silence/1" not in keys and not any(k.startswith("silence/") for k in keys)
    assert all(p.transcript and not any(c.isdigit() for c in p.transcript) for p in prompts)
    labels = [A.kws_label(p.transcript) for p in prompts]
    assert {w for w in labels if w and w != UNKNOWN} >= {"zero", "one", "nine", "no"}
    audio = A.decode_g722(keys["hello-world"].path)
    assert 1.0 < len(audio) / A.SAMPLE_RATE < 2.0 and np.abs(audio).max() > 0.1


# ---- evaluate: the three sets on the tiny synthetic corpus -----------------------------------------------------
@pytest.fixture(scope="module")
def tiny_kws(tmp_path_factory) -> Path:
    from training.recipes import apply_overrides, get_recipe
    from training.reproduce import ensure_corpus

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    root = tmp_path_factory.mktemp("corpora") / "kws"
    ensure_corpus(apply_overrides(get_recipe("kws-smoke"), [f"data_root={root}"]))
    return root


def _evaluate(*argv: str) -> dict:
    from training.__main__ import main as training_main

    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert training_main(["evaluate", *argv, "--device", "cpu"]) == 0
    return json.loads(output.getvalue())


def test_synthetic_and_festival_sets_split_the_test_split(tiny_kws, fake_cache) -> None:
    from training.recipes import apply_overrides, get_recipe
    from training.evaluation import evaluation_sets
    from training.tasks import build_datasets

    recipe = apply_overrides(get_recipe("kws-smoke"), [f"data_root={tiny_kws}"])
    whole = build_datasets(recipe)["test"]
    sets = evaluation_sets(recipe, ("synthetic", "festival", "real"), "test", str(fake_cache))
    assert list(sets) == ["synthetic", "festival", "real"]
    synthetic, festival = sets["synthetic"], sets["festival"]
    assert len(synthetic) + len(festival) == len(whole) and len(synthetic) > 0
    assert all(r["synth"] != "festival" for r in synthetic.rows)
    assert all(r["synth"] == "festival" for r in festival.rows)
    assert len(festival) == sum(r["synth"] == "festival" for r in whole.rows)
    # an item of a subset is the very item of the whole split (same augmentation), labels follow the rows
    for subset in (synthetic, festival):
        for i in range(0, len(subset), 7):
            j = subset._origin[i]  # its index in the whole split
            assert whole.rows[j] == subset.rows[i]
            wave, label = subset[i]
            assert label == whole.labels[j] == KWS_LABELS.index(subset.rows[i]["label"])
            assert torch.equal(wave, whole[j][0])
    assert isinstance(sets["real"], A.AsteriskKWS) and len(sets["real"]) == 3


def test_evaluate_scores_three_sets_and_keeps_the_single_split(tiny_kws, fake_cache, tmp_path) -> None:
    report = _evaluate("kws", "--data", str(tiny_kws), "--set", "all", "--real-data", str(fake_cache))
    sets = report["sets"]
    assert list(sets) == ["synthetic", "festival", "real"]
    assert sets["real"]["clips"] == 3 and sets["real"]["keyword_clips"] == 2
    assert sets["real"]["scores"]["count"] == 3
    assert sets["synthetic"]["clips"] == sets["synthetic"]["scores"]["count"] > 0
    assert sets["synthetic"]["split"] == "test" and sets["synthetic"]["voices"] == "all but festival"
    assert sets["festival"]["clips"] + sets["synthetic"]["clips"] == len(
        [r for r in map(json.loads, (tiny_kws / "manifest.jsonl").read_text().splitlines()) if r["split"] == "test"])
    single = _evaluate("kws", "--data", str(tiny_kws))  # the old output: one split, "scores" at the top
    assert single["split"] == "test" and single["scores"]["count"] == sets["synthetic"]["clips"] + sets[
        "festival"]["clips"]
    # accuracy of the whole split is the count-weighted mean of its two parts
    parts = [sets[n]["scores"] for n in ("synthetic", "festival") if sets[n]["clips"]]
    mean = sum(p["accuracy"] * p["count"] for p in parts) / sum(p["count"] for p in parts)
    assert single["scores"]["accuracy"] == pytest.approx(mean, abs=1e-6)
    real_only = _evaluate("kws", "--set", "real", "--real-data", str(fake_cache))
    assert list(real_only["sets"]) == ["real"]
    assert real_only["sets"]["real"]["scores"] == pytest.approx(sets["real"]["scores"], nan_ok=True)
    # no corpus: the real set is still scored, the others say so
    missing = _evaluate("kws", "--data", str(tmp_path / "none"), "--set", "all", "--real-data", str(fake_cache))
    assert missing["sets"]["synthetic"]["error"].startswith("corpus not built")
    assert missing["sets"]["festival"]["error"].startswith("corpus not built")
    assert not math.isnan(missing["sets"]["real"]["scores"]["accuracy"])
