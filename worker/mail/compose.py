"""The outgoing email and the fallback notice, built from what was read; no I/O.

The email is `multipart/alternative` (text, html) from the configured sender, with the original
subject. Both parts put what we wrote first (a note, the list of links to the stored attachments,
names through `display_name`) and the device's body after it, under an "Original message" line.
The html part is a document of ours: our block, then the original html, sanitised
(worker/mail/sanitize.py), in an element of its own that it cannot close, hide or cover. Both
parts are quoted-printable, so a long pre-signed URL is never sent raw past 998 characters.
"""

from __future__ import annotations

import binascii
import html
import json
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from email.header import Header
from email.policy import SMTP
from email.utils import format_datetime
from functools import lru_cache

from worker.mail.reader import Attachment
from worker.mail.sanitize import display_name, sanitize_html

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
    """Our link list in the text part; each name is one visible line (`display_name`)."""
    if not attachments:
        return ""
    lines = [f"Attachments ({len(attachments)}):"]
    for a in attachments:
        lines.append(f"- {display_name(a.filename)} ({human_size(a.size)}, SHA-256 {a.sha256})")
        lines.append(f"  {a.stored.url or '(not stored)'}")
        lines.append(f"  link valid until {_when(a.stored.expires_at)}")
    return "\n".join(lines) + "\n"


def links_html(attachments: Sequence[Attachment]) -> str:
    if not attachments:
        return ""
    items = []
    for a in attachments:
        name = html.escape(display_name(a.filename))
        link = f'<a href="{html.escape(a.stored.url, quote=True)}">{name}</a>' if a.stored.url else name
        items.append(
            f"<li>{link} ({html.escape(human_size(a.size))}, SHA-256 <code>{a.sha256}</code>,"
            f" link valid until {html.escape(_when(a.stored.expires_at))})</li>"
        )
    return (
        f'<h3 style="margin:0 0 8px 0">Attachments ({len(attachments)})</h3>\n<ul style="margin:0">\n'
        + "\n".join(items)
        + "\n</ul>\n"
    )


# Between what we wrote and what the device wrote, in both parts.
ORIGINAL_MESSAGE = "---------- Original message ----------"
BLOCK_ID = "sensormail-links"
SEPARATOR_ID = "sensormail-separator"
TOO_MUCH_MARKUP = "The message's html has too much markup to show safely here; its text follows."
ORIGINAL_ID = "sensormail-original"


def plain_body(text: str, attachments: Sequence[Attachment], note: str | None) -> str:
    """The text part: our note and link list first, then the original text under a separator line."""
    ours = "\n".join(piece for piece in (f"{note}\n" if note else "", links_text(attachments)) if piece)
    if not ours:
        return text.rstrip() + "\n"
    return f"{ours}\n{ORIGINAL_MESSAGE}\n\n{text.rstrip()}\n"


def html_document(text: str, original_html: str | None, attachments: Sequence[Attachment], note: str | None) -> str:
    """The html part: a document of ours with our block first, then the original in its own element.

    The original is sanitised (worker/mail/sanitize.py), whose output is balanced: it cannot close
    the element around it (an original with more markup than the sanitiser takes is shown as its
    text, with a note), and its styles cannot take anything out of it. `overflow:auto` clips
    what might still be drawn outside (and scrolls a wide table) and, as a new block formatting
    context, keeps the original's margins from collapsing through it.
    """
    inner = sanitize_html(original_html) if original_html is not None else None
    if original_html is not None and inner is None:
        note = " ".join(filter(None, (note, TOO_MUCH_MARKUP)))
    if inner is None:
        inner = f'<pre style="white-space:pre-wrap;margin:0">{html.escape(text)}</pre>'
    ours = (f"<p style=\"margin:0 0 8px 0\">{html.escape(note)}</p>\n" if note else "") + links_html(attachments)
    block = (
        f'<div id="{BLOCK_ID}" style="border:1px solid #888;padding:8px 12px;margin:0 0 12px 0;'
        f'font-family:sans-serif;font-size:14px;color:#000;background:#fff">\n{ours}</div>\n'
        f'<p id="{SEPARATOR_ID}" style="margin:0 0 8px 0;font-family:sans-serif;font-size:12px;color:#555">'
        f"{ORIGINAL_MESSAGE}</p>\n"
        if ours
        else ""
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n<body style="margin:8px">\n'
        f'{block}<div id="{ORIGINAL_ID}" style="overflow:auto">\n{inner}\n</div>\n</body></html>\n'
    )


_CRLF = "\r\n"
# RFC 5322 2.1.1: a line MUST be at most 998 characters and SHOULD be at most 78.
_FOLD_AT = 78
_MAX_LINE = 998


def _fold(name: str, value: str, limit: int) -> str | None:
    """`Name: value` CRLF, folded before spaces into lines of at most 78 where words allow.

    Folding only inserts CRLF before a space that is already there, and a reader unfolds by
    removing the CRLF, so the value reads back exactly. None when a word alone would make a line
    longer than `limit`.
    """
    line = f"{name}: {value}"
    if len(line) <= _FOLD_AT:
        return line + _CRLF
    lines: list[str] = []
    current = f"{name}:"
    for n, word in enumerate(value.split(" ")):
        if n and word and len(current) + 1 + len(word) > _FOLD_AT:  # never a blank line
            lines.append(current)
            current = ""
        current += " " + word
    lines.append(current)
    if max(map(len, lines)) > limit:
        return None
    return _CRLF.join(lines) + _CRLF


def _header(name: str, value: str) -> str:
    """An unstructured header (Subject, X-...) from a value already through `_clean_header`.

    Plain ASCII folds at its spaces; anything else, or a word too long for a line of 78, is
    encoded.
    """
    if value.isascii() and "=?" not in value:
        folded = _fold(name, value, _FOLD_AT)
        if folded is not None:
            return folded
    # RFC 2047: the whole value as UTF-8 encoded words of at most 76 characters a line. Text that
    # only looks like an encoded word ("=?...?=") is encoded too, so it reads back as written.
    return f"{name}: {Header(value, 'utf-8', header_name=name).encode(linesep=_CRLF)}\r\n"


def _to_header(recipients: Sequence[str]) -> str:
    """`To:` folded after the commas; validated ASCII addresses are written as they are."""
    value = ", ".join(_clean_header(r) for r in recipients)
    if value.isascii() and "=?" not in value:
        folded = _fold("To", value, _MAX_LINE)  # an address can be 254 characters; never split
        if folded is not None:
            return folded
    return _registry_fold("To", value)


@lru_cache(maxsize=64)
def _registry_fold(name: str, value: str) -> str:
    """An address header as `EmailMessage(policy=SMTP)` writes it (RFC 2047 display names).

    For the sender, the same on every email and free-form (`Name <address>`, quoted names,
    non-ASCII names), and for addresses that are not ASCII: the standard library's address parser
    and folder, about 0.2 ms, once per distinct value.
    """
    return str(SMTP.header_factory(name, value).fold(policy=SMTP))


def _quoted_printable(text: str) -> bytes:
    """UTF-8 quoted-printable in CRLF lines of at most 76 characters, as `set_content` writes it.

    As there, CRLF, LF and a lone CR each end a line and the text ends with a line break. `b2a_qp`
    encodes trailing spaces and tabs, controls, "=" and a line that is only "."; "From " at the
    start of a line is left alone (SES adds no mbox "From " lines).
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    return binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")


def _part_head(boundary: str, subtype: str) -> bytes:
    return (
        f"--{boundary}\r\n"
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode("ascii")


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
    """The rebuilt email as bytes ready for SES; recipients go in `To:` (SES reads them there).

    Written directly: `EmailMessage(policy=SMTP)` parses every header on assignment and folds it
    again when writing, 1.4 ms an email (bench/small_emails.py), for the same result.
    tests/compose_oracle.py keeps that way as the oracle: the standard library reads the same
    from both.
    """
    plain = plain_body(text, attachments, note)
    rich = html_document(text, html_body, attachments, note)
    # Quoted-printable writes every "=" of the text as "=3D", and "=" otherwise only before two hex
    # digits or at the end of a line: no body line can contain "=_", so a boundary beginning with
    # "=_" cannot occur inside a part whatever the text says. The random rest keeps it apart
    # from the boundaries of any email this one is later quoted or forwarded in.
    boundary = "=_" + secrets.token_hex(16)
    head = (
        _registry_fold("From", _clean_header(sender))
        + _to_header(recipients)
        + _header("Subject", _clean_header(subject) or "(no subject)")
        + f"Date: {format_datetime(datetime.now(UTC))}\r\n"  # "+0000"; "GMT" is obsolete syntax
        # RFC 3834: a machine notification; out-of-office replies must not answer it.
        + "Auto-Submitted: auto-generated\r\n"
        + _header("X-Sensormail-Source", _clean_header(source_id))
        + "MIME-Version: 1.0\r\n"
        + f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'
    )
    # Each body ends with its own line break; the CRLF before a delimiter belongs to the delimiter
    # (RFC 2046 5.1.1), not to the part, so the body's last line break is kept when read.
    return b"".join((
        head.encode("ascii"),
        _part_head(boundary, "plain"),
        _quoted_printable(plain),
        b"\r\n",
        _part_head(boundary, "html"),
        _quoted_printable(rich),
        f"\r\n--{boundary}--\r\n".encode("ascii"),
    ))


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
