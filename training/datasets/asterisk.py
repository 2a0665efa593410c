"""A real-speech evaluation set: the Asterisk PBX voice prompts, recorded by a professional human voice.

Never used for training; ``python -m training evaluate`` scores every checkpoint on it next to the synthetic
test split (and ``bench/peers.py`` can score other recognizers on the very same clips).

Source (Debian bookworm, main; both packages from the source package ``asterisk-core-sounds`` 1.6.1-1):

* ``asterisk-core-sounds-en-g722`` 1.6.1-1: the English prompts as raw G.722 (16 kHz), spoken by Allison Smith,
  under ``/usr/share/asterisk/sounds/en_US_f_Allison/`` (568 files in 1.6.1-1);
* ``asterisk-core-sounds-en`` 1.6.1-1: their transcripts, ``/usr/share/doc/asterisk-core-sounds-en/
  core-sounds-en.txt.gz`` (``key: text`` lines, ``key`` being the file path without extension).

Licence: CC-BY-SA-3.0, "Copyright: 2003-2010, Allison Smith" (recorded by Allison Smith, financial contributions
by Digium, Inc.), per ``/usr/share/doc/asterisk-core-sounds-en*/copyright``. The decoded WAVs of the cache are a
format conversion of that work: keep the attribution and licence with any copy (``training/datasets/SOURCES.md``).

What is kept: prompts whose transcript, after the rules of :func:`clean_transcript`, is real speech, without
digits, acronyms of unknown pronunciation or sound effects. Three views of the kept clips:

* :class:`AsteriskASR`: every kept clip, ``(waveform (L,), normalised transcript)`` like ``ASRCorpus``;
* :class:`AsteriskKWS`: the single-word clips, ``(waveform (16000,), label index into KWS_LABELS)`` like
  ``KWSCorpus``: the word (silence trimmed) centred in one second; words of ``SPEECH_COMMANDS_WORDS`` are their
  own label, any other single word is ``_unknown_`` (:func:`kws_label`);
* :class:`AsteriskDenoise`: the sentences (3 words or more) mixed with held-out noise at 0, 5 and 10 dB,
  ``(noisy, clean)`` like ``DenoiseCorpus`` with ``segment_seconds=None``.

G.722 is decoded once by :func:`build_cache` into ``data/asterisk`` (16-bit WAVs + ``manifest.jsonl`` +
``summary.json``); the datasets read that cache and build it when it is missing. Nothing is downloaded: when
the Debian packages are absent, :class:`AsteriskNotInstalled` says which ``apt-get install`` to run.
``python -m training.datasets.asterisk [--out DIR] [--force]`` builds the cache and prints its counts.

One module of about 450 lines on purpose: the transcript rules, the cache and the three views are one idea (which
clips count as real speech and how each task sees them); split, the rules would sit apart from the views whose
labels they decide.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from model_zoo.vocab import KWS_LABELS, SPEECH_COMMANDS_WORDS, UNKNOWN, normalize_transcript

__all__ = [
    "PACKAGES",
    "SOUNDS_DIR",
    "TRANSCRIPTS_FILE",
    "DEFAULT_CACHE",
    "SAMPLE_RATE",
    "AsteriskNotInstalled",
    "Prompt",
    "parse_transcripts",
    "clean_transcript",
    "kws_label",
    "list_prompts",
    "decode_g722",
    "package_versions",
    "build_cache",
    "load_manifest",
    "AsteriskASR",
    "AsteriskKWS",
    "AsteriskDenoise",
    "heldout_noise_bank",
]

PACKAGES: tuple[str, ...] = ("asterisk-core-sounds-en-g722", "asterisk-core-sounds-en")
SOUNDS_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
TRANSCRIPTS_FILE = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
DEFAULT_CACHE = Path("data/asterisk")
SAMPLE_RATE = 16_000
LICENSE = "CC-BY-SA-3.0 (recorded by Allison Smith; /usr/share/doc/asterisk-core-sounds-en/copyright)"
CACHE_VERSION = 1
CLIP_SAMPLES = SAMPLE_RATE
FRAME_MULTIPLE = 256
DENOISE_SNRS: tuple[float, ...] = (0.0, 5.0, 10.0)
DENOISE_MIN_WORDS = 3

# Misspellings of the upstream transcripts (the recordings say the right word).
_TYPOS = {
    "exclaimation": "exclamation", "fourtieth": "fortieth", "represenatives": "representatives",
    "umute": "unmute", "indentified": "identified", "witheld": "withheld",
}
# Prefixes written with a hyphen that are spoken as one word ("re-record", "Un-identified").
_JOINED_PREFIX = re.compile(r"\b(re|un)-(?=[a-z])", re.IGNORECASE)
_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)")
# Annotations that say the recording holds something besides the words (a tone, a sound effect).
_SOUND_NOTE = re.compile(r"tone|beep|sound|silence|plays|music|scream", re.IGNORECASE)
_DOTTED_LETTERS = re.compile(r"^(?:[A-Za-z]\.)+$")  # "A.M.", spoken letter by letter as written
_ACRONYM = re.compile(r"^[A-Z]{2,}$")  # "SIP", "DAHDI", "USB": read as a word or spelled, unknown which


class AsteriskNotInstalled(FileNotFoundError):
    """The Debian packages with the prompts or their transcripts are not installed."""


def _not_installed(what: Path) -> AsteriskNotInstalled:
    return AsteriskNotInstalled(f"{what} not found: the real-speech set needs the Debian packages "
                                f"{' and '.join(PACKAGES)}; run `sudo apt-get install {' '.join(PACKAGES)}` "
                                f"(or scripts/setup)")


@dataclass(frozen=True)
class Prompt:
    """One prompt of the transcripts file. ``transcript`` is normalised to the CTC vocabulary (empty when
    dropped); ``dropped`` says why it is not used (``None`` when kept); ``path`` is its G.722 file or None."""

    key: str
    text: str
    transcript: str
    dropped: str | None
    path: Path | None


def parse_transcripts(text: str) -> dict[str, str]:
    """``key: text`` lines (``;`` comments and blank lines skipped) -> ``{key: text}`` in file order; a key
    given twice keeps its first text."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(";") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        key = key.strip()
        if key and " " not in key:
            out.setdefault(key, value.strip())
    return out


def clean_transcript(text: str) -> tuple[str, str | None]:
    """(normalised transcript, reason it is dropped or None). Rules, in order:

    1. ``[...]`` and ``(...)`` are annotations: nothing else left means the file is not speech (a beep, tones,
       silence: ``"not speech"``); an annotation about a tone or sound means the speech comes with one
       (``"sound effect"``); other annotations (``"at [@]"``) are removed.
    2. digits: the reading is unknown (``"press 1"``: "one"? "the one key"?) -> ``"digits"``.
    3. acronyms (``SIP``, ``DAHDI``, ``USB``) may be read as a word or spelled -> ``"acronym"``; letters with
       dots (``A.M.``) are spelled, as the transcript says.
    4. known misspellings fixed, ``re-``/``un-`` joined to their word, other hyphens become spaces, then
       :func:`model_zoo.vocab.normalize_transcript`; nothing left -> ``"empty"``.
    """
    notes = _ANNOTATION.findall(text)
    words = _ANNOTATION.sub(" ", text)
    if not normalize_transcript(words.replace("...", " ")):
        return "", "not speech" if notes else "empty"
    if any(_SOUND_NOTE.search(note) for note in notes):
        return "", "sound effect"
    if re.search(r"\d", words):
        return "", "digits"
    tokens = [t.strip(",;:!?\"'") for t in words.split()]
    if any(not _DOTTED_LETTERS.match(t) and _ACRONYM.match(t.strip(".")) for t in tokens):
        return "", "acronym"
    for typo, fix in _TYPOS.items():
        words = re.sub(rf"\b{typo}\b", fix, words, flags=re.IGNORECASE)
    transcript = normalize_transcript(_JOINED_PREFIX.sub(r"\1", words))
    return (transcript, None) if transcript else ("", "empty")


def kws_label(transcript: str) -> str | None:
    """The KWS label of a clip: the word itself for one of the 35 Speech Commands words, ``_unknown_`` for any
    other single word, ``None`` (not in the KWS set) for several words."""
    words = transcript.split()
    if len(words) != 1:
        return None
    return words[0] if words[0] in SPEECH_COMMANDS_WORDS else UNKNOWN


def _read_transcripts(path: Path) -> str:
    if not path.is_file():
        raise _not_installed(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        return handle.read()


def list_prompts(sounds_dir: str | Path | None = None, transcripts: str | Path | None = None,
                 include_dropped: bool = False) -> list[Prompt]:
    """The prompts that have both a ``.g722`` file and a transcript, sorted by key; with ``include_dropped``
    also those dropped by :func:`clean_transcript` or lacking a file (``dropped="no audio file"``)."""
    sounds = Path(sounds_dir or SOUNDS_DIR)
    if not sounds.is_dir():
        raise _not_installed(sounds)
    texts = parse_transcripts(_read_transcripts(Path(transcripts or TRANSCRIPTS_FILE)))
    prompts = []
    for key in sorted(texts):
        path = sounds / f"{key}.g722"
        transcript, dropped = clean_transcript(texts[key])
        if not path.is_file():
            transcript, dropped = "", "no audio file"
        if dropped is None or include_dropped:
            prompts.append(Prompt(key, texts[key], transcript, dropped, path if path.is_file() else None))
    return prompts


def decode_g722(path: str | Path) -> np.ndarray:
    """A G.722 (or any FFmpeg-readable) file -> mono float32 at 16 kHz, as the service decodes uploads
    (torchcodec over Debian's FFmpeg; the ``.g722`` extension tells FFmpeg the raw format). Falls back to an
    ``ffmpeg`` subprocess when torchcodec is unavailable."""
    try:
        from torchcodec.decoders import AudioDecoder
    except ImportError:  # pragma: no cover - torchcodec is a project dependency
        raw = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path),
                              "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "-"],
                             capture_output=True, check=True).stdout
        return np.frombuffer(raw, np.float32).copy()
    decoded = AudioDecoder(str(path)).get_all_samples()
    samples = decoded.data.to(torch.float32).mean(dim=0)
    if int(decoded.sample_rate) != SAMPLE_RATE:
        import torchaudio.functional as AF

        samples = AF.resample(samples, int(decoded.sample_rate), SAMPLE_RATE)
    return samples.numpy().astype(np.float32)


def package_versions() -> dict[str, str | None]:
    """Installed version of each of :data:`PACKAGES` (None when not installed)."""
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            done = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True)
            versions[package] = done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None
        except FileNotFoundError:
            versions[package] = None
    return versions


def _summary(rows: list[dict], dropped: dict[str, int], versions: dict) -> dict:
    kws = [r for r in rows if r["kws_label"]]
    keywords = sorted({r["kws_label"] for r in kws} - {UNKNOWN})
    sentences = [r for r in rows if r["words"] >= DENOISE_MIN_WORDS]
    return {
        "source": {"packages": versions, "license": LICENSE, "speaker": "Allison Smith (en_US, female)"},
        "cache_version": CACHE_VERSION,
        "asr": {"clips": len(rows), "words": sum(r["words"] for r in rows),
                "distinct_transcripts": len({r["transcript"] for r in rows}),
                "hours": round(sum(r["seconds"] for r in rows) / 3600, 4)},
        "kws": {"keyword_clips": sum(r["kws_label"] != UNKNOWN for r in kws),
                "unknown_clips": sum(r["kws_label"] == UNKNOWN for r in kws),
                "per_keyword": {w: sum(r["kws_label"] == w for r in kws) for w in keywords},
                "keywords_absent": [w for w in SPEECH_COMMANDS_WORDS if w not in keywords]},
        "denoise": {"sentences": len(sentences), "snrs": list(DENOISE_SNRS),
                    "hours_clean": round(sum(r["seconds"] for r in sentences) / 3600, 4)},
        "dropped": dropped,
    }


def build_cache(out: str | Path = DEFAULT_CACHE, sounds_dir: str | Path | None = None,
                transcripts: str | Path | None = None, force: bool = False) -> dict:
    """Decode the kept prompts into ``out/wav/<key>.wav`` (16-bit, 16 kHz, mono, as decoded: no trimming or
    level change), write ``out/manifest.jsonl`` (one row per clip, sorted by key: ``key, path, text,
    transcript, words, seconds, kws_label``) and ``out/summary.json``; returns the summary (counts, hours,
    source packages and licence). An existing cache built from the same package versions is reused unless
    ``force``. Raises :class:`AsteriskNotInstalled` when the packages are missing."""
    from training.corpus.tts import write_wav

    out = Path(out)
    versions = package_versions() if sounds_dir is None else {"custom": str(sounds_dir)}
    summary_path = out / "summary.json"
    if not force and summary_path.is_file() and (out / "manifest.jsonl").is_file():
        summary = json.loads(summary_path.read_text())
        if summary.get("cache_version") == CACHE_VERSION and summary["source"]["packages"] == versions:
            return summary
    prompts = list_prompts(sounds_dir, transcripts, include_dropped=True)
    dropped: dict[str, int] = {}
    rows = []
    for prompt in prompts:
        if prompt.dropped is not None:
            dropped[prompt.dropped] = dropped.get(prompt.dropped, 0) + 1
            continue
        audio = decode_g722(prompt.path)
        if audio.size == 0 or float(np.abs(audio).max()) < 1e-3:
            dropped["silent audio"] = dropped.get("silent audio", 0) + 1
            continue
        rel = f"wav/{prompt.key}.wav"
        write_wav(out / rel, audio)
        rows.append({"key": prompt.key, "path": rel, "text": prompt.text, "transcript": prompt.transcript,
                     "words": len(prompt.transcript.split()), "seconds": round(len(audio) / SAMPLE_RATE, 4),
                     "kws_label": kws_label(prompt.transcript)})
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "manifest.jsonl", "w") as handle:
        for row in rows:
            handle.write(json.dumps(row, sort_keys=True) + "\n")
    summary = _summary(rows, dict(sorted(dropped.items())), versions)
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def load_manifest(root: str | Path = DEFAULT_CACHE, build: bool = True) -> list[dict]:
    """The cache's manifest rows (sorted by key); builds the cache first when it is missing and ``build``."""
    root = Path(root)
    if not (root / "manifest.jsonl").is_file():
        if not build:
            raise FileNotFoundError(f"{root / 'manifest.jsonl'} not found: run `python -m training.datasets.asterisk "
                                    f"--out {root}`")
        build_cache(root)
    with open(root / "manifest.jsonl") as handle:
        return [json.loads(line) for line in handle if line.strip()]


class _Asterisk(Dataset):
    def __init__(self, root: str | Path, rows: list[dict]) -> None:
        self.root = Path(root)
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def clean(self, index: int) -> np.ndarray:
        """The clip as decoded (float32, 16 kHz)."""
        from training.corpus.tts import read_wav

        return read_wav(self.root / self.rows[index]["path"])[0]

    def info(self, index: int) -> dict:
        """The manifest row of an item (key, text, transcript, seconds, kws_label)."""
        return dict(self.rows[index])

    def path(self, index: int) -> Path:
        """The item's WAV in the cache (16-bit, 16 kHz, mono): what other recognizers can be given."""
        return self.root / self.rows[index]["path"]


class AsteriskASR(_Asterisk):
    """Every kept prompt: ``(waveform (L,) float32, normalised transcript)``, the item format of ``ASRCorpus``
    (batch with ``asr_collate`` or ``tasks.pad_collate``). ``min_words`` keeps only the longer prompts."""

    def __init__(self, root: str | Path = DEFAULT_CACHE, min_words: int = 1) -> None:
        super().__init__(root, [r for r in load_manifest(root) if r["words"] >= min_words])

    def transcript(self, index: int) -> str:
        return self.rows[index]["transcript"]

    def __getitem__(self, index: int) -> tuple[Tensor, str]:
        return torch.from_numpy(self.clean(index)), self.rows[index]["transcript"]


class AsteriskKWS(_Asterisk):
    """The single-word prompts: ``(waveform (16000,) float32, label index into KWS_LABELS)``, the item format
    of ``KWSCorpus``. The word, trimmed of leading/trailing silence (``trim_silence``), is centred in one second;
    a word longer than a second keeps its middle second. ``include_unknown=False`` keeps the keywords only."""

    def __init__(self, root: str | Path = DEFAULT_CACHE, include_unknown: bool = True) -> None:
        rows = [r for r in load_manifest(root) if r["kws_label"] and (include_unknown or r["kws_label"] != UNKNOWN)]
        super().__init__(root, rows)
        self.labels = [KWS_LABELS.index(r["kws_label"]) for r in rows]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        from training.corpus.tts import trim_silence

        word = trim_silence(self.clean(index))
        if len(word) > CLIP_SAMPLES:
            start = (len(word) - CLIP_SAMPLES) // 2
            word = word[start: start + CLIP_SAMPLES]
        wave = np.zeros(CLIP_SAMPLES, np.float32)
        start = (CLIP_SAMPLES - len(word)) // 2
        wave[start: start + len(word)] = word
        return torch.from_numpy(wave), self.labels[index]


class AsteriskDenoise(_Asterisk):
    """The sentences (at least ``min_words`` words) each mixed with noise at every SNR of ``snrs``: item
    ``i`` is sentence ``i // len(snrs)`` at ``snrs[i % len(snrs)]`` dB, ``(noisy (L,), clean (L,))`` with L
    the clip padded to a multiple of 256, the item format of ``DenoiseCorpus(segment_seconds=None)``.

    ``noise`` is a ``NoiseBank`` (:func:`heldout_noise_bank`). Deterministic: the noise kind, crop and output
    level of item ``i`` come from ``numpy.random.default_rng([seed, 17, i])``; the SNR is over the whole clip
    and the same gain keeps the level of the noisy input within -35..-15 dBFS, as ``denoise_pair`` does (no
    speed perturbation: the clean target stays the recording)."""

    def __init__(self, noise, root: str | Path = DEFAULT_CACHE, snrs: tuple[float, ...] = DENOISE_SNRS,
                 seed: int = 0, min_words: int = DENOISE_MIN_WORDS) -> None:
        super().__init__(root, [r for r in load_manifest(root) if r["words"] >= min_words])
        self.noise, self.snrs, self.seed = noise, tuple(snrs), seed

    def __len__(self) -> int:
        return len(self.rows) * len(self.snrs)

    def info(self, index: int) -> dict:
        return dict(self.rows[index // len(self.snrs)])

    def _make(self, index: int) -> tuple[np.ndarray, np.ndarray, dict]:
        rng = np.random.default_rng([self.seed, 17, index])
        audio = self.clean(index // len(self.snrs))
        length = -(-len(audio) // FRAME_MULTIPLE) * FRAME_MULTIPLE
        clean = np.zeros(length, np.float32)
        clean[: len(audio)] = audio
        noise, kind = self.noise.sample(rng, length)
        snr = float(self.snrs[index % len(self.snrs)])
        scale = np.sqrt(np.sum(np.square(clean, dtype=np.float64))
                        / (np.sum(np.square(noise, dtype=np.float64)) * 10 ** (snr / 10) + 1e-20))
        noisy = clean + (scale * noise).astype(np.float32)
        rms = float(np.sqrt(np.mean(np.square(noisy, dtype=np.float64))))
        gain = min(10 ** (float(rng.uniform(-35.0, -15.0)) / 20) / (rms + 1e-12),
                   0.99 / (float(np.abs(noisy).max()) + 1e-12))
        return (noisy * gain).astype(np.float32), (clean * gain).astype(np.float32), {"snr": snr, "noise": kind}

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        noisy, clean, _ = self._make(index)
        return torch.from_numpy(noisy), torch.from_numpy(clean)

    def pair_info(self, index: int) -> dict:
        """The manifest row plus the ``snr`` (dB) and ``noise`` kind of the item."""
        return {**self.info(index), **self._make(index)[2]}


def heldout_noise_bank(corpus_root: str | Path | None, seed: int = 0):
    """The noise the synthetic test split uses (``eval`` bank, every kind, held-out realisations) from the
    corpus at ``corpus_root``; when that corpus is not built, the generated kinds of the ``eval`` bank
    regenerated from ``seed`` (the corpus seed) with the streams the corpus build uses, 4 clips of 10 s each
    (``babble`` and recorded kinds left out: they need synthesized talkers or recordings). Returns
    ``(bank, description)``; the bank is a ``training.corpus.noise.NoiseBank``."""
    from training.corpus.noise import GENERATORS, NOISE_TYPES, NoiseBank, generate, noise_types_for_split

    bank, kinds = noise_types_for_split("test")
    if corpus_root is not None and (Path(corpus_root) / "noise" / "noise.jsonl").is_file():
        noise = NoiseBank(corpus_root, bank, kinds)
        return noise, f"{corpus_root}/noise, {bank} bank: {', '.join(noise.kinds)}"
    generated = tuple(k for k in kinds if k in GENERATORS)
    noise = NoiseBank.__new__(NoiseBank)  # filled in memory instead of read from a built corpus
    noise.kinds, noise.rirs = generated, []
    noise.clips = {k: [generate(k, np.random.default_rng([seed, 101, 1, NOISE_TYPES.index(k), i]), 10.0)
                       for i in range(4)] for k in generated}
    return noise, (f"generated {bank}-bank noise, seed {seed} (corpus not built; no babble or recorded kinds): "
                   f"{', '.join(generated)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.datasets.asterisk",
                                     description="Decode the Asterisk prompts into the evaluation cache.")
    parser.add_argument("--out", default=str(DEFAULT_CACHE))
    parser.add_argument("--force", action="store_true", help="rebuild even when the cache is current")
    args = parser.parse_args(argv)
    try:
        summary = build_cache(args.out, force=args.force)
    except AsteriskNotInstalled as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"out": args.out, **summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
