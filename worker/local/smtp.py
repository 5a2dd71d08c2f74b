"""An SMTP endpoint on 127.0.0.1 that stands in for SES inbound.

It accepts mail for the intake address only, and stores each message in the incoming bucket
under `incoming/<message id>` exactly as the SES receipt rule's S3 action would: the raw
message with SES's trace and verdict headers prepended. S3 then notifies the queue.

Given a certificate and credentials it speaks like SES SMTP, so a device's settings can be tried
here as they will be used in production: STARTTLS on the main port (nothing but EHLO, STARTTLS,
NOOP and QUIT before it: "530 Must issue a STARTTLS command first"), implicit TLS on a second
port (465-style), AUTH LOGIN or PLAIN only over TLS, "535 Authentication Credentials Invalid"
for wrong credentials and "530 Authentication required" for MAIL without AUTH.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import formatdate, getaddresses
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from worker.local.provision import INCOMING_PREFIX

logger = logging.getLogger(__name__)


class _NoLoginDataNotice(logging.Filter):
    """aiosmtpd 1.4 logs a deprecation notice of its own on every successful AUTH."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_NoLoginDataNotice())

# SES inbound refuses messages over 40 MB.
SES_INBOUND_MAX_BYTES = 40 * 1024 * 1024
# What SES SMTP answers to wrong credentials and to MAIL before AUTH.
SES_AUTH_INVALID = "535 Authentication Credentials Invalid"
SES_AUTH_REQUIRED = "530 Authentication required"

# Told of each stored email: (SES message id, bucket, key, envelope sender, size, its headers).
OnStored = Callable[[str, str, str, str, int, Message], None]


def ses_message_id() -> str:
    """Like the ids SES gives received mail: 40 lowercase letters and digits."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(40))


def ses_headers(message_id: str, mail_from: str, rcpt: str, peer: str, device_domain: str | None = None) -> bytes:
    """The headers SES adds in front of a received message (spam and virus verdicts: PASS locally).

    `device_domain`: the email came from a device authenticated on SES SMTP, sending from that
    domain, set up as deploy/sending.yaml sets it (Easy DKIM, custom MAIL FROM, a DMARC record):
    SES signs for the domain, so DKIM and DMARC pass aligned, as docs/sending.md shows."""
    if device_domain:
        results = (f"Authentication-Results: amazonses.com; spf=pass (spfCheck: domain of mail.{device_domain}"
                   f" designates {peer} as permitted sender) client-ip={peer}; envelope-from={mail_from};"
                   f" dkim=pass header.i=@{device_domain}; dkim=pass header.i=@amazonses.com;"
                   f" dmarc=pass header.from={device_domain};")
    else:
        results = "Authentication-Results: amazonses.com; spf=none; dkim=none; dmarc=none;"
    lines = [
        f"Return-Path: <{mail_from}>",
        f"Received: from [{peer}] by inbound-smtp.local.amazonaws.com with SMTP id {message_id}"
        f" for {rcpt}; {formatdate(usegmt=True)}",
        "X-SES-Spam-Verdict: PASS",
        "X-SES-Virus-Verdict: PASS",
        "Received-SPF: none (spfCheck: sensormail local stand-in) client-ip=127.0.0.1;",
        results,
        f"X-SES-RECEIPT: local-{message_id[:16]}",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def _from_domain(content: bytes) -> str | None:
    """The domain of the email's one From address (SES signs for it); None when there is not one."""
    addresses = getaddresses(BytesHeaderParser().parsebytes(content).get_all("From", []))
    domains = {address.rpartition("@")[2].lower() for _, address in addresses if "@" in address}
    return domains.pop() if len(domains) == 1 else None


class IntakeHandler:
    """aiosmtpd handler: RCPT only for the intake address, DATA stored in the incoming bucket."""

    def __init__(self, s3: Any, bucket: str, intake: str, credentials: tuple[str, str] | None = None,
                 on_stored: OnStored | None = None) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.intake = intake.lower()
        self.credentials = credentials  # (user name, password); None: no AUTH, as before
        self.stored: list[str] = []
        self.on_stored = on_stored  # the outbox page's journal

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        """aiosmtpd authenticator for LOGIN and PLAIN: the one user name and password."""
        if self.credentials is not None and isinstance(auth_data, LoginPassword):
            user, password = (v.encode() for v in self.credentials)
            user_ok = hmac.compare_digest(auth_data.login, user)
            password_ok = hmac.compare_digest(auth_data.password, password)
            if user_ok and password_ok:
                return AuthResult(success=True, auth_data=auth_data)
        logger.warning("SMTP authentication refused", extra={"peer": str(session.peer)})
        return AuthResult(success=False, handled=False, message=SES_AUTH_INVALID)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self.credentials is not None and not session.authenticated:
            return SES_AUTH_REQUIRED
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

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
        device_domain = _from_domain(content) if session.authenticated else None
        raw = ses_headers(message_id, envelope.mail_from or "", envelope.rcpt_tos[0], peer, device_domain) + content
        key = INCOMING_PREFIX + message_id
        try:
            await self.s3.put_object(Bucket=self.bucket, Key=key, Body=raw)
        except Exception:
            logger.exception("could not store the received email")
            return "451 4.3.0 Temporary failure storing the message; try again"
        self.stored.append(key)
        if self.on_stored is not None:
            headers = BytesHeaderParser().parsebytes(raw, headersonly=True)
            self.on_stored(message_id, self.bucket, key, envelope.mail_from or "", len(raw), headers)
        logger.info("email received", extra={"s3_key": key, "bytes": len(raw), "from": envelope.mail_from})
        return f"250 Ok {message_id}"


@dataclass(slots=True)
class SmtpStandIn:
    server: asyncio.base_events.Server
    handler: IntakeHandler
    tls_server: asyncio.base_events.Server | None = None  # implicit TLS (465-style)

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def tls_port(self) -> int | None:
        return int(self.tls_server.sockets[0].getsockname()[1]) if self.tls_server is not None else None

    async def close(self) -> None:
        for server in (self.server, self.tls_server):
            if server is not None:
                server.close()
                await server.wait_closed()


async def start_smtp(
    s3: Any,
    bucket: str,
    intake: str,
    port: int,
    host: str = "127.0.0.1",
    *,
    tls: ssl.SSLContext | None = None,
    credentials: tuple[str, str] | None = None,
    tls_port: int | None = None,
    on_stored: OnStored | None = None,
) -> SmtpStandIn:
    """Plain SMTP without `tls`; with it, STARTTLS required on `port` and, when `tls_port` is not
    None, implicit TLS there (0: any free port). `credentials` make AUTH required."""
    handler = IntakeHandler(s3, bucket, intake, credentials, on_stored)
    auth: dict[str, Any] = {"authenticator": handler.authenticate} if credentials is not None else {}
    loop = asyncio.get_running_loop()

    def session(**extra: Any) -> SMTP:
        return SMTP(handler, hostname="inbound-smtp.local", data_size_limit=SES_INBOUND_MAX_BYTES, **auth, **extra)

    server = await loop.create_server(
        lambda: session(tls_context=tls, require_starttls=tls is not None), host=host, port=port
    )
    tls_server = None
    if tls is not None and tls_port is not None:
        # The whole connection is TLS: AUTH may come at once.
        tls_server = await loop.create_server(
            lambda: session(auth_require_tls=False), host=host, port=tls_port, ssl=tls
        )
    return SmtpStandIn(server, handler, tls_server)
