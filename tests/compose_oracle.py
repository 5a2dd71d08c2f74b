"""The way compose_email built emails until it wrote the bytes itself (EmailMessage(policy=SMTP),
1.4 ms an email): the oracle of tests/unit/mail/test_compose.py and the "before" row of
bench/small_emails.py."""

from __future__ import annotations

from collections.abc import Sequence
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate

from worker.mail.compose import _clean_header, html_document, plain_body
from worker.mail.reader import Attachment


def compose_with_email_message(
    *, sender: str, recipients: Sequence[str], subject: str, text: str, html_body: str | None,
    attachments: Sequence[Attachment], source_id: str, note: str | None = None,
) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = _clean_header(sender)
    msg["To"] = ", ".join(_clean_header(r) for r in recipients)
    msg["Subject"] = _clean_header(subject) or "(no subject)"
    msg["Date"] = formatdate(usegmt=True)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Sensormail-Source"] = _clean_header(source_id)
    plain = plain_body(text, attachments, note)
    rich = html_document(text, html_body, attachments, note)
    msg.set_content(plain, cte="quoted-printable")
    msg.add_alternative(rich, subtype="html", cte="quoted-printable")
    return msg.as_bytes()
