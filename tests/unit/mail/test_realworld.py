"""`sensormail inspect` against the standard library on real emails (tests/data/realworld, see its
README for the sources and licenses).

For every email, our view (subject, text body, recipients, and each attachment's name, content
type, size and SHA-256) is compared with what `email.message_from_bytes(raw, policy=default)`
gives: `get_body(("plain",))` for the text, `get_body(("html",))` for the html, and every other
leaf in walk() order (a message/* part is one leaf) for the attachments. Each difference we know
of is listed in KNOWN with its class, who is right and why; a new difference fails, and so does
a listed one that went away (the list must say what the code does).
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import anyio
import pytest

from worker.cli import inspect_report
from worker.config import Limits
from worker.mail.reader import DryRunStore, read_email
from worker.mail.recipients import choose_recipients

CORPUS = Path(__file__).parents[2] / "data" / "realworld"
EMAILS = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.parent.name != "LICENSES" and not p.name.startswith((".", "README")))
MARKER = ":Email_Rxers_Code:"

_UNKNOWN_CHARSET = (
    "unknown charset. The standard library's get_content() raises LookupError, so a client built on "
    "it shows nothing; we read the body as UTF-8 (ours is right: the text is readable, the recipients "
    "could be found)."
)
KNOWN: dict[tuple[str, str], str] = {
    ("django-mailbox/message_with_invalid_encoding.eml", "text"): (
        'charset="_iso-2022-jp$ESC": ' + _UNKNOWN_CHARSET + " The body is ASCII, so UTF-8 reads it exactly."
    ),
    ("flufl.bounce/qmail_08.txt", "text"): (
        "charset=ansi_x3.110-1983 (known to neither Python nor the WHATWG table): " + _UNKNOWN_CHARSET
        + " Its one Latin-1 byte becomes U+FFFD; the rest reads."
    ),
    ("mail-parser/mail_outlook_1.eml", "text"): (
        "8-bit text without a charset: this file is no MIME email but an Outlook .msg (an OLE compound "
        "file), so the whole of it is a text/plain body without a charset. The standard library decodes "
        "it as ASCII, we as UTF-8 (deliberately, for 8-bit text from devices that declare nothing); "
        "both with replacement characters, neither meaningful."
    ),
    ("mail-parser/mail_test_6.eml", "subject"): (
        "a header folded right after its colon ('Subject:' CRLF ' =?UTF-8?B?...'): policy.default keeps "
        "the fold's blank as a leading space; the blank after the colon is no content, and mail "
        "clients show the subject without it, as we do."
    ),
}


def _leaves(msg: EmailMessage) -> list[EmailMessage]:
    if msg.is_multipart() and msg.get_content_maintype() != "message":
        return [leaf for part in msg.iter_parts() for leaf in _leaves(part)]  # type: ignore[arg-type]
    return [msg]


def _content(part: EmailMessage | None) -> str | None:
    if part is None:
        return None
    try:
        return str(part.get_content())
    except LookupError:
        return "<LookupError>"


def stdlib_view(raw: bytes) -> dict[str, Any]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
    text = _content(plain)  # type: ignore[arg-type]
    attachments: list[tuple[str | None, str, int | None, str | None]] = []
    for part in _leaves(msg):
        if part is plain or part is html:
            continue
        if part.get_content_maintype() == "message":
            # parsed, not kept as bytes: only its name and type compare
            attachments.append((part.get_filename(), part.get_content_type(), None, None))
            continue
        data = part.get_payload(decode=True) or b""
        assert isinstance(data, bytes)
        attachments.append((part.get_filename(), part.get_content_type(), len(data), hashlib.sha256(data).hexdigest()))
    return {
        "subject": str(msg["subject"] or ""),
        "text": text,
        "recipients": list(choose_recipients(text, _content(html), MARKER).block.recipients),  # type: ignore[arg-type]
        "attachments": attachments,
    }


def our_view(raw: bytes, chunk: int) -> dict[str, Any]:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(raw), chunk):
            yield raw[i : i + chunk]

    async def go() -> dict[str, Any]:
        return inspect_report(await read_email(chunks(), DryRunStore(), Limits()), MARKER)

    report = anyio.run(go)
    return {
        "subject": report["subject"],
        "text": report["text"],
        "recipients": report["recipients"],
        "attachments": [(a["filename"], a["content_type"], a["size"], a["sha256"]) for a in report["attachments"]],
    }


def _same_attachment(ours: tuple[Any, ...], std: tuple[Any, ...]) -> bool:
    name, ctype, size, sha = ours
    std_name, std_ctype, std_size, std_sha = std
    if ctype != std_ctype or (std_size is not None and (size, sha) != (std_size, std_sha)):
        return False
    if not (std_name or "").strip():  # ours is generated: attachment-<n>.<ext>, message-<n>.eml
        return re.fullmatch(r"(attachment|message)-\d+(\.\w+)?", name) is not None
    return name in (std_name.strip(), std_name.strip() + ".eml")


def differences(raw: bytes) -> dict[str, tuple[Any, Any]]:
    ours, std = our_view(raw, 1 << 20), stdlib_view(raw)
    assert our_view(raw, 997) == ours  # the chunking never changes what is read
    found = {key: (ours[key], std[key]) for key in ("subject", "text", "recipients") if ours[key] != std[key]}
    pairs = list(zip(ours["attachments"], std["attachments"]))
    if len(ours["attachments"]) != len(std["attachments"]) or not all(_same_attachment(o, s) for o, s in pairs):
        found["attachments"] = (ours["attachments"], std["attachments"])
    return found


def test_the_corpus_is_there() -> None:
    assert len(EMAILS) >= 200
    sources = {p.relative_to(CORPUS).parts[0] for p in EMAILS}
    assert sources == {"cpython", "django-mailbox", "dkimpy", "flufl.bounce", "mail-parser", "talon"}
    readme = (CORPUS / "README.md").read_text()
    assert all(f"`{source}/`" in readme for source in sources)


@pytest.mark.parametrize("path", EMAILS, ids=lambda p: str(p.relative_to(CORPUS)))
def test_inspect_reads_real_emails_like_the_stdlib(path: Path) -> None:
    name = str(path.relative_to(CORPUS))
    found = differences(path.read_bytes())
    known = {field for (file, field) in KNOWN if file == name}
    assert set(found) == known, {field: found.get(field) for field in set(found) ^ known}


def test_agreement_figure() -> None:
    """The figure the issue asks for: emails where every field agrees with the standard library."""
    differing = {file for file, _ in KNOWN}
    assert all((CORPUS / file).is_file() for file in differing)
    assert len(EMAILS) - len(differing) == 217 and len(EMAILS) == 221
