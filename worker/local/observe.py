"""What the worker did, read back from the emulator's APIs: the emails SES sent, the notices on the
fallback topic (through the queue subscribed to it) and the messages in the DLQ.

`sensormail local` uses this when the worker runs elsewhere (the container image), where no
in-process outcome reaches it, and for its outbox page in both modes: the email as SES got it, the
notice as it was published, the reason the DLQ holds. Each item names the SES id of the received
email it came from (`message_id`), so the page can join it to that email's journey.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Literal

import anyio

from worker.errors import WorkerError
from worker.events import S3ObjectRef, decode_body
from worker.local.emulator import Emulator, sent_emails
from worker.local.provision import LocalResources
from worker.mail.compose import ORIGINAL_MESSAGE

DLQ_PEEK_VISIBILITY_S = 10
# The link list of the outgoing text part (worker/mail/compose.py: links_text), read only above the
# "Original message" line: lines below it are the device's and could look like links.
_LINK_RE = re.compile(r"^- (?P<name>.+) \((?P<size>[^,]+), SHA-256 (?P<sha>[0-9a-f]{64})\)\n  (?P<url>\S+)$", re.M)


@dataclass(frozen=True, slots=True)
class Link:
    filename: str
    url: str | None
    sha256: str


@dataclass(frozen=True, slots=True)
class Handled:
    kind: Literal["sent", "fallback", "dlq"]
    subject: str
    recipients: tuple[str, ...] = ()
    reason: str | None = None
    links: tuple[Link, ...] = ()
    message_id: str | None = None  # the received email's SES id, when it can be told
    raw: str | None = None  # the sent email's source, or the notice's JSON, as the emulator holds it


def read_sent(raw: str) -> Handled:
    msg = email.message_from_string(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    body = msg.get_body(("plain",))
    text = str(body.get_content()).replace("\r\n", "\n") if body is not None else ""
    ours, separator, _ = text.partition(f"\n{ORIGINAL_MESSAGE}\n")
    text = ours if separator else ""
    return Handled(
        kind="sent",
        subject=str(msg["Subject"] or ""),
        recipients=tuple(a.strip() for a in str(msg["To"] or "").split(",") if a.strip()),
        links=tuple(Link(m["name"], m["url"], m["sha"]) for m in _LINK_RE.finditer(text)),
        message_id=str(msg["X-Sensormail-Source"] or "") or None,
        raw=raw,
    )


def read_notice(body: str) -> Handled:
    notice: dict[str, Any] = json.loads(body)
    return Handled(
        kind="fallback",
        subject=str(notice.get("subject", "")),
        reason=str(notice.get("reason", "")),
        links=tuple(Link(str(a["filename"]), a.get("url"), str(a["sha256"])) for a in notice.get("attachments", [])),
        message_id=str(notice.get("message_id") or "") or None,
        raw=body,
    )


def dlq_message_id(body: str) -> str | None:
    """The SES id of the email a DLQ message was about (its body is the original S3 event)."""
    try:
        refs = [item for item in decode_body(body) if isinstance(item, S3ObjectRef)]
    except WorkerError:
        return None  # a bad event is in the DLQ for that very reason
    return refs[0].message_id if refs else None


class Observer:
    """Yields each handled email once, as it appears."""

    def __init__(self, emulator: Emulator, sqs: Any, resources: LocalResources, *, read_sent: bool = True) -> None:
        """`read_sent` False: the emails SES sent are learnt elsewhere (`outbox.capture_sends`)."""
        self._emulator, self._sqs, self._resources = emulator, sqs, resources
        self._read_sent = read_sent
        self._sent = len(sent_emails(emulator)) if read_sent else 0  # only what is sent from now on
        self._dead: set[str] = set()

    async def poll(self) -> list[Handled]:
        found = []
        if self._read_sent:
            sent = await anyio.to_thread.run_sync(sent_emails, self._emulator)
            found += [read_sent(item["raw"]) for item in sent[self._sent:]]
            self._sent = len(sent)
        for message in await self._receive(self._resources.fallback_inbox_url, 0):
            found.append(read_notice(message["Body"]))
            await self._sqs.delete_message(QueueUrl=self._resources.fallback_inbox_url,
                                           ReceiptHandle=message["ReceiptHandle"])
        # DLQ messages stay where they are (an operator redrives them): each is seen once here
        # (by its id) and hidden only briefly, so `sensormail redrive` finds it again within seconds.
        for message in await self._receive(self._resources.dlq_url, DLQ_PEEK_VISIBILITY_S):
            if message["MessageId"] not in self._dead:
                self._dead.add(message["MessageId"])
                reason = message.get("MessageAttributes", {}).get("sensormail.reason", {}).get("StringValue")
                found.append(Handled(kind="dlq", subject="", reason=reason or "no reason recorded",
                                     message_id=dlq_message_id(message["Body"]), raw=message["Body"]))
        return found

    async def _receive(self, url: str, visibility_s: int) -> list[dict[str, Any]]:
        response = await self._sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageAttributeNames=["All"],
            **({"VisibilityTimeout": visibility_s} if visibility_s else {}),
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages
