"""The Wyoming protocol (Home Assistant's local voice pipeline): speech-to-text and wake words over TCP.

A protocol adapter beside :mod:`app.http` and :mod:`app.streaming`: ``server`` listens (``CENTAURUS_WYOMING_URI``)
and admits connections, ``connection`` runs one client's events, ``framing`` reads events with bounded sizes,
``programs`` describes what is served (``info``), ``audio`` checks and converts Wyoming's PCM. The event types
are those of the PyPI package ``wyoming``; the work goes through :class:`app.engine.Engine`, never the pool.
"""

from .server import WyomingServer

__all__ = ["WyomingServer"]
