"""The ``train``, ``evaluate``, ``reproduce`` and ``ship`` sub-commands of ``python -m training``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_training_commands"]


def _cmd_train(args: argparse.Namespace) -> int:
    from model_zoo.runtime import keep_freed_memory

    from .recipes import apply_overrides, get_recipe
    from .reproduce import ensure_corpus, finish_run
    from .trainer import RUNS_DIR, train

    keep_freed_memory()
    recipe = apply_overrides(get_recipe(args.recipe), args.overrides)
    run_dir = Path(args.run_dir or RUNS_DIR / recipe.name)
    meta = ensure_corpus(recipe)
    summary = train(recipe, run_dir, args.device)
    if summary.get("world_size", 1) > 1:
        import torch.distributed as dist

        if dist.get_rank() != 0:
            return 0
    path, scores = finish_run(recipe, summary, run_dir, meta, args.name or recipe.task)
    print(json.dumps({"checkpoint": str(path), "test_scores": scores}, indent=2))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import dataclasses

    import model_zoo
    from model_zoo.runtime import select_device

    from .recipes import Recipe
    from .evaluation import EVALUATION_SETS, SetUnavailable, score_sets
    from .tasks import build_datasets
    from .trainer import evaluate_model

    device = select_device(args.device)
    model = model_zoo.load(args.checkpoint, device=device)
    card_recipe = model.card.recipe or {}
    fields = {f.name for f in dataclasses.fields(Recipe)}
    recipe = Recipe(**{k: v for k, v in card_recipe.items() if k in fields}) if card_recipe else Recipe(
        name="evaluate", task=model.card.task, data="synthetic", data_root=args.data)
    recipe = dataclasses.replace(recipe, data_root=args.data or recipe.data_root, data=args.source or recipe.data)
    options = {}
    if args.threshold is not None:
        if recipe.task != "kws":
            raise SystemExit(f"--threshold applies to keyword spotting, not to a {recipe.task} checkpoint")
        options["threshold"] = args.threshold
    split = args.split or "test"
    # Without --set, naming a data folder, source or split asks for the one split, as before the three sets.
    which = args.set or ("split" if (args.data or args.source or args.split) else "all")
    if which == "split":
        scores = evaluate_model(model, recipe, build_datasets(recipe)[split], device, args.max_batches, **options)
        print(json.dumps({"checkpoint": str(args.checkpoint), "data": recipe.data_root, "split": split,
                          **options, "scores": scores}, indent=2))
        return 0
    names = EVALUATION_SETS if which == "all" else (which,)
    try:
        results = score_sets(model, recipe, device, names, split, args.real_data, args.max_batches, **options)
    except SetUnavailable as err:
        raise SystemExit(f"evaluate --set {which}: {err}") from None
    print(json.dumps({"checkpoint": str(args.checkpoint), "task": recipe.task, **options, "sets": results}, indent=2))
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from model_zoo.runtime import keep_freed_memory

    from .reproduce import reproduce

    keep_freed_memory()
    return reproduce(args.name, ship=args.ship, device=args.device)


def _cmd_ship(args: argparse.Namespace) -> int:
    from .reproduce import install, reproduction_dir

    install(args.name, Path(args.run_dir or reproduction_dir(args.name)) / args.name)
    return 0


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {text}")
    return value


def add_training_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a recipe (resumes from runs/RECIPE/last.pt when present)")
    p.add_argument("recipe", help="recipe name, see training/recipes.py")
    p.add_argument("overrides", nargs="*", help="key=value recipe overrides, e.g. steps=200 batch_size=8")
    p.add_argument("--run-dir", help="default runs/RECIPE")
    p.add_argument("--name", help="checkpoint name (default: the task)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="score a checkpoint on the synthetic test split without festival, its "
                                        "festival part and the real Asterisk prompts (or on one data split)")
    p.add_argument("checkpoint", help="shipped model name or path to NAME.json")
    p.add_argument("--set", choices=("all", "synthetic", "festival", "real", "split"),
                   help="all (default): synthetic, festival and real together; synthetic: the corpus split without "
                        "festival voices; festival: its festival-only part; real: the Asterisk prompts "
                        "(training/datasets/asterisk.py); split: the whole --split of --data, the single-set output "
                        "(the default when --data, --source or --split is given)")
    p.add_argument("--data", help="dataset folder (default: the one in the checkpoint's recipe)")
    p.add_argument("--source", help="synthetic | speech_commands | vbdmd | librispeech (default: the recipe's)")
    p.add_argument("--split", choices=("train", "valid", "test"), help="default test")
    p.add_argument("--real-data", help="cache folder of the real set (default data/asterisk, built when missing)")
    p.add_argument("--max-batches", type=int)
    p.add_argument("--threshold", type=_probability,
                   help="kws: a keyword below this probability counts as _unknown_, as in the service's detections")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("reproduce", help="re-run the recipe of a shipped checkpoint and compare with its card")
    p.add_argument("name", choices=("kws", "denoise", "asr"))
    p.add_argument("--ship", action="store_true", help="install the result as the shipped checkpoint")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser("ship", help="install a finished reproduction (runs/reproduce-NAME) as the shipped checkpoint, "
                                    "what reproduce --ship does at its end")
    p.add_argument("name", choices=("kws", "denoise", "asr"))
    p.add_argument("--run-dir", help="default runs/reproduce-NAME")
    p.set_defaults(func=_cmd_ship)

