"""Starts the outbox page for `sensormail local` and keeps its journal fed from the emulator.

The SMTP stand-in and (when the worker runs in this process) the worker's outcomes write to the
journal directly, and so does the worker's SES client here: each email SES accepts is recorded as
it was given to SES (`capture_sends`, through botocore's event hooks), whatever the emulator. This
module adds what only the emulator holds, polled twice a second: the fallback topic's notices and
the DLQ's messages. When the worker runs in a container, `run.py`'s own loop polls an `Observer`
that also reads the emails SES sent back from the emulator, and feeds the journal instead.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiohttp
import anyio

from worker.config import Settings
from worker.errors import describe
from worker.local.context import Outbox
from worker.local.journal import Journal
from worker.local.observe import Observer, read_sent
from worker.local.web import DEFAULT_PORT, OutboxUnavailable, serve_web

logger = logging.getLogger(__name__)
POLL_S = 0.5


def capture_sends(ses: Any, journal: Journal) -> None:
    """Records each raw email the worker's SES client here gets accepted (SESv2 SendEmail or
    SES v1 SendRawEmail); the parameters are stashed in the request's context until the answer."""

    def before(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        raw = params.get("Content", {}).get("Raw", {}).get("Data") or params.get("RawMessage", {}).get("Data")
        if raw is not None:
            context["sensormail_outbox_raw"] = raw

    def after(http_response: Any, context: dict[str, Any], **_: Any) -> None:
        raw = context.get("sensormail_outbox_raw")
        if raw is not None and getattr(http_response, "status_code", 500) < 300:
            journal.observed(read_sent(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)))

    for operation in ("sesv2.SendEmail", "ses.SendRawEmail"):
        ses.meta.events.register(f"before-parameter-build.{operation}", before)
        ses.meta.events.register(f"after-call.{operation}", after)


async def feed(journal: Journal, observer: Observer) -> None:
    while True:
        try:
            for item in await observer.poll():
                journal.observed(item)
        except Exception as error:  # the emulator may be busy or going away; the page can wait
            logger.warning("outbox: cannot read the emulator", extra={"error": describe(error)})
        await anyio.sleep(POLL_S)


@asynccontextmanager
async def open_outbox(
    port: int | None, journal: Journal, s3: object, settings: Settings, emulator: str, observer: Observer | None
) -> AsyncIterator[str | None]:
    """Serves the page while the block runs; yields its address, or None when it could not start.

    `port` None is the default port, given up with a notice when it is taken (another
    `sensormail local`, Mailpit, MailHog); a port asked for explicitly must be free."""
    outbox_port = DEFAULT_PORT if port is None else port
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        outbox = Outbox(journal, s3, settings.attachments_bucket, settings.attachments_prefix, http, emulator)
        try:
            url = await stack.enter_async_context(serve_web(outbox, outbox_port))
        except OutboxUnavailable as error:
            if port is not None:
                raise
            logger.warning(f"{error}; going on without it")
            url = None
        tasks = await stack.enter_async_context(anyio.create_task_group())
        if observer is not None and url is not None:
            tasks.start_soon(feed, journal, observer)
        try:
            yield url
        finally:
            tasks.cancel_scope.cancel()
