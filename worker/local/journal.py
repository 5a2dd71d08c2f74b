"""The outbox page's memory: each email's journey, from SMTP to its outcome, in this process only.

Three feeds write to it, whichever arrive first:

- the SMTP stand-in, when it stores a received email in the incoming bucket (`received`);
- the worker in this process, with its `Outcome` once the email is settled (`outcome`): the
  recipients found and dropped, the attachments with their links, the step timings;
- what the emulator holds (`observed`, from `observe.Observer`): the email SES sent, the notice as
  the fallback topic published it, the reason the DLQ got. A worker in a container only reaches
  the page through this feed (and the SMTP one).

An entry is keyed by the received email's SES id. A duplicate event is an entry of its own
(`<id>~duplicate-<n>`) that points back at the email it repeated. Nothing here does I/O.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from typing import Literal

import anyio

from worker.local.observe import Handled
from worker.mail.headers import decode_header_value
from worker.pipeline import Outcome

Status = Literal["received", "sent", "fallback", "quarantined", "dlq", "duplicate"]
OUTCOMES: tuple[Status, ...] = ("sent", "fallback", "quarantined", "dlq", "duplicate")
MAX_ENTRIES = 1000  # oldest forgotten first; a local page, not an archive
MAX_PENDING = 200  # observations of emails not (yet) known here, e.g. left in the DLQ by an earlier run
# What worker/mail/policy.py's screen() returns: a notice with one of these reasons is a quarantine.
QUARANTINE_REASONS = ("virus verdict", "spam verdict", "sender not allowed", "sender failed SPF")
_DROPPED = re.compile(r"^(?P<address>.*?) \((?P<reason>[^()]*(?:\([^()]*\)[^()]*)*)\)$")


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class FileLink:
    """One stored attachment and its link. Container mode knows only name, hash and link."""

    filename: str
    sha256: str
    url: str | None
    n: int | None = None
    content_type: str | None = None
    size: int | None = None
    key: str | None = None
    expires_at: datetime | None = None


@dataclass(slots=True)
class Entry:
    id: str
    source_id: str  # the received email's SES id (the object `incoming/<source_id>`)
    seq: int = 0  # order first seen; the list is newest first
    version: int = 0  # the journal's version when this entry last changed
    status: Status = "received"
    received_at: datetime | None = None
    handled_at: datetime | None = None
    bucket: str | None = None
    key: str | None = None
    envelope_from: str = ""
    size: int = 0
    sender: str = ""
    subject: str = ""
    reason: str | None = None
    recipients: tuple[str, ...] = ()
    dropped: tuple[tuple[str, str], ...] = ()  # (address or token, why)
    attachments: list[FileLink] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)  # each SES send's source, as the emulator holds it
    notice: str | None = None  # the fallback notice's JSON, as published
    dlq_body: str | None = None
    timings: tuple[tuple[str, float], ...] = ()
    duplicate_of: str | None = None
    revoked_at: datetime | None = None

    @property
    def time(self) -> datetime | None:
        return self.received_at or self.handled_at

    def matches(self, outcome: str | None, query: str | None) -> bool:
        if outcome and self.status != outcome:
            return False
        if query:
            q = query.casefold()
            return q in self.subject.casefold() or q in self.sender.casefold() or q in self.envelope_from.casefold()
        return True


def is_quarantine(reason: str | None) -> bool:
    return bool(reason) and str(reason).startswith(QUARANTINE_REASONS)


def dropped_reasons(items: tuple[str, ...] | list[str]) -> tuple[tuple[str, str], ...]:
    """The worker's "address (why)" strings as pairs; a bare token was not a valid address."""
    pairs = []
    for item in items:
        m = _DROPPED.match(item)
        pairs.append((m["address"], m["reason"]) if m else (item, "not a valid address"))
    return tuple(pairs)


class Journal:
    def __init__(self, mode: Literal["here", "container"] = "here") -> None:
        self.mode = mode
        self.version = 0
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._pending: OrderedDict[str, list[Handled]] = OrderedDict()
        self._changed = anyio.Event()
        self._seq = 0
        self.closed = False

    # --- the feeds ---------------------------------------------------------------------------

    def received(self, message_id: str, bucket: str, key: str, envelope_from: str, size: int,
                 headers: Message) -> None:
        """The SMTP stand-in stored an email; `headers` are its top-level ones (SES's included)."""
        entry = self._entry(message_id)
        entry.received_at, entry.bucket, entry.key = now(), bucket, key
        entry.envelope_from, entry.size = envelope_from, size
        entry.sender = entry.sender or decode_header_value(headers.get("From"))
        entry.subject = entry.subject or decode_header_value(headers.get("Subject"))
        self._touch(entry)

    def outcome(self, outcome: Outcome) -> None:
        source = outcome.ref.message_id
        if outcome.kind == "duplicate":
            original = self._entries.get(source)
            n = sum(1 for e in self._entries.values() if e.duplicate_of == source) + 1
            entry = self._entry(f"{source}~duplicate-{n}", source)
            entry.duplicate_of, entry.status, entry.reason = source, "duplicate", outcome.reason
            if original is not None:
                entry.sender, entry.subject, entry.size = original.sender, original.subject, original.size
                entry.envelope_from = original.envelope_from
        else:
            entry = self._entry(source)
            entry.status = "quarantined" if outcome.quarantined else outcome.kind
            entry.reason, entry.sender, entry.subject = outcome.reason, outcome.sender, outcome.subject
            entry.size = outcome.size or entry.size
            entry.recipients = outcome.recipients
            entry.dropped = dropped_reasons(outcome.rejected + outcome.skipped)
            entry.attachments = [
                FileLink(filename=a.filename, sha256=a.sha256, url=a.stored.url, n=a.n, content_type=a.content_type,
                         size=a.size, key=a.stored.key, expires_at=a.stored.expires_at)
                for a in outcome.attachments
            ]
        entry.bucket, entry.key = outcome.ref.bucket, outcome.ref.key
        entry.timings, entry.handled_at = outcome.timings, now()
        self._touch(entry)

    def observed(self, item: Handled) -> None:
        if item.message_id is None:
            return
        if item.message_id not in self._entries and self.mode == "here":
            # Not (yet) known: the SES send lands before the worker's outcome; keep it for then.
            self._pending.setdefault(item.message_id, []).append(item)
            while len(self._pending) > MAX_PENDING:
                self._pending.popitem(last=False)
            return
        self._apply(self._entry(item.message_id), item)

    def revoked(self, entry_id: str) -> None:
        entry = self._entries[entry_id]
        entry.revoked_at = now()
        self._touch(entry)

    def close(self) -> None:
        """Wakes every waiter for good (the server is stopping)."""
        self.closed = True
        self._changed.set()

    # --- reading -----------------------------------------------------------------------------

    def get(self, entry_id: str) -> Entry | None:
        return self._entries.get(entry_id)

    def entries(self, outcome: str | None = None, query: str | None = None) -> list[Entry]:
        """Newest first."""
        return [e for e in reversed(self._entries.values()) if e.matches(outcome, query)]

    def changed_since(self, version: int) -> list[Entry]:
        return sorted((e for e in self._entries.values() if e.version > version), key=lambda e: e.seq)

    async def wait(self, version: int, timeout_s: float) -> bool:
        """True once the journal is past `version` (at once if it already is); False on timeout."""
        with anyio.move_on_after(timeout_s):
            while self.version <= version and not self.closed:
                await self._changed.wait()
        return self.version > version

    # --- inside ------------------------------------------------------------------------------

    def _entry(self, entry_id: str, source_id: str | None = None) -> Entry:
        entry = self._entries.get(entry_id)
        if entry is None:
            self._seq += 1
            entry = self._entries[entry_id] = Entry(id=entry_id, source_id=source_id or entry_id, seq=self._seq)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)
            for item in self._pending.pop(entry_id, []):
                self._apply(entry, item)
        return entry

    def _apply(self, entry: Entry, item: Handled) -> None:
        decided = entry.status != "received"  # the worker's own outcome is better than a guess
        if item.kind == "sent" and item.raw is not None:
            entry.sent.append(item.raw)
            if not decided:
                entry.status, entry.recipients = "sent", item.recipients
        elif item.kind == "fallback":
            entry.notice = item.raw
            if not decided:
                entry.status = "quarantined" if is_quarantine(item.reason) else "fallback"
                entry.subject, entry.reason = entry.subject or item.subject, item.reason
        elif item.kind == "dlq":
            entry.dlq_body = item.raw
            if not decided or entry.status == "dlq":
                entry.status, entry.reason = "dlq", item.reason
        if not decided and not entry.attachments:
            entry.attachments = [FileLink(filename=link.filename, sha256=link.sha256, url=link.url) for link in item.links]
        entry.handled_at = entry.handled_at or now()
        self._touch(entry)

    def _touch(self, entry: Entry) -> None:
        self.version += 1
        entry.version = self.version
        self._changed.set()
        self._changed = anyio.Event()
