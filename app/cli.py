"""``centaurus-speech``: the command line. ``serve`` runs the HTTP service; ``stream`` is a websocket client.

Options given here override the ``CENTAURUS_*`` environment (see :mod:`app.settings`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from model_zoo.runtime import keep_freed_memory

    from .main import create_app
    from .settings import Settings

    overrides = {k: v for k, v in {
        "host": args.host, "port": args.port, "device": args.device, "workers_per_device": args.workers_per_device,
        "worker_mode": args.worker_mode, "log_level": args.log_level,
        "models": json.loads(args.models) if args.models else None,
    }.items() if v is not None}
    settings = Settings(**overrides)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    keep_freed_memory()
    app = create_app(settings)
    # Graceful shutdown: uvicorn lets open requests finish, then the lifespan drains the pool.
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                timeout_graceful_shutdown=int(settings.request_timeout_seconds),
                ws_ping_interval=settings.stream_ping_interval_seconds,
                ws_ping_timeout=settings.stream_ping_timeout_seconds)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="centaurus-speech", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service",
                                description="Run the HTTP service. Every setting also reads CENTAURUS_<NAME>.")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--models", help='JSON object: served name -> shipped name or card path')
    serve.add_argument("--device", help='"auto", "cpu", "cuda" or "cuda:N"')
    serve.add_argument("--workers-per-device", type=int)
    serve.add_argument("--worker-mode", choices=["process", "thread"])
    serve.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    serve.set_defaults(run=_serve)

    stream = commands.add_parser("stream", help="stream a file over the websocket API and print the results",
                                 description="Stream an audio file to a running server in real-time-sized chunks.")
    stream.add_argument("file", help="audio file (any container FFmpeg reads)")
    stream.add_argument("--task", choices=["transcribe", "denoise", "keywords"], default="transcribe")
    stream.add_argument("--url", default="ws://127.0.0.1:8000", help="server base URL (ws:// or http://)")
    stream.add_argument("--api-key", help="API key (default: $CENTAURUS_API_KEY)")
    stream.add_argument("--model", help="model id (default: the server's first of the task)")
    stream.add_argument("--chunk-ms", type=float, default=100.0, help="audio per websocket frame")
    stream.add_argument("--speed", type=float, default=1.0, help="pace in multiples of real time; 0 = unpaced")
    stream.add_argument("--partials", action="store_true", help="print partial transcripts too")
    stream.add_argument("--keywords", nargs="+", help="only these keywords")
    stream.add_argument("--threshold", type=float, default=0.5, help="keyword detection threshold")
    stream.add_argument("--output", "-o", help="denoised WAV (default: FILE.denoised.wav)")
    stream.set_defaults(run=_stream)
    return parser


def _stream(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from .streaming.client import StreamOptions, stream_file

    options = StreamOptions(task=args.task, url=args.url, api_key=args.api_key or os.environ.get("CENTAURUS_API_KEY"),
                            model=args.model, chunk_ms=args.chunk_ms, speed=args.speed, partials=args.partials,
                            keywords=args.keywords, threshold=args.threshold,
                            output=Path(args.output) if args.output else None)
    return stream_file(Path(args.file), options)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
