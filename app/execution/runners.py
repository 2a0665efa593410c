"""What a worker does with each kind of model: batched calls on whole clips, and streaming sessions.

A runner wraps one loaded network. ``forward`` takes several requests' rows at once, pads them at the end to
the longest (all networks are causal, so end padding never changes earlier outputs), calls the network once
and crops each output back. Sessions keep a model state per caller; ``step`` advances many sessions in one
call by stacking their states (see :mod:`app.execution.states`). No model math and no task rule lives here: the
networks and ``model_zoo.pipelines`` (decoding, keyword windows, the end of a denoising stream) do the work;
this only batches, crops and converts.

Everything returned is plain Python / numpy so it crosses a process pipe cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model_zoo.card import ModelCard
from model_zoo.nets import for_every_task
from model_zoo.nets.ctc import Transcript, best_path
from model_zoo.pipelines.asr import Recognizer, clip_logits
from model_zoo.pipelines.denoise import padded_length, stream_end
from model_zoo.pipelines.endpoint import RecognizerStep, blank_probabilities
from model_zoo.pipelines.kws import DEFAULT_HOP_SECONDS, Detection, LiveWindows
from model_zoo.pipelines.open_keywords import KeywordSearch, OpenKeyword

from . import states as state_tree

__all__ = ["Runner", "AsrRunner", "DenoiseRunner", "KwsRunner", "WorkerSession", "RUNNERS", "make_runner"]


@dataclass
class WorkerSession:
    """One caller's stream as its worker holds it: the model state and whatever the final answer needs.

    ``options["live"]`` marks a websocket stream: each step returns its own results (denoised audio, a partial
    transcript, window scores) instead of keeping everything for the end, so a live stream's memory stays
    bounded however long it runs. Long uploads leave it unset and collect the whole result at ``finish``.
    """

    options: dict[str, Any]
    state: Any
    outputs: list[np.ndarray] = field(default_factory=list)
    samples: int = 0
    emitted: int = 0  # output samples already returned (live denoising)
    segment_start: int = 0  # first output frame of the current segment (live transcription)
    search: Any = None  # open keywords: the search over the frames so far (model_zoo.pipelines.open_keywords)
    path: Any = None  # live partials: the greedy path of the segment so far (model_zoo.nets.ctc.GreedyPath)
    found: list = field(default_factory=list)  # ... its detections not returned yet (a long upload's)
    _signature: Any = None  # state_tree.signature of _signed, which is the state while it has not changed
    _signed: Any = None

    @property
    def live(self) -> bool:
        return bool(self.options.get("live"))

    def signature(self) -> Any:
        """:func:`app.execution.states.signature` of the state, worked out once per state: a batched step hands
        every session of its group the signature they share (:meth:`advance`)."""
        if self._signed is not self.state:
            self._signature, self._signed = state_tree.signature(self.state), self.state
        return self._signature

    def advance(self, state: Any, signature: Any, samples: int) -> None:
        """The state after a step of ``samples``, whose signature is known."""
        self.state, self._signature, self._signed = state, signature, state
        self.samples += samples


class Runner:
    """Base: padding, batching and session bookkeeping shared by the three tasks."""

    # Whether a session's final (``finish``, ``segment``) may run on another thread while this runner steps other
    # sessions (app.execution.worker.DETACHED_OPS): only where the final calls no network, whose layers keep caches
    # that are not for two threads at once.
    finals_beside_steps = False

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.model, self.device = model, device
        self.card: ModelCard = model.card

    def padded(self, length: int) -> int:
        """The length a batch whose longest row has ``length`` samples is padded to."""
        return length

    # ---- whole clips ------------------------------------------------------------------------------------------
    def forward(self, items: list[tuple[np.ndarray, dict]]) -> list[Any]:
        """``items``: ``(rows (R_i, L_i) float32, options)`` -> one result per item."""
        rows = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a, _ in items]
        lengths = [r.shape[-1] for r in rows for _ in range(r.shape[0])]
        longest = self.padded(max(lengths))
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
    def open(self, options: dict) -> WorkerSession:
        return WorkerSession(options=options, state=self.model.init_state(1, device=self.device))

    @property
    def stream_quantum(self) -> int:
        """Samples per output frame: sessions that always step multiples of it keep states of equal shapes
        (partly filled frames are part of the state), so they can share one batched call."""
        return 1

    def stream_info(self) -> dict[str, int]:
        """What a live client is told when its session opens."""
        return {"quantum": self.stream_quantum, "latency": int(self.model.algorithmic_latency)}

    def segment(self, session: WorkerSession) -> Any:
        """End of a segment (``input.flush``): the result so far; the stream itself goes on unchanged."""
        return None

    def step(self, sessions: list[WorkerSession], chunks: list[np.ndarray]) -> list[Any]:
        """Advance every session by its chunk ``(T,)``; sessions with equal chunk length and state signature
        share one network call."""
        results: list[Any] = [None] * len(sessions)
        groups: dict[Any, list[int]] = {}
        for i, (session, chunk) in enumerate(zip(sessions, chunks)):
            groups.setdefault((len(chunk), session.signature()), []).append(i)
        for members in groups.values():
            batch = torch.from_numpy(np.stack([chunks[i] for i in members]).astype(np.float32)).to(self.device)
            stacked = state_tree.stack([sessions[i].state for i in members])
            with torch.inference_mode():
                output, new_state = self.model.step(batch, stacked)
            group = [sessions[i] for i in members]
            signature = state_tree.signature(new_state)  # the batch's is each row's: shapes past the batch dimension
            for session, i, state in zip(group, members, state_tree.split(new_state, [1] * len(members))):
                session.advance(state, signature, len(chunks[i]))
            for i, result in zip(members, self.on_steps(group, output)):
                results[i] = result
        return results

    def on_steps(self, sessions: list[WorkerSession], outputs: torch.Tensor) -> list[Any]:
        """What a batched step returns to each of its sessions' callers; ``outputs`` is the batch's output, one
        row per session."""
        return [self.on_step(session, output) for session, output in zip(sessions, outputs)]

    def on_step(self, session: WorkerSession, output: torch.Tensor) -> Any:
        """What a step returns to the caller (a streaming partial); long-file callers ignore it."""
        session.outputs.append(output.float().cpu().numpy())
        return None

    def finish(self, session: WorkerSession) -> Any:
        raise NotImplementedError

    warmup_options: dict[str, Any] = {}  # what the warm-up call asks for, so that it reaches every lazy piece

    def warmup(self) -> None:
        """One call on a second of silence, so the first request does not pay for lazy initialisation."""
        self.forward([(np.zeros((1, self.card.sample_rate), np.float32), self.warmup_options)])


class AsrRunner(Runner):
    """CTC recognizer: logits per clip, decoded by :class:`model_zoo.pipelines.asr.Recognizer`.

    With the option ``open_keywords`` (``[{"keyword", "threshold", "boost"}, ...]``, the fields of
    :class:`model_zoo.pipelines.open_keywords.OpenKeyword`) a clip answers with the occurrences of those keywords
    (``list[Detection]``) instead of its transcript. A session searches its frames as they come
    (:class:`model_zoo.pipelines.open_keywords.KeywordSearch`, whose detections equal the whole clip's) and keeps no
    logits: a live one returns each step's final detections and the rest at ``finish``, a long upload all of them
    at ``finish``; ``segment`` (``input.flush``) ends the search there as the end of the audio would, and a new one
    goes on. ``offset`` (seconds) is added to every time.
    """

    finals_beside_steps = True  # a final decodes kept logits (the beam search locks itself) or ends a search

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__(model, device)
        self.recognizer = Recognizer(model)
        # Where beam searches run instead of here, ``(logits, options) -> result``: a worker process hands them to
        # a process of their own (app.execution.worker.DecodeProcess). None: here.
        self.beam_search_elsewhere: Callable[[torch.Tensor, dict], Any] | None = None

    # The warm-up builds the beam search too: reading the general-English ARPA file takes about 2 s, which the
    # first final of the first stream paid for (bench/streams.py measured a 1.9 s p99 with one stream).
    warmup_options = {"beam_search": True}

    def decode(self, logits: torch.Tensor, options: dict) -> Transcript | list[Detection]:
        """``logits (vocab, frames)``; options: ``beam_search``, ``offset`` (seconds added to word times), or
        ``open_keywords`` for a keyword search instead of a transcript."""
        if self.beam_search_elsewhere is not None and options.get("beam_search") and \
                options.get("open_keywords") is None:
            return self.beam_search_elsewhere(logits, options)
        return self.decode_here(logits, options)

    def decode_here(self, logits: torch.Tensor, options: dict) -> Transcript | list[Detection]:
        """:meth:`decode` in this process."""
        offset = float(options.get("offset", 0.0))
        if options.get("open_keywords") is not None:
            keywords = [OpenKeyword(**keyword) for keyword in options["open_keywords"]]
            return self.recognizer.spot(logits, keywords, offset=offset)
        return self.recognizer.decode(logits, beam_search=bool(options.get("beam_search")), offset=offset)

    def finish_rows(self, outputs: torch.Tensor, lengths: list[int], options: dict) -> Transcript | list[Detection]:
        return self.decode(clip_logits(self.model, outputs, lengths)[0].cpu(), options)

    def open(self, options: dict) -> WorkerSession:
        session = super().open(options)
        if options.get("open_keywords") is not None:
            session.search = self._keyword_search(options, 0)
        return session

    def _keyword_search(self, options: dict, frame: int) -> KeywordSearch:
        """A search for the session's open keywords whose frame 0 is the session's output frame ``frame``."""
        return self.recognizer.keyword_search([OpenKeyword(**keyword) for keyword in options["open_keywords"]],
                                              offset=float(options.get("offset", 0.0)) + frame * self.model.frame_seconds)

    @property
    def stream_quantum(self) -> int:
        return int(round(self.model.frame_seconds * self.card.sample_rate))

    def _segment_logits(self, session: WorkerSession) -> torch.Tensor:
        if not session.outputs:
            return torch.zeros(len(self.recognizer.vocab), 0)
        if len(session.outputs) > 1:
            session.outputs[:] = [np.concatenate(session.outputs, axis=-1)]
        return torch.from_numpy(session.outputs[0])

    def _segment_options(self, session: WorkerSession) -> dict:
        return {**session.options, "offset": session.segment_start * self.model.frame_seconds}

    def on_steps(self, sessions: list[WorkerSession],
                 outputs: torch.Tensor) -> list[str | RecognizerStep | list[Detection] | None]:
        """``outputs (B, vocab, frames)``: the softmax behind the partials and the blank posteriors is taken once
        for the batch (per session it was 12% of a step at 32 live streams)."""
        logits = outputs.float().cpu()
        kept = logits.numpy()
        tokens, probs = (values.tolist() for values in best_path(logits))
        blank = blank_probabilities(logits)
        results: list[str | RecognizerStep | list[Detection] | None] = []
        for j, session in enumerate(sessions):
            if session.search is not None:  # open keywords: searched as the frames come, none kept
                found = session.search.feed(logits[j])
                if not session.live:
                    session.found += found
                results.append(found if session.live else None)
                continue
            session.outputs.append(kept[j].copy())
            partial = self._partial(session, tokens[j], probs[j])
            # Endpointing (app.streaming) asks for each frame's P(blank) as well.
            results.append(RecognizerStep(partial, blank[j]) if session.options.get("blank_probs") else partial)
        return results

    def _partial(self, session: WorkerSession, tokens: list[int], probs: list[float]) -> str | None:
        """The segment's greedy text after a step that added a character to it; None when it is unchanged
        (nothing to show: the caller keeps the last one) or partials are off."""
        if not (session.live and session.options.get("interim_results", True)) or not tokens:
            return None
        # Partials are greedy whatever the final decoder: cheap, and stable enough to show while speaking. The
        # path reads each frame once; decoding the whole segment again at every step cost 17% of a worker at 64
        # live streams.
        if session.path is None:
            session.path = self.recognizer.greedy_path(offset=session.segment_start * self.model.frame_seconds)
        return session.path.text() if session.path.push_best(tokens, probs) else None

    def _search_end(self, session: WorkerSession) -> list[Detection]:
        """The end of an open-keyword search: its detections not returned yet, all of them decided now."""
        found, session.found = session.found + session.search.finish(), []
        return sorted(found, key=lambda d: (d.start, d.end, d.keyword))

    def segment(self, session: WorkerSession) -> Transcript | list[Detection]:
        if session.search is not None:
            found = self._search_end(session)
            session.segment_start += session.search.frames
            session.search = self._keyword_search(session.options, session.segment_start)
            return found
        logits = self._segment_logits(session)
        transcript = self.decode(logits, self._segment_options(session))
        session.segment_start += logits.shape[-1]
        session.outputs.clear()
        session.path = None
        return transcript

    def finish(self, session: WorkerSession, drop_frames: int = 0) -> Transcript | list[Detection]:
        """The final result; the last ``drop_frames`` output frames stepped are left out of a transcript (an
        utterance that ended before them, :mod:`app.streaming.utterances`)."""
        if session.search is not None:
            if drop_frames:
                raise ValueError("an open-keyword search cannot leave out frames it has searched")
            return self._search_end(session)
        if drop_frames:
            logits = self._segment_logits(session).numpy()
            session.outputs[:] = [logits[:, :max(0, logits.shape[-1] - drop_frames)]]
        return self.segment(session)


class DenoiseRunner(Runner):
    """Waveform enhancer: same length out as in; batches and streams keep to its blocks
    (:mod:`model_zoo.pipelines.denoise`)."""

    def padded(self, length: int) -> int:
        return padded_length(self.model, length)

    def finish_rows(self, outputs: torch.Tensor, lengths: list[int], options: dict) -> np.ndarray:
        return outputs[0, : lengths[0]].float().cpu().numpy()

    @property
    def stream_quantum(self) -> int:
        return int(self.model.block_length)

    def on_step(self, session: WorkerSession, output: torch.Tensor) -> np.ndarray | None:
        if not session.live:
            return super().on_step(session, output)
        audio = output.float().cpu().numpy()
        session.emitted += len(audio)
        return audio

    def finish(self, session: WorkerSession) -> np.ndarray:
        """Whole output (long uploads) or, for a live stream, the rest: as many samples in total as went in."""
        rest, session.state = stream_end(self.model, session.state, session.outputs, session.samples,
                                         session.emitted)
        return rest


class KwsRunner(Runner):
    """Keyword classifier: every row (a window) -> class probabilities ``(rows, classes)``.

    Live sessions are :class:`model_zoo.pipelines.kws.LiveWindows`, the windows of ``POST /keywords`` as the
    audio arrives; the windows of all sessions stepped together go through the network as one batch.
    """

    def finish_rows(self, outputs: torch.Tensor, lengths: list[int], options: dict) -> np.ndarray:
        return outputs.float().softmax(dim=-1).cpu().numpy()

    def open(self, options: dict) -> LiveWindows:
        return LiveWindows(self.card.sample_rate, float(options.get("hop", DEFAULT_HOP_SECONDS)))

    def step(self, sessions: list[LiveWindows], chunks: list[np.ndarray]) -> list[list[tuple[int, np.ndarray]]]:
        """Each session's newly complete windows as ``[(start sample, probabilities)]``."""
        windows = [(i, start, audio) for i, (stream, chunk) in enumerate(zip(sessions, chunks))
                   for start, audio in stream.push(chunk)]
        return self._score(len(sessions), windows)

    def finish(self, stream: LiveWindows) -> list[tuple[int, np.ndarray]]:
        """The tail rule's window, as ``POST /keywords`` adds it at the end of a clip."""
        return self._score(1, [(0, start, audio) for start, audio in stream.finish()])[0]

    def _score(self, count: int, windows: list[tuple[int, int, np.ndarray]]) -> list[list[tuple[int, np.ndarray]]]:
        """``windows`` ``[(session index, start, audio)]`` of ``count`` sessions -> each one's scored windows."""
        results: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(count)]
        if not windows:
            return results
        probs = self.forward([(np.stack([audio for _, _, audio in windows]), {})])[0]
        for (i, start, _), p in zip(windows, probs):
            results[i].append((start, p))
        return results


# The runner of each task of model_zoo.nets.TASKS, checked at import: a task cannot be added without one.
RUNNERS: dict[str, type[Runner]] = for_every_task({"asr": AsrRunner, "denoise": DenoiseRunner, "kws": KwsRunner},
                                                  "app.execution.runners.RUNNERS")


def make_runner(model: nn.Module, device: torch.device) -> Runner:
    return RUNNERS[model.card.task](model, device)
