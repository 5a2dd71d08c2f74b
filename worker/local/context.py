"""What the outbox page's handlers share: the journal, the emulator's S3 client, the names revoke
needs, and one HTTP session for checking links."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from aiohttp import web
from botocore.exceptions import ClientError

from worker.local.journal import Entry, Journal


@dataclass(slots=True)
class Outbox:
    journal: Journal
    s3: Any
    attachments_bucket: str
    attachments_prefix: str
    http: aiohttp.ClientSession
    emulator: str  # "moto", "localstack", "external": said on the page

    @property
    def mode(self) -> Literal["here", "container"]:
        return self.journal.mode


OUTBOX = web.AppKey("outbox", Outbox)


def entry_or_404(request: web.Request) -> Entry:
    entry = request.app[OUTBOX].journal.get(request.match_info["id"])
    if entry is None:
        raise web.HTTPNotFound(text=f"no email {request.match_info['id']!r} in this outbox")
    return entry


async def fetch_raw(outbox: Outbox, entry: Entry) -> bytes:
    """The received email as the receipt rule stored it (SES caps it at 40 MB)."""
    if entry.bucket is None or entry.key is None:
        raise web.HTTPNotFound(text="where this email was stored is not known")
    try:
        response = await outbox.s3.get_object(Bucket=entry.bucket, Key=entry.key)
        async with response["Body"] as body:
            data: bytes = await body.read()
    except ClientError as error:
        raise web.HTTPNotFound(text=f"s3://{entry.bucket}/{entry.key}: {error}") from error
    return data
