"""Centaurus Speech service: an HTTP API (FastAPI) over a pool of model workers.

Start it with ``centaurus-speech serve`` (:mod:`app.cli`) or any ASGI server on ``app.main:app``; build one in
code with :func:`app.main.create_app`.

Data flows one way, each wing talking only to its neighbour: a socket or an upload -> :mod:`app.http` (routes,
the key check, the model lookup) or :mod:`app.streaming` (websocket sessions) -> :mod:`app.audio` (decode,
resample, PCM) -> :mod:`app.engine` (the one way into the pool) -> :mod:`app.execution` (pool, workers,
runners) -> the networks of ``model_zoo`` -> back the same way. :mod:`app.errors` is the one error envelope.
"""

__version__ = "0.1.0"
