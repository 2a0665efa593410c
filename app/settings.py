"""Service settings, read from ``CENTAURUS_*`` environment variables (pydantic-settings).

Examples::

    CENTAURUS_MODELS='{"asr": "asr", "kws": "/models/kws.json"}'   # served name -> shipped name or card path
    CENTAURUS_API_KEYS='key-one,key-two'                           # or a JSON list
    CENTAURUS_DEVICE=cuda CENTAURUS_WORKERS_PER_DEVICE=2

Lists accept JSON or a comma-separated string. Every setting is documented by its ``description``; ``/docs``
does not show them, ``centaurus-speech serve --help`` does. A ``CENTAURUS_*`` variable that is no setting (a typo,
``CENTAURUS_WORKERS``) stops the service at start-up: :func:`check_environment`.
"""

from __future__ import annotations

import difflib
import os
from typing import Annotated, Any, Literal, Mapping

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings", "UnknownSetting", "check_environment", "NOT_SETTINGS"]


def _split_list(value: Any) -> Any:
    """``"a, b"`` -> ``["a", "b"]``; JSON lists pass through; an empty string is an empty list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CENTAURUS_", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface to bind; use 0.0.0.0 inside a container.")
    port: int = Field(8000, ge=0, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    models: dict[str, str] | None = Field(
        None,
        description="Served model name -> shipped checkpoint name or path to its .json card. "
        "Default: every shipped checkpoint in model_zoo/checkpoints.",
    )
    model_aliases: dict[str, str] = Field(
        default_factory=lambda: {"whisper-1": "asr", "gpt-4o-transcribe": "asr", "gpt-4o-mini-transcribe": "asr"},
        description="Names clients send (OpenAI's) -> a served model name; ignored when the target is not served "
        "(then the default model of the endpoint's task is used).",
    )
    device: str = Field("auto", description='"auto" (every visible GPU, else the CPU), "cpu", "cuda" or "cuda:N".')
    workers_per_device: int = Field(
        0, ge=0, le=64, description="Worker processes (or threads) per device; 0 = one per core on the CPU, one per GPU.")
    worker_mode: Literal["process", "thread"] = Field(
        "process", description="process: crash isolation, respawn, no GIL contention with HTTP; thread: one process."
    )
    torch_threads: int = Field(0, ge=0, description="Intra-op threads per worker; 0 = 1 on the CPU (scale with "
                               "workers instead), torch's default on a GPU.")
    warmup: bool = Field(True, description="Run every model once on silence before reporting ready.")

    max_batch_size: int = Field(8, ge=1, le=1024, description="Clips (or their windows) per model call.")
    stream_batch_size: int = Field(64, ge=1, le=1024, description="Stream steps per model call: a step is a few ms "
                                   "of audio, so large batches are cheap (at 8, 64 denoise streams fell behind).")
    max_batch_wait_ms: float = Field(
        0.0, ge=0, description="How long the first request of every batch waits for company, even when every worker "
        "is idle. 0 = a request that finds the workers idle goes at once (see busy_batch_wait_ms).")
    busy_batch_wait_ms: float = Field(
        10.0, ge=0, description="While another worker is running a job (requests are flowing), how long a free "
        "worker lets the first request of its next batch wait for company (up to max_batch_size rows).")
    queue_limit: int = Field(64, ge=1, description="Waiting model calls before new requests get 503 + Retry-After.")
    retry_after_seconds: int = Field(1, ge=0, description="Retry-After sent with 503s.")
    request_timeout_seconds: float = Field(120.0, gt=0, description="Deadline per request (plus timeout_per_audio_second "
                                           "for each second of audio); 504 when it passes.")
    timeout_per_audio_second: float = Field(1.0, ge=0, description="Extra deadline per second of audio, so long "
                                            "files are not cut off by a deadline sized for short ones.")

    max_upload_mb: float = Field(100.0, gt=0, description="Request body limit in MB (10^6 bytes); 413 above it.")
    max_audio_seconds: float = Field(
        3600.0, gt=0, description="Longest decoded audio accepted. Memory: the decoded clip (~4 bytes per sample "
        "at its own rate and channel count) plus one chunk of model activations.",
    )
    chunk_seconds: float = Field(
        20.0, gt=0, description="Clips longer than this run chunk by chunk through the streaming state, "
        "so model memory stays bounded whatever the length.",
    )

    stream_max_sessions: int = Field(64, ge=0, description="Open streaming websockets; more are refused at the "
                                     "handshake with 503.")
    stream_idle_timeout_seconds: float = Field(30.0, gt=0, description="A stream with no message (audio or control) "
                                               "for this long gets an idle_timeout error and is closed (1008).")
    stream_max_session_seconds: float = Field(4 * 3600.0, gt=0, description="Longest a stream may stay open.")
    stream_max_buffer_seconds: float = Field(10.0, gt=0, description="Audio a stream may have waiting for the model; "
                                             "beyond it the client gets buffer_overflow and a 1013 close.")
    stream_step_ms: float = Field(80.0, gt=0, description="Audio per model step of a stream (rounded up to the "
                                  "model's frame) unless its session.start asks for another step_ms; smaller is "
                                  "lower latency, larger is cheaper.")
    stream_min_step_ms: float = Field(20.0, gt=0, description="Smallest step_ms a session.start may ask for (each "
                                      "step is a model call: tiny steps cost the most per second of audio).")
    stream_max_step_ms: float = Field(1000.0, gt=0, description="Largest step_ms a session.start may ask for.")
    stream_compression: bool = Field(False, description="Accept permessage-deflate on websockets (most clients "
                                     "offer it). Off: audio does not compress, and at 64 streams compressing took "
                                     "7% of the service process's time and a third of the client's CPU.")
    stream_ping_interval_seconds: float = Field(20.0, gt=0, description="Websocket pings from the server.")
    stream_ping_timeout_seconds: float = Field(60.0, gt=0, description="A stream whose pong is this late is dropped; "
                                               "generous, so a busy but healthy client is never cut off.")

    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Accepted keys (Authorization: Bearer KEY or X-API-Key); empty = open.",
        repr=False,  # never in a logged or printed Settings
    )
    ops_require_key: bool = Field(False, description="Whether /health/* and /metrics also need a key.")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed by CORS; empty = no CORS headers (closed)."
    )
    wyoming_uri: str | None = Field(
        None, description="Also serve the Wyoming protocol (Home Assistant: speech-to-text and wake words) here, "
        "e.g. tcp://0.0.0.0:10300 (or unix:///path). Wyoming has no authentication: listen on a trusted network "
        "only. Default: off.")

    @field_validator("wyoming_uri")
    @classmethod
    def _wyoming_uri(cls, value: str | None) -> str | None:
        if not value:
            return None
        from urllib.parse import urlparse

        uri = urlparse(value)
        try:
            port = uri.port
        except ValueError:
            port = None
        if not ((uri.scheme == "tcp" and uri.hostname and port is not None) or (uri.scheme == "unix" and uri.path)):
            raise ValueError("must be tcp://HOST:PORT or unix:///PATH")
        return value

    @field_validator("stream_max_step_ms")
    @classmethod
    def _step_limits(cls, value: float, info) -> float:
        low, default = info.data.get("stream_min_step_ms"), info.data.get("stream_step_ms")
        if low is not None and default is not None and not low <= default <= value:
            raise ValueError(f"needs stream_min_step_ms ({low:g}) <= stream_step_ms ({default:g}) <= "
                             f"stream_max_step_ms ({value:g})")
        return value

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)


# CENTAURUS_* variables that other programs read, so never a typo of a setting: the clients' server and key
# (app/client.py, `centaurus-speech stream`, bench/), the worker processes' log level (app/execution/worker.py),
# docker compose's ports, image and build options (docker/compose.yaml), and the test and bench knobs.
NOT_SETTINGS = frozenset({
    "CENTAURUS_URL", "CENTAURUS_API_KEY", "CENTAURUS_WORKER_LOG_LEVEL",
    "CENTAURUS_PUBLISH_PORT", "CENTAURUS_WYOMING_PUBLISH_PORT", "CENTAURUS_IMAGE", "CENTAURUS_BASE_IMAGE",
    "CENTAURUS_CPU_BASE_IMAGE",
    "CENTAURUS_TORCH_INDEX_URL", "CENTAURUS_FUZZ_EXAMPLES", "CENTAURUS_FUZZ_REPORT", "CENTAURUS_BENCH_THREADS",
})


class UnknownSetting(ValueError):
    """A ``CENTAURUS_*`` environment variable that names no setting; the message is one line."""


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Raise :class:`UnknownSetting` for a ``CENTAURUS_*`` variable that is neither a setting nor in
    :data:`NOT_SETTINGS`, naming the closest setting: a typo would otherwise be ignored without a word."""
    prefix = Settings.model_config["env_prefix"]
    known = sorted(name.upper() for name in Settings.model_fields)
    for variable in sorted(os.environ if environ is None else environ):
        name = variable.upper()  # pydantic-settings matches names case-insensitively
        if not name.startswith(prefix) or name in NOT_SETTINGS or name[len(prefix):] in known:
            continue
        # A name cut short (WORKERS for WORKERS_PER_DEVICE) first, else the most similar one.
        close = [k for k in known if name[len(prefix):] and k.startswith(name[len(prefix):])][:1] \
            or difflib.get_close_matches(name[len(prefix):], known, n=1, cutoff=0.6)
        hint = f"did you mean {prefix}{close[0]}?" if close else "app/settings.py lists the settings"
        raise UnknownSetting(f"{variable} is not a setting; {hint}")
