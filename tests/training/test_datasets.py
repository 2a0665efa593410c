"""Dataset loaders against miniature corpora built in tmp_path in the official folder layouts."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio

from model_zoo.vocab import KWS_LABELS, SILENCE, UNKNOWN
from training.datasets import LibriSpeech, SpeechCommands, VoiceBankDemand


def write_wav(path: Path, signal: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM mono WAV, the format of all three corpora."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(signal, -1, 1) * 32767).round().astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(pcm.tobytes())


def pcm_roundtrip(signal: np.ndarray) -> torch.Tensor:
    return torch.from_numpy((np.clip(signal, -1, 1) * 32767).round() / 32768).float()


# --- Speech Commands -------------------------------------------------------------------------------

SC_FILES = {  # relative path -> duration in seconds
    "yes/aaaa0001_nohash_0.wav": 1.0, "yes/aaaa0002_nohash_0.wav": 0.5, "yes/aaaa0003_nohash_1.wav": 1.0,
    "no/bbbb0001_nohash_0.wav": 1.2, "no/bbbb0002_nohash_0.wav": 1.0, "no/bbbb0003_nohash_0.wav": 0.8,
    "marvin/cccc0001_nohash_0.wav": 1.0, "marvin/cccc0002_nohash_0.wav": 1.0,
    "extra/dddd0001_nohash_0.wav": 1.0, "extra/dddd0002_nohash_0.wav": 1.0,
}
SC_VALID = ["yes/aaaa0003_nohash_1.wav", "no/bbbb0003_nohash_0.wav"]
SC_TEST = ["marvin/cccc0002_nohash_0.wav", "extra/dddd0002_nohash_0.wav"]
NOISE_SECONDS = 10


@pytest.fixture(scope="module")
def sc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("speech_commands")
    rng = np.random.default_rng(0)
    for rel, seconds in SC_FILES.items():
        write_wav(root / rel, 0.3 * rng.uniform(-1, 1, int(seconds * 16000)), 16000)
    (root / "validation_list.txt").write_text("\n".join(SC_VALID) + "\n")
    (root / "testing_list.txt").write_text("\n".join(SC_TEST) + "\n")
    for name in ("white_noise", "pink_noise"):
        write_wav(root / "_background_noise_" / f"{name}.wav", 0.2 * rng.standard_normal(NOISE_SECONDS * 16000), 16000)
    (root / "_background_noise_" / "README.md").write_text("not audio")
    (root / "LICENSE").write_text("cc-by")
    return root


def test_speech_commands_splits_follow_official_lists(sc_root: Path) -> None:
    splits = {s: SpeechCommands(sc_root, s, silence_fraction=0) for s in ("train", "valid", "test")}
    assert sorted(splits["valid"].files) == sorted(SC_VALID)
    assert sorted(splits["test"].files) == sorted(SC_TEST)
    assert sorted(splits["train"].files) == sorted(set(SC_FILES) - set(SC_VALID) - set(SC_TEST))
    assert len(splits["train"]) == 6


def test_speech_commands_labels_and_shapes(sc_root: Path) -> None:
    ds = SpeechCommands(sc_root, "train", silence_fraction=0.5)
    assert len(ds) == 6 + 3
    names = [KWS_LABELS[label] for label in ds.labels]
    expected_words = [rel.split("/")[0] for rel in ds.files]
    assert names[:6] == [w if w != "extra" else UNKNOWN for w in expected_words]
    assert names[6:] == [SILENCE] * 3
    for i in range(len(ds)):
        waveform, label = ds[i]
        assert waveform.shape == (16000,) and waveform.dtype == torch.float32
        assert label == ds.labels[i]
    assert KWS_LABELS.index("yes") == ds[ds.files.index("yes/aaaa0001_nohash_0.wav")][1]


def test_speech_commands_pads_short_and_crops_long_clips(sc_root: Path) -> None:
    ds = SpeechCommands(sc_root, "train", silence_fraction=0)
    short, _ = ds[ds.files.index("yes/aaaa0002_nohash_0.wav")]
    assert short[:8000].abs().max() > 0.1 and short[8000:].abs().max() == 0
    long_raw, sr = torchaudio.load(str(sc_root / "no/bbbb0001_nohash_0.wav"))
    assert sr == 16000 and long_raw.shape[1] == 19200
    long, _ = ds[ds.files.index("no/bbbb0001_nohash_0.wav")]
    torch.testing.assert_close(long, long_raw[0, :16000])


def _crop_starts(noise: torch.Tensor, crop: torch.Tensor) -> list[int]:
    """Every offset at which ``crop`` occurs in ``noise`` (candidates by first sample, then verified)."""
    candidates = (noise[: noise.shape[0] - crop.shape[0] + 1] == crop[0]).nonzero().flatten().tolist()
    return [s for s in candidates if torch.equal(noise[s : s + crop.shape[0]], crop)]


def test_speech_commands_silence_crops_are_deterministic_and_split_disjoint(sc_root: Path) -> None:
    a = SpeechCommands(sc_root, "train", silence_fraction=1.0, seed=3)
    b = SpeechCommands(sc_root, "train", silence_fraction=1.0, seed=3)
    c = SpeechCommands(sc_root, "train", silence_fraction=1.0, seed=4)
    silence_a = [a[i][0] for i in range(6, 12)]
    assert all(torch.equal(x, b[i][0]) for x, i in zip(silence_a, range(6, 12)))
    assert not all(torch.equal(x, c[i][0]) for x, i in zip(silence_a, range(6, 12)))
    noises = [torchaudio.load(str(p))[0][0] for p in sorted((sc_root / "_background_noise_").glob("*.wav"))]
    length = NOISE_SECONDS * 16000
    regions = {"train": (0, 0.8 * length), "valid": (0.8 * length, 0.9 * length), "test": (0.9 * length, length)}
    for split, (lo, hi) in regions.items():
        ds = SpeechCommands(sc_root, split, silence_fraction=1.0, seed=3)
        for i in range(len(ds.files), len(ds)):
            crop = ds[i][0]
            starts = [s for n in noises for s in _crop_starts(n, crop)]
            assert len(starts) == 1 and lo <= starts[0] and starts[0] + 16000 <= hi


def test_speech_commands_accepts_torchaudio_parent_layout(tmp_path: Path, sc_root: Path) -> None:
    nested = tmp_path / "SpeechCommands"
    nested.mkdir()
    (nested / "speech_commands_v0.02").symlink_to(sc_root, target_is_directory=True)
    assert sorted(SpeechCommands(tmp_path, "test", silence_fraction=0).files) == sorted(SC_TEST)


def test_speech_commands_clear_errors(tmp_path: Path, sc_root: Path) -> None:
    with pytest.raises(FileNotFoundError, match="validation_list.txt"):
        SpeechCommands(tmp_path / "nowhere")
    no_noise = tmp_path / "no_noise"
    for rel in SC_FILES:
        write_wav(no_noise / rel, np.zeros(1600), 16000)
    for name in ("validation_list.txt", "testing_list.txt"):
        (no_noise / name).write_text((sc_root / name).read_text())
    with pytest.raises(FileNotFoundError, match="_background_noise_"):
        SpeechCommands(no_noise, "train", silence_fraction=0.1)
    assert len(SpeechCommands(no_noise, "train", silence_fraction=0)) == 6
    with pytest.raises(ValueError):
        SpeechCommands(sc_root, "validation")  # type: ignore[arg-type]


# --- VoiceBank+DEMAND ------------------------------------------------------------------------------

VB_TRAIN = {"p226_001.wav": 1.0, "p226_002.wav": 0.25, "p287_001.wav": 1.5}
VB_TEST = {"p232_001.wav": 1.0, "p257_001.wav": 2.0}


def _make_voicebank(root: Path, train_dir: str = "trainset_28spk_wav") -> Path:
    rng = np.random.default_rng(1)
    for subset, files in (("testset_wav", VB_TEST), (train_dir, VB_TRAIN)):
        for name, seconds in files.items():
            n = int(seconds * 48000)
            t = np.arange(n) / 48000
            if subset == "testset_wav":  # a pure tone, to check the resampled pitch
                clean = 0.5 * np.sin(2 * np.pi * 1000 * t)
            else:  # random but band-limited, so the crop position is identifiable after resampling
                clean = np.convolve(rng.standard_normal(n), np.ones(6) / 6, mode="same") * 0.5
            write_wav(root / f"clean_{subset}" / name, clean, 48000)
            write_wav(root / f"noisy_{subset}" / name, 0.5 * clean, 48000)
    return root


@pytest.fixture(scope="module")
def vb_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_voicebank(tmp_path_factory.mktemp("voicebank"))


def test_voicebank_test_split_resamples_whole_utterances(vb_root: Path) -> None:
    ds = VoiceBankDemand(vb_root, "test")
    assert ds.names == sorted(VB_TEST)
    for i, name in enumerate(ds.names):
        noisy, clean = ds[i]
        assert noisy.dtype == clean.dtype == torch.float32
        assert noisy.shape == clean.shape == (int(VB_TEST[name] * 16000),)
        spectrum = torch.fft.rfft(clean).abs()
        peak_hz = int(spectrum.argmax()) * 16000 / clean.shape[0]
        assert abs(peak_hz - 1000) <= 2
        torch.testing.assert_close(noisy, 0.5 * clean, atol=2e-3, rtol=0)


def test_voicebank_train_segments_are_aligned_seeded_and_padded(vb_root: Path) -> None:
    ds = VoiceBankDemand(vb_root, "train", segment_length=4096, seed=7)
    assert len(ds) == 3
    first = [ds[i] for i in range(3)]
    for noisy, clean in first:
        assert noisy.shape == clean.shape == (4096,)
        # Same crop for both: the noisy file is the clean one at half amplitude.
        torch.testing.assert_close(noisy, 0.5 * clean, atol=2e-3, rtol=0)
    short_noisy, short_clean = first[ds.names.index("p226_002.wav")]
    assert short_clean[:4000].abs().max() > 0 and short_clean[4000:].abs().max() == 0
    again = VoiceBankDemand(vb_root, "train", segment_length=4096, seed=7)
    assert all(torch.equal(a[1], again[i][1]) for i, a in enumerate(first))
    again.set_epoch(1)
    long_index = ds.names.index("p287_001.wav")
    assert not torch.equal(first[long_index][1], again[long_index][1])
    full_clean = VoiceBankDemand(vb_root, "train")[long_index][1]
    assert full_clean.shape == (24000,)
    assert _crop_starts(full_clean, first[long_index][1])


def test_voicebank_valid_speakers_and_variants(tmp_path: Path, vb_root: Path) -> None:
    train = VoiceBankDemand(vb_root, "train", valid_speakers=("p287",))
    valid = VoiceBankDemand(vb_root, "valid", valid_speakers=("p287",))
    assert train.names == ["p226_001.wav", "p226_002.wav"] and valid.names == ["p287_001.wav"]
    variant = _make_voicebank(tmp_path / "vb56", "trainset_56spk_wav")
    assert VoiceBankDemand(variant, "train").names == sorted(VB_TRAIN)
    with pytest.raises(ValueError, match="multiple of 256"):
        VoiceBankDemand(vb_root, "train", segment_length=4000)


def test_voicebank_clear_errors(tmp_path: Path, vb_root: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        VoiceBankDemand(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="clean_trainset_28spk_wav"):
        VoiceBankDemand(tmp_path / "empty", "train")
    broken = tmp_path / "broken"
    write_wav(broken / "noisy_testset_wav" / "p232_001.wav", np.zeros(4800), 48000)
    (broken / "clean_testset_wav").mkdir()
    with pytest.raises(FileNotFoundError, match="p232_001.wav"):
        VoiceBankDemand(broken, "test")


# --- LibriSpeech -----------------------------------------------------------------------------------

LS_UTTERANCES = {
    "dev-clean": {"84-121123-0000": "GO, DO YOU HEAR", "84-121123-0001": "BUT IN LESS THAN FIVE MINUTES",
                  "174-50561-0000": "FORGOTTEN TOO THE NAME OF GILLIAN THE LOVELY CAPTIVE"},
    "test-clean": {"1089-134686-0000": "HE HOPED THERE WOULD BE STEW FOR DINNER"},
}


@pytest.fixture(scope="module")
def ls_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("librispeech")
    rng = np.random.default_rng(2)
    signals = {}
    for subset, utterances in LS_UTTERANCES.items():
        chapters: dict[Path, list[str]] = {}
        for utt, text in utterances.items():
            speaker, chapter, _ = utt.split("-")
            folder = root / "LibriSpeech" / subset / speaker / chapter
            folder.mkdir(parents=True, exist_ok=True)
            signals[utt] = 0.3 * rng.uniform(-1, 1, 4000 + 800 * len(signals))
            torchaudio.save(str(folder / f"{utt}.flac"), pcm_roundtrip(signals[utt])[None], 16000)
            chapters.setdefault(folder / f"{speaker}-{chapter}.trans.txt", []).append(f"{utt} {text}")
        for path, lines in chapters.items():
            path.write_text("\n".join(lines) + "\n")
    return root, signals


def test_librispeech_items_and_transcripts(ls_root: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, signals = ls_root
    ds = LibriSpeech(root, "dev-clean")
    assert len(ds) == 3
    ids = [ds.utterance_id(i) for i in range(len(ds))]
    assert sorted(ids) == sorted(LS_UTTERANCES["dev-clean"])
    for i, utt in enumerate(ids):
        waveform, transcript = ds[i]
        assert waveform.dtype == torch.float32 and waveform.shape == (len(signals[utt]),)
        torch.testing.assert_close(waveform, pcm_roundtrip(signals[utt]), atol=1e-4, rtol=0)
        assert transcript == LS_UTTERANCES["dev-clean"][utt].lower().replace(",", "")
        assert ds.transcript(i) == transcript
    assert ds[ids.index("84-121123-0000")][1] == "go do you hear"


def test_librispeech_concatenates_subsets_and_accepts_inner_folder(ls_root: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = ls_root
    both = LibriSpeech(root / "LibriSpeech", ["dev-clean", "test-clean"])
    assert len(both) == 4
    assert both.utterance_id(3) == "1089-134686-0000" and both.utterance_id(-1) == "1089-134686-0000"
    assert both[3][1] == "he hoped there would be stew for dinner"
    with pytest.raises(IndexError):
        both[4]


def test_librispeech_clear_errors(tmp_path: Path, ls_root: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = ls_root
    with pytest.raises(FileNotFoundError, match="LibriSpeech/train-clean-100"):
        LibriSpeech(root, "train-clean-100")
    with pytest.raises(FileNotFoundError, match="dev-clean"):
        LibriSpeech(tmp_path, "dev-clean")
    with pytest.raises(ValueError, match="unknown LibriSpeech subset"):
        LibriSpeech(root, "dev-cleaner")
