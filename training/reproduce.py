"""Reproduce a shipped checkpoint from scratch: build the corpus if missing, train, score on held-out voices,
write the checkpoint and its model card, and compare the scores with the shipped card within its tolerance."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
from pathlib import Path

import torch

from model_zoo.card import ModelCard, load_card
from model_zoo.checkpoint import CHECKPOINT_DIR, card_for, language_model_path, save
from model_zoo.pipelines.kws import DEFAULT_THRESHOLD

from .recipes import SHIPPED, Recipe, get_recipe
from .trainer import RUNS_DIR, evaluate_model, train

__all__ = ["ensure_corpus", "finish_run", "reproduce", "reproduction_dir", "install", "compare_scores"]


def ensure_corpus(recipe: Recipe) -> dict:
    """The synthetic corpus's metadata, building the corpus first when it is not there."""
    root = Path(recipe.data_root)
    if recipe.data != "synthetic":
        return {"data": recipe.data, "root": str(root)}
    if not (root / "corpus.json").exists():
        from .corpus import build_corpus

        build_corpus(recipe.corpus, root, seed=recipe.corpus_seed, size=recipe.corpus_size, workers=2,
                     progress=True, allow_missing=True if recipe.corpus_size == "tiny" else None)
    meta = json.loads((root / "corpus.json").read_text())
    from .corpus import parse_size

    # A recipe whose corpus size changed must not silently train on the old corpus left at its data_root.
    wanted = {"task": recipe.corpus, "seed": recipe.corpus_seed,
              "requested": parse_size(recipe.corpus, recipe.corpus_size)[1]}
    found = {key: meta.get(key) for key in wanted}
    if found != wanted:
        raise SystemExit(f"the corpus at {root} was built as {found}, but recipe {recipe.name} asks for {wanted}; "
                         f"move that folder away (it is rebuilt) or point data_root elsewhere")
    return meta


def _data_description(meta: dict) -> str:
    if "splits" not in meta:
        return f"{meta.get('data')} at {meta.get('root')}"
    parts = []
    for split, entry in meta["splits"].items():
        voices = entry.get("voices_used") or entry.get("voices")
        parts.append(f"{split}: {entry.get('items')} utterances, voices {voices}")
    return f"embedded synthetic {meta['task']} corpus (seed {meta.get('seed')}, size {meta.get('size')}); " + "; ".join(parts)


def finish_run(recipe: Recipe, summary: dict, run_dir: Path, meta: dict, name: str) -> tuple[Path, dict]:
    """Score the best validation checkpoint on the test split and save it with its card. A recognizer's word
    language model is estimated from the training transcripts and its beam-search weights are tuned on the
    validation split (:func:`training.tasks.tune_decoder`; the card keeps the grid) before the test split is
    scored."""
    from .evaluation import score_sets
    from model_zoo.nets.ctc import NgramLanguageModel

    from .tasks import NGRAM_BEAM_SIZE, NGRAM_GRID, build_datasets, language_model_from, tune_decoder
    from .trainer import evaluation_loader

    model = summary["model"]
    best = run_dir / "best_model.pt"
    if best.exists():
        model.load_state_dict(torch.load(best, map_location="cpu", weights_only=True))
    model.eval()
    datasets = build_datasets(recipe)
    device = next(model.parameters()).device
    language_model = language_model_from(datasets["train"]) if recipe.task == "asr" else None
    extra = {}
    if language_model is not None:
        valid = evaluation_loader(recipe, datasets["valid"])
        extra["decoder"] = tune_decoder(model, valid, device, language_model)
        language_model.lm_weight = extra["decoder"]["lm_weight"]
        language_model.word_score = extra["decoder"]["word_score"]
        model.language_model = language_model  # evaluate_model scores beam search with it too
        if recipe.general_lm:  # the default beam search: the general n-gram, tuned like the bigram
            shutil.copy(CHECKPOINT_DIR / recipe.general_lm, run_dir / recipe.general_lm)  # the card names it beside
            general = NgramLanguageModel(run_dir / recipe.general_lm)
            tuned = tune_decoder(model, valid, device, general, NGRAM_GRID, NGRAM_BEAM_SIZE)
            extra["beam_search"] = {"language_model": recipe.general_lm, "beam_size": NGRAM_BEAM_SIZE, **tuned}
            # Scored with it, too: the beam search reads the card the checkpoint will have (the n-gram beside it).
            model.card = card_for(model, name=name, task=recipe.task, beam_search=extra["beam_search"])
            model.card_dir = run_dir
    scores = evaluate_model(model, recipe, datasets["test"], device)
    scores = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in scores.items()}
    if recipe.data == "synthetic":
        # Keyword spotting is scored at the service's default threshold: what a user of POST /keywords gets.
        options = {"threshold": DEFAULT_THRESHOLD} if recipe.task == "kws" else {}
        sets = score_sets(model, recipe, device, tuple(recipe.evaluation_sets), **options)
        extra["evaluation"] = {"options": options, "sets": _rounded(sets)}
    path = save(model, run_dir / name, name=name, task=recipe.task, recipe=recipe.to_dict(), scores=scores,
                data=_data_description(meta), scored_on="test split (held-out voices)",
                training_seconds=summary["training_seconds"], training_steps=summary["steps"],
                tolerance=recipe.tolerance, **extra)
    if language_model is not None:
        language_model.save(language_model_path(path))
    return path, scores


def _rounded(value):
    """Floats of a nested result rounded to 4 digits, for the card."""
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return round(value, 4) if isinstance(value, float) else value


def compare_scores(scores: dict, card: ModelCard) -> list[tuple[str, float, float, float, bool]]:
    """``(metric, ours, card's, tolerance, within)`` for every metric the card's tolerance names."""
    rows = []
    for metric, tol in (card.tolerance or {}).items():
        want, got = (card.scores or {}).get(metric, math.nan), scores.get(metric, math.nan)
        rows.append((metric, got, want, tol, abs(got - want) <= tol))
    return rows


def write_model_card(path: Path, card: ModelCard) -> None:
    """The Markdown model card ``NAME.md`` of a finished run's card."""
    scores = "\n".join(f"| {k} | {v} |" for k, v in card.scores.items())
    recipe = card.recipe
    path.with_suffix(".md").write_text(re.sub(r"\n{3,}", "\n\n", f"""# `{card.name}`: {card.task} model card

- Task: {card.task}; sample rate {card.sample_rate} Hz; algorithmic latency
  {card.algorithmic_latency_samples} samples ({1000 * card.algorithmic_latency_samples / card.sample_rate:.1f} ms).
- Parameters: {card.parameters:,}. Architecture: `{json.dumps(card.architecture)}`.
- Data: {card.data}.
- Recipe: `{recipe['name']}` ({recipe['steps']} steps, batch {recipe['batch_size']}, lr {recipe['lr']}); reproduce
  with `python -m training reproduce {card.name}`.
- Training time: {card.training_seconds / 60:.1f} min on this project's 2-core CPU machine.
- Scores, measured on the {card.scored_on}:

| metric | value |
|---|---|
{scores}

- Reproduction tolerance (absolute): `{json.dumps(card.tolerance if card.tolerance is not None else {})}`.
""" + _evaluation_lines(card.evaluation) + _general_lm_line(card.beam_search)
        + _decoder_line(card.decoder) + _peers_lines(card.peers) + (f"- Note: {card.note}.\n" if card.note else "")))


_SET_TITLES = {"synthetic": "held-out synthetic voices (test split, festival left out)",
               "festival": "festival, a synthesizer never trained on (test split)",
               "real": "real human speech (Debian's Asterisk prompts, never trained on)"}


def _evaluation_lines(evaluation: dict | None) -> str:
    """The model card's table of the three evaluation sets (``training.evaluation.score_sets``)."""
    if not evaluation:
        return ""
    threshold = evaluation["options"].get("threshold")
    evaluation = evaluation["sets"]
    metrics = list(dict.fromkeys(k for entry in evaluation.values() if isinstance(entry.get("scores"), dict)
                                 for k in entry["scores"] if k != "count"))
    where = f" at the service's keyword threshold {threshold}" if threshold else ""
    lines = [f"- Scores on the evaluation sets{where} (`python -m training evaluate NAME`):", "",
             "| set | clips | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for name, entry in evaluation.items():
        if not isinstance(entry.get("scores"), dict):
            lines.append(f"| {_SET_TITLES.get(name, name)} | - | {entry.get('error', entry.get('scores'))} |")
            continue
        values = " | ".join(f"{entry['scores'].get(m, float('nan')):.4f}" for m in metrics)
        lines.append(f"| {_SET_TITLES.get(name, name)} | {entry['clips']} | {values} |")
    running = evaluation.get("real", {}).get("running_speech")
    if running:
        lines += ["", f"- Running speech with no keyword (the real set's {running['clips']} keyword-free sentences, "
                      f"{running['hours'] * 60:.1f} min, the service's windows at threshold {running['threshold']}): "
                      f"{100 * running['clips_with_false_alarm']:.1f}% of sentences set a keyword off, "
                      f"{running['false_alarms_per_hour']:.0f} false alarms per hour."]
    return "\n".join(lines) + "\n\n"


def _peers_lines(peers: dict | None) -> str:
    """The model card's tables of other systems on the same clips (``bench/peers_card.py``), one per set."""
    lines = []
    for name, entry in (peers or {}).items():
        metrics = list(dict.fromkeys(m for scores in entry["systems"].values() for m in scores))
        lines += [f"- Other systems on the same clips: {_SET_TITLES.get(name, name)}, {entry['clips']} clips "
                  f"({entry['source']}):", "", "| system | " + " | ".join(metrics) + " |",
                  "|---|" + "---|" * len(metrics)]
        lines += [f"| {label} | " + " | ".join(f"{scores.get(m, float('nan')):.4f}" for m in metrics) + " |"
                  for label, scores in entry["systems"].items()]
        lines.append("")
    return "\n" + "\n".join(lines) if lines else ""


def kept_peers(new: ModelCard, shipped: ModelCard) -> dict | None:
    """The shipped card's peers on the sets the new card was scored on with as many clips: a peer's scores
    depend on the clips only (the sets are fixed by the corpus seed and the Debian package), not on our
    checkpoint, so a retrained model keeps them."""
    sets = (new.evaluation or {}).get("sets", {})
    kept = {name: entry for name, entry in (shipped.peers or {}).items()
            if sets.get(name, {}).get("clips") == entry["clips"]}
    return kept or None


def _general_lm_line(beam_search: dict | None) -> str:
    if not beam_search or "grid" not in beam_search:
        return ""
    return (f"- Default beam search (`beam_search=true`): `{beam_search['language_model']}`, beam "
            f"{beam_search['beam_size']}, lm_weight {beam_search['lm_weight']}, word_score "
            f"{beam_search['word_score']}, the best of {len(beam_search['grid'])} pairs on the validation split "
            f"(WER {beam_search['wer']:.4f} there); `wer_lm` above is scored with it.\n")


def _decoder_line(decoder: dict | None) -> str:
    if not decoder:
        return ""
    return (f"- Beam search with the word bigram of the training transcripts (when the card names no n-gram file): lm_weight {decoder['lm_weight']}, word_score "
            f"{decoder['word_score']}, the best of {len(decoder['grid'])} pairs on the validation split (WER "
            f"{decoder['wer']:.4f} there; the grid is in the JSON card).\n")


def reproduction_dir(name: str) -> Path:
    """Where ``reproduce NAME`` trains (and resumes from): ``runs/reproduce-NAME``."""
    return RUNS_DIR / f"reproduce-{name}"


def install(name: str, path: Path, checkpoint_dir: Path = CHECKPOINT_DIR) -> None:
    """Install a finished run's checkpoint (``path`` without suffix: NAME.json, .safetensors, .lm.json) as
    shipped model ``name``, with its Markdown model card."""
    card_path = path.with_suffix(".json")
    if not card_path.exists():
        raise SystemExit(f"no finished checkpoint at {card_path}: the run has not completed")
    card = load_card(card_path)
    recipe_name = (card.recipe or {}).get("name")
    if recipe_name != SHIPPED[name]:
        raise SystemExit(f"{card_path} was trained by recipe {recipe_name!r}, "
                         f"not {SHIPPED[name]!r}, the recipe behind shipped model {name!r}")
    shipped_card = checkpoint_dir / f"{name}.json"
    peers = kept_peers(card, load_card(shipped_card)) if shipped_card.exists() else None
    for suffix in (".json", ".safetensors", ".lm.json"):
        if path.with_suffix(suffix).exists():
            shutil.copy(path.with_suffix(suffix), checkpoint_dir / f"{name}{suffix}")
    if peers:
        card = dataclasses.replace(card, peers=peers)
        shipped_card.write_text(card.to_json())
    general = (card.beam_search or {}).get("language_model")
    if general and (path.parent / general).resolve() != (checkpoint_dir / general).resolve():
        shutil.copy(path.parent / general, checkpoint_dir / general)
    write_model_card(checkpoint_dir / f"{name}.md", card)
    print(f"installed {path} as {checkpoint_dir / name}.*")


def reproduce(name: str, ship: bool = False, device: str = "auto", overrides: Recipe | None = None) -> int:
    """Re-run the recipe behind shipped checkpoint ``name``; with ``ship``, install the result in the zoo."""
    if name not in SHIPPED:
        raise SystemExit(f"unknown shipped model {name!r}; expected one of {sorted(SHIPPED)}")
    recipe = overrides or get_recipe(SHIPPED[name])
    run_dir = reproduction_dir(name)
    meta = ensure_corpus(recipe)
    summary = train(recipe, run_dir, device)
    path, scores = finish_run(recipe, summary, run_dir, meta, name)
    print(json.dumps({"checkpoint": str(path), "scores": scores}, indent=2))
    if ship:
        install(name, path)
        return 0
    shipped = CHECKPOINT_DIR / f"{name}.json"
    if not shipped.exists():
        print("no shipped card to compare with")
        return 0
    rows = compare_scores(scores, load_card(shipped))
    for metric, got, want, tol, ok in rows:
        print(f"{metric:24s} ours {got:.4f}  card {want:.4f}  tolerance {tol}  {'ok' if ok else 'OUTSIDE'}")
    return 0 if all(ok for *_, ok in rows) else 1
