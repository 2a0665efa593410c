"""``/docs`` (Swagger UI) and ``/redoc`` render with no internet: their assets come from the installed
``fastapi-offline`` package, the pages refer to this server only, and in Debian's Chromium with every other host
blocked they render the endpoint list.

The browser tests need /usr/bin/chromium (``scripts/setup test`` installs it); they fail rather than skip without it.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from service_testkit import start_server, stop_server

from app.http.routes.docs import ASSETS

CHROMIUM = "/usr/bin/chromium"
PAGES = ["/docs", "/redoc"]
ASSET_TYPES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
               "redoc.standalone.js": "text/javascript", "favicon.png": "image/png"}


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):
    running = start_server(tiny_models, tmp_path_factory.mktemp("docs") / "server.log", worker_mode="thread")
    yield running.base
    stop_server(running)


def referenced_urls(html: str) -> list[str]:
    """Every URL a page loads: src, href, ReDoc's spec-url and the spec URL in Swagger UI's start-up script."""
    return re.findall(r'(?:src|href|spec-url)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)


@pytest.mark.parametrize("page", PAGES)
def test_the_pages_refer_only_to_this_server(server, page):
    response = httpx.get(server + page, timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    urls = referenced_urls(response.text)
    assert "/openapi.json" in urls and any(url.startswith(ASSETS + "/") for url in urls), urls
    assert all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    assert "http://" not in response.text and "https://" not in response.text  # no CDN, no fonts host
    assert "default-src 'self'" in response.headers["content-security-policy"]
    for url in urls:
        assert httpx.get(server + url, timeout=10).status_code == 200, url


@pytest.mark.parametrize("name, content_type", ASSET_TYPES.items())
def test_the_assets_come_from_the_package_with_their_content_types(server, name, content_type):
    response = httpx.get(f"{server}{ASSETS}/{name}", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith(content_type)
    import fastapi_offline

    assert response.content == (Path(fastapi_offline.__file__).parent / "static" / name).read_bytes()
    assert httpx.get(f"{server}{ASSETS}/no-such-file.js", timeout=10).status_code == 404


# ---- in a real browser, every other host blocked -----------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), "Chromium is missing: scripts/setup test installs it (apt-get install chromium)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield launched
        launched.close()


def offline_page(browser, server: str):
    """A page whose requests to any host but the server are aborted (and recorded), with its script errors."""
    context = browser.new_context()
    own = urlsplit(server).netloc
    record = {"blocked": [], "errors": []}

    def gate(route):
        url = urlsplit(route.request.url)
        if url.netloc == own or url.scheme in ("data", "blob"):
            route.continue_()
        else:
            record["blocked"].append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", gate)
    page = context.new_page()
    page.on("pageerror", lambda error: record["errors"].append(str(error)))
    return context, page, record


def test_swagger_ui_renders_the_endpoint_list_offline(browser, server):
    context, page, record = offline_page(browser, server)
    try:
        page.goto(server + "/docs")
        page.wait_for_selector(".opblock-summary-path[data-path='/transcribe']", timeout=60000)
        paths = page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.dataset.path)")
        assert {"/transcribe", "/v1/audio/transcriptions", "/denoise", "/keywords", "/v1/models"} <= set(paths)
        assert "Centaurus Speech" in page.text_content(".info .title")
        assert record == {"blocked": [], "errors": []}
    finally:
        context.close()


def test_redoc_renders_the_endpoint_list_offline(browser, server):
    context, page, record = offline_page(browser, server)
    try:
        page.goto(server + "/redoc")
        page.wait_for_selector("h1:has-text('Centaurus Speech')", timeout=60000)
        # Each operation shows its path (and the full URL in its server box).
        page.wait_for_selector("span:text-is('/transcribe')", state="attached", timeout=60000)
        assert page.locator("span:text-is('/keywords')").count() >= 1
        assert record == {"blocked": [], "errors": []}
    finally:
        context.close()
