"""The one way into the worker pool, for uploads and streams alike: transcribe, denoise, spot keywords, stream.

Routes and websocket handlers hold decoded audio and a model name; the engine knows the model cards, resamples
to the model's rate and decides how the work reaches the pool. Short clips (up to ``chunk_seconds``) go to
the pool as one batched call; longer ones run chunk by chunk through a resident streaming session, so model
memory stays bounded whatever the length and the result is exactly what one call on the whole clip would give
(the networks stream exactly). Live streams get a resident session of their own (:meth:`Engine.open_stream`).
Resampling runs in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch

from model_zoo.nets.ctc import Transcript
from model_zoo.pipelines.kws import Detection, DetectionRuns, window_starts

from .audio.decode import Audio
from .audio.length import fit_length
from .audio.resample import resample
from .execution.pool import Pool
from .execution.sessions import SessionHandle

__all__ = ["Engine", "KeywordResult", "Detection"]


@dataclass(frozen=True)
class KeywordResult:
    detections: list[Detection]
    scores: list[tuple[str, float]] | None  # ranked class scores, for clips of about one window


class Engine:
    """The task logic between routes and pool; holds the model cards and the chunking policy."""

    def __init__(self, pool: Pool, cards: dict[str, dict], chunk_seconds: float) -> None:
        self.pool, self.cards, self.chunk_seconds = pool, cards, chunk_seconds

    @property
    def ready(self) -> bool:
        """Whether the pool takes work (a worker is warm and the service is not shutting down)."""
        return self.pool.ready

    def rate(self, model: str) -> int:
        return int(self.cards[model]["sample_rate"])

    def unknown_keywords(self, model: str, keywords: Iterable[str] | None) -> list[str]:
        """The keywords asked for that the keyword model ``model`` does not know, sorted."""
        return sorted(set(keywords or ()) - set(self.cards[model]["labels"]))

    async def _at_rate(self, audio: Audio, rate: int) -> np.ndarray:
        samples = audio.samples
        if audio.sample_rate != rate:  # a thread only for real work: the hop costs more than a no-op
            samples = await asyncio.to_thread(resample, samples, audio.sample_rate, rate)
        return samples.numpy().astype(np.float32, copy=False)

    def _chunk(self, rate: int) -> int:
        # A multiple of 1280 samples (every network's stride divides it), so sessions at different positions
        # keep equal state shapes and can share a batch.
        return max(1280, int(self.chunk_seconds * rate) // 1280 * 1280)

    async def _run(self, model: str, wave: np.ndarray, options: dict, deadline: float) -> Any:
        """Whole clip in one call, or a session chunk by chunk when it is long."""
        chunk = self._chunk(self.rate(model))
        if len(wave) <= chunk:
            return await self.pool.forward(model, wave[None], options, deadline)
        session = await self.pool.open_session(model, options, deadline)
        try:
            for start in range(0, len(wave), chunk):
                await session.step(wave[start:start + chunk], deadline)
            return await session.finish(deadline)
        finally:
            await session.close()

    async def transcribe(self, model: str, audio: Audio, *, beam_search: bool, deadline: float,
                         denoise_model: str | None = None) -> Transcript:
        if denoise_model is not None:
            clean = await self.denoise(denoise_model, audio, deadline=deadline)
            audio = Audio(clean, audio.sample_rate, 1)
        wave = await self._at_rate(audio, self.rate(model))
        return await self._run(model, wave, {"beam_search": beam_search}, deadline)

    async def denoise(self, model: str, audio: Audio, *, deadline: float) -> torch.Tensor:
        """Enhanced mono audio at the input's own rate and of exactly its length."""
        wave = await self._at_rate(audio, self.rate(model))
        clean = await self._run(model, wave, {}, deadline)
        out = await asyncio.to_thread(resample, torch.from_numpy(np.ascontiguousarray(clean)), self.rate(model),
                                      audio.sample_rate)
        return fit_length(out, audio.samples.shape[-1])

    async def keywords(self, model: str, audio: Audio, *, hop: float, threshold: float,
                       keywords: set[str] | None, deadline: float, max_rows: int) -> KeywordResult:
        """Slide a one-second window (the classifier's training length) by ``hop`` seconds over the clip;
        detections as :class:`model_zoo.pipelines.kws.DetectionRuns` defines them."""
        rate = self.rate(model)
        labels: list[str] = list(self.cards[model]["labels"])
        wave = await self._at_rate(audio, rate)
        length = len(wave)
        window = rate
        starts = window_starts(length, window, max(1, int(round(hop * rate))))
        if len(wave) < window:
            wave = np.pad(wave, (0, window - len(wave)))
        probs = []
        for first in range(0, len(starts), max_rows):  # requests of at most one batch each: bounded memory
            rows = np.stack([wave[s:s + window] for s in starts[first:first + max_rows]])
            probs.append(await self.pool.forward(model, rows, {}, deadline))
        table = np.concatenate(probs)
        runs = DetectionRuns(labels, rate=rate, window=window, threshold=threshold, keywords=keywords)
        detections = [d for start, p in zip(starts, table) for d in runs.push(start, p, length)] + runs.close()
        scores = None
        if length <= 1.5 * window:  # about one second: the ranked classes of the whole clip are meaningful
            mean = table.mean(axis=0)
            scores = sorted(((labels[i], round(float(mean[i]), 4)) for i in range(len(labels))),
                            key=lambda pair: -pair[1])
        return KeywordResult(detections, scores)

    async def open_stream(self, model: str, options: dict, deadline: float) -> SessionHandle:
        """A resident session for a live stream (``options["live"]``: each step returns its own results)."""
        return await self.pool.open_session(model, options, deadline)
