"""``python -m app.healthcheck``: exit 0 when the local server answers ``/health/ready`` with 200, else 1.

The container health check (docker/Dockerfile, docker/compose.yaml). Standard library only, so it starts in a
fraction of a second and the image needs no curl; it reads the same ``CENTAURUS_*`` settings as the server, so a
changed port or ``OPS_REQUIRE_KEY`` with ``API_KEYS`` need no second configuration.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from .settings import Settings

__all__ = ["ready_request", "main"]


def ready_request(settings: Settings) -> urllib.request.Request:
    """GET /health/ready on the loopback interface, with a key when the server asks one of health probes."""
    headers = {"X-API-Key": settings.api_keys[0]} if settings.ops_require_key and settings.api_keys else {}
    return urllib.request.Request(f"http://127.0.0.1:{settings.port}/health/ready", headers=headers)


def main(timeout_seconds: float = 5.0) -> int:
    try:
        with urllib.request.urlopen(ready_request(Settings()), timeout=timeout_seconds) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as err:  # 503 while loading arrives here as an HTTPError
        print(f"not ready: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
