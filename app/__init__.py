"""Centaurus Speech service: an HTTP API (FastAPI) over a pool of model workers.

Start it with ``centaurus-speech serve`` (:mod:`app.cli`) or any ASGI server on ``app.main:app``; build one in
code with :func:`app.main.create_app`.
"""

__version__ = "0.1.0"

