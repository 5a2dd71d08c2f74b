"""The outbox page's views of whole emails: what SES was given to send, and the received headers.

These emails are small (a rebuilt notification, or the header block of a received one), so the
standard library's parser reads them whole; the worker's own streaming parser is for the bodies
that can be 40 MB.
"""

from __future__ import annotations

import email
import email.policy
import json
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from typing import Any


@dataclass(frozen=True, slots=True)
class SentView:
    headers: tuple[tuple[str, str], ...]
    text: str | None
    html: str | None
    raw: str

    @property
    def to(self) -> tuple[str, ...]:
        values = [v for k, v in self.headers if k.lower() == "to"]
        return tuple(a.strip() for value in values for a in value.split(",") if a.strip())

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k.lower() == name.lower()), "")


def sent_view(raw: str) -> SentView:
    msg = email.message_from_string(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return SentView(
        headers=tuple((name, str(value)) for name, value in msg.items()),
        text=_body(msg, "plain"),
        html=_body(msg, "html"),
        raw=raw,
    )


def _body(msg: EmailMessage, subtype: str) -> str | None:
    part = msg.get_body((subtype,))
    if part is None:
        return None
    content = part.get_content()
    return content.replace("\r\n", "\n") if isinstance(content, str) else None


def header_block(raw: bytes) -> tuple[tuple[str, str], ...]:
    """The top-level headers of a received email, in order, SES's own first, unfolded."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    head = raw if end < 0 else raw[:end]
    msg = BytesHeaderParser(policy=email.policy.default).parsebytes(head, headersonly=True)
    return tuple((name, str(value)) for name, value in msg.items())


def notice_json(raw: str | None) -> Any:
    """The published notice as an object (or its text when it is not JSON)."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw
