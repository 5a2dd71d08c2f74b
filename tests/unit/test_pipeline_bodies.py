"""The pipeline's pure work on bodies runs off the event loop when the bodies are large."""

from __future__ import annotations

import threading
from email.message import Message

import pytest

from worker.mail.reader import INLINE_CHUNK_BYTES, ReadEmail
from worker.pipeline import on_bodies

pytestmark = pytest.mark.anyio


def email(text: str | None = None, html: str | None = None) -> ReadEmail:
    return ReadEmail(headers=Message(), subject="s", sender="device@example.com", text=text, html=html)


async def test_large_bodies_are_worked_on_off_the_event_loop() -> None:
    """1 MiB of html costs ~1 s to read for recipients and clean: on the loop it stalled every
    other email of the worker."""
    assert await on_bodies(email(text="Pump 2 alarm."), threading.current_thread) is threading.main_thread()
    large = email(text="x" * (INLINE_CHUNK_BYTES // 2), html="<p>x</p>" * (INLINE_CHUNK_BYTES // 16))
    assert await on_bodies(large, threading.current_thread) is not threading.main_thread()
