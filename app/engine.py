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
from typing import Any, AsyncIterator, Iterable

import numpy as np
import torch

from model_zoo.card import ModelCard
from model_zoo.nets.ctc import Transcript
from model_zoo.pipelines.denoise import for_recognizer
from model_zoo.pipelines.kws import ClipWindows, Detection
from model_zoo.pipelines.open_keywords import OpenKeyword

from .audio.decode import Audio
from model_zoo.samples import fit_length
from .audio.resample import resample
from .execution.pool import Pool
from .execution.sessions import SessionHandle

__all__ = ["Engine", "KeywordResult", "Detection", "open_keyword_options"]


@dataclass(frozen=True)
class KeywordResult:
    detections: list[Detection]
    scores: list[tuple[str, float]] | None  # ranked class scores, for clips of about one window


def open_keyword_options(keywords: Iterable[OpenKeyword]) -> list[dict]:
    """Keywords of the caller's choosing as the recognizer's pool option ``open_keywords``
    (:class:`app.execution.runners.AsrRunner`): uploads' and live streams'."""
    return [{"keyword": k.keyword, "threshold": k.threshold, "boost": k.boost} for k in keywords]


class Engine:
    """The task logic between routes and pool; holds the model cards and the chunking policy."""

    def __init__(self, pool: Pool, cards: dict[str, ModelCard], chunk_seconds: float) -> None:
        self.pool, self.cards, self.chunk_seconds = pool, cards, chunk_seconds

    @property
    def ready(self) -> bool:
        """Whether the pool takes work (a worker is warm and the service is not shutting down)."""
        return self.pool.ready

    def rate(self, model: str) -> int:
        return self.cards[model].sample_rate

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
        """The transcript of ``audio``; with a ``denoise_model``, of its enhanced audio.

        Denoising first gives the recognizer the enhanced audio mixed with the input as
        :func:`model_zoo.pipelines.denoise.for_recognizer` says, at the denoiser's rate: the upload is resampled
        once to the models' rate (not there, back to its own rate and again to the recognizer's). It stays two
        pool jobs: each runs batched with other requests to its model, or chunk by chunk when the clip is long.
        """
        if denoise_model is not None:
            noisy, clean = await self._denoised(denoise_model, audio, deadline)
            audio = Audio(torch.from_numpy(for_recognizer(noisy, clean)), self.rate(denoise_model), 1)
        wave = await self._at_rate(audio, self.rate(model))
        return await self._run(model, wave, {"beam_search": beam_search}, deadline)

    async def _denoised(self, model: str, audio: Audio, deadline: float) -> tuple[np.ndarray, np.ndarray]:
        """``audio`` at the denoiser's rate and its enhanced version, of as many samples."""
        noisy = await self._at_rate(audio, self.rate(model))
        return noisy, np.ascontiguousarray(await self._run(model, noisy, {}, deadline))

    async def denoise(self, model: str, audio: Audio, *, deadline: float) -> torch.Tensor:
        """Enhanced mono audio at the input's own rate and of exactly its length."""
        _, clean = await self._denoised(model, audio, deadline)
        out = await asyncio.to_thread(resample, torch.from_numpy(clean), self.rate(model), audio.sample_rate)
        return fit_length(out, audio.samples.shape[-1])

    async def keywords(self, model: str, audio: Audio, *, hop: float, threshold: float,
                       keywords: set[str] | None, deadline: float, max_rows: int) -> KeywordResult:
        """The windows, detections and ranking of :class:`model_zoo.pipelines.kws.ClipWindows`: one-second
        windows every ``hop`` seconds, scored by the pool."""
        rate, labels = self.rate(model), self.cards[model].labels or ()
        clip = ClipWindows.of(await self._at_rate(audio, rate), rate, hop)
        probs = []
        for first in range(0, len(clip.starts), max_rows):  # requests of at most one batch each: bounded memory
            probs.append(await self.pool.forward(model, clip.rows(first, first + max_rows), {}, deadline))
        table = np.concatenate(probs)
        return KeywordResult(clip.detections(table, labels, threshold=threshold, keywords=keywords),
                             clip.ranking(table, labels))

    async def open_keywords(self, model: str, audio: Audio, keywords: Iterable[OpenKeyword], *,
                            deadline: float) -> list[Detection]:
        """The occurrences of keywords of the caller's choosing, searched in the CTC posteriors of the recognizer
        ``model`` (:mod:`model_zoo.pipelines.open_keywords`), in the worker: one call, or a session over a long
        clip that searches its frames as they come (the same detections)."""
        wave = await self._at_rate(audio, self.rate(model))
        return await self._run(model, wave, {"open_keywords": open_keyword_options(keywords)}, deadline)

    async def open_stream(self, model: str, options: dict, deadline: float) -> SessionHandle:
        """A resident session for a live stream (``options["live"]``: each step returns its own results)."""
        return await self.pool.open_session(model, options, deadline)

    async def transcribe_greedy_steps(self, model: str, audio: Audio, *, deadline: float) -> AsyncIterator[Any]:
        """Greedy transcription with its running text: the greedy transcript of the audio so far (``str``) after
        each step that changed it, then the final :class:`Transcript`, the one :meth:`transcribe` gives with
        ``beam_search=False`` (a session equals one call). Steps are about a second of audio, then
        ``chunk_seconds`` once the clip is that far in, so a long file costs few partial decodes. Closing the
        generator early frees the session."""
        rate = self.rate(model)
        wave = await self._at_rate(audio, rate)
        first, later = max(1280, rate // 1280 * 1280), self._chunk(rate)
        session = await self.pool.open_session(model, {"live": True, "interim_results": True, "beam_search": False},
                                               deadline)
        try:
            start = 0
            while start < len(wave):
                size = later if start >= later else first
                partial = await session.step(wave[start:start + size], deadline)
                start += size
                if partial is not None:
                    yield partial
            yield await session.finish(deadline)
        finally:
            await session.close()
