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

Every client has a bounded timeout, and a test fails when one is hit. The tests share the replicas and run in
this order. The numbers printed (run with ``-s``) are the ones in docs/deploy.md, "Several replicas behind nginx".
The template checks always run; the rest is skipped only where nginx is not installed (``scripts/setup test``
installs Debian's nginx-light).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "app"))

from service_testkit import SPEECH_SAMPLE, build_tiny_models, free_port  # noqa: E402
from service_testkit import signal as clip_signal  # noqa: E402
from service_testkit import wav_bytes  # noqa: E402

from app.audio.decode import decode  # noqa: E402

TEMPLATE = ROOT / "docker" / "nginx" / "centaurus.conf"
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")

# Small, fast replicas: one worker, one thread; 1 s chunks, so a 3 s upload runs through a resident session;
# a 30 s drain bound, so a stuck drain fails the test instead of stalling it.
REPLICA_SETTINGS = {"workers_per_device": "1", "torch_threads": "1", "log_level": "warning",
                    "max_batch_wait_ms": "5", "chunk_seconds": "1", "request_timeout_seconds": "30"}
HTTP_TIMEOUT = 30.0    # every upload's bound; none may reach it
STREAM_RECV_TIMEOUT = 20.0  # a stream that hears nothing this long (the server pings every 20 s) counts as hung
SHORT_CLIP = wav_bytes(clip_signal(1.0), 16000)
LONG_CLIP = wav_bytes(clip_signal(3.0, seed=1), 16000)


# ---- the template -----------------------------------------------------------------------------------------------
def render(template: str, replicas: list[str], listen: str) -> str:
    """The template with its upstream's server lines replaced by ``replicas`` (keeping the template's server
    parameters) and its listen address replaced by ``listen``. Raises unless each is found exactly once."""
    block = re.search(r"upstream centaurus_speech \{(.*?)\n\}", template, re.S)
    assert block, "the template has no `upstream centaurus_speech { ... }` block"
    server_line = re.compile(r"^([ \t]*)server[ \t]+[^\s;]+([^;\n]*);[^\n]*\n?", re.M)
    servers = server_line.findall(block.group(1))
    assert servers, "the upstream has no server lines"
    indent, parameters = servers[0]
    lines = "".join(f"{indent}server {address}{parameters};\n" for address in replicas)
    first = server_line.search(block.group(1)).start()
    body = server_line.sub("", block.group(1))
    body = (body[:first] + lines + body[first:]).rstrip("\n")
    rendered = template[:block.start(1)] + body + template[block.end(1):]
    rendered, listens = re.subn(r"^([ \t]*)listen[ \t]+[^;]+;", lambda m: f"{m.group(1)}listen {listen};", rendered,
                                flags=re.M)
    assert listens == 1, f"expected one listen directive, found {listens}"
    return rendered


def template_problems(text: str) -> list[str]:
    """What websockets, drains and retries of POST uploads need from the config (docs/deploy.md)."""
    needed = {
        "HTTP/1.1 to the replicas (websockets need it)": r"proxy_http_version\s+1\.1;",
        "the client's Upgrade header passed on": r"proxy_set_header\s+Upgrade\s+\$http_upgrade;",
        "Connection: upgrade for websockets": r"proxy_set_header\s+Connection\s+\$connection_upgrade;",
        "retries on a refused connection, for POST too": r"proxy_next_upstream\s[^;]*\berror\b[^;]*\bnon_idempotent\b",
        "retries on 503 from a replica still loading": r"proxy_next_upstream\s[^;]*\bhttp_503\b",
        "an upload limit of MAX_UPLOAD_MB": r"client_max_body_size\s+100m;",
        "the replica's address in X-Upstream": r"add_header\s+X-Upstream\s+\$upstream_addr\s+always;",
    }
    return [what for what, pattern in needed.items() if not re.search(pattern, text)]


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


# ---- replicas and nginx -----------------------------------------------------------------------------------------
def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class Replica:
    """One ``centaurus-speech serve`` on a fixed loopback port (so nginx's config stays the same across
    restarts), in its own process group (so that teardown can always stop its workers too)."""

    name: str
    port: int
    models: dict[str, str]
    log: Path
    process: subprocess.Popen | None = None
    group: int | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return f"http://{self.address}"

    def start(self) -> None:
        env = {**os.environ, "CENTAURUS_MODELS": json.dumps(self.models), "CENTAURUS_HOST": "127.0.0.1",
               "CENTAURUS_PORT": str(self.port),
               **{f"CENTAURUS_{k.upper()}": v for k, v in REPLICA_SETTINGS.items()}}
        cli = Path(sys.executable).with_name("centaurus-speech")
        command = [str(cli)] if cli.exists() else [sys.executable, "-m", "app.cli"]
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen([*command, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self.group = self.process.pid

    def wait_ready(self, timeout: float = 180.0) -> None:
        end = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < end:
            try:
                if httpx.get(f"{self.base}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"replica {self.name} never became ready (exit code {self.process.poll()}):\n"
                             f"{self.log.read_text()[-3000:]}")

    def requests(self, endpoint: str = "/transcribe", status: str = "") -> float:
        """Requests to ``endpoint`` this replica has answered (with ``status``, if given), by its own /metrics."""
        text = httpx.get(f"{self.base}/metrics", timeout=10).text
        prefix = f'centaurus_requests_total{{endpoint="{endpoint}",'
        return sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith(prefix) and (not status or f'status="{status}"' in line))

    def worker_pids(self) -> list[int]:
        return [w["pid"] for w in httpx.get(f"{self.base}/health/ready", timeout=10).json()["workers"]]

    def stop(self) -> None:
        """Teardown: SIGTERM, then SIGKILL to the whole group (its workers and fork server too)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                pass
        if self.group is not None:
            try:
                os.killpg(self.group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process is not None:
            self.process.wait(10)


class Nginx:
    """nginx in the foreground with the rendered template, everything it writes in a directory of its own."""

    def __init__(self, replicas: list[Replica], port: int) -> None:
        self.port = port
        # Its own directory, readable by all: started as root, nginx's workers run as nobody and need to reach
        # their temporary directories (pytest's are private to the user).
        self.dir = Path(tempfile.mkdtemp(prefix="centaurus-nginx-"))
        self.dir.chmod(0o755)
        (self.dir / "centaurus.conf").write_text(
            render(TEMPLATE.read_text(), [r.address for r in replicas], f"127.0.0.1:{port}"))
        temp = "\n".join(f"    {kind}_temp_path {self.dir / kind};" for kind in
                         ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (self.dir / "nginx.conf").write_text(f"""daemon off;
worker_processes 1;
pid {self.dir / 'nginx.pid'};
error_log {self.dir / 'error.log'} warn;
events {{ worker_connections 1024; }}
http {{
    log_format upstreams '$request_method $request_uri $status upstream=$upstream_addr '
                         'upstream_status=$upstream_status time=$request_time';
    access_log {self.dir / 'access.log'} upstreams;
{temp}
    include {self.dir / 'centaurus.conf'};
}}
""")
        self.process = subprocess.Popen([NGINX, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"),
                                         "-e", str(self.dir / "error.log")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def wait_answering(self) -> None:
        end = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, f"nginx exited: {self.error_log()}"
            try:
                httpx.get(f"{self.base}/health/live", timeout=2)
                return
            except httpx.TransportError:
                assert time.monotonic() < end, f"nginx never answered: {self.error_log()}"
                time.sleep(0.1)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text()[-6000:] if path.exists() else ""

    def retries(self) -> dict[str, int]:
        """The requests nginx passed to a second replica, by the statuses of each try (``502, 200``: the first
        replica refused or dropped the connection, the second answered), from its access log."""
        found: dict[str, int] = {}
        for line in (self.dir / "access.log").read_text().splitlines():
            statuses = line.split("upstream_status=", 1)[1].split(" time=", 1)[0]
            if "," in statuses:
                found[statuses] = found.get(statuses, 0) + 1
        return found

    def upstream_errors(self) -> dict[str, int]:
        """Why nginx gave up on a replica for an HTTP request, by kind, from its error log. Streams are left out:
        a replica that closes a stream (1012 at a drain) resets the connection when the client's audio still
        comes in, which nginx logs as an error "while proxying upgraded connection"."""
        kinds = {"refused": "(111: Connection refused)", "reset": "(104: Connection reset by peer)",
                 "closed": "upstream prematurely closed", "no live": "no live upstreams", "timed out": "timed out"}
        lines = [line for line in (self.dir / "error.log").read_text().splitlines()
                 if "upgraded connection" not in line]
        counts = {kind: sum(needle in line for line in lines) for kind, needle in kinds.items()}
        return {kind: n for kind, n in counts.items() if n}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Cluster:
    replicas: list[Replica]
    nginx: Nginx


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


# ---- load: uploads and streams ------------------------------------------------------------------------------------
@dataclass
class Upload:
    started: float
    ended: float
    status: int | None  # None: no response (error says why)
    upstreams: list[str]  # the replicas nginx tried, in order (X-Upstream)
    error: str = ""
    timed_out: bool = False


class Load:
    """``users`` threads, each posting ``clip`` to ``path`` through nginx one after the other until stopped."""

    def __init__(self, base: str, users: int, clip: bytes, path: str = "/transcribe") -> None:
        self.base, self.clip, self.path = base, clip, path
        self.results: list[Upload] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._user, daemon=True) for _ in range(users)]

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(HTTP_TIMEOUT + 10)
        assert not any(t.is_alive() for t in self._threads), "an upload thread outlived its timeout"

    def _user(self) -> None:
        with httpx.Client(base_url=self.base, timeout=HTTP_TIMEOUT) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    r = client.post(self.path, files={"file": ("clip.wav", self.clip, "audio/wav")})
                    result = Upload(started, time.monotonic(), r.status_code,
                                    [u.strip() for u in r.headers.get("x-upstream", "").split(",") if u.strip()],
                                    "" if r.status_code == 200 else r.text[:200])
                except httpx.TimeoutException as err:
                    result = Upload(started, time.monotonic(), None, [], repr(err), timed_out=True)
                except httpx.HTTPError as err:
                    result = Upload(started, time.monotonic(), None, [], repr(err))
                with self._lock:
                    self.results.append(result)

    def snapshot(self) -> list[Upload]:
        with self._lock:
            return list(self.results)

    def count(self) -> int:
        with self._lock:
            return len(self.results)

    def wait_for(self, more: int, timeout: float = 30.0) -> None:
        """Until ``more`` further uploads have finished."""
        target, end = self.count() + more, time.monotonic() + timeout
        while self.count() < target:
            assert time.monotonic() < end, f"the load stalled at {self.count()} uploads"
            time.sleep(0.05)


class Stream(threading.Thread):
    """One websocket stream through nginx: ``samples`` sent in 100 ms frames at real time, then session.end (or
    as soon as :attr:`finish` is set); everything received is kept, with the close code and when it came."""

    def __init__(self, base: str, task: str, samples: np.ndarray, **options) -> None:
        super().__init__(daemon=True)
        self.url = base.replace("http://", "ws://") + f"/v1/stream/{task}"
        self.task, self.samples, self.options = task, samples.astype("<f4"), options
        self.finish = threading.Event()
        self.started = threading.Event()  # session.started received (or the stream failed before it)
        self.upstream = ""
        self.messages: list[dict] = []
        self.chunks: list[np.ndarray] = []
        self.close_code: int | None = None
        self.closed_at: float | None = None
        self.hung = False
        self.error = ""

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)

    def of(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m.get("type") == kind]

    def _send(self, ws) -> None:
        frame, begun = 1600, time.monotonic()
        try:
            for index, first in enumerate(range(0, len(self.samples), frame)):
                if self.finish.wait(max(0.0, begun + index * 0.1 - time.monotonic())):
                    break
                ws.send(self.samples[first:first + frame].tobytes())
            ws.send(json.dumps({"type": "session.end"}))
        except Exception:  # the connection is gone: the reader sees how
            pass

    def run(self) -> None:
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        try:
            with connect(self.url, open_timeout=10, close_timeout=5, max_size=None) as ws:
                self.upstream = ws.response.headers.get("X-Upstream", "")
                ws.send(json.dumps({"type": "session.start", "sample_rate": 16000, "encoding": "pcm_f32le",
                                    **self.options}))
                while True:
                    try:
                        message = ws.recv(timeout=STREAM_RECV_TIMEOUT)
                    except TimeoutError:
                        self.hung = True
                        break
                    except ConnectionClosed:
                        break
                    if isinstance(message, bytes):
                        self.chunks.append(np.frombuffer(message, "<f4"))
                        continue
                    self.messages.append(json.loads(message))
                    if self.messages[-1]["type"] == "session.started":
                        threading.Thread(target=self._send, args=(ws,), daemon=True).start()
                        self.started.set()
                self.closed_at = time.monotonic()
                self.close_code = ws.close_code
        except Exception as err:
            self.error = repr(err)
            self.closed_at = time.monotonic()
        finally:
            self.started.set()


def open_streams(cluster: Cluster, make, per_replica: int, timeout: float = 20.0) -> list[Stream]:
    """``per_replica`` streams (``make(index)``) on each replica, each with its session started. nginx decides
    where each lands (round robin, with the uploads in between; none on a replica it has marked failed, for
    fail_timeout): one that lands where enough are already open is ended at once and left out."""
    streams: list[Stream] = []
    end = time.monotonic() + timeout
    for index in itertools.count():
        if all(sum(s.upstream == r.address for s in streams) >= per_replica for r in cluster.replicas):
            return streams
        if time.monotonic() > end:
            break
        stream = make(index)
        stream.start()
        assert stream.started.wait(30) and stream.of("session.started"), (stream.error, stream.messages)
        if sum(s.upstream == stream.upstream for s in streams) >= per_replica:
            stream.finish.set()
            stream.join(30)
            time.sleep(random.uniform(0, 0.05))  # out of step with the uploads' turns
        else:
            streams.append(stream)
    raise AssertionError(f"{index} streams in {timeout:.0f} s and still not {per_replica} on each replica: "
                         f"{[s.upstream for s in streams]}")


def alive_and_ready(replica: Replica) -> bool:
    try:
        return httpx.get(f"{replica.base}/health/ready", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def wait_serving(replica: Replica, before: float, timeout: float = 30.0) -> None:
    """Until nginx sends ``replica`` requests again and it answers them: its own count of 200s passes ``before``
    (a 503 does not count: it marks the replica failed in nginx for fail_timeout)."""
    end = time.monotonic() + timeout
    while replica.requests(status="200") <= before:
        assert time.monotonic() < end, f"nginx sent replica {replica.name} no request in {timeout:.0f} s"
        time.sleep(0.1)


def summary(results: list[Upload]) -> dict:
    statuses: dict[str, int] = {}
    for r in results:
        statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
    latencies = sorted(r.ended - r.started for r in results)
    return {"uploads": len(results), "statuses": statuses, "retried": sum(len(r.upstreams) > 1 for r in results),
            "timeouts": sum(r.timed_out for r in results),
            "p50_s": round(latencies[len(latencies) // 2], 3) if latencies else None,
            "max_s": round(latencies[-1], 3) if latencies else None}


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
