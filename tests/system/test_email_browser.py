"""The rebuilt email's html in a real browser: whatever the device's html does, our link list is
the first thing in the document, visible at the top of the screen and not covered, and nothing is
fetched from the network.

Debian's Chromium (`/usr/bin/chromium`) driven headless by Playwright, as in
test_outbox_browser.py: without it the test skips with the reason, except under `CI=true`.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest

from tests.nasty_originals import FAKE_LIST, NASTY_ORIGINALS
from tests.system.test_outbox_browser import CHROMIUM, CHROMIUM_ARGS, _browser_or_skip
from worker.mail.compose import compose_email
from worker.mail.reader import Attachment, StoredFile

pytestmark = pytest.mark.system
URL = "https://bucket.s3.amazonaws.com/attachments/m1/{n}-x?X-Amz-Signature=" + "0f" * 32
NAMES = ["pump2-trend.csv", "report\u202efdp.exe"]

# What the page reports about our block, measured by the browser's own layout.
MEASURE = """() => {
  const block = document.getElementById('sensormail-links');
  const centre = (el) => { const r = el.getBoundingClientRect();
    return [r.left + r.width / 2, r.top + r.height / 2, r.width, r.height, r.top]; };
  const hits = (el) => { const [x, y] = centre(el); const hit = document.elementFromPoint(x, y);
    return hit !== null && el.contains(hit); };
  const [, , width, height, top] = centre(block);
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  let first = null;
  while (walker.nextNode()) { if (walker.currentNode.textContent.trim()) { first = walker.currentNode; break; } }
  const style = getComputedStyle(block);
  return {
    width, height, top,
    blockHit: hits(block),
    linksHit: [...block.querySelectorAll('a')].map(hits),
    firstTextInBlock: first !== null && block.contains(first),
    firstElement: document.body.firstElementChild === block,
    shown: style.display !== 'none' && style.visibility === 'visible' && style.opacity === '1',
    positioned: [...document.querySelectorAll('body *')].filter(
      (el) => getComputedStyle(el).position !== 'static').map((el) => el.tagName),
    text: block.innerText,
    location: location.href,
  };
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = _browser_or_skip()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    try:
        yield context.new_page()
    finally:
        context.close()


def html_part(original: str | None) -> str:
    attachments = [
        Attachment(n=n, filename=name, content_type="text/csv", size=61_500, sha256="ab" * 32,
                   stored=StoredFile(key=f"k{n}", url=URL.format(n=n), expires_at=datetime(2026, 11, 27, tzinfo=UTC)))
        for n, name in enumerate(NAMES, start=1)
    ]
    raw = compose_email(sender="alerts@example.com", recipients=["ops@example.com"], subject="Alarm",
                        text="Pump 2 alarm.", html_body=original, attachments=attachments, source_id="m1")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    part = msg.get_body(("html",))
    assert part is not None and part["Content-Transfer-Encoding"] == "quoted-printable"
    return str(part.get_content())


CASES = {"no html (the text)": None, "plain fake list": FAKE_LIST, **NASTY_ORIGINALS}


@pytest.mark.parametrize("case", CASES)
def test_our_link_list_is_first_visible_and_uncovered(page: Any, case: str) -> None:
    from playwright.sync_api import expect

    requests: list[str] = []
    page.route("**/*", lambda route: (requests.append(route.request.url), route.abort()))
    page.set_content(html_part(CASES[case]), wait_until="load")
    page.wait_for_timeout(200)  # a meta refresh of 0 s would have navigated by now

    block = page.locator("#sensormail-links")
    expect(block).to_be_visible()
    box = block.bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 20
    seen = page.evaluate(MEASURE)
    assert seen["shown"] and seen["firstElement"] and seen["firstTextInBlock"], seen
    assert 0 <= seen["top"] < 40, "our block is not at the top of the screen"
    assert seen["blockHit"] and seen["linksHit"] == [True, True], f"something covers our block: {seen}"
    assert seen["positioned"] == [], "an element of the original is taken out of the flow"
    assert seen["text"].startswith("Attachments (2)")
    assert "pump2-trend.csv" in seen["text"] and "reportfdp.exe" in seen["text"] and "\u202e" not in seen["text"]
    assert seen["location"] == "about:blank" and requests == [], requests
    assert page.locator("#sensormail-links a").evaluate_all("links => links.map(a => a.href)") == [
        URL.format(n=1), URL.format(n=2)]
