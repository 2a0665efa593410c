"""Faults against a real server on loopback: what the client sees, that the service keeps serving, that no
state leaks (streaming sessions, open file descriptors).

* a worker killed with SIGKILL while it runs a request (a long clip, so a resident session is open);
* a client that disconnects mid-upload (its Content-Length promises more than it sends) and one that
  disconnects while its request is being processed;
* a client that uploads slower than real time;
* SIGTERM while several requests are in flight: every one of them finishes, then the server exits.
"""

from __future__ import annotations

import os
import signal as signals
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from service_testkit import signal, start_server, stop_server, wav_bytes

LONG_CLIP = wav_bytes(signal(20.0), 16000)  # 20 one-second chunks through a resident session


@pytest.fixture(scope="module")
def server(loopback_server):
    return loopback_server


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def worker_pid(server) -> int:
    return httpx.get(f"{server.base}/health/ready", timeout=10).json()["workers"][0]["pid"]


def wait_until(condition, timeout: float = 60.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def ready(server) -> bool:
    try:
        return httpx.get(f"{server.base}/health/ready", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def assert_no_leaks(server, fds_before: int) -> None:
    """No session left resident, and no descriptor left open (a little slack for lazily opened libraries)."""
    wait_until(lambda: server.metric("centaurus_active_streams") == 0, 30, "sessions to close")
    wait_until(lambda: open_fds(server.process.pid) <= fds_before + 2, 30,
               f"descriptors to close ({open_fds(server.process.pid)} > {fds_before})")


def post(server, path: str = "/transcribe", clip: bytes = LONG_CLIP, **fields: str) -> httpx.Response:
    return httpx.post(f"{server.base}{path}", files={"file": ("clip.wav", clip)}, data=fields, timeout=120)


def test_worker_killed_mid_request_fails_that_request_with_503_and_is_replaced(server):
    assert post(server, clip=wav_bytes(signal(0.5), 16000)).status_code == 200  # warm, so descriptors settle
    fds = open_fds(server.process.pid)
    restarts = server.metric("centaurus_worker_restarts")
    victim = worker_pid(server)
    os.kill(victim, signals.SIGSTOP)  # frozen, so the request is certainly still running when it dies
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(post, server)
        wait_until(lambda: server.metric("centaurus_active_streams") == 1, 30, "the request's session")
        os.kill(victim, signals.SIGKILL)
        response = pending.result(timeout=60)  # promptly, never a hang
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "worker_lost"
    wait_until(lambda: ready(server) and worker_pid(server) != victim, 120, "a replacement worker")
    assert server.metric("centaurus_worker_restarts") == restarts + 1
    assert post(server).status_code == 200  # the same request now succeeds
    assert_no_leaks(server, fds)


def raw_request(server, body: bytes, declared_length: int, send_bytes: int) -> None:
    """An HTTP POST over a bare socket that sends ``send_bytes`` of ``body`` and then hangs up."""
    boundary = "fault-boundary"
    head = (f"POST /transcribe HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {declared_length}\r\n\r\n").encode()
    address = urlparse(server.base)
    with socket.create_connection((address.hostname, address.port), timeout=10) as s:
        s.sendall(head + body[:send_bytes])
        time.sleep(0.05)


def multipart(clip: bytes, boundary: str = "fault-boundary") -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode() + clip + f"\r\n--{boundary}--\r\n".encode()


def test_client_disconnecting_mid_upload_leaves_nothing_behind(server):
    body = multipart(LONG_CLIP)
    assert post(server, clip=wav_bytes(signal(0.5), 16000)).status_code == 200
    fds = open_fds(server.process.pid)
    for _ in range(20):
        raw_request(server, body, len(body), len(body) // 3)  # promised everything, sent a third
    # And while processing: the whole body sent, the connection closed before the answer.
    for _ in range(3):
        raw_request(server, body, len(body), len(body))
    assert post(server, clip=wav_bytes(signal(0.5), 16000)).status_code == 200
    assert_no_leaks(server, fds)
    assert server.process.poll() is None


def test_upload_slower_than_real_time_is_answered(server):
    clip = wav_bytes(signal(1.0), 16000)
    body = multipart(clip, "slow")
    pieces = [body[i:i + 4096] for i in range(0, len(body), 4096)]

    def trickle():
        for piece in pieces:  # ~8 pieces of 1/8 s of audio each, 0.25 s apart: half real-time speed
            time.sleep(0.25)
            yield piece

    response = httpx.post(f"{server.base}/denoise", content=trickle(), timeout=60,
                          headers={"Content-Type": "multipart/form-data; boundary=slow",
                                   "Content-Length": str(len(body))}, params={})
    assert response.status_code == 200, response.text
    assert response.headers["x-duration"] == "1.000000"


def test_sigterm_lets_every_in_flight_request_finish(tiny_models, tmp_path):
    running = start_server(tiny_models, tmp_path / "server.log", chunk_seconds="1")
    try:
        clip = wav_bytes(signal(15.0), 16000)
        results: list[httpx.Response | Exception] = []
        sent = threading.Barrier(5)

        def one(path: str) -> None:
            sent.wait()
            try:
                results.append(httpx.post(f"{running.base}{path}", files={"file": ("a.wav", clip)}, timeout=120))
            except httpx.HTTPError as err:
                results.append(err)

        threads = [threading.Thread(target=one, args=(path,)) for path in ["/denoise", "/transcribe", "/keywords",
                                                                          "/denoise"]]
        for t in threads:
            t.start()
        sent.wait()
        # Every request is in flight once its session is open (the keywords request runs windows, not a session).
        wait_until(lambda: running.metric("centaurus_active_streams") >= 2, 60, "requests in flight")
        running.process.send_signal(signals.SIGTERM)
        for t in threads:
            t.join(120)
        assert len(results) == 4 and all(isinstance(r, httpx.Response) and r.status_code == 200 for r in results), \
            [getattr(r, "status_code", r) for r in results]
        assert running.process.wait(60) in (0, -signals.SIGTERM)
        with pytest.raises(httpx.TransportError):  # gone: refused at once, not a hang
            httpx.get(f"{running.base}/health/live", timeout=5)
    finally:
        stop_server(running)
    assert "Traceback" not in Path(running.log).read_text()
