"""The outbox page in a real browser: Debian's Chromium (`/usr/bin/chromium`, never a browser
downloaded by `playwright install`) driven headless by Playwright, against `sensormail local` on
each AWS backend. Without Chromium (or Playwright) the test skips with the reason, except under
`CI=true`, where .ci/run installs Chromium and the test must run."""

from __future__ import annotations

import email
import email.policy
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SAMPLES
from tests.local_process import LocalRun, local_env
from worker.local.emulator import Emulator

pytestmark = pytest.mark.system
CHROMIUM = os.environ.get("SENSORMAIL_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SAMPLE_SUBJECTS = {"alarm-with-csv.eml": "Vibration alarm, pump 2", "html-two-images.eml": "Camera snapshot",
                   "no-recipients.eml": "Daily report"}
WAIT_MS = 60_000


def _browser_or_skip() -> Any:
    missing = None
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        missing = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    else:
        try:
            from playwright.sync_api import sync_playwright
        except ModuleNotFoundError:
            missing = "playwright is not installed (the test extra)"
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing}; under CI=true the browser test must run (see .ci/run)", pytrace=False)
        pytest.skip(missing)
    return sync_playwright


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    sync_playwright = _browser_or_skip()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


def _attachment(sample: str, filename: str) -> bytes:
    msg = email.message_from_bytes((SAMPLES / sample).read_bytes(), policy=email.policy.default)
    payload = next(p.get_payload(decode=True) for p in msg.walk() if p.get_filename() == filename)
    assert isinstance(payload, bytes)
    return payload


def _not_blank(path: Path) -> None:
    from PIL import Image, ImageStat

    with Image.open(path) as image:
        grey = image.convert("L")
        spread = ImageStat.Stat(grey).stddev[0]
        colours = grey.getcolors(maxcolors=256 * 256)
    assert spread > 10, f"the screenshot is nearly uniform (standard deviation {spread:.1f})"
    assert colours is None or len(colours) > 20, "the screenshot has almost no distinct shades"


def test_outbox_page_live_rendered_download_and_revoke(emulator: Emulator, page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    run = LocalRun(local_env())
    try:
        page.goto(run.page)
        expect(page.locator("header .local")).to_contain_text("local only")
        expect(page.locator("#live")).to_be_visible(timeout=WAIT_MS)
        page.evaluate("window.__sameDocument = true")

        # Each sample appears while the page stays open: pushed, not reloaded.
        rows = page.locator("#messages tbody tr")
        for n, (sample, subject) in enumerate(SAMPLE_SUBJECTS.items(), start=1):
            run.send(SAMPLES / sample)
            expect(rows.filter(has_text=subject)).to_have_count(1, timeout=WAIT_MS)
            expect(rows).to_have_count(n)
        expect(rows.filter(has_text="Daily report").locator(".badge")).to_have_text("fallback", timeout=WAIT_MS)
        expect(rows.filter(has_text="Camera snapshot").locator(".badge")).to_have_text("sent", timeout=WAIT_MS)
        expect(rows.first).to_contain_text("Daily report")  # newest first
        assert page.evaluate("window.__sameDocument") is True

        # Filtering happens in the page.
        page.select_option("#outcome", "fallback")
        expect(rows).to_have_count(1)
        page.select_option("#outcome", "")
        page.fill("#query", "camera")
        expect(rows).to_have_count(1)
        page.fill("#query", "")

        # One email: the html as sent, in a frame where no script runs.
        rows.filter(has_text="Camera snapshot").locator("a").click()
        frame = page.locator("iframe.rendered")
        expect(frame).to_have_attribute("sandbox", "", timeout=WAIT_MS)  # once SES has it, if not yet
        body = page.frame_locator("iframe.rendered").locator("body")
        expect(body).to_contain_text("Motion detected at", timeout=WAIT_MS)
        expect(body).to_contain_text("gate3-0829.jpg")
        expect(page.locator("#attachments .state")).to_have_text(["alive", "alive"], timeout=WAIT_MS)

        # A link downloads the very bytes the device sent.
        with page.expect_download(timeout=WAIT_MS) as download:
            page.locator("#attachments a.att-link").first.click()
        saved = tmp_path / "download.bin"
        download.value.save_as(saved)
        assert download.value.suggested_filename == "gate3-0829.jpg"
        original = _attachment("html-two-images.eml", "gate3-0829.jpg")
        assert hashlib.sha256(saved.read_bytes()).hexdigest() == hashlib.sha256(original).hexdigest()

        # Revoking: the page shows the links dead, and they are.
        page.click("#revoke")
        expect(page.locator("#attachments .state")).to_have_text(["revoked", "revoked"], timeout=WAIT_MS)
        expect(page.locator("#revoke-result")).to_contain_text("2 file(s) moved")
        href = page.locator("#attachments a.att-link").first.get_attribute("href")
        assert page.request.get(href).status == 404

        shot = tmp_path / "outbox.png"
        page.screenshot(path=str(shot), full_page=True)
        _not_blank(shot)
        if os.environ.get("SENSORMAIL_OUTBOX_SCREENSHOTS"):  # refreshes docs/ (see README)
            target = Path(os.environ["SENSORMAIL_OUTBOX_SCREENSHOTS"])
            shutil.copy(shot, target / "outbox-email.png")
            page.goto(run.page)
            expect(rows).to_have_count(3)
            page.screenshot(path=str(target / "outbox-list.png"))
    finally:
        code = run.stop()
    assert code == 0, run.log()
