"""Keep API keys out of the logs.

Browsers cannot set headers on a websocket, so the streaming endpoints also take ``?api_key=KEY``; uvicorn
logs every request line and websocket handshake with its query string (``"WebSocket
/v1/stream/transcribe?api_key=..." [accepted]``, at the default ``info`` level). :func:`redact_server_logs`
puts a filter on uvicorn's loggers that replaces such values before any handler sees the record.
"""

from __future__ import annotations

import logging
import re
from typing import Any

__all__ = ["RedactKeys", "redact", "redact_server_logs"]

# Query parameters and header-like fragments that carry a key.
_SECRET = re.compile(r"\b((?:api_key|api-key|apikey|key|token|access_token)=)[^&\s\"'#]+", re.IGNORECASE)
_LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn")


def redact(text: str) -> str:
    return _SECRET.sub(r"\1[redacted]", text)


def _redacted(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactKeys(logging.Filter):
    """Rewrites a record's message and arguments; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redacted(v) for k, v in record.args.items()}
        return True


def redact_server_logs() -> None:
    """Filter uvicorn's loggers (idempotent). Called at startup, after uvicorn has configured its logging."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactKeys) for f in logger.filters):
            logger.addFilter(RedactKeys())
