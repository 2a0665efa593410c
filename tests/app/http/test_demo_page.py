"""The demo page (``GET /``) in Debian's Chromium, driven by Playwright, against a real server: upload, a bad
upload, a good upload again, a live session with Chromium's fake microphone, at desktop and phone sizes.

Screenshots go to ``tests/app/http/screenshots/`` (ignored by git), one per state and size, to be looked at.
The browser tests need /usr/bin/chromium, which ``scripts/test`` installs; they fail rather than skip without
it, so CI cannot silently stop running them.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from service_testkit import SPEECH_SAMPLE

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]
SAMPLES = SPEECH_SAMPLE.parent
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


@pytest.fixture(scope="module")
def browser_launcher():
    assert Path(CHROMIUM).exists(), "Chromium is missing: scripts/setup test installs it (apt-get install chromium)"
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(exist_ok=True)
    print(f"screenshots in {SCREENSHOTS}")
    with sync_playwright() as playwright:
        def launch(*extra: str):
            return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_FLAGS, *extra])

        yield launch


@pytest.fixture(scope="module")
def not_audio(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "meeting-notes.wav"  # an audio name, text inside
    path.write_text("Minutes of the meeting. Present: everyone. Nothing was decided.\n" * 40)
    return path


def served(server, path: str, file: Path, **fields) -> httpx.Response:
    with open(file, "rb") as f:
        return httpx.post(server.base + path, files={"file": f}, data=fields, headers=server.headers, timeout=120)


def open_page(browser, server, size: str, **context):
    page = browser.new_context(viewport=SIZES[size], **context).new_page()
    page.goto(server.base + "/")
    page.fill("#api-key", server.headers["X-API-Key"])
    page.dispatch_event("#api-key", "change")
    page.wait_for_function("document.getElementById('models').textContent.includes('asr (asr)')")
    return page


def shot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def visible(page, selector: str) -> bool:
    return page.locator(selector).is_visible()


def duration(page, selector: str) -> float:
    return page.evaluate(f"""() => new Promise(resolve => {{ const a = document.querySelector('{selector}');
        if (a.readyState >= 1) resolve(a.duration); else a.onloadedmetadata = () => resolve(a.duration); }})""")


def spread(page, canvas: str) -> int:
    """Range of the red channel over the canvas: 0 for a blank one."""
    return page.evaluate(f"""() => {{ const c = document.getElementById('{canvas}');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let lo = 255, hi = 0; for (let i = 0; i < d.length; i += 4) {{ lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); }}
        return hi - lo; }}""")


def assert_fits(page) -> None:
    """Nothing wider than the viewport (no sideways scrolling), and Analyse sits beside the file picker."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    picker, button = page.locator(".file-picker").bounding_box(), page.locator("#analyse").bounding_box()
    assert abs((picker["y"] + picker["height"] / 2) - (button["y"] + button["height"] / 2)) < 8  # one row
    assert 0 <= button["x"] - (picker["x"] + picker["width"]) < 24  # right after it


def analyse(page, file: Path, state: str, timeout: float = 60000) -> None:
    page.set_input_files("#file", str(file))
    assert page.text_content("#file-name") == file.name
    page.click("#analyse")
    page.wait_for_selector(f"#file-status[data-state={state}]", state="attached", timeout=timeout)


def test_upload_then_a_bad_file_then_a_good_one_again(keyed_server, browser_launcher, not_audio):
    browser = browser_launcher()
    try:
        page = open_page(browser, keyed_server, "desktop")
        # Empty state: a message, no empty result boxes, no canvases.
        assert visible(page, "#results-empty") and not visible(page, "#results-grid")
        assert page.locator("canvas:visible").count() == 0
        assert page.eval_on_selector("#analyse", "b => getComputedStyle(b).backgroundColor") == "rgb(59, 91, 219)"
        assert_fits(page)
        shot(page, "desktop-1-empty")

        # Choices: greedy decoding, denoise first, threshold 0. Requests are held to see the loading state.
        page.check("input[name=decoding][value=greedy]", force=True)
        page.check("#denoise-first")
        page.fill("#threshold", "0")
        held, posted = [], {}
        page.route("**/transcribe", lambda route: held.append(route))
        page.route("**/keywords", lambda route: held.append(route))
        page.route("**/denoise", lambda route: held.append(route))
        page.on("request", lambda r: posted.__setitem__(r.url.rsplit("/", 1)[-1], r.post_data or "")
                if r.method == "POST" else None)
        page.set_input_files("#file", str(SPEECH_SAMPLE))
        page.click("#analyse")
        end = time.monotonic() + 30
        while len(held) < 3:
            assert time.monotonic() < end, "the page never sent its three requests"
            page.wait_for_timeout(50)
        assert page.get_attribute("#file-status", "data-state") == "working"
        assert page.get_attribute("#transcript", "data-state") == "loading" and page.is_disabled("#analyse")
        assert "Analysing turn-on-the-lights.wav" in page.text_content("#file-status")
        shot(page, "desktop-2-loading")
        for route in held:
            route.continue_()
        page.unroute("**/transcribe"), page.unroute("**/keywords"), page.unroute("**/denoise")
        page.wait_for_selector("#file-status[data-state=done]", state="attached", timeout=60000)
        for field in ('name="beam_search"\r\n\r\nfalse', 'name="denoise"\r\n\r\ntrue'):
            assert field in posted["transcribe"], posted["transcribe"]
        assert 'name="threshold"\r\n\r\n0' in posted["keywords"]

        expected = served(keyed_server, "/transcribe", SPEECH_SAMPLE, beam_search="false", denoise="true").json()
        assert page.text_content("#transcript") == expected["text"]
        words = page.eval_on_selector_all("#words tbody tr", "rows => rows.map(r => r.cells[0].textContent)")
        assert " ".join(words) == expected["text"]
        detections = served(keyed_server, "/keywords", SPEECH_SAMPLE, threshold="0").json()["detections"]
        assert page.locator("#keywords li").count() == len(detections) >= 1
        assert duration(page, "#after") == pytest.approx(3.93, abs=0.01)
        assert spread(page, "spec-before") > 50 and spread(page, "spec-after") > 50
        assert not visible(page, "#file-error") and page.text_content("#file-status").startswith("Done in")
        shot(page, "desktop-3-results")

        # A text file: a clear error, no hang, the old results gone, the page still usable.
        analyse(page, not_audio, "error", timeout=30000)
        assert visible(page, "#file-error")
        error = page.text_content("#file-error")
        assert "could not be read as audio" in error and "decode" in error
        assert not visible(page, "#results-grid") and page.text_content("#transcript") == ""
        assert page.locator("#keywords li").count() == 0 and page.is_enabled("#analyse")
        shot(page, "desktop-4-bad-file")

        # A good file again: new results, the error cleared.
        analyse(page, SAMPLES / "yes.wav", "done")
        assert not visible(page, "#file-error") and visible(page, "#results-grid")
        yes = served(keyed_server, "/transcribe", SAMPLES / "yes.wav", beam_search="false", denoise="true").json()
        assert page.text_content("#transcript") == yes["text"]
        assert duration(page, "#after") == pytest.approx(1.0, abs=0.01)
        shot(page, "desktop-5-good-again")
    finally:
        browser.close()


def test_the_page_on_a_phone(keyed_server, browser_launcher, not_audio):
    browser = browser_launcher()
    try:
        page = open_page(browser, keyed_server, "phone", is_mobile=True, has_touch=True, device_scale_factor=2)
        assert visible(page, "#results-empty") and page.locator("canvas:visible").count() == 0
        assert_fits(page)
        shot(page, "phone-1-empty")
        page.fill("#threshold", "0")
        analyse(page, SPEECH_SAMPLE, "done")
        assert page.text_content("#transcript") and page.locator("#keywords li").count() >= 1
        assert spread(page, "spec-after") > 50
        assert_fits(page)
        shot(page, "phone-2-results")
        analyse(page, not_audio, "error", timeout=30000)
        assert visible(page, "#file-error") and not visible(page, "#results-grid")
        assert_fits(page)
        shot(page, "phone-3-bad-file")
    finally:
        browser.close()


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_a_live_session_with_the_fake_microphone(keyed_server, browser_launcher, size):
    # Chromium's fake microphone plays the sample in a loop.
    browser = browser_launcher("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                               f"--use-file-for-fake-audio-capture={SPEECH_SAMPLE}")
    try:
        page = open_page(browser, keyed_server, size, permissions=["microphone"])
        assert visible(page, "#live-empty") and not visible(page, "#live-grid")
        page.fill("#threshold", "0")
        page.click("#mic-start")
        page.wait_for_selector("#mic-status[data-state=live]", state="attached", timeout=30000)
        assert visible(page, "#live-grid") and not visible(page, "#live-empty") and page.is_enabled("#mic-stop")
        # 1.5 s of denoised audio back, and partial transcripts while it runs.
        page.wait_for_function("window.demo.denoisedSamples > 24000 && window.demo.partials > 0", timeout=60000)
        shot(page, f"{size}-live")
        page.click("#mic-stop")
        page.wait_for_function("window.demo.ended === 3", timeout=60000)
        stats = page.evaluate("window.demo")
        assert stats["errors"] == [] and stats["finals"] >= 1 and stats["keywords"] >= 1
        assert page.text_content("#live-transcript").strip() and not visible(page, "#live-transcript-empty")
        assert page.locator("#live-keywords li").count() == stats["keywords"]
        assert page.get_attribute("#mic-status", "data-state") == "stopped" and page.is_enabled("#mic-start")
        # A new session starts clean.
        page.click("#mic-start")
        page.wait_for_selector("#mic-status[data-state=live]", state="attached", timeout=30000)
        assert page.evaluate("window.demo.ended") == 0
        page.click("#mic-stop")
    finally:
        browser.close()


def test_a_refused_microphone_is_a_clear_error(keyed_server, browser_launcher):
    browser = browser_launcher("--use-fake-device-for-media-stream", "--deny-permission-prompts")
    try:
        page = open_page(browser, keyed_server, "desktop")
        page.click("#mic-start")
        page.wait_for_selector("#mic-status[data-state=error]", state="attached", timeout=30000)
        assert "Microphone access was refused" in page.text_content("#mic-status")
        assert page.is_enabled("#mic-start") and page.is_disabled("#mic-stop")
    finally:
        browser.close()
