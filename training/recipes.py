"""Training recipes: everything that determines a run, by name, overridable from the command line.

The ``*-synthetic`` recipes produce the shipped checkpoints on the embedded corpus, on a 2-core CPU in under two
hours each. The paper recipes (``kws-speechcommands``, ``denoise-vbdmd``, ``asr-librispeech``) follow the
settings in the paper's reproducibility notes (AdamW, cosine decay with linear warmup, gradient clipping 1,
A and dt in a low-learning-rate group without weight decay) for users with the data and GPUs. The ``*-smoke``
recipes train a few steps on a tiny corpus; CI runs them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Recipe", "RECIPES", "SHIPPED", "get_recipe", "apply_overrides"]


@dataclass
class Recipe:
    name: str
    task: str  # kws | denoise | asr
    data: str  # synthetic | speech_commands | vbdmd | librispeech
    data_root: str  # a local folder; never downloaded
    size: str = "small"
    architecture: dict[str, Any] = field(default_factory=dict)  # overrides of the size's config
    steps: int = 1000
    batch_size: int = 32
    lr: float = 3e-3
    sensitive_lr: float = 1e-3  # A and dt
    weight_decay: float = 0.05
    warmup_fraction: float = 0.01
    grad_clip: float = 1.0
    segment_seconds: float = 2.0  # denoise training crops
    max_seconds: float = 12.0  # ASR: longest training utterance
    eval_every: int = 500
    checkpoint_every: int = 200
    eval_batches: int | None = None  # cap validation batches during training (None: the whole split)
    num_workers: int = 1
    threads: int | None = None  # torch intra-op threads per process (None: torch's default)
    seed: int = 0
    corpus_size: str = "full"  # size preset used when the synthetic corpus has to be built
    corpus_seed: int = 0
    # The task whose synthetic corpus data_root holds ("" = this recipe's task). The denoiser trains on the
    # recognizer's corpus: the same dry sentences and noise, synthesized once and shared.
    corpus_task: str = ""
    tolerance: dict[str, float] = field(default_factory=dict)  # reproduce: allowed |score - card score|
    # The sets finish_run scores for the model card (training.evaluation); the smoke runs leave the real set to
    # its own tests, which score it on a small fake cache.
    evaluation_sets: tuple[str, ...] = ("synthetic", "festival", "real")
    # ASR: a general n-gram file of model_zoo/checkpoints whose weights finish_run tunes on the validation split;
    # the checkpoint's beam search then uses it by default (the card's beam_search entry), the word bigram of the
    # training transcripts otherwise.
    general_lm: str | None = None
    # Paper recipes on real data: subsets / splits.
    train_subsets: tuple[str, ...] = ()
    test_subsets: tuple[str, ...] = ()

    @property
    def corpus(self) -> str:
        """The task of the synthetic corpus at ``data_root``."""
        return self.corpus_task or self.task

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_COMMON_SYNTH = dict(data="synthetic", num_workers=1, threads=1)
_SMOKE = dict(_COMMON_SYNTH, evaluation_sets=("synthetic", "festival"))

RECIPES: dict[str, Recipe] = {r.name: r for r in [
    # ---- shipped checkpoints, embedded corpus, CPU ----
    Recipe(name="kws-synthetic", task="kws", data_root="data/corpus/kws", steps=80000, batch_size=32, lr=5e-3,
           weight_decay=0.05, warmup_fraction=0.03, eval_every=5000, tolerance={"accuracy": 0.02},
           corpus_size="300,30,50", **_COMMON_SYNTH),
    Recipe(name="denoise-synthetic", task="denoise", data_root="data/corpus/asr", corpus_task="asr", steps=32000,
           batch_size=8, lr=3e-3, weight_decay=0.0, warmup_fraction=0.03, segment_seconds=1.0, eval_every=4000,
           eval_batches=8, tolerance={"si_snr_improvement": 1.0, "pesq_improvement": 0.15},
           corpus_size="7000,200,300", **_COMMON_SYNTH),
    # Two threads (1.49x the steps per second of one, bench/training_speed.py) fit 19000 steps of the 256-wide
    # network in the 120 minutes.
    Recipe(name="asr-synthetic", task="asr", data_root="data/corpus/asr", architecture={"dropout": 0.1},
           steps=19000, batch_size=16, lr=3e-3, weight_decay=0.01, warmup_fraction=0.03, eval_every=4000,
           eval_batches=8, corpus_size="7000,200,300", general_lm="english.arpa.gz",
           tolerance={"wer": 0.03, "cer": 0.02, "wer_lm": 0.03}, **dict(_COMMON_SYNTH, threads=2)),
    # ---- CI smoke runs: a few steps on a tiny corpus ----
    Recipe(name="kws-smoke", task="kws", data_root="data/corpus-tiny/kws", steps=4, batch_size=4, eval_every=4,
           checkpoint_every=2, corpus_size="tiny", architecture={"channels": [4, 8, 8]}, **_SMOKE),
    Recipe(name="denoise-smoke", task="denoise", data_root="data/corpus-tiny/asr", corpus_task="asr", steps=4, batch_size=2,
           eval_every=4, checkpoint_every=2, segment_seconds=0.5, corpus_size="tiny", eval_batches=2,
           architecture={"channels": [8], "filters": 8, "frame": 4}, **_SMOKE),
    Recipe(name="asr-smoke", task="asr", data_root="data/corpus-tiny/asr", size="tiny", steps=4, batch_size=2,
           eval_every=4, checkpoint_every=2, corpus_size="tiny", eval_batches=2, general_lm="english.arpa.gz",
           **_SMOKE),
    # ---- the paper's experiments on real data (GPU) ----
    Recipe(name="kws-speechcommands", task="kws", data="speech_commands", data_root="data/SpeechCommands",
           size="paper", steps=200 * 170, batch_size=512, lr=0.01, sensitive_lr=0.001, weight_decay=0.05,
           warmup_fraction=0.1, eval_every=1000, num_workers=8),
    Recipe(name="denoise-vbdmd", task="denoise", data="vbdmd", data_root="data/VoiceBankDEMAND", size="paper",
           steps=100_000, batch_size=192, lr=5e-3, sensitive_lr=1e-3, weight_decay=0.02, segment_seconds=4.096,
           eval_every=5000, num_workers=8),
    Recipe(name="asr-librispeech", task="asr", data="librispeech", data_root="data/LibriSpeech", size="paper",
           steps=300_000, batch_size=32, lr=2e-3, sensitive_lr=1e-3, weight_decay=0.01, eval_every=10_000,
           num_workers=8, max_seconds=20.0, train_subsets=("train-clean-100", "train-clean-360", "train-other-500"),
           test_subsets=("dev-clean",)),
]}

# The recipe behind each shipped checkpoint.
SHIPPED = {"kws": "kws-synthetic", "denoise": "denoise-synthetic", "asr": "asr-synthetic"}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise SystemExit(f"unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}")
    return dataclasses.replace(RECIPES[name])


def apply_overrides(recipe: Recipe, overrides: list[str]) -> Recipe:
    """``key=value`` pairs; values are JSON when they parse as JSON (numbers, lists, objects), else strings."""
    fields = {f.name for f in dataclasses.fields(Recipe)}
    changes: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"bad override {item!r}: expected key=value with key one of {sorted(fields)}")
        try:
            changes[key] = json.loads(raw)
        except json.JSONDecodeError:
            changes[key] = raw
    return dataclasses.replace(recipe, **changes)
