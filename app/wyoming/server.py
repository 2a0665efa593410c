"""The Wyoming listener: started and stopped with the app (its lifespan), so it shares the app's engine.

``CENTAURUS_WYOMING_URI`` (``tcp://HOST:PORT`` or ``unix:///PATH``) turns it on. Wyoming has no authentication:
it listens beside the HTTP API, which keeps its keys, and belongs on a trusted network only. Connections count
against their own ``stream_max_sessions`` (a client past it gets an ``error`` and is closed); idle connections
close after ``stream_idle_timeout_seconds`` and any after ``stream_max_session_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import stat
from pathlib import Path
from urllib.parse import urlparse

from wyoming.error import Error
from wyoming.event import async_write_event

from ..engine import Engine
from ..settings import Settings
from .connection import WyomingConnection
from .framing import MAX_HEADER_BYTES

__all__ = ["WyomingServer"]

log = logging.getLogger(__name__)


class WyomingServer:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine, self.settings = engine, settings
        self.uri = settings.wyoming_uri or ""
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task] = set()

    async def start(self) -> None:
        uri = urlparse(self.uri)
        if uri.scheme == "unix":
            path = Path(uri.path)
            if path.exists() and stat.S_ISSOCK(path.stat().st_mode):
                path.unlink()  # a socket left by an earlier run
            self._server = await asyncio.start_unix_server(self._serve, path=str(path), limit=MAX_HEADER_BYTES)
        else:
            self._server = await asyncio.start_server(self._serve, uri.hostname, uri.port, limit=MAX_HEADER_BYTES)
        log.info("Wyoming on %s (no authentication: keep it on a trusted network)", self.uri)

    @property
    def clients(self) -> int:
        return len(self._clients)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._clients) >= self.settings.stream_max_sessions:
            try:
                await async_write_event(Error(text=f"{self.settings.stream_max_sessions} Wyoming connections are "
                                              "open; try again later", code="too_many_connections").event(), writer)
            except ConnectionError:
                pass
            writer.close()
            return
        task = asyncio.current_task()
        self._clients.add(task)
        try:
            await WyomingConnection(reader, writer, self.engine, self.settings).run()
        except asyncio.CancelledError:
            pass  # stop() ends every connection; asyncio's stream callback would log a cancelled task as an error
        except Exception:  # noqa: BLE001 - one client's failure never reaches the others
            log.exception("Wyoming connection failed")
            writer.close()
        finally:
            self._clients.discard(task)

    async def stop(self) -> None:
        """Stop listening, end every connection (their sessions are freed), and wait for them."""
        if self._server is not None:
            self._server.close()
        clients = list(self._clients)
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self.uri.startswith("unix://"):
            Path(urlparse(self.uri).path).unlink(missing_ok=True)
