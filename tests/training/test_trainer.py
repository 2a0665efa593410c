"""The trainer on tiny corpora: every task trains and scores, resuming gives the same weights as not stopping,
and two gloo processes under torchrun end with identical weights."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import model_zoo
from model_zoo.nets.ctc import NgramLanguageModel
from model_zoo.pipelines.asr import beam_decoder
from training import trainer
from training.__main__ import main as training_main
from training.recipes import apply_overrides, get_recipe
from training.reproduce import ensure_corpus, finish_run, install
from training.tasks import build_datasets
from training.trainer import train, weights_digest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("corpora")
    for task in ("kws", "asr"):  # the denoiser trains on the recognizer's corpus
        ensure_corpus(apply_overrides(get_recipe(f"{task}-smoke"), [f"data_root={base / task}"]))
    return base


def test_a_corpus_of_another_size_is_refused_not_reused(corpora):
    recipe = smoke("kws", corpora, "corpus_size=\"50,5,5\"")
    with pytest.raises(SystemExit, match="was built as"):
        ensure_corpus(recipe)
    assert ensure_corpus(smoke("kws", corpora))["requested"]  # the recipe it was built for is accepted


def smoke(task: str, corpora: Path, *extra: str):
    recipe = get_recipe(f"{task}-smoke")
    return apply_overrides(recipe, [f"data_root={corpora / recipe.corpus}", *extra])


def test_the_denoiser_reads_the_recognizers_corpus_and_the_spotter_does_not(corpora):
    assert get_recipe("denoise-synthetic").corpus == "asr" == get_recipe("asr-synthetic").corpus
    assert get_recipe("denoise-synthetic").data_root == get_recipe("asr-synthetic").data_root
    data = build_datasets(smoke("denoise", corpora))
    noisy, clean = data["train"][0]
    assert noisy.shape == clean.shape and not torch.equal(noisy, clean)
    with pytest.raises(ValueError, match="holds a 'asr' corpus"):
        build_datasets(apply_overrides(get_recipe("kws-smoke"), [f"data_root={corpora / 'asr'}"]))


def check_evaluate_command(task: str, card: str, data: Path, test_scores: dict) -> None:
    """``python -m training evaluate`` gives the test scores of the card; ``--threshold`` is for kws only, where
    at 1.0 no keyword is ever detected (softmax probabilities stay below 1)."""
    def evaluate(*extra: str) -> dict:
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            assert training_main(["evaluate", card, "--data", str(data), "--device", "cpu", *extra]) == 0
        return json.loads(output.getvalue())

    assert evaluate()["scores"] == pytest.approx(test_scores, abs=1e-4, nan_ok=True)
    if task != "kws":
        with pytest.raises(SystemExit, match="applies to keyword spotting"):
            evaluate("--threshold", "0.5")
        return
    strict = evaluate("--threshold", "1.0")
    assert strict["threshold"] == 1.0
    assert strict["scores"]["keyword_recall"] == 0.0 and strict["scores"]["false_alarm_unknown"] == 0.0
    assert {"keyword_recall", "false_alarm_unknown", "false_alarm_silence"} <= set(test_scores)


@pytest.mark.parametrize("task", ["kws", "denoise", "asr"])
def test_smoke_training_produces_a_loadable_checkpoint(task, corpora, tmp_path):
    recipe = smoke(task, corpora)
    summary = train(recipe, tmp_path / "run", device="cpu")
    assert summary["steps"] == recipe.steps
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(1, recipe.steps + 1))
    assert all(torch.isfinite(torch.tensor(x["loss"])) for x in lines)
    assert "valid" in lines[-1]
    meta = json.loads((Path(recipe.data_root) / "corpus.json").read_text())
    path, scores = finish_run(recipe, summary, tmp_path / "run", meta, task)
    model = model_zoo.load(str(path) + ".json")
    assert model.card.scores == scores and model.card.recipe["name"] == recipe.name
    assert model.card.training_steps == recipe.steps
    # the card also scores the held-out synthetic voices and festival apart: together they are the test split
    sets = model.card.evaluation["sets"]
    assert set(sets) == {"synthetic", "festival"} and sets["synthetic"]["clips"] + sets["festival"]["clips"] == len(
        build_datasets(recipe)["test"])
    assert (model.card.evaluation["options"] == {"threshold": 0.5}) == (task == "kws")
    check_evaluate_command(task, f"{path}.json", Path(recipe.data_root), scores)
    if task == "asr":  # the recognizer ships its word language model and is also scored with it
        assert model.language_model is not None and {"wer_lm", "cer_lm"} <= set(scores)
        # ... with beam-search weights tuned on the validation split: the grid's best, kept in the LM file
        decoder = model.card.decoder
        assert len(decoder["grid"]) == 20 and decoder["wer"] == min(row[2] for row in decoder["grid"])
        assert [decoder["lm_weight"], decoder["word_score"], decoder["wer"]] in decoder["grid"]
        assert (model.language_model.lm_weight, model.language_model.word_score) == (
            decoder["lm_weight"], decoder["word_score"])
        # ... and, by default, with the general-English n-gram, its weights tuned the same way, beside the card
        general = model.card.beam_search
        assert general["language_model"] == "english.arpa.gz" and general["beam_size"] == 64
        assert len(general["grid"]) == 6 and general["wer"] == min(row[2] for row in general["grid"])
        assert isinstance(beam_decoder(model).language_model, NgramLanguageModel)
        assert beam_decoder(model).language_model.lm_weight == general["lm_weight"]
    # shipping: a smoke recipe is not the recipe behind the shipped model, so install refuses it
    with pytest.raises(SystemExit, match="not .*-synthetic"):
        install(task, path, checkpoint_dir=tmp_path)
    assert not list(tmp_path.glob(f"{task}.*"))
    shipped_recipe = dataclasses.replace(recipe, name=f"{task}-synthetic")
    path, _ = finish_run(shipped_recipe, summary, tmp_path / "run", meta, task)
    install(task, path, checkpoint_dir=tmp_path)
    installed = model_zoo.load(str(tmp_path / f"{task}.json"))
    assert installed.card.scores == scores and (tmp_path / f"{task}.md").read_text().startswith(f"# `{task}`")
    assert "| festival, a synthesizer never trained on (test split) |" in (tmp_path / f"{task}.md").read_text()
    assert ("Beam search with the word bigram" in (tmp_path / f"{task}.md").read_text()) == (task == "asr")
    assert ("Default beam search" in (tmp_path / f"{task}.md").read_text()) == (task == "asr")
    assert (tmp_path / "english.arpa.gz").exists() == (task == "asr")  # installed beside the card that names it


def test_resume_mid_epoch_matches_uninterrupted_run(corpora, tmp_path, monkeypatch):
    # a last stage of 16 channels has dropout, which draws from the global RNG; 4 steps of batch 4 stay in epoch 0
    recipe = smoke("kws", corpora, 'architecture={"channels": [4, 8, 16]}')
    full = train(recipe, tmp_path / "full", device="cpu")

    class Killed(Exception):
        pass

    save_resume = trainer._save_resume

    def save_then_die(run_dir, model, optimizer, schedule, step, *rest):
        save_resume(run_dir, model, optimizer, schedule, step, *rest)
        if step == 2:
            raise Killed

    monkeypatch.setattr(trainer, "_save_resume", save_then_die)
    with pytest.raises(Killed):
        train(recipe, tmp_path / "resumed", device="cpu")
    saved = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    assert saved["step"] == 2 and 0 < saved["position"] < len(build_datasets(recipe)["train"])
    monkeypatch.undo()
    resumed = train(recipe, tmp_path / "resumed", device="cpu")
    assert resumed["steps"] == full["steps"] == 4
    assert resumed["weights_sha256"] == full["weights_sha256"]


def test_ddp_two_gloo_processes_end_with_identical_weights(corpora, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "training", "train", "kws-smoke", f"data_root={corpora / 'kws'}", "--run-dir", str(tmp_path / "ddp"),
           "--device", "cpu"]
    result = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / "ddp" / f"summary_rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    # and the weights did change from their initialisation
    from model_zoo.nets import build_network

    torch.manual_seed(0)
    initial = build_network("kws", "small", channels=[4, 8, 8])
    assert weights_digest(initial) != ranks[0]["weights_sha256"]
