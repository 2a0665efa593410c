"""Two replicas of the service behind a real nginx, and the load to put on them, for test_replicas.py.

``Replica`` runs ``centaurus-speech serve`` (tiny random models, one worker) as a child process and reads its
``/metrics``; ``Nginx`` runs nginx with docker/nginx/centaurus.conf, only its server and listen lines replaced
(:func:`render`); ``Load`` sends uploads through nginx and records each one's status, latency and the replicas
nginx tried; ``Stream`` is one websocket session through nginx. Every client has a bounded timeout.

About 440 lines in one module on purpose: the processes and the load on them are one harness, read together
when a test of test_replicas.py fails (a lost upload is explained by what the replica and nginx did).
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
from service_testkit import signal as clip_signal
from service_testkit import wav_bytes

ROOT = Path(__file__).resolve().parents[2]
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
