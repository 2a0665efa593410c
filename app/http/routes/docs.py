"""``GET /docs`` (Swagger UI) and ``GET /redoc`` (ReDoc) that render with no internet.

FastAPI's own pages load their JavaScript and CSS from a CDN, so without internet ``/docs`` is a blank page.
These are the same pages (FastAPI's ``get_swagger_ui_html``/``get_redoc_html``) pointed at local copies: the
``fastapi-offline`` package (MIT, pinned in pyproject.toml) ships Swagger UI 5 and ReDoc 2 builds, mounted under
``/docs/assets``. No page of the service refers to another host. Like FastAPI's own pages these are plain routes
of the app (public, outside the schema): :func:`install` adds them.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["install", "ASSETS"]

ASSETS = "/docs/assets"
# The pages may load from this server only. ReDoc's sidebar shows a logo from cdn.redoc.ly (built into its bundle);
# with this policy the browser never asks for it, and the logo, an image that hides itself on error, is absent.
# Inline scripts and styles: FastAPI's page starts Swagger UI inline, and both UIs style inline; blob: for workers.
POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
          "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'")


def install(app: FastAPI) -> None:
    """``/docs``, ``/redoc``, and the bundled files (``swagger-ui-bundle.js``, ``swagger-ui.css``,
    ``redoc.standalone.js``, ``favicon.png``) from the installed package, wherever it is installed."""
    app.add_route("/docs", swagger_ui, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
    app.mount(ASSETS, StaticFiles(packages=[("fastapi_offline", "static")]), name="docs-assets")


def _base(request: Request) -> str:
    # Behind a proxy that strips a path prefix (uvicorn --root-path), links keep the prefix.
    return request.scope.get("root_path", "").rstrip("/")


async def swagger_ui(request: Request) -> HTMLResponse:
    base, app = _base(request), request.app
    page = get_swagger_ui_html(
        openapi_url=base + app.openapi_url, title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{base}{ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{base}{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{base}{ASSETS}/favicon.png", swagger_ui_parameters=app.swagger_ui_parameters,
    )
    page.headers["Content-Security-Policy"] = POLICY
    return page


async def redoc(request: Request) -> HTMLResponse:
    base, app = _base(request), request.app
    page = get_redoc_html(
        openapi_url=base + app.openapi_url, title=f"{app.title} - ReDoc",
        redoc_js_url=f"{base}{ASSETS}/redoc.standalone.js", redoc_favicon_url=f"{base}{ASSETS}/favicon.png",
        with_google_fonts=False,  # fonts.googleapis.com: another host; ReDoc falls back to the system fonts
    )
    page.headers["Content-Security-Policy"] = POLICY
    return page
