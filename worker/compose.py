"""The outgoing email and the fallback notice, built from what was read; no I/O.

The email is `multipart/alternative` (text, html) from the configured sender, with the original
subject, the original body less the recipient block, and one link per stored attachment. Both
parts are quoted-printable, so a long pre-signed URL is never sent raw past 998 characters.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate

from worker.reader import Attachment

EXCERPT_CHARS = 500
# SNS accepts up to 256 KiB per message; keep a margin for the envelope.
MAX_NOTICE_BYTES = 240 * 1024


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "never"


def _clean_header(value: str) -> str:
    """Header values without CR, LF or other controls: nothing a device writes becomes a header."""
    return " ".join("".join(c if c.isprintable() else " " for c in value).split())


def links_text(attachments: Sequence[Attachment]) -> str:
    if not attachments:
        return ""
    lines = ["", "", f"Attachments ({len(attachments)}):"]
    for a in attachments:
        lines.append(f"- {a.filename} ({human_size(a.size)}, SHA-256 {a.sha256})")
        lines.append(f"  {a.stored.url or '(not stored)'}")
        lines.append(f"  link valid until {_when(a.stored.expires_at)}")
    return "\n".join(lines) + "\n"


def links_html(attachments: Sequence[Attachment]) -> str:
    if not attachments:
        return ""
    items = []
    for a in attachments:
        name = html.escape(a.filename)
        link = f'<a href="{html.escape(a.stored.url, quote=True)}">{name}</a>' if a.stored.url else name
        items.append(
            f"<li>{link} ({html.escape(human_size(a.size))}, SHA-256 <code>{a.sha256}</code>,"
            f" link valid until {html.escape(_when(a.stored.expires_at))})</li>"
        )
    return f"<h3>Attachments ({len(attachments)})</h3>\n<ul>\n" + "\n".join(items) + "\n</ul>\n"


def _html_body(text: str, original_html: str | None, links: str) -> str:
    if original_html is None:
        escaped = html.escape(text)
        return f'<!DOCTYPE html>\n<html><body>\n<pre style="white-space: pre-wrap">{escaped}</pre>\n{links}</body></html>\n'
    lowered = original_html.lower()
    at = lowered.rfind("</body>")
    if at == -1:
        return original_html + "\n" + links
    return original_html[:at] + links + original_html[at:]


def compose_email(
    *,
    sender: str,
    recipients: Sequence[str],
    subject: str,
    text: str,
    html_body: str | None,
    attachments: Sequence[Attachment],
    source_id: str,
    note: str | None = None,
) -> bytes:
    """The rebuilt email as bytes ready for SES; recipients go in `To:` (SES reads them there)."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = _clean_header(sender)
    msg["To"] = ", ".join(_clean_header(r) for r in recipients)
    msg["Subject"] = _clean_header(subject) or "(no subject)"
    msg["Date"] = formatdate(usegmt=True)
    # RFC 3834: a machine notification; out-of-office replies must not answer it.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Sensormail-Source"] = _clean_header(source_id)
    prefix = f"{note}\n\n" if note else ""
    plain = prefix + text.rstrip() + "\n" + links_text(attachments)
    rich = _html_body(prefix + text, html_body, links_html(attachments))
    msg.set_content(plain, cte="quoted-printable")
    msg.add_alternative(rich, subtype="html", cte="quoted-printable")
    return msg.as_bytes()


def fallback_notice(
    *,
    reason: str,
    sender: str,
    subject: str,
    raw_uri: str,
    message_id: str,
    text: str | None,
    attachments: Sequence[Attachment],
    rejected: Sequence[str] = (),
) -> tuple[str, str]:
    """(SNS subject, JSON message) for an email with no usable recipient list."""
    excerpt = " ".join((text or "").split())[:EXCERPT_CHARS]
    files: list[dict[str, object]] = [
        {
            "filename": a.filename,
            "content_type": a.content_type,
            "size": a.size,
            "sha256": a.sha256,
            "url": a.stored.url,
            "expires_at": a.stored.expires_at.isoformat() if a.stored.expires_at else None,
        }
        for a in attachments
    ]
    notice: dict[str, object] = {
        "reason": reason,
        "from": sender,
        "subject": subject,
        "message_id": message_id,
        "raw_email": raw_uri,
        "attachments": files,
        "rejected_recipients": list(rejected)[:50],
        "excerpt": excerpt,
    }
    body = json.dumps(notice, ensure_ascii=False)
    if len(body.encode()) > MAX_NOTICE_BYTES:
        # Keep as many attachment entries as fit; the rest are counted, and still in the bucket.
        budget = MAX_NOTICE_BYTES - len(json.dumps({**notice, "attachments": []}).encode()) - 64
        kept: list[dict[str, object]] = []
        for entry in files:
            budget -= len(json.dumps(entry, ensure_ascii=False).encode()) + 2
            if budget < 0:
                break
            kept.append(entry)
        notice["attachments"] = kept
        notice["attachments_omitted"] = len(files) - len(kept)
        body = json.dumps(notice, ensure_ascii=False)
    # SNS subjects: ASCII, no line breaks, under 100 characters.
    sns_subject = "".join(c for c in f"sensormail: {reason}: {subject}" if c.isascii() and c.isprintable())
    return sns_subject[:99].strip() or "sensormail fallback", body
