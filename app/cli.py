"""``centaurus-speech``: the command line. ``serve`` runs the HTTP service; the others are its clients.

``transcribe``, ``denoise``, ``keywords`` and ``stream`` call a running server (:mod:`app.client_cli`).

Options given here override the ``CENTAURUS_*`` environment (see :mod:`app.settings`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .client_cli import add_client_commands

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from model_zoo.runtime import freeze_loaded_objects, keep_freed_memory

    from .main import create_app
    from .settings import Settings, UnknownSetting, check_environment

    try:
        check_environment()  # a typo in a CENTAURUS_* name: one line, before anything starts
    except UnknownSetting as err:
        print(f"centaurus-speech: {err}", file=sys.stderr)
        return 2
    overrides = {k: v for k, v in {
        "host": args.host, "port": args.port, "device": args.device, "workers_per_device": args.workers_per_device,
        "worker_mode": args.worker_mode, "log_level": args.log_level, "wyoming_uri": args.wyoming_uri,
        "models": json.loads(args.models) if args.models else None,
    }.items() if v is not None}
    settings = Settings(**overrides)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    keep_freed_memory()
    # What is imported and built by then lives as long as the process: full collections skip it.
    app = create_app(settings, when_warm=freeze_loaded_objects)
    # Graceful shutdown: uvicorn lets open requests finish, then the lifespan drains the pool.
    # uvloop, not asyncio's loop: live streams are many small websocket frames, and on asyncio's loop uvicorn's
    # pause and resume of reading around every frame alone took 15% of the service process at 64 streams;
    # bench/streams.py held 32 denoise streams at p99 < 50 ms on two cores with it, 64 with uvloop.
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level, loop="uvloop",
                timeout_graceful_shutdown=int(settings.request_timeout_seconds),
                ws_per_message_deflate=settings.stream_compression,
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
    serve.add_argument("--wyoming-uri", help="also serve Wyoming (Home Assistant) here, e.g. tcp://0.0.0.0:10300; "
                       "no authentication: a trusted network only")
    serve.set_defaults(run=_serve)

    add_client_commands(commands)  # transcribe, denoise, keywords, stream (app/client_cli.py)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
