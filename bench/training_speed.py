"""Training speed on this CPU: optimizer steps per second of a shipped recipe under each way of running a step.

    python bench/training_speed.py asr-synthetic                 # every variant, 12 timed steps each
    python bench/training_speed.py kws-synthetic --steps 40 --variants fp32,bf16,compile

The batches are real ones: ``--batches`` batches are drawn once from the recipe's train split through its own
loader (augmentation included) and kept in memory, so a timed step is forward, loss, backward, clipping and
AdamW on exactly the data training sees, without the data loader. The loader's own cost per batch (one process,
as the recipes' single worker) is measured separately, since it runs beside the step in a worker process.

Variants (each from the same initial weights, after ``--warmup`` untimed steps):

* ``fp32``: what the CPU recipes do (eager, float32, one thread);
* ``bf16``: ``torch.autocast("cpu", torch.bfloat16)``; the FFT convolutions and the mel front end stay float32
  (they leave autocast themselves), so only the linear and convolution layers run in bf16;
* ``compile``: ``torch.compile`` of the network, float32 (its compile time is reported, not timed in the rate;
  ASR batches have varying lengths, so each new length may recompile);
* ``threads2``: fp32 eager with two intra-op threads, i.e. both cores for one run (the data worker then
  competes with it).

The table gives steps/s, CPU seconds per step and the speed-up over ``fp32``; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model_zoo.nets import build_network  # noqa: E402
from training.recipes import RECIPES  # noqa: E402
from training.tasks import TASK_SPECS, build_datasets  # noqa: E402
from training.trainer import EpochBatches, dataset_lengths, make_loader, parameter_groups  # noqa: E402

VARIANTS = ("fp32", "bf16", "compile", "threads2")


def draw_batches(recipe, count: int) -> tuple[list, float]:
    """``count`` train batches through the recipe's loader (no worker process) and the seconds per batch."""
    data = build_datasets(recipe)["train"]
    lengths = dataset_lengths(data) if recipe.task == "asr" else None
    sampler = EpochBatches(len(data), recipe.batch_size, recipe.seed, lengths=lengths)
    loader = iter(make_loader(data, recipe.batch_size, TASK_SPECS[recipe.task].collate, 0, sampler))
    started = time.perf_counter()
    batches = [next(loader) for _ in range(count)]
    return batches, (time.perf_counter() - started) / count


def random_batches(recipe, count: int, seconds: float) -> list:
    """Batches of the recipe's shapes filled with noise (timing only; for when its corpus is not built): KWS one
    second per item, denoise ``segment_seconds`` crops, ASR ``seconds`` per utterance with 12 letters a second."""
    generator = torch.Generator().manual_seed(recipe.seed)
    size = recipe.batch_size
    batches = []
    for _ in range(count):
        if recipe.task == "kws":
            batches.append((0.1 * torch.randn(size, 16000, generator=generator),
                            torch.randint(0, 37, (size,), generator=generator)))
        elif recipe.task == "denoise":
            length = round(recipe.segment_seconds * 16000 / 256) * 256
            clean = 0.1 * torch.randn(size, length, generator=generator)
            batches.append((clean + 0.05 * torch.randn(size, length, generator=generator),
                            torch.full((size,), length), clean))
        else:
            length = int(seconds * 16000)
            letters = "abcdefghijklmnopqrstuvwxyz "
            texts = ["".join(letters[i] for i in torch.randint(0, 27, (int(12 * seconds),), generator=generator))
                     for _ in range(size)]
            batches.append((0.1 * torch.randn(size, length, generator=generator), torch.full((size,), length),
                            [" ".join(t.split()) or "a" for t in texts]))
    return batches


def time_variant(recipe, variant: str, batches: list, warmup: int, steps: int) -> dict:
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(2 if variant == "threads2" else 1)
    model = build_network(recipe.task, recipe.size, **recipe.architecture)
    model.train()
    optimizer = torch.optim.AdamW(parameter_groups(model, recipe))
    loss_fn = TASK_SPECS[recipe.task].loss
    step_model = model
    compile_seconds = 0.0
    if variant == "compile":
        step_model = torch.compile(model)

    def one_step(batch) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant == "bf16"):
            loss = loss_fn(step_model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        return float(loss)

    started = time.perf_counter()
    for i in range(warmup):
        one_step(batches[i % len(batches)])
    if variant == "compile":
        compile_seconds = time.perf_counter() - started
    wall, cpu = time.perf_counter(), time.process_time()
    losses = [one_step(batches[(warmup + i) % len(batches)]) for i in range(steps)]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    result = {"variant": variant, "steps_per_s": round(steps / wall, 3), "cpu_s_per_step": round(cpu / steps, 3),
              "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4)}
    if variant == "compile":
        result["warmup_and_compile_s"] = round(compile_seconds, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("recipe", choices=sorted(r for r in RECIPES if r.endswith("-synthetic")))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--random", type=float, default=None, metavar="SECONDS",
                        help="time on noise batches of the recipe's shapes (ASR utterances of SECONDS) instead of "
                             "its corpus")
    args = parser.parse_args()
    os.chdir(ROOT)
    recipe = RECIPES[args.recipe]
    torch.set_num_threads(1)
    if args.random is None:
        batches, load_seconds = draw_batches(recipe, args.batches)
    else:
        batches, load_seconds = random_batches(recipe, args.batches, args.random), None
    loading = "noise batches" if load_seconds is None else f"data loader {load_seconds:.3f} s per batch (one process)"
    print(f"{recipe.name}: batch {recipe.batch_size}; {loading}; load average {os.getloadavg()[0]:.2f}")
    results = []
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            raise SystemExit(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
        results.append(time_variant(recipe, variant, copy.deepcopy(batches), args.warmup, args.steps))
    base = next((r["steps_per_s"] for r in results if r["variant"] == "fp32"), None)
    print(f"{'variant':<10} {'steps/s':>8} {'cpu s/step':>10} {'speed-up':>9} {'loss first/last':>16}")
    for r in results:
        gain = f"{r['steps_per_s'] / base:.2f}x" if base else "-"
        print(f"{r['variant']:<10} {r['steps_per_s']:>8.3f} {r['cpu_s_per_step']:>10.3f} {gain:>9} "
              f"{r['first_loss']:>7.3f}/{r['last_loss']:<7.3f}")
    print(json.dumps({"recipe": recipe.name, "batch_size": recipe.batch_size, "loader_s_per_batch": load_seconds and round(load_seconds, 4),
                      "load_average": os.getloadavg()[0], "results": results}))


if __name__ == "__main__":
    main()
