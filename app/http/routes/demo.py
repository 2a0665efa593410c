"""``GET /``: the demo page (plain HTML and JavaScript, no build step) that exercises the public API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["demo"])

_PAGE = Path(__file__).resolve().parents[2] / "static" / "index.html"


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def demo_page() -> HTMLResponse:
    """Upload a file (transcript with word times, keywords, denoised audio with spectrograms) or use the
    microphone (live denoised monitor, running transcript, keyword events). The page holds no secrets: an API
    key typed into it stays in the browser."""
    return HTMLResponse(_PAGE.read_text(encoding="utf-8"))
