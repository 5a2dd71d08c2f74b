"""The pipeline's pure work on bodies runs off the event loop when the bodies are large."""

from __future__ import annotations

import threading
from email.message import Message

import pytest

from worker.mail import recipients as rcpt
from worker.mail.reader import INLINE_CHUNK_BYTES, ReadEmail
from worker.pipeline import on_bodies, visible_bodies

pytestmark = pytest.mark.anyio


def email(text: str | None = None, html: str | None = None) -> ReadEmail:
    return ReadEmail(headers=Message(), subject="s", sender="device@example.com", text=text, html=html)


async def test_large_bodies_are_worked_on_off_the_event_loop() -> None:
    """1 MiB of html costs ~1 s to read for recipients and clean: on the loop it stalled every
    other email of the worker."""
    assert await on_bodies(email(text="Pump 2 alarm."), threading.current_thread) is threading.main_thread()
    large = email(text="x" * (INLINE_CHUNK_BYTES // 2), html="<p>x</p>" * (INLINE_CHUNK_BYTES // 16))
    assert await on_bodies(large, threading.current_thread) is not threading.main_thread()


def test_an_html_body_is_read_once_for_recipients_and_once_after_its_block_is_cut() -> None:
    """Reading html as text costs ~0.2 s a MiB: the recipients, the removal of the block and the
    text of the result shared four readings; two are needed."""
    marker = ":Email_Rxers_Code:"
    html = "<table>" + "<tr><td>sensor 12</td><td>42.0</td></tr>\n" * 5000 + f"</table><p>{marker}a@example.com{marker}</p>"
    rcpt._parse_html.cache_clear()
    assert rcpt.choose_recipients(None, html, marker).block.recipients == ("a@example.com",)
    text, cleaned = visible_bodies(email(html=html), marker)
    assert marker not in text and cleaned is not None and marker not in cleaned
    assert rcpt._parse_html.cache_info().misses == 2
