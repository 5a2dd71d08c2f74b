"""The outgoing email and the fallback notice: bytes out, checked with the standard library."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import secrets
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.compose_oracle import compose_with_email_message
from worker.mail.compose import (
    MAX_NOTICE_BYTES,
    ORIGINAL_MESSAGE,
    _clean_header,
    compose_email,
    fallback_notice,
    human_size,
)
from worker.mail.reader import Attachment, StoredFile

EXAMPLES = int(os.environ.get("SENSORMAIL_FUZZ_EXAMPLES", "300"))

LONG_URL = "https://bucket.s3.amazonaws.com/attachments/abc/1-x.csv?" + "X-Amz-Security-Token=" + "A" * 1500


def attachment(n: int = 1, name: str = "trend.csv", url: str = LONG_URL) -> Attachment:
    return Attachment(
        n=n,
        filename=name,
        content_type="text/csv",
        size=61_500,
        sha256="ab" * 32,
        stored=StoredFile(key=f"attachments/abc/{n}-x.csv", url=url, expires_at=datetime(2026, 11, 27, 8, 30, tzinfo=UTC)),
    )


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def build(**overrides: object) -> bytes:
    args: dict[str, object] = dict(
        sender="alerts@example.com",
        recipients=["ops@example.com", "b@example.org"],
        subject="Vibration alarm, pump 2",
        text="Vibration on pump 2.\nLine2\n",
        html_body=None,
        attachments=[attachment()],
        source_id="abc",
    )
    args.update(overrides)
    return compose_email(**args)  # type: ignore[arg-type]


def headers(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def test_alternative_with_text_html_and_links() -> None:
    msg = parse(build())
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["From"] == "alerts@example.com"
    assert [a.addr_spec for a in msg["To"].addresses] == ["ops@example.com", "b@example.org"]
    assert msg["Subject"] == "Vibration alarm, pump 2"
    assert msg["Auto-Submitted"] == "auto-generated"
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Vibration on pump 2." in text and LONG_URL in text
    assert "trend.csv (61.5 KB, SHA-256 " + "ab" * 32 in text
    assert "2026-11-27 08:30 UTC" in text
    assert f'href="{LONG_URL}"' in html and "<pre" in html


def test_no_line_over_998_characters_even_with_long_urls_and_lines() -> None:
    raw = build(text="x" * 5000 + "\n")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF everywhere


def test_names_and_body_are_escaped_in_html() -> None:
    raw = build(text="<script>alert(1)</script>", attachments=[attachment(name='<img src=x onerror=alert(1)>.csv')])
    html = parse(raw).get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;.csv" in html


def test_original_html_is_kept_after_our_link_block() -> None:
    raw = build(html_body="<html><body><p>Motion at <b>gate 3</b></p></body></html>")
    html = parse(raw).get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert html.startswith("<!DOCTYPE html>")
    assert html.index('<div id="sensormail-links"') < html.index("Attachments (1)") < html.index(
        '<div id="sensormail-original"') < html.index("<p>Motion at <b>gate 3</b></p>")


def test_header_injection_through_subject_is_neutralised() -> None:
    msg = parse(build(subject="Alarm\r\nBcc: evil@example.net"))
    assert msg["Bcc"] is None
    assert msg["Subject"] == "Alarm Bcc: evil@example.net"


def test_non_ascii_subject_and_text_round_trip() -> None:
    msg = parse(build(subject="Température élevée ⚠", text="Capteur n°3: 85 °C\n"))
    assert msg["Subject"] == "Température élevée ⚠"
    assert "Capteur n°3: 85 °C" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_fallback_notice_fields_and_ascii_subject() -> None:
    subject, body = fallback_notice(
        reason="no recipient block",
        sender="Pump <p@example.com>",
        subject="Daily report ✓",
        raw_uri="s3://in/incoming/abc",
        message_id="abc",
        text="Daily   report,\n all nominal. " * 100,
        attachments=[attachment()],
    )
    notice = json.loads(body)
    assert subject.isascii() and len(subject) < 100 and "\n" not in subject
    assert notice["reason"] == "no recipient block"
    assert notice["raw_email"] == "s3://in/incoming/abc"
    assert notice["excerpt"].startswith("Daily report, all nominal.") and len(notice["excerpt"]) <= 500
    assert notice["attachments"][0]["url"] == LONG_URL


def test_fallback_notice_stays_under_the_sns_limit_with_many_attachments() -> None:
    many = [attachment(n) for n in range(1, 2001)]
    _, body = fallback_notice(
        reason="no recipient block", sender="s", subject="s", raw_uri="s3://b/k", message_id="k",
        text="t", attachments=many,
    )
    notice = json.loads(body)
    assert len(body.encode()) <= MAX_NOTICE_BYTES
    assert notice["attachments_omitted"] == 2000 - len(notice["attachments"]) > 0


def test_human_size() -> None:
    assert human_size(999) == "999 bytes"
    assert human_size(61_500) == "61.5 KB"
    assert human_size(40_000_000) == "40.0 MB"


def test_written_as_before_top_to_bottom() -> None:
    raw = build(sender="Sensormail <alerts@example.com>")
    names = [line.split(b":")[0] for line in headers(raw) if not line.startswith(b" ")]
    assert names == [b"From", b"To", b"Subject", b"Date", b"Auto-Submitted", b"X-Sensormail-Source",
                     b"MIME-Version", b"Content-Type"]
    msg = parse(raw)
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    for part in msg.iter_parts():
        assert part.get_content_charset() == "utf-8" and part["Content-Transfer-Encoding"] == "quoted-printable"
    assert raw.isascii() and b"\n" not in raw.replace(b"\r\n", b"") and raw.endswith(b"--\r\n")
    assert not msg.defects and not any(p.defects for p in msg.walk())
    assert msg["Date"].datetime.utcoffset() == timedelta(0) and str(msg["Date"]).endswith(" +0000")


def test_long_headers_fold_within_78_and_read_back() -> None:
    recipients = [f"user{i}.with.a.longer.name@sensors.example.com" for i in range(50)]
    subjects = ["word " * 300 + "end", LONG_URL, "Température élevée ⚠ " * 40, "é" + "x" * 1500]
    for subject in subjects:
        raw = build(recipients=recipients, subject=subject)
        assert max(map(len, headers(raw))) <= 78, subject[:20]
        msg = parse(raw)
        assert msg["Subject"] == subject.strip()
        assert [a.addr_spec for a in msg["To"].addresses] == recipients
    # 50 addresses on 26 lines: each line but the last ends at a comma, the next starts with a space.
    to = [line for line in headers(raw) if line.startswith((b"To:", b" user"))]
    assert len(to) > 20 and all(line.endswith(b",") for line in to[:-1])


def test_sender_display_names_survive() -> None:
    for sender, name in [
        ("Sensormail <alerts@example.com>", "Sensormail"),
        ("Jürgen Müller <alerts@example.com>", "Jürgen Müller"),
        ('"Müller, Jürgen" <alerts@example.com>', "Müller, Jürgen"),
        ('"Ops, Plant 3" <alerts@example.com>', "Ops, Plant 3"),
        ("Überwachung ⚠ 😀 <alerts@example.com>", "Überwachung ⚠ 😀"),
        ("alerts@example.com", ""),
    ]:
        raw = build(sender=sender)
        assert raw.isascii()
        (address,) = parse(raw)["From"].addresses
        assert (address.display_name, address.addr_spec) == (name, "alerts@example.com"), sender


def test_subject_that_looks_like_an_encoded_word_reads_back_as_written() -> None:
    # The EmailMessage way decoded "=?utf-8?q?hi?=" to "hi": a header assignment parses the value.
    for subject in ("=?utf-8?q?hi?= there", "a =?x", '=?utf-8?b?w6k=?= "quoted, comma"'):
        assert parse(build(subject=subject))["Subject"] == subject


def test_body_lines_that_look_like_mime_or_smtp_read_back_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "token_hex", lambda n: "0" * 2 * n)
    boundary = "=_" + "0" * 32
    text = f"From the pump\n.\n..\n--{boundary}\n--{boundary}--\ntrailing \t\nend\ttab  \n" + "y" * 3000
    raw = build(text=text, html_body=f"<p>--{boundary}</p>\n.\n")
    assert raw.count(f"--{boundary}".encode()) == 3  # two parts and the end, nothing from the bodies
    assert max(map(len, raw.split(b"\r\n"))) <= 78
    msg = parse(raw)
    assert len(list(msg.iter_parts())) == 2
    plain = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert plain.startswith("Attachments (1):\n- trend.csv")
    assert plain.endswith(f"\n\n{ORIGINAL_MESSAGE}\n\n{text.rstrip()}\n")
    assert f"<p>--{boundary}</p>\n.\n" in msg.get_body(("html",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]


def test_line_endings_read_back_as_the_email_message_way() -> None:
    text = "a\rb\r\nc\nd\x0be\x85f\u2028g\r\r\nh"
    msg = parse(build(text=text, attachments=[]))
    assert msg.get_body(("plain",)).get_content() == "a\r\nb\r\nc\r\nd\x0be\x85f\u2028g\r\n\r\nh\r\n"  # type: ignore[union-attr]


def reading(raw: bytes) -> dict[str, object]:
    """What a reader sees: the standard library's parse, contents with LF line ends."""
    msg = parse(raw)
    plain, rich = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and rich is not None
    return {
        "From": str(msg["From"]),
        "From addresses": [(a.display_name, a.addr_spec) for a in msg["From"].addresses],
        "To": [a.addr_spec for a in msg["To"].addresses],
        "Subject": str(msg["Subject"]),
        "Auto-Submitted": str(msg["Auto-Submitted"]),
        "X-Sensormail-Source": str(msg["X-Sensormail-Source"]),
        "plain": plain.get_content().replace("\r\n", "\n"),
        "html": rich.get_content().replace("\r\n", "\n"),
    }


PIECES = ["\r", "\n", "\r\n", "\t", " ", "  \n", "\t\n", "From ", "\nFrom here", "\n.\n", ".", "..", "--",
          "--=_0123", "--===============1234567890==", "=", "=?", "=?utf-8?q?hi?=", "?=", '"', ",", ";", "<", ">",
          "&amp;", "é", "ß", "Ω", "⚠", "😀", "\x00", "\x0b", "\x85", "\u2028", "x" * 90, "y" * 1200, LONG_URL,
          "Température élevée ", "a b " * 40]
texts = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=30)), max_size=12).map("".join)
SENDERS = ["alerts@example.com", "Sensormail <alerts@example.com>", '"Müller, Jürgen" <alerts@example.com>',
           "Jürgen Müller <alerts@example.com>", "Überwachung ⚠ 😀 <alerts@example.com>",
           '"Ops, Plant 3" <ops@example.com>', "alerts@example.com (Alerts)", "Very " * 30 + "<a@example.com>"]
ADDRESSES = [f"user{i}@example.com" for i in range(50)] + [
    "first.last+tag@sub.example.org", "x@a.co", "jürgen@example.com", "ops@bücher.example", "a" * 64 + "@example.com"]
attachments_ = st.lists(
    st.builds(attachment, n=st.integers(1, 9), name=texts.filter(bool),
              url=st.sampled_from([LONG_URL, "", "https://x.example/a?b=c&d=e"])),
    max_size=3,
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    sender=st.sampled_from(SENDERS),
    recipients=st.lists(st.sampled_from(ADDRESSES), min_size=1, max_size=50, unique=True),
    subject=texts,
    text=texts,
    html_body=st.none() | texts | texts.map(lambda t: f"<html><body>{t}</body></html>"),
    attachments=attachments_,
    note=st.none() | texts,
)
def test_reads_the_same_as_the_email_message_way(
    sender: str, recipients: list[str], subject: str, text: str, html_body: str | None,
    attachments: list[Attachment], note: str | None,
) -> None:
    args: dict[str, object] = dict(sender=sender, recipients=recipients, subject=subject, text=text,
                                   html_body=html_body, attachments=attachments, source_id="m1", note=note)
    raw = compose_email(**args)  # type: ignore[arg-type]
    assert raw.isascii() and b"\n" not in raw.replace(b"\r\n", b"")
    assert max(map(len, raw.split(b"\r\n"))) <= 998
    # Within 78 unless one word (a 64-character local part and its domain) cannot be broken.
    assert all(len(line) <= 78 or len(line.split()) <= 2 for line in headers(raw))
    new, old = reading(raw), reading(compose_with_email_message(**args))  # type: ignore[arg-type]
    # The subject reads back exactly as given; the EmailMessage way's does not always, so it is
    # compared with the input instead of with the oracle. It decodes text that looks like an encoded
    # word ("=?utf-8?q?hi?=" -> "hi"), loses the space where it folds a long non-ASCII subject
    # between two encoded words ("Température élevée" -> "Températureélevée"), and can leave
    # "Subject:" alone on its first line, which reads back as a leading space.
    expected = _clean_header(subject) or "(no subject)"
    assert new["Subject"] == expected
    old["Subject"] = expected
    assert new == old
    boundary = re.search(rb'boundary="([^"]+)"', raw)
    assert boundary is not None and raw.count(b"--" + boundary[1]) == 3
