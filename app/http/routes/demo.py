"""``GET /``: the demo page (plain HTML, CSS and JavaScript, no build step) that exercises the public API.

The page is ``app/static/index.html`` with its stylesheet ``demo.css`` and script ``demo.js`` beside it; they
are inlined into the one HTML response, so the page is a single public route.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["demo"])

_STATIC = Path(__file__).resolve().parents[2] / "static"
_STYLESHEET = '<link rel="stylesheet" href="demo.css">'
_SCRIPT = '<script src="demo.js"></script>'


def _page() -> str:
    page = (_STATIC / "index.html").read_text(encoding="utf-8")
    css = (_STATIC / "demo.css").read_text(encoding="utf-8")
    js = (_STATIC / "demo.js").read_text(encoding="utf-8")
    return page.replace(_STYLESHEET, f"<style>\n{css}</style>").replace(_SCRIPT, f"<script>\n{js}</script>")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def demo_page() -> HTMLResponse:
    """Upload a file (transcript with word times, keywords, denoised audio with spectrograms) or use the
    microphone (live denoised monitor, running transcript, keyword events). The page holds no secrets: an API
    key typed into it stays in the browser."""
    return HTMLResponse(_page())
