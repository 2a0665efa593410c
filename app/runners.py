"""What a worker does with each kind of model: batched calls on whole clips, and streaming sessions.

A runner wraps one loaded network. ``forward`` takes several requests' rows at once, pads them at the end to
the longest (all networks are causal, so end padding never changes earlier outputs), calls the network once
and crops each output back. Sessions keep a model state per caller; ``step`` advances many sessions in one
call by stacking their states (see :mod:`app.states`). No model math lives here: the networks and
``model_zoo``'s decoders do the work, this only batches, crops and converts.

Everything returned is plain Python / numpy so it crosses a process pipe cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model_zoo.nets.ctc import BeamSearchDecoder, Transcript, greedy_decode

from . import states as state_tree

__all__ = ["Runner", "AsrRunner", "DenoiseRunner", "KwsRunner", "Session", "make_runner"]


@dataclass
class Session:
    """One caller's stream inside a worker: the model state and whatever the final answer needs."""

    options: dict[str, Any]
    state: Any
    outputs: list[np.ndarray] = field(default_factory=list)
    samples: int = 0


class Runner:
    """Base: padding, batching and session bookkeeping shared by the three tasks."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.model, self.device = model, device
        self.card: dict[str, Any] = model.card

    @property
    def pad_multiple(self) -> int:
        return 1

    # ---- whole clips ------------------------------------------------------------------------------------------
    def forward(self, items: list[tuple[np.ndarray, dict]]) -> list[Any]:
        """``items``: ``(rows (R_i, L_i) float32, options)`` -> one result per item."""
        rows = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a, _ in items]
        lengths = [r.shape[-1] for r in rows for _ in range(r.shape[0])]
        longest = max(lengths)
        longest += -longest % self.pad_multiple
        batch = torch.cat([F.pad(r, (0, longest - r.shape[-1])) for r in rows]).to(self.device)
        with torch.inference_mode():
            outputs = self.call(batch)
        results, start = [], 0
        for (_, options), r in zip(items, rows):
            count = r.shape[0]
            results.append(self.finish_rows(outputs[start:start + count], lengths[start:start + count], options))
            start += count
        return results

    def call(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)

    def finish_rows(self, outputs: torch.Tensor, lengths: list[int], options: dict) -> Any:
        raise NotImplementedError

    # ---- sessions ---------------------------------------------------------------------------------------------
    def open(self, options: dict) -> Session:
        return Session(options=options, state=self.model.init_state(1, device=self.device))

    def step(self, sessions: list[Session], chunks: list[np.ndarray]) -> list[Any]:
        """Advance every session by its chunk ``(T,)``; sessions with equal chunk length and state signature
        share one network call."""
        results: list[Any] = [None] * len(sessions)
        groups: dict[Any, list[int]] = {}
        for i, (session, chunk) in enumerate(zip(sessions, chunks)):
            groups.setdefault((len(chunk), state_tree.signature(session.state)), []).append(i)
        for members in groups.values():
            batch = torch.from_numpy(np.stack([chunks[i] for i in members]).astype(np.float32)).to(self.device)
            stacked = state_tree.stack([sessions[i].state for i in members])
            with torch.inference_mode():
                output, new_state = self.model.step(batch, stacked)
            for j, (i, s) in enumerate(zip(members, state_tree.split(new_state, [1] * len(members)))):
                sessions[i].state = s
                sessions[i].samples += len(chunks[i])
                results[i] = self.on_step(sessions[i], output[j])
        return results

    def on_step(self, session: Session, output: torch.Tensor) -> Any:
        """What a step returns to the caller (a streaming partial); long-file callers ignore it."""
        session.outputs.append(output.float().cpu().numpy())
        return None

    def finish(self, session: Session) -> Any:
        raise NotImplementedError

    def warmup(self) -> None:
        """One call on a second of silence, so the first request does not pay for lazy initialisation."""
        rate = int(self.card["sample_rate"])
        self.forward([(np.zeros((1, rate), np.float32), {})])


class AsrRunner(Runner):
    """CTC recognizer: logits per clip, decoded here (greedy or beam) with word times."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__(model, device)
        self.vocab = tuple(self.card["vocab"])
        self._beam: BeamSearchDecoder | None = None

    def decode(self, logits: torch.Tensor, options: dict) -> Transcript:
        """``logits (vocab, frames)``; options: ``beam_search``, ``offset`` (seconds added to word times)."""
        offset = float(options.get("offset", 0.0))
        if options.get("beam_search"):
            if self._beam is None:  # built on first use: flashlight's decoder is not free to construct
                self._beam = BeamSearchDecoder(vocab=self.vocab)
            return self._beam(logits, self.model.frame_seconds, offset=offset)
        return greedy_decode(logits, self.model.frame_seconds, vocab=self.vocab, offset=offset)

    def finish_rows(self, outputs: torch.Tensor, lengths: list[int], options: dict) -> Transcript:
        frames = self.model.output_lengths(torch.tensor(lengths))
        return self.decode(outputs[0, :, : int(frames[0])].cpu(), options)

    def finish(self, session: Session) -> Transcript:
        logits = np.concatenate(session.outputs, axis=-1) if session.outputs else np.zeros((len(self.vocab), 0))
        return self.decode(torch.from_numpy(logits), session.options)


class DenoiseRunner(Runner):
    """Waveform enhancer: same length out as in; sessions flush the last partial block at the end."""

    @property
    def pad_multiple(self) -> int:
        return int(self.model.block_length)

    def finish_rows(self, outputs: torch.Tensor, lengths: list[int], options: dict) -> np.ndarray:
        return outputs[0, : lengths[0]].float().cpu().numpy()

    def finish(self, session: Session) -> np.ndarray:
        with torch.inference_mode():
            tail, session.state = self.model.flush(session.state)
        parts = session.outputs + [tail[0].float().cpu().numpy()]
        return np.concatenate(parts)[: session.samples]


class KwsRunner(Runner):
    """Keyword classifier: every row (a window) -> class probabilities ``(rows, classes)``."""

    def finish_rows(self, outputs: torch.Tensor, lengths: list[int], options: dict) -> np.ndarray:
        return outputs.float().softmax(dim=-1).cpu().numpy()

    def finish(self, session: Session) -> np.ndarray:
        # The running-mean logits of the last frame classify everything heard.
        if not session.outputs or session.outputs[-1].shape[-1] == 0:
            return np.zeros(len(self.card["labels"]), np.float32)
        return torch.from_numpy(session.outputs[-1][:, -1]).softmax(dim=-1).numpy()


def make_runner(model: nn.Module, device: torch.device) -> Runner:
    kinds = {"asr": AsrRunner, "denoise": DenoiseRunner, "kws": KwsRunner}
    return kinds[model.card["task"]](model, device)
