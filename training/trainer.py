"""The training loop: plain PyTorch, resumable, single process or DistributedDataParallel under torchrun.

- AdamW; A and dt (``model_zoo.ssm.SENSITIVE_PARAMETERS``) in their own group with a lower learning rate and no
  weight decay; cosine decay with linear warmup stepped per optimizer step; gradient clipping.
- On CUDA: bf16 autocast (the SSM layers keep their FFTs in fp32) and ``torch.compile``. On CPU: fp32, eager.
- ``runs/NAME/last.pt`` is written every ``checkpoint_every`` steps and the run resumes from it when restarted
  (model, optimizer, schedule, step and data order). Metrics go to ``runs/NAME/metrics.jsonl``, one line per step.
- ``torchrun --nproc_per_node N -m training train RECIPE`` trains on N processes (NCCL on GPUs, gloo on CPU);
  each rank reads its own shard of every epoch's permutation.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from model_zoo.nets import build_network, parameter_count
from model_zoo.runtime import select_device
from model_zoo.ssm import SENSITIVE_PARAMETERS

from .recipes import Recipe
from .tasks import TASK_SPECS, build_datasets, move_batch, unwrap

__all__ = ["train", "evaluate_model", "make_loader", "RUNS_DIR"]

RUNS_DIR = Path("runs")


class EpochBatches(Sampler[list[int]]):
    """Batches of a seeded permutation per epoch, sharded over ranks, that can start mid-epoch (for resuming).

    With ``lengths``, each window of 32 batches is sorted by length before it is cut into batches (then the
    batches are shuffled), so a batch pads to a similar length: measured here, padding a random ASR batch to its
    longest utterance doubled the cost of a step.
    """

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 lengths: list[float] | None = None) -> None:
        self.size, self.batch_size, self.seed, self.rank, self.world = size, batch_size, seed, rank, world
        self.lengths = lengths
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start_batch: int) -> None:
        self.epoch, self.start = epoch, start_batch

    def _batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.size, generator=generator)
        shard = order[self.rank: self.size - self.size % self.world: self.world].tolist()
        if self.lengths is not None:
            window = 32 * self.batch_size
            shard = [i for w in range(0, len(shard), window)
                     for i in sorted(shard[w:w + window], key=lambda i: self.lengths[i])]
        batches = [shard[b:b + self.batch_size] for b in range(0, len(shard) - self.batch_size + 1, self.batch_size)]
        if self.lengths is not None:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return batches

    def __len__(self) -> int:
        return len(self._batches()) - self.start

    def __iter__(self):
        return iter(self._batches()[self.start:])


def make_loader(dataset, batch_size: int, collate, workers: int, batches: EpochBatches | None = None) -> DataLoader:
    if batches is not None:
        return DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=workers)
    return DataLoader(dataset, batch_size=batch_size, collate_fn=collate, num_workers=workers)


def dataset_lengths(dataset) -> list[float] | None:
    """Utterance durations when the dataset's manifest has them (the synthetic ASR and denoise corpora)."""
    rows = getattr(dataset, "rows", None)
    if rows and all("seconds" in r for r in rows):
        return [r["seconds"] for r in rows]
    return None


def parameter_groups(model: nn.Module, recipe: Recipe) -> list[dict]:
    sensitive, decay, no_decay = [], [], []
    for name, param in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in SENSITIVE_PARAMETERS:
            sensitive.append(param)
        elif param.dim() < 2:  # norms and biases
            no_decay.append(param)
        else:
            decay.append(param)
    return [
        {"params": decay, "lr": recipe.lr, "weight_decay": recipe.weight_decay},
        {"params": no_decay, "lr": recipe.lr, "weight_decay": 0.0},
        {"params": sensitive, "lr": recipe.sensitive_lr, "weight_decay": 0.0},
    ]


def cosine_with_warmup(step: int, total: int, warmup_fraction: float) -> float:
    warmup = max(1, int(total * warmup_fraction))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _distributed() -> tuple[int, int, int]:
    if "RANK" not in os.environ:
        return 0, 1, 0
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def evaluation_loader(recipe: Recipe, dataset) -> DataLoader:
    """``dataset`` in order, in the task's evaluation batches, read in this process."""
    spec = TASK_SPECS[recipe.task]
    return make_loader(dataset, spec.eval_batch_size, spec.collate, 0)


def evaluate_model(model: nn.Module, recipe: Recipe, dataset, device: torch.device, max_batches=None,
                   **options) -> dict:
    """The task's scores on ``dataset``; ``options`` go to the task's evaluation (``threshold`` for kws)."""
    spec = TASK_SPECS[recipe.task]
    loader = evaluation_loader(recipe, dataset)
    was_training = model.training
    model.eval()
    try:
        return spec.evaluate(model, loader, device, max_batches, **options)
    finally:
        model.train(was_training)


def train(recipe: Recipe, run_dir: Path | None = None, device: str = "auto") -> dict:
    """Train ``recipe``; returns the run summary (also written to ``run_dir/summary.json`` on rank 0)."""
    rank, world, local_rank = _distributed()
    run_dir = Path(run_dir or RUNS_DIR / recipe.name)
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    dev = select_device(device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    seed_everything(recipe.seed)
    spec = TASK_SPECS[recipe.task]
    data = build_datasets(recipe)
    model = build_network(recipe.task, recipe.size, **recipe.architecture).to(dev)
    optimizer = torch.optim.AdamW(parameter_groups(model, recipe))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_with_warmup(s, recipe.steps, recipe.warmup_fraction))
    step, epoch, position, elapsed, best = 0, 0, 0, 0.0, None
    resumed_rng: Tensor | None = None
    last = run_dir / "last.pt"
    if last.exists():  # resume: our own file, read back without unpickling arbitrary objects
        saved = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        step, epoch, position = saved["step"], saved["epoch"], saved["position"]
        elapsed, best = saved["elapsed"], saved.get("best")
        resumed_rng = saved["rng"]
    train_model: nn.Module = model
    if world > 1:
        train_model = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    if dev.type == "cuda":
        train_model = torch.compile(train_model)
    lengths = dataset_lengths(data["train"]) if recipe.task == "asr" else None
    batches = EpochBatches(len(data["train"]), recipe.batch_size, recipe.seed, rank, world, lengths)
    is_main = rank == 0
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_main:
        (run_dir / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2))
    log = open(run_dir / "metrics.jsonl", "a") if is_main else None
    bar = tqdm(total=recipe.steps, initial=step, disable=not is_main, desc=recipe.name, dynamic_ncols=True)
    model.train()
    started = time.perf_counter() - elapsed
    while step < recipe.steps:
        batches.set_position(epoch, position // recipe.batch_size)
        if hasattr(data["train"], "set_epoch"):
            data["train"].set_epoch(epoch)
        loader = iter(make_loader(data["train"], recipe.batch_size, spec.collate, recipe.num_workers, batches))
        if resumed_rng is not None:
            # Creating a loader iterator draws its worker seed from the global RNG. An uninterrupted run drew it at
            # the start of this epoch, before the state we saved, so restore the state after the draw: dropout
            # then continues exactly as it would have without the interruption.
            torch.set_rng_state(resumed_rng)
            resumed_rng = None
        for batch in loader:
            tick = time.perf_counter()
            batch = move_batch(batch, dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                loss = spec.loss(train_model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            optimizer.step()
            schedule.step()
            step += 1
            position += recipe.batch_size
            if is_main:
                rate = recipe.batch_size * world / max(time.perf_counter() - tick, 1e-9)
                record = {"step": step, "loss": round(loss.item(), 5), "grad_norm": round(float(grad_norm), 4),
                          "lr": schedule.get_last_lr()[0], "examples_per_s": round(rate, 2),
                          "elapsed_s": round(time.perf_counter() - started, 1)}
                bar.set_postfix(loss=f"{loss.item():.4f}", ex_s=f"{rate:.1f}")
                bar.update(1)
                if step % recipe.eval_every == 0 or step == recipe.steps:
                    scores = evaluate_model(model, recipe, data["valid"], dev, recipe.eval_batches)
                    record["valid"] = scores
                    tqdm.write(f"step {step}: valid {json.dumps(scores)}")
                    value = scores[spec.headline]
                    better = best is None or (value > best if spec.higher_is_better else value < best)
                    if better:
                        best = value
                        torch.save(model.state_dict(), run_dir / "best_model.pt")
                log.write(json.dumps(record) + "\n")
                log.flush()
                if step % recipe.checkpoint_every == 0 or step == recipe.steps:
                    _save_resume(run_dir, model, optimizer, schedule, step, epoch, position,
                                 time.perf_counter() - started, best)
            if step >= recipe.steps:
                break
        else:
            epoch, position = epoch + 1, 0
    bar.close()
    if world > 1:  # BatchNorm statistics follow each rank's own batches: take rank 0's, as DDP does per forward
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)
    summary = {"steps": step, "training_seconds": round(time.perf_counter() - started, 1), "world_size": world,
               "parameters": parameter_count(model), "device": str(dev), "best_valid": best,
               "weights_sha256": weights_digest(model)}
    if world > 1:  # lets anyone check that the ranks ended with identical weights
        (run_dir / f"summary_rank{rank}.json").write_text(json.dumps(summary, indent=2))
    if is_main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        log.close()
    if world > 1:
        dist.barrier()
    summary["model"] = unwrap(model)
    return summary


def weights_digest(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _save_resume(run_dir: Path, model, optimizer, schedule, step, epoch, position, elapsed, best) -> None:
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
             "step": step, "epoch": epoch, "position": position, "elapsed": elapsed, "best": best,
             "rng": torch.get_rng_state()}
    tmp = run_dir / "last.pt.tmp"
    torch.save(state, tmp)
    tmp.replace(run_dir / "last.pt")
