"""The worker pool on its own: micro-batching, resident sessions, worker death and replacement, draining."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal as signals
import time

import numpy as np
import pytest
import torch

import model_zoo
from app.errors import WorkerLost
from app.execution.pool import Pool, PoolConfig
from app.execution.runners import make_runner
from app.execution.worker import Failure, Job, Worker, WorkerSpec, decode_elsewhere
from app.settings import Settings


def run(coro):
    return asyncio.run(coro)


async def started(models: dict[str, str], **config) -> tuple[Pool, list]:
    batches: list = []
    pool = Pool(PoolConfig(models=models, **{"max_batch_wait": 0.005, "workers_per_device": 1, **config}),
                on_batch=lambda model, op, rows: batches.append((model, op, rows)))
    await pool.start()
    await pool.wait_ready(timeout=60)
    return pool, batches


def deadline(seconds: float = 30.0) -> float:
    return time.monotonic() + seconds


@contextlib.contextmanager
def frozen_workers(pool: Pool):
    """Every worker stopped (SIGSTOP) inside the block: each job sent stays in flight until it ends."""
    pids = [w["pid"] for w in pool.workers()]
    for pid in pids:
        os.kill(pid, signals.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signals.SIGCONT)


async def until_batches(batches: list, count: int, tries: int = 50) -> None:
    """Yields to the event loop until ``count`` batches were sent, or ``tries`` times."""
    for _ in range(tries):
        if len(batches) >= count:
            return
        await asyncio.sleep(0)


def alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (a worker the pool has stopped is also reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_concurrent_requests_share_a_batch_and_results_match_single_calls(tiny_models):
    async def main():
        pool, batches = await started(tiny_models, max_batch_wait=0.5, max_batch_size=8)
        try:
            clips = [np.random.default_rng(i).standard_normal(4000 + 1000 * i).astype(np.float32) * 0.1 for i in range(4)]
            together = await asyncio.gather(*(pool.forward("denoise", c[None], {}, deadline()) for c in clips))
            assert [b for b in batches if b[1] == "forward"] == [("denoise", "forward", 4)]
            alone = await pool.forward("denoise", clips[1][None], {}, deadline())
            # End padding to the longest clip never changes the shorter clip's output (causal network).
            assert together[1].shape == (5000,) and np.allclose(together[1], alone, atol=1e-5)
            # Clips of very different lengths are not padded into one call.
            batches.clear()
            mixed = [np.zeros((1, n), np.float32) for n in (4000, 20000, 4500)]
            await asyncio.gather(*(pool.forward("denoise", m, {}, deadline()) for m in mixed))
            assert sorted(b[2] for b in batches) == [1, 2]
            windows = await pool.forward("kws", np.zeros((3, 16000), np.float32), {}, deadline())
            assert windows.shape == (3, 37) and np.allclose(windows.sum(1), 1, atol=1e-5)
        finally:
            await pool.close()

    run(main())


def test_a_free_worker_takes_a_lone_request_at_once_and_batches_what_arrives_while_it_is_busy(tiny_models):
    """Opportunistic batching (the default): no batch timer for a lone request; requests that queue while the
    worker is busy go together in its next job."""
    assert PoolConfig(models={}).max_batch_wait == 0 and Settings.model_fields["max_batch_wait_ms"].default == 0

    async def main():
        # One worker: whenever it is free, no other worker is busy, so nothing ever waits for company.
        pool, batches = await started(tiny_models, max_batch_wait=0, busy_batch_wait=60, max_batch_size=8)
        try:
            clips = [np.random.default_rng(i).standard_normal((1, 16000)).astype(np.float32) * 0.1 for i in range(4)]
            lone = asyncio.create_task(pool.forward("kws", clips[0], {}, deadline()))
            # Dispatched within a few turns of the event loop: nothing waits on a timer for company.
            for _ in range(50):
                if batches:
                    break
                await asyncio.sleep(0)
            assert batches == [("kws", "forward", 1)]
            # Queued while the lone request is in flight (or just after): one job for all three.
            rest = await asyncio.gather(*(pool.forward("kws", c, {}, deadline()) for c in clips[1:]))
            assert batches == [("kws", "forward", 1), ("kws", "forward", 3)]
            alone = [await lone] + [await pool.forward("kws", c, {}, deadline()) for c in clips[1:]]
            assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(alone, [alone[0], *rest]))
        finally:
            await pool.close()

    run(main())


def test_while_another_worker_is_busy_a_free_worker_waits_for_company(tiny_models):
    """Under load (another worker running a job) the head of a batch waits for company, up to max_batch_size rows;
    a request that finds every worker idle goes at once."""
    async def main():
        pool, batches = await started(tiny_models, workers_per_device=2, max_batch_wait=0, busy_batch_wait=3600,
                                      max_batch_size=4)
        with frozen_workers(pool):
            clips = [np.random.default_rng(i).standard_normal((1, 16000)).astype(np.float32) * 0.1 for i in range(5)]
            calls = [asyncio.create_task(pool.forward("kws", clips[0], {}, deadline(120)))]
            await until_batches(batches, 1)  # every worker idle: sent at once
            assert batches == [("kws", "forward", 1)] and pool.running_jobs == 1
            calls.append(asyncio.create_task(pool.forward("kws", clips[1], {}, deadline(120))))
            await until_batches(batches, 2)  # the other worker is busy: the free one holds this request for company
            assert batches == [("kws", "forward", 1)] and pool.queue_depth() == 1
            calls += [asyncio.create_task(pool.forward("kws", c, {}, deadline(120))) for c in clips[2:]]
            await until_batches(batches, 2)  # a full batch goes without waiting out the hour
            assert batches == [("kws", "forward", 1), ("kws", "forward", 4)]
        try:
            together = await asyncio.gather(*calls)
            alone = [await pool.forward("kws", c, {}, deadline()) for c in clips]
            assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(together, alone))
        finally:
            await pool.close()

    run(main())


def test_sessions_stay_resident_and_are_stepped_together(tiny_models):
    async def main():
        pool, batches = await started(tiny_models, max_batch_wait=0.2)
        try:
            clip = np.random.default_rng(0).standard_normal(3 * 2560).astype(np.float32) * 0.1
            whole = await pool.forward("denoise", clip[None], {}, deadline())
            a, b = [await pool.open_session("denoise", {}, deadline()) for _ in range(2)]
            assert pool.active_sessions() == 2
            for start in range(0, len(clip), 2560):
                await asyncio.gather(a.step(clip[start:start + 2560], deadline()),
                                     b.step(clip[start:start + 2560], deadline()))
            out_a, out_b = await asyncio.gather(a.finish(deadline()), b.finish(deadline()))
            assert pool.active_sessions() == 0
            assert np.allclose(out_a, whole, atol=1e-4) and np.allclose(out_b, out_a, atol=1e-6)
            assert ("denoise", "step", 2) in batches  # both streams advanced in one network call
        finally:
            await pool.close()

    run(main())


def test_a_step_for_an_unknown_session_fails_only_its_own_row(tiny_models):
    """A step queued for a stream closed meanwhile must not take down the streams batched with it."""
    worker = Worker(WorkerSpec(models={"denoise": tiny_models["denoise"]}, warmup=False))
    worker.load()
    worker.handle(Job(1, "open", "denoise", [("a", {}), ("b", {})]))
    chunk = np.random.default_rng(2).standard_normal(2560).astype(np.float32) * 0.1
    alone = worker.handle(Job(2, "step", "denoise", [("b", chunk)]))[0]
    mixed = worker.handle(Job(3, "step", "denoise", [("gone", chunk), ("a", chunk)]))
    assert isinstance(mixed[0], Failure) and mixed[0].code == "session_not_found"
    assert np.array_equal(mixed[1], alone)
    finished = worker.handle(Job(4, "finish", "denoise", [("gone", 0), ("a", 0)]))
    assert isinstance(finished[0], Failure) and not isinstance(finished[1], Failure)


def test_a_call_cancelled_before_dispatch_never_runs(tiny_models):
    """Cancelled while still queued, even while waiting to wake the dispatchers: the call is dropped."""
    async def main():
        pool, batches = await started(tiny_models)
        try:
            clip = np.zeros((1, 2560), np.float32)
            # White-box on purpose: holding the dispatchers' lock is the only way to cancel a call at exactly this
            # point (queued, its caller still waiting to wake the dispatchers); no public API can reach it.
            async with pool._cond:  # the dispatchers cannot take anything while we hold their lock
                task = asyncio.create_task(pool.forward("denoise", clip, {}, deadline()))
                await asyncio.sleep(0)  # the call is queued; the task now waits for the lock
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await asyncio.sleep(0.3)
            assert not [b for b in batches if b[1] == "forward"] and pool.queue_depth() == 0
            await pool.forward("denoise", clip, {}, deadline())  # and the pool still serves
            assert [b for b in batches if b[1] == "forward"] == [("denoise", "forward", 1)]
        finally:
            await pool.close()

    run(main())


def test_runner_sessions_reproduce_whole_clip_calls(tiny_models):
    """Chunked streaming through a runner equals one forward call (what long uploads rely on)."""
    for task in ("asr", "denoise"):
        runner = make_runner(model_zoo.load(tiny_models[task]), torch.device("cpu"))
        clip = np.random.default_rng(1).standard_normal(12800).astype(np.float32) * 0.1
        whole = runner.forward([(clip[None], {})])[0]
        session = runner.open({})
        for start in range(0, len(clip), 3840):
            runner.step([session], [clip[start:start + 3840]])
        chunked = runner.finish(session)
        if task == "asr":
            assert chunked.text == whole.text and len(chunked.words) == len(whole.words)
        else:
            assert np.allclose(chunked, whole, atol=1e-4)


def test_killed_worker_fails_its_requests_and_is_replaced(tiny_models):
    async def main():
        pool, _ = await started(tiny_models, mode="process")
        try:
            victim = pool.handles[0]
            session = await pool.open_session("asr", {}, deadline())
            os.kill(victim.pid, signals.SIGSTOP)  # freeze it so the next job is certainly in flight
            request = asyncio.create_task(pool.forward("asr", np.zeros((1, 8000), np.float32), {}, deadline()))
            end = time.monotonic() + 10
            while pool.running_jobs == 0:
                assert time.monotonic() < end
                await asyncio.sleep(0.01)
            os.kill(victim.pid, signals.SIGKILL)
            with pytest.raises(WorkerLost, match="exited"):
                await asyncio.wait_for(request, 10)  # fails promptly, never hangs
            with pytest.raises(WorkerLost):
                await session.step(np.zeros(1280, np.float32), deadline())
            end = time.monotonic() + 60
            while not pool.ready:
                assert time.monotonic() < end, "no replacement worker"
                await asyncio.sleep(0.05)
            assert pool.restarts == 1 and pool.workers()[0]["pid"] != victim.pid
            result = await pool.forward("asr", np.zeros((1, 8000), np.float32), {}, deadline())
            assert isinstance(result.text, str)
        finally:
            await pool.close()

    run(main())


def test_close_drains_queued_work_then_stops_the_workers(tiny_models):
    async def main():
        pool, _ = await started(tiny_models, max_batch_wait=0.3)
        pids = [w["pid"] for w in pool.workers()]
        pending = asyncio.create_task(pool.forward("kws", np.zeros((1, 16000), np.float32), {}, deadline()))
        await asyncio.sleep(0.05)  # queued, waiting for company
        await pool.close()
        assert (await pending).shape == (1, 37)
        assert not any(alive(pid) for pid in pids)
        assert not pool.ready

    run(main())


def test_a_live_recognizer_session_returns_each_steps_final_keyword_detections():
    """Open keywords on a live session of the shipped recognizer (the tiny one spells no word boundaries), over
    the spoken sample: each step returns the detections that became final with it (none held back for the end,
    none twice), finish the rest; together they are the whole clip's. A long upload's session returns them all at
    finish; a flush (segment) decides what is pending and the search goes on, on the stream's clock."""
    from service_testkit import SPEECH_SAMPLE

    from app.audio.decode import decode
    from model_zoo.pipelines.open_keywords import LOOKAHEAD_SECONDS

    runner = make_runner(model_zoo.load("asr"), torch.device("cpu"))
    speech = decode(SPEECH_SAMPLE.read_bytes()).samples.numpy()
    clip = np.concatenate([speech, speech])
    words = [w.text for w in runner.forward([(speech[None], {})])[0].words if len(w.text) >= 3]
    keywords = [{"keyword": word, "threshold": 0.0, "boost": 0.0} for word in words]
    whole = runner.forward([(clip[None], {"open_keywords": keywords})])[0]
    assert len(whole) >= 2, "the recognizer's own words are found in its output"
    chunk, frame = 3840, runner.model.frame_seconds

    def key(found):
        return [(d.keyword, d.start, d.end, round(d.score, 3)) for d in found]

    live = runner.open({"live": True, "open_keywords": keywords})
    steps = [runner.step([live], [clip[start:start + chunk]])[0] for start in range(0, len(clip), chunk)]
    rest = runner.finish(live)
    assert key(sorted([d for step in steps for d in step] + rest, key=lambda d: (d.start, d.end, d.keyword))) == \
        key(whole)
    # Each comes out in the step that reaches LOOKAHEAD_SECONDS (in frames) past its end, never before: only those
    # ending within that of the end of the audio are left for finish.
    lookahead, frames = math.ceil(LOOKAHEAD_SECONDS / frame - 1e-9), live.search.frames
    assert key(rest) == key([d for d in whole if round(d.end / frame) + lookahead > frames]) and len(rest) < len(whole)
    for i, step in enumerate(steps):
        assert all(d.end + LOOKAHEAD_SECONDS <= (i + 1) * chunk / 16000 + frame for d in step)
    upload = runner.open({"open_keywords": keywords})
    assert all(runner.step([upload], [clip[start:start + chunk]])[0] is None for start in range(0, len(clip), chunk))
    assert key(runner.finish(upload)) == key(whole)
    flushed = runner.open({"live": True, "open_keywords": keywords, "offset": 10.0})
    first = runner.step([flushed], [speech])[0] + runner.segment(flushed)
    second = runner.step([flushed], [speech])[0] + runner.finish(flushed)
    middle = 10.0 + len(speech) / 16000
    assert first and all(10.0 <= d.start < d.end <= middle + frame for d in first)
    assert second and all(middle - frame <= d.start < d.end <= middle + len(speech) / 16000 + frame for d in second)


def test_a_live_recognizer_step_returns_a_partial_only_when_its_text_grew():
    """Two live sessions stepped together in one batch, speech and silence: each step answers each session with its
    own blank posteriors, and with a partial only when that session's greedy text grew; the last partial is
    always the greedy decoding of the session's frames so far. Silence gets no partial at all."""
    from service_testkit import SPEECH_SAMPLE

    from app.audio.decode import decode

    runner = make_runner(model_zoo.load("asr"), torch.device("cpu"))
    speech = decode(SPEECH_SAMPLE.read_bytes()).samples.numpy()
    step = runner.stream_quantum
    options = {"live": True, "interim_results": True, "blank_probs": True}
    talking, quiet = runner.open(options), runner.open(options)
    shown, partials, steps = "", 0, 0
    for start in range(0, len(speech) - step + 1, step):
        said, silent = runner.step([talking, quiet], [speech[start:start + step], np.zeros(step, np.float32)])
        steps += 1
        assert silent.partial is None and len(silent.blank) == len(said.blank) == talking.outputs[-1].shape[-1]
        assert np.allclose(said.blank, torch.softmax(torch.from_numpy(talking.outputs[-1]), 0)[0].numpy(), atol=1e-6)
        if said.partial is not None:
            shown, partials = said.partial, partials + 1
        logits = torch.from_numpy(np.concatenate(talking.outputs, axis=-1))
        assert shown == runner.recognizer.decode(logits, beam_search=False).text
    assert shown and 0 < partials < steps / 2


def test_a_worker_process_beam_searches_in_a_forked_process_and_here_once_that_is_gone(tiny_models, monkeypatch):
    """flashlight's search holds the GIL: a CPU worker process hands its recognizers' beam searches to a child forked
    from it once loaded (app.execution.worker.DecodeProcess). The child's results are the worker's own; if the child
    dies, the worker searches again itself."""
    worker = Worker(WorkerSpec(models={"asr": tiny_models["asr"], "kws": tiny_models["kws"]}, torch_threads=2))
    worker.load()
    torch.ones(1 << 20).exp()  # the OpenMP threads exist before the fork: a child that waited for them would hang
    runner = worker.runners["asr"]
    logits = torch.from_numpy(np.random.default_rng(8).standard_normal((len(runner.recognizer.vocab), 60))
                              .astype(np.float32) * 3)
    options = {"beam_search": True, "offset": 1.5}
    here = runner.decode(logits, options)
    decoder = decode_elsewhere(worker)
    assert decoder is not None and runner.beam_search_elsewhere is not None
    decoder.timeout_seconds = 20.0  # a child stuck in a parallel region fails the test instead of hanging it
    try:
        with monkeypatch.context() as patch:  # the worker cannot search any more: the child does
            patch.setattr(runner, "decode_here", lambda *args: pytest.fail("searched in the worker"))
            assert runner.decode(logits, options) == here and decoder.alive
        os.kill(decoder.pid, signals.SIGKILL)
        os.waitpid(decoder.pid, 0)
        assert runner.decode(logits, options) == here and not decoder.alive
    finally:
        decoder.close()


def test_a_recognizer_worker_builds_its_beam_search_while_warming_up(tiny_models):
    """Reading the language model is lazy; a warmed-up worker has done it, so the first final does not wait."""
    cold = Worker(WorkerSpec(models={"asr": tiny_models["asr"]}, warmup=False))
    cold.load()
    assert cold.runners["asr"].recognizer._beam is None
    warm = Worker(WorkerSpec(models={"asr": tiny_models["asr"]}))
    warm.load()
    assert warm.runners["asr"].recognizer._beam is not None


def test_a_streams_step_never_waits_for_company_and_steps_batch_past_max_batch_size(tiny_models):
    """A request waits for company while another worker is busy; a stream's step goes at once (its audio comes at
    real time, waiting only adds latency). Steps queued together share one call up to stream_batch_size, however
    small max_batch_size is."""
    async def main():
        pool, batches = await started(tiny_models, workers_per_device=2, max_batch_wait=0, busy_batch_wait=3600,
                                      max_batch_size=2, stream_batch_size=16)
        chunk = np.random.default_rng(3).standard_normal(2560).astype(np.float32) * 0.1
        sessions = [await pool.open_session("denoise", {}, deadline()) for _ in range(10)]
        one_per_worker = [sessions[0], next(s for s in sessions if s.slot is not sessions[0].slot)]
        batches.clear()
        with frozen_workers(pool):
            clip = np.random.default_rng(4).standard_normal((1, 16000)).astype(np.float32) * 0.1
            busy = asyncio.create_task(pool.forward("kws", clip, {}, deadline(120)))  # one worker runs a job
            await until_batches(batches, 1)
            assert batches == [("kws", "forward", 1)]
            first = [asyncio.create_task(s.step(chunk, deadline(120))) for s in one_per_worker]
            await until_batches(batches, 2, tries=100)
            # The free worker's step went at once, though busy_batch_wait is an hour; the busy one's waits for it.
            assert batches == [("kws", "forward", 1), ("denoise", "step", 1)]
        try:
            await asyncio.gather(busy, *first)
            batches.clear()
            await asyncio.gather(*(s.step(chunk, deadline()) for s in sessions))
            assert sorted(batches) == [("denoise", "step", 5)] * 2  # each worker's five in one call, not 2 + 2 + 1
        finally:
            await pool.close()

    run(main())


def test_a_final_does_not_hold_up_the_steps_of_the_workers_other_streams(tiny_models):
    """A session's final (finish, segment: a beam search for a recognizer) is sent without the dispatcher waiting
    for it; the worker runs it on a thread of its own (app.execution.worker.DETACHED_OPS), so another stream's
    step is sent, and answered, meanwhile."""
    async def main():
        pool, batches = await started(tiny_models, max_batch_wait=0)
        chunk = np.random.default_rng(5).standard_normal(2560).astype(np.float32) * 0.1
        ending, going = [await pool.open_session("denoise", {"live": True}, deadline()) for _ in range(2)]
        await asyncio.gather(ending.step(chunk, deadline()), going.step(chunk, deadline()))
        batches.clear()
        try:
            with frozen_workers(pool):
                final = asyncio.create_task(ending.finish(deadline(120)))
                await until_batches(batches, 1)
                step = asyncio.create_task(going.step(chunk, deadline(120)))
                await until_batches(batches, 2, tries=100)
                assert batches == [("denoise", "finish", 1), ("denoise", "step", 1)]
            assert len(await step) == len(chunk) and isinstance(await final, np.ndarray)
        finally:
            await pool.close()

    run(main())


def test_only_finals_that_call_no_network_run_beside_the_steps(tiny_models):
    """A recognizer's final decodes kept logits; a denoiser's or a keyword spotter's runs its network, whose layers
    keep caches that are not for two threads at once, so those stay on the stepping thread."""
    worker = Worker(WorkerSpec(models=tiny_models, warmup=False))
    worker.load()
    assert worker.beside_steps(Job(1, "finish", "asr", [])) and worker.beside_steps(Job(2, "segment", "asr", []))
    assert not worker.beside_steps(Job(3, "step", "asr", []))
    for model in ("denoise", "kws"):
        assert not worker.beside_steps(Job(4, "finish", model, [])) and not worker.beside_steps(Job(5, "segment", model, []))
    assert not worker.beside_steps(Job(6, "finish", "nope", []))
