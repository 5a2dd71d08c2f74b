"""The outgoing email and the fallback notice: bytes out, checked with the standard library."""

from __future__ import annotations

import email
import email.policy
import json
from datetime import UTC, datetime
from email.message import EmailMessage

from worker.compose import MAX_NOTICE_BYTES, compose_email, fallback_notice, human_size
from worker.reader import Attachment, StoredFile

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


def test_original_html_is_kept_and_links_go_before_body_end() -> None:
    raw = build(html_body="<html><body><p>Motion at <b>gate 3</b></p></body></html>")
    html = parse(raw).get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<p>Motion at <b>gate 3</b></p>" in html
    assert html.index("Attachments (1)") < html.index("</body>")


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
