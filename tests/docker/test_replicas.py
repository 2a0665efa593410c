"""Two replicas of the service behind a real nginx on loopback, configured by docker/nginx/centaurus.conf.

Two ``centaurus-speech serve`` processes (tiny random models, one worker each) and nginx, started here with the
shipped template (only its server lines and its listen line replaced). Then, through nginx:

* requests spread over both replicas (the ``X-Upstream`` header the template adds, and each replica's own
  request counter in ``/metrics``);
* a rolling restart under a steady upload load: each replica in turn gets SIGTERM, drains and exits, starts
  again, turns ready and takes requests again, then the other. No request is lost (every one is a 200), and the
  streams open on a draining replica end with close code 1012 (service restart) while the others go on;
* a replica whose only worker is killed answers 503 until the replacement is up: nginx retries those uploads on
  the other replica, and no client sees a 503;
* one replica is killed with SIGKILL under load (frozen for 0.5 s first, so that uploads are certainly in flight
  on it), with uploads and streams in flight on both: every upload ends (200, retried on the survivor, or 502)
  and none hangs; uploads sent after the kill succeed on the survivor; the streams on the survivor finish, and
  their output equals the offline endpoints' (the same exactness as tests/app/streaming/test_stream_exactness.py);
  the streams on the killed replica end promptly with a close code; its workers do not outlive it.

Every client has a bounded timeout, and a test fails when one is hit. The tests share the replicas, and each
starts from both up (the ``cluster`` fixture), so they run in any order. The numbers printed (run with ``-s``) are
the ones in docs/deploy.md, "Several replicas behind nginx".
The template checks always run; the rest is skipped only where nginx is not installed (``scripts/setup test``
installs Debian's nginx-light).
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import numpy as np
import pytest
from replicas_testkit import (HTTP_TIMEOUT, LONG_CLIP, NGINX, SHORT_CLIP, TEMPLATE, Cluster, Load, Nginx, Replica,
                              Stream, alive, alive_and_ready, children, open_streams, render, summary,
                              template_problems, wait_serving)
from service_testkit import SPEECH_SAMPLE, build_tiny_models, free_port
from service_testkit import signal as clip_signal
from service_testkit import wav_bytes

from app.audio.decode import decode


def test_template_has_what_websockets_drains_and_retries_need():
    text = TEMPLATE.read_text()
    assert template_problems(text) == []
    broken = text.replace(" non_idempotent", "").replace("proxy_http_version 1.1;", "")
    assert len(template_problems(broken)) == 2
    rendered = render(text, ["127.0.0.1:1", "127.0.0.1:2"], "127.0.0.1:3")
    assert "server 127.0.0.1:1 max_fails=1 fail_timeout=5s;\n    server 127.0.0.1:2 max_fails=1" in rendered
    assert "listen 127.0.0.1:3;" in rendered and "8001" not in rendered and "8002" not in rendered
    with pytest.raises(AssertionError):
        render(text.replace("listen 8000;", ""), ["127.0.0.1:1"], "127.0.0.1:3")


def test_setup_installs_nginx_for_the_tests():
    from test_project import setup_debian_packages

    assert "nginx-light" in setup_debian_packages("test")
    assert "nginx-light" not in setup_debian_packages("serve")


@pytest.fixture(scope="module")
def started_cluster(tmp_path_factory):
    if NGINX is None:
        pytest.skip("nginx is not installed (scripts/setup test installs Debian's nginx-light)")
    directory = tmp_path_factory.mktemp("replicas")
    models = build_tiny_models(directory)
    replicas = [Replica(name, free_port(), models, directory / f"{name}.log") for name in ("a", "b")]
    nginx = None
    try:
        for replica in replicas:  # both load at once
            replica.start()
        for replica in replicas:
            replica.wait_ready()
        nginx = Nginx(replicas, free_port())
        nginx.wait_answering()
        yield Cluster(replicas, nginx)
    finally:
        if nginx is not None:
            nginx.stop()
        for replica in replicas:
            replica.stop()


@pytest.fixture
def cluster(started_cluster):
    """The cluster with both replicas up and in nginx's rotation. Some tests kill or restart a replica, and the
    tests run in any order, so each starts from here: a dead replica is started again and uploads go through nginx
    until it has answered one (nginx may have marked it failed for fail_timeout)."""
    for replica in started_cluster.replicas:
        if replica.process.poll() is None:
            continue
        replica.start()
        replica.wait_ready()
        end = time.monotonic() + 60
        with httpx.Client(base_url=started_cluster.nginx.base, timeout=HTTP_TIMEOUT) as client:
            while replica.requests(status="200") < 1:
                assert time.monotonic() < end, f"nginx sent the restarted replica {replica.name} nothing in 60 s"
                client.post("/transcribe", files={"file": ("a.wav", SHORT_CLIP)})
    return started_cluster


# ---- the checks -------------------------------------------------------------------------------------------------
def test_requests_spread_over_both_replicas(cluster):
    before = {r.name: r.requests() for r in cluster.replicas}
    with httpx.Client(base_url=cluster.nginx.base, timeout=HTTP_TIMEOUT) as client:
        responses = [client.post("/transcribe", files={"file": ("clip.wav", SHORT_CLIP, "audio/wav")})
                     for _ in range(12)]
    assert [r.status_code for r in responses] == [200] * 12, [r.text for r in responses if r.status_code != 200]
    upstreams = [r.headers["x-upstream"] for r in responses]
    served = {r.name: r.requests() - before[r.name] for r in cluster.replicas}
    print(f"\nspread: 12 uploads, by X-Upstream {sorted(upstreams)}, by the replicas' counters {served}")
    # Round robin, and nothing else is sent meanwhile: six each, by the header and by the replicas themselves.
    assert sorted(upstreams) == sorted([r.address for r in cluster.replicas] * 6)
    assert served == {r.name: 6 for r in cluster.replicas}
    assert len({r.json()["text"] for r in responses}) == 1  # the same models answer the same


def test_rolling_restart_loses_no_request(cluster):
    hold = clip_signal(60.0, seed=3)[0]  # long enough to be open at the drain; ended early with finish
    measured = []
    with Load(cluster.nginx.base, users=3, clip=SHORT_CLIP) as load:
        load.wait_for(6)
        for replica in cluster.replicas:
            streams = open_streams(cluster, lambda i: Stream(cluster.nginx.base, "denoise", hold), per_replica=1)
            on_it = [s for s in streams if s.upstream == replica.address]
            elsewhere = [s for s in streams if s not in on_it]
            drained_at = time.monotonic()
            replica.process.send_signal(signal.SIGTERM)
            code = replica.process.wait(60)
            exited = time.monotonic() - drained_at
            for stream in on_it:
                stream.join(10)
            replica.start()
            replica.wait_ready()
            ready = time.monotonic() - drained_at
            wait_serving(replica, 0.0)  # a fresh process: its counters start at 0
            serving = time.monotonic() - drained_at
            for stream in elsewhere:  # they went on through all this; now they end normally
                assert stream.is_alive() and stream.close_code is None, (stream.close_code, stream.error)
                stream.finish.set()
                stream.join(30)
            finished_there = sum(r.started < drained_at < r.ended and r.upstreams == [replica.address]
                                 for r in load.snapshot())
            measured.append({"replica": replica.name, "exit_code": code, "exited_s": round(exited, 2),
                             "in_flight_finished_by_it": finished_there,
                             "ready_s": round(ready, 2), "taking_requests_s": round(serving, 2),
                             "streams_closed": [(s.close_code, round(s.closed_at - drained_at, 2)) for s in on_it],
                             "streams_elsewhere": [s.close_code for s in elsewhere]})
            # The drained replica's streams end at once with 1012 (service restart), through nginx.
            for stream in on_it:
                assert not stream.is_alive() and not stream.hung, stream.messages[-3:]
                assert stream.close_code == 1012 and stream.closed_at - drained_at < 5, \
                    (stream.close_code, stream.closed_at - drained_at, stream.error)
                assert not stream.of("session.ended")
            for stream in elsewhere:
                assert not stream.is_alive() and stream.close_code == 1000 and stream.of("session.ended"), \
                    (stream.close_code, stream.error, stream.messages[-3:])
            assert code in (0, -signal.SIGTERM), f"replica {replica.name} exited with {code}"
        load.wait_for(6)
    results = load.results
    errors = cluster.nginx.upstream_errors()
    print(f"\nrolling restart: {measured}\n  uploads: {summary(results)}; nginx's retries: {cluster.nginx.retries()}, "
          f"why: {errors}")
    failed = [r for r in results if r.status != 200]
    assert not failed, f"{len(failed)} of {len(results)} uploads lost: {failed[:5]}\n{cluster.nginx.error_log()}"
    assert len(results) >= 20
    # Every upload nginx had to retry was refused at the connection (the listening socket closes at SIGTERM) or,
    # rarely, reset before the replica read it (uvicorn closes, at SIGTERM, the connections that have no request
    # under way yet, and one may have just arrived): none was cut off mid-way ("upstream prematurely closed"),
    # which the retry would hide from the client. The drain let every open request finish.
    assert set(errors) <= {"refused", "reset"}, [line for line in cluster.nginx.error_log().splitlines()
                                                 if "[error]" in line and "refused" not in line]
    assert errors.get("refused", 0) >= 1  # and the drains did happen under load


def test_a_replica_without_a_ready_worker_loses_no_request(cluster):
    """A replica that answers 503 (its only worker died and is being replaced; likewise while a restarted replica
    still loads its models, a window too short with the tiny models here to hit reliably) gets its uploads
    retried on the other replica by nginx (``proxy_next_upstream http_503``): the clients see only 200s."""
    replica = cluster.replicas[0]
    worker = replica.worker_pids()[0]
    with Load(cluster.nginx.base, users=4, clip=LONG_CLIP) as load:
        wait_serving(replica, replica.requests(status="200"))  # in nginx's rotation now
        refused = replica.requests(status="503")
        os.kill(worker, signal.SIGSTOP)  # frozen first, so some uploads are certainly running on it when it dies
        time.sleep(0.5)
        os.kill(worker, signal.SIGKILL)
        killed_at = time.monotonic()
        end = time.monotonic() + 60
        while not (alive_and_ready(replica) and worker not in replica.worker_pids()):
            assert time.monotonic() < end, "the replica never replaced its worker"
            time.sleep(0.05)
        replaced = time.monotonic() - killed_at
        wait_serving(replica, replica.requests(status="200"))
        serving = time.monotonic() - killed_at
        load.wait_for(4)
    results = load.results
    retries = cluster.nginx.retries()
    refused = replica.requests(status="503") - refused
    print(f"\nworker lost: replaced after {replaced:.2f} s, taking requests again after {serving:.2f} s; "
          f"the replica answered {refused:.0f} uploads with 503; uploads {summary(results)}; "
          f"nginx's retries, all tests so far: {retries}")
    failed = [r for r in results if r.status != 200]
    assert not failed, f"{len(failed)} of {len(results)} uploads failed: {failed[:5]}"
    # The 503s happened, at the replica and in nginx's log, and no client saw one.
    assert refused >= 1 and sum(n for statuses, n in retries.items() if statuses.startswith("503")) >= 1, retries


def test_sigkill_one_replica_under_load(cluster):
    victim, survivor = cluster.replicas
    # The references: what the offline endpoints answer for the clips the streams send (through nginx).
    # About 5 s each, streamed at real time: open through the kill and for seconds after it.
    speech_upload = wav_bytes(np.concatenate([decode(SPEECH_SAMPLE.read_bytes()).samples.numpy(),
                                              np.zeros(16000, np.float32)])[None], 16000)
    speech = decode(speech_upload).samples.numpy()
    noisy_upload = wav_bytes(clip_signal(5.0, seed=2), 16000)
    noisy = decode(noisy_upload).samples.numpy()
    with httpx.Client(base_url=cluster.nginx.base, timeout=HTTP_TIMEOUT) as client:
        transcript = client.post("/transcribe", files={"file": ("a.wav", speech_upload)}).json()
        offline = client.post("/denoise", files={"file": ("a.wav", noisy_upload)}, data={"response_format": "pcm"})
    denoised = np.frombuffer(offline.content, "<i2").astype(np.float32) / 32767.0
    assert transcript["text"] and len(denoised) == len(noisy)
    victim_workers = victim.worker_pids() + children(victim.process.pid)

    def make(index: int) -> Stream:
        if index % 2:
            return Stream(cluster.nginx.base, "transcribe", speech, interim_results=True)
        return Stream(cluster.nginx.base, "denoise", noisy)

    with Load(cluster.nginx.base, users=4, clip=LONG_CLIP) as load:
        load.wait_for(4)
        streams = open_streams(cluster, make, per_replica=2)
        assert all(s.close_code is None for s in streams), "a stream ended before the kill"
        # Frozen first, so that several uploads are certainly in flight on it (nginx keeps sending it every other
        # new request: the kernel accepts the connections), then killed: its uploads and streams die mid-way.
        victim.process.send_signal(signal.SIGSTOP)
        time.sleep(0.5)
        victim.process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        victim.process.wait(10)
        for stream in streams:
            stream.join(60)
        load.wait_for(8)
    results = load.results
    on_victim = [s for s in streams if s.upstream == victim.address]
    on_survivor = [s for s in streams if s.upstream == survivor.address]
    in_flight = [r for r in results if r.started < killed_at < r.ended and r.upstreams[:1] == [victim.address]]
    after = [r for r in results if r.started > killed_at]
    end = time.monotonic() + 10
    while any(alive(pid) for pid in victim_workers) and time.monotonic() < end:
        time.sleep(0.1)
    closes = [(s.task, s.close_code, round(s.closed_at - killed_at, 2)) for s in on_victim]
    print(f"\nSIGKILL: uploads {summary(results)}; in flight on the killed replica: {len(in_flight)} "
          f"({summary(in_flight)}); sent after the kill: {summary(after)}\n"
          f"  streams on the killed replica: {closes}\n"
          f"  streams on the survivor: {[(s.task, s.close_code) for s in on_survivor]}; "
          f"nginx's retries, all tests so far: {cluster.nginx.retries()}, why: {cluster.nginx.upstream_errors()}")

    # Uploads: every one ended, none by a client timeout; the ones in flight on the victim were answered by the
    # survivor (nginx retried them) or got nginx's 502; everything sent after the kill succeeded there.
    assert not [r for r in results if r.timed_out or r.status is None], [r for r in results if r.status is None][:5]
    assert {r.status for r in results} <= {200, 502}, summary(results)
    assert len(in_flight) >= 2, f"only {len(in_flight)} uploads were in flight on the killed replica"
    assert len(after) >= 4 and all(r.status == 200 and r.upstreams[-1] == survivor.address for r in after), \
        [r for r in after if r.status != 200][:5]
    # Streams on the killed replica: closed within seconds, abnormally (no session.ended), none hung.
    assert len(on_victim) >= 2 and len(on_survivor) >= 2
    for stream in on_victim:
        assert not stream.is_alive() and not stream.hung and not stream.error, stream.error
        assert stream.close_code not in (None, 1000) and not stream.of("session.ended"), stream.close_code
        assert stream.closed_at - killed_at < 5
    # Streams on the survivor: untouched, complete and exact.
    for stream in on_survivor:
        assert not stream.is_alive() and not stream.hung and stream.close_code == 1000, \
            (stream.close_code, stream.error, stream.messages[-3:])
        assert stream.of("session.ended"), stream.messages[-3:]
        if stream.task == "denoise":
            assert len(stream.audio) == len(denoised)
            assert np.abs(np.clip(stream.audio, -1, 1) - denoised).max() <= 1.0 / 32767
        else:
            finals = stream.of("transcript.final")
            assert len(finals) == 1 and finals[0]["text"] == transcript["text"], (finals, transcript["text"])
    # The killed replica's workers and fork server do not outlive it.
    assert not [pid for pid in victim_workers if alive(pid)]
