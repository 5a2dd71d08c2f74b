"""Reads one raw email from a stream of chunks: bodies kept (bounded), attachments handed to a store.

The MIME parser says what each leaf part is; this module decides which leaf is the text body,
which the html body, and which are attachments (every other leaf, inline images included; a
`message/rfc822` part is one attachment stored whole as `.eml`). It hashes and counts each
attachment on the way, so the store only has to keep bytes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from typing import Protocol

import anyio

from worker.config import Limits
from worker.errors import MalformedEmail
from worker.mail.charsets import decode_bytes
from worker.mail.hashing import StreamHash
from worker.mail.headers import decode_header_value
from worker.mail.mime import Event, MessageHeaders, MimeParser, PartData, PartEnd, PartHeader, PartStart

logger = logging.getLogger(__name__)

# Chunks this large are parsed on a worker thread. Parsing costs ~1 ms a MiB for a normal email but
# up to ~0.2 ms a KB for one made of headers (docs/performance.md, bench/hostile.py): a small chunk
# stays under ~15 ms on the event loop, a larger one could hold it for hundreds of milliseconds.
# The thread hand-off (~0.1 ms) is not worth it for small emails, which arrive as one small chunk.
INLINE_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class StoredFile:
    """Where the store put an attachment, and the link that reaches it (None in a dry run)."""

    key: str | None
    url: str | None
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Attachment:
    n: int
    filename: str  # the original name, decoded; a generated one when the part had none
    content_type: str
    size: int
    sha256: str
    stored: StoredFile


class AttachmentWriter(Protocol):
    async def write(self, data: bytes) -> None: ...
    async def finish(self) -> StoredFile: ...
    async def abort(self) -> None: ...


class AttachmentStore(Protocol):
    async def open(self, n: int, filename: str, content_type: str) -> AttachmentWriter: ...


@dataclass(slots=True)
class ReadEmail:
    headers: Message
    subject: str
    sender: str
    text: str | None = None
    html: str | None = None
    body_truncated: bool = False  # a body over the limit: its first bytes here, the whole as a file
    attachments: list[Attachment] = field(default_factory=list)
    size: int = 0
    quarantine: str | None = None  # why nothing was stored and no link made


class DryRunStore:
    """Stores nothing: `sensormail inspect` only wants the names, sizes and hashes."""

    class _Writer:
        async def write(self, data: bytes) -> None:
            return None

        async def finish(self) -> StoredFile:
            return StoredFile(key=None, url=None, expires_at=None)

        async def abort(self) -> None:
            return None

    async def open(self, n: int, filename: str, content_type: str) -> AttachmentWriter:
        return self._Writer()


_EXTENSIONS = {
    "text/plain": ".txt",
    "text/html": ".html",
    "text/csv": ".csv",
    "message/rfc822": ".eml",
    "application/pdf": ".pdf",
    "application/json": ".json",
    "application/zip": ".zip",
    "application/octet-stream": ".bin",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
}


def attachment_name(part: PartHeader, n: int) -> str:
    """The name a recipient sees: the part's own, else `attachment-<n>` with a fitting extension."""
    ext = _EXTENSIONS.get(part.content_type, "")
    name = (part.filename or "").strip()
    if not name:
        if part.content_type == "message/rfc822":
            return f"message-{n}.eml"
        return f"attachment-{n}{ext or '.bin'}"
    if part.content_type == "message/rfc822" and not name.lower().endswith(".eml"):
        return name + ".eml"
    return name


def decode_text(data: bytes, charset: str | None) -> str:
    """Decode a body with its declared charset (Python's names, then WHATWG's labels); an unknown
    charset reads as UTF-8, and bad bytes never fail."""
    return decode_bytes(data, charset)


class _Body:
    """One body part being collected: in memory up to the limit, then also streamed as a file."""

    def __init__(self, kind: str, part: PartHeader, limit: int) -> None:
        self.kind = kind
        self.part = part
        self.limit = limit
        self.buffer = bytearray()
        self.overflow: _Upload | None = None


class _Upload:
    def __init__(self, n: int, filename: str, content_type: str, writer: AttachmentWriter) -> None:
        self.n = n
        self.filename = filename
        self.content_type = content_type
        self.writer = writer
        self.size = 0
        self.sha = StreamHash()

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        self.sha.update(data)
        await self.writer.write(data)

    async def finish(self) -> Attachment:
        stored = await self.writer.finish()
        return Attachment(self.n, self.filename, self.content_type, self.size, self.sha.hexdigest(), stored)


async def read_email(
    chunks: AsyncIterable[bytes],
    store: AttachmentStore,
    limits: Limits,
    screen: Callable[[Message], str | None] | None = None,
) -> ReadEmail:
    """Consume the raw email once, in order; memory is bounded by the limits, not the email.

    `screen` sees the top-level headers before any part: a reason it returns quarantines the
    email, and its attachments are then hashed but not stored.
    """
    parser = MimeParser(
        max_header_bytes=limits.max_header_bytes,
        max_depth=limits.max_depth,
        max_parts=limits.max_parts,
        max_total_header_bytes=limits.max_total_header_bytes,
    )
    email: ReadEmail | None = None
    body: _Body | None = None
    upload: _Upload | None = None
    size = 0

    async def handle(events: list[Event]) -> None:
        nonlocal email, body, upload, store
        for event in events:
            if isinstance(event, PartData):
                if body is not None:
                    await _add_to_body(body, event.data, store, email_or_fail(email))
                elif upload is not None:
                    await upload.write(event.data)
            elif isinstance(event, PartStart):
                current = email_or_fail(email)
                kind = _body_kind(event.part, current)
                if kind is not None:
                    body = _Body(kind, event.part, limits.max_body_bytes)
                else:
                    n = len(current.attachments) + 1
                    if n > limits.max_attachments:
                        raise MalformedEmail(f"more than {limits.max_attachments} attachments (max_attachments)")
                    name = attachment_name(event.part, n)
                    writer = await store.open(n, name, event.part.content_type)
                    upload = _Upload(n, name, event.part.content_type, writer)
            elif isinstance(event, PartEnd):
                current = email_or_fail(email)
                if body is not None:
                    await _finish_body(body, current)
                    body = None
                elif upload is not None:
                    current.attachments.append(await upload.finish())
                    upload = None
            elif isinstance(event, MessageHeaders):
                email = ReadEmail(
                    headers=event.headers,
                    subject=decode_header_value(event.headers.get("Subject")),
                    sender=decode_header_value(event.headers.get("From")),
                )
                if screen is not None and (reason := screen(event.headers)) is not None:
                    email.quarantine = reason
                    store = DryRunStore()

    try:
        async for chunk in chunks:
            size += len(chunk)
            if len(chunk) < INLINE_CHUNK_BYTES:
                await handle(parser.feed(chunk))
            else:  # the event loop stays free while a large chunk is parsed (see INLINE_CHUNK_BYTES)
                await handle(await anyio.to_thread.run_sync(parser.feed, chunk))
        await handle(parser.close())
    except BaseException:
        pending = upload.writer if upload else (body.overflow.writer if body and body.overflow else None)
        if pending is not None:
            # Shielded and bounded: a cancelled handler still cleans up, but never hangs on it.
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                try:
                    await pending.abort()
                except Exception:  # the bucket's lifecycle rule removes what is left
                    logger.warning("could not abort an unfinished upload", exc_info=True)
        raise
    result = email_or_fail(email)
    result.size = size
    return result


def email_or_fail(email: ReadEmail | None) -> ReadEmail:
    if email is None:  # the parser always sends the message headers first
        raise AssertionError("MIME events before the message headers")
    return email


def _body_kind(part: PartHeader, email: ReadEmail) -> str | None:
    """Which body this leaf is, as mail clients (and the standard library's get_body) choose.

    A leaf is an attachment when its disposition says so, or when it is not text/plain or
    text/html. A text leaf without a name is the body of its kind unless one was chosen. A named
    text leaf (`Content-Disposition: inline; filename=`, or `name=` with no disposition) is the body
    only when it is the email's first text leaf, as when a sensor sends its report as `alarm.txt`;
    after a body or an attachment it stays a file, where get_body would still take a named html
    part that follows a plain body (the email would lose the file the sender attached)."""
    if part.disposition == "attachment":
        return None
    if part.filename and (email.attachments or email.text is not None or email.html is not None):
        return None
    if part.content_type == "text/plain" and email.text is None:
        return "text"
    if part.content_type == "text/html" and email.html is None:
        return "html"
    return None


async def _add_to_body(body: _Body, data: bytes, store: AttachmentStore, email: ReadEmail) -> None:
    if body.overflow is not None:
        await body.overflow.write(data)
        return
    body.buffer += data
    if len(body.buffer) > body.limit:
        # Too large to keep: the whole part becomes a file too, and the body keeps its head.
        n = len(email.attachments) + 1
        name = (body.part.filename or "").strip() or (f"body-{n}.txt" if body.kind == "text" else f"body-{n}.html")
        writer = await store.open(n, name, body.part.content_type)
        body.overflow = _Upload(n, name, body.part.content_type, writer)
        await body.overflow.write(bytes(body.buffer))
        del body.buffer[body.limit :]


async def _finish_body(body: _Body, email: ReadEmail) -> None:
    text = decode_text(bytes(body.buffer), body.part.charset)
    if body.kind == "text":
        email.text = text
    else:
        email.html = text
    if body.overflow is not None:
        email.body_truncated = True
        email.attachments.append(await body.overflow.finish())
