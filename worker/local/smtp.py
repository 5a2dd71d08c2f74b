"""An SMTP endpoint on 127.0.0.1 that stands in for SES inbound.

It accepts mail for the intake address only, and stores each message in the incoming bucket
under `incoming/<message id>` exactly as the SES receipt rule's S3 action would: the raw
message with SES's trace and verdict headers prepended. S3 then notifies the queue.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from worker.local.provision import INCOMING_PREFIX

logger = logging.getLogger(__name__)

# SES inbound refuses messages over 40 MB.
SES_INBOUND_MAX_BYTES = 40 * 1024 * 1024


def ses_message_id() -> str:
    """Like the ids SES gives received mail: 40 lowercase letters and digits."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(40))


def ses_headers(message_id: str, mail_from: str, rcpt: str, peer: str) -> bytes:
    """The headers SES adds in front of a received message (verdicts: all PASS locally)."""
    lines = [
        f"Return-Path: <{mail_from}>",
        f"Received: from [{peer}] by inbound-smtp.local.amazonaws.com with SMTP id {message_id}"
        f" for {rcpt}; {formatdate(usegmt=True)}",
        "X-SES-Spam-Verdict: PASS",
        "X-SES-Virus-Verdict: PASS",
        "Received-SPF: none (spfCheck: sensormail local stand-in) client-ip=127.0.0.1;",
        "Authentication-Results: amazonses.com; spf=none; dkim=none; dmarc=none;",
        f"X-SES-RECEIPT: local-{message_id[:16]}",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


class IntakeHandler:
    """aiosmtpd handler: RCPT only for the intake address, DATA stored in the incoming bucket."""

    def __init__(self, s3: Any, bucket: str, intake: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.intake = intake.lower()
        self.stored: list[str] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() != self.intake:
            return "550 5.1.1 Recipient address rejected: not a sensormail intake address"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        message_id = ses_message_id()
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        raw = ses_headers(message_id, envelope.mail_from or "", envelope.rcpt_tos[0], peer) + content
        key = INCOMING_PREFIX + message_id
        try:
            await self.s3.put_object(Bucket=self.bucket, Key=key, Body=raw)
        except Exception:
            logger.exception("could not store the received email")
            return "451 4.3.0 Temporary failure storing the message; try again"
        self.stored.append(key)
        logger.info("email received", extra={"s3_key": key, "bytes": len(raw), "from": envelope.mail_from})
        return f"250 Ok {message_id}"


@dataclass(slots=True)
class SmtpStandIn:
    server: asyncio.base_events.Server
    handler: IntakeHandler

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()


async def start_smtp(s3: Any, bucket: str, intake: str, port: int, host: str = "127.0.0.1") -> SmtpStandIn:
    handler = IntakeHandler(s3, bucket, intake)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="inbound-smtp.local", data_size_limit=SES_INBOUND_MAX_BYTES),
        host=host,
        port=port,
    )
    return SmtpStandIn(server, handler)
