"""worker.mail.reader as `sensormail inspect` shows it: which leaf is the body, what is a file,
and what the recipients are, on emails as real mailers write them."""

from __future__ import annotations

import binascii
import email
import email.policy
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import anyio
import pytest

from worker.cli import inspect_report
from worker.config import Limits
from worker.mail.reader import DryRunStore, read_email

MARKER = ":Email_Rxers_Code:"
BLOCK = b":Email_Rxers_Code:ops@example.com:Email_Rxers_Code:"


def inspect(raw: bytes, chunk: int = 1 << 20, limits: Limits = Limits()) -> dict[str, Any]:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(raw), chunk):
            yield raw[i : i + chunk]

    async def go() -> dict[str, Any]:
        return inspect_report(await read_email(chunks(), DryRunStore(), limits), MARKER)

    return anyio.run(go)


def files(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["filename"], a["content_type"]) for a in report["attachments"]]


def stdlib_plain(raw: bytes) -> str | None:
    body = email.message_from_bytes(raw, policy=email.policy.default).get_body(("plain",))
    return None if body is None else str(body.get_content())


# -- class 1, end to end: the recipients of an Outlook 2000 email with a folded boundary ----------


def test_folded_boundary_email_finds_its_recipients() -> None:
    raw = (
        b"From: a@example.com\r\nSubject: alarm\r\nContent-Type: multipart/mixed;\r\n"
        b"\tboundary=\"----=_NextPart_000_0012\r\n _01C0A1B2.C3D4E5F6\"\r\n\r\n"
        b"------=_NextPart_000_0012 _01C0A1B2.C3D4E5F6\r\nContent-Type: text/plain\r\n\r\n"
        b"Pump 2 alarm.\r\n" + BLOCK + b"\r\n\r\n------=_NextPart_000_0012 _01C0A1B2.C3D4E5F6--\r\n"
    )
    for chunk in (1 << 20, 1, 13):
        report = inspect(raw, chunk)
        assert report["recipients"] == ["ops@example.com"] and report["attachments"] == []
        assert report["text"].startswith("Pump 2 alarm.")


# -- class 7: what the body is ---------------------------------------------------------------------


def single(headers: bytes, body: bytes = b"Pump 2 alarm.\n" + BLOCK + b"\n") -> bytes:
    return b"From: a@example.com\nSubject: s\n" + headers + b"\n\n" + body


@pytest.mark.parametrize(
    "headers",
    [
        b"Content-Type: text/plain\nContent-Disposition: inline; filename=alarm.txt",
        b"Content-Type: text/plain; name=alarm.txt",
        b'Content-Type: text/plain; name="=?utf-8?q?Alarm_=C3=A4.txt?="',
        b"Content-Type: text/plain; charset=utf-8; name=alarm.txt\nContent-Disposition: inline",
    ],
)
def test_a_named_inline_text_part_that_is_the_first_is_the_body(headers: bytes) -> None:
    raw = single(headers)
    report = inspect(raw)
    assert report["recipients"] == ["ops@example.com"] and report["attachments"] == []
    assert report["text"] == stdlib_plain(raw)


def test_a_text_part_disposed_as_attachment_is_a_file() -> None:
    report = inspect(single(b"Content-Type: text/plain\nContent-Disposition: attachment; filename=alarm.txt"))
    assert files(report) == [("alarm.txt", "text/plain")] and report["text"] is None
    assert report["fallback_reason"] is not None


def test_named_html_first_is_the_html_body() -> None:
    raw = single(b"Content-Type: text/html; name=alarm.html", b"<p>Pump 2</p><p>" + BLOCK + b"</p>\n")
    report = inspect(raw)
    assert report["recipients"] == ["ops@example.com"] and report["attachments"] == []


def mixed(*parts: bytes) -> bytes:
    raw = b"From: a@example.com\nSubject: s\nContent-Type: multipart/mixed; boundary=b\n\n"
    return raw + b"".join(b"--b\n" + p + b"\n" for p in parts) + b"--b--\n"


def test_named_inline_text_in_a_multipart_first_is_the_body() -> None:
    raw = mixed(
        b"Content-Type: text/plain; name=alarm.txt\nContent-Disposition: inline; filename=alarm.txt\n\n" + BLOCK,
        b"Content-Type: image/png\nContent-Disposition: inline; filename=snap.png\n\nPNG",
    )
    report = inspect(raw)
    assert report["recipients"] == ["ops@example.com"]
    assert files(report) == [("snap.png", "image/png")]
    assert report["text"] == stdlib_plain(raw)


def test_a_named_text_part_after_the_body_or_a_file_stays_a_file() -> None:
    after_body = mixed(
        b"Content-Type: text/plain\n\nbody " + BLOCK,
        b"Content-Type: text/plain; name=log.txt\nContent-Disposition: inline; filename=log.txt\n\nlog",
        b"Content-Type: text/html; name=report.html\n\n<p>report</p>",
    )
    report = inspect(after_body)
    assert report["text"].startswith("body") and report["recipients"] == ["ops@example.com"]
    # get_body(("html",)) would take report.html as the html body: we keep the file the sender attached
    assert files(report) == [("log.txt", "text/plain"), ("report.html", "text/html")]
    after_file = mixed(
        b"Content-Type: image/png; name=snap.png\n\nPNG",
        b"Content-Type: text/plain; name=log.txt\n\nlog " + BLOCK,
    )
    report = inspect(after_file)
    assert files(report) == [("snap.png", "image/png"), ("log.txt", "text/plain")] and report["text"] is None


def test_non_text_parts_are_files_whatever_their_disposition() -> None:
    raw = mixed(b"Content-Type: text/plain\n\nbody", b"Content-Type: application/json\nContent-Disposition: inline\n\n{}")
    assert files(inspect(raw)) == [("attachment-1.json", "application/json")]


def test_an_overflowing_named_body_keeps_its_name_as_a_file() -> None:
    raw = single(b"Content-Type: text/plain; name=alarm.txt", BLOCK + b"\n" + b"x" * 5000)
    report = inspect(raw, limits=Limits(max_body_bytes=1000))
    assert report["recipients"] == ["ops@example.com"]
    assert [(a["filename"], a["size"]) for a in report["attachments"]] == [("alarm.txt", len(BLOCK) + 5001)]


# -- classes 2-6 through inspect -------------------------------------------------------------------


def test_subject_and_body_as_mail_clients_show_them() -> None:
    raw = (
        b"From: =?iso-8859-2*sl?Q?Doma=BEe?= <a@example.com>\n"
        b"Subject: =?iso-8859-1?Q?Fr\xf6sche_im_Tank?=\n =?ISO-8859-1?Q?Tank_level_?=\n =?US-ASCII?Q?low?=\n"
        b"Content-Type: text/plain; charset=x-mac-cyrillic\n\n" + "Привет ".encode("mac-cyrillic") + BLOCK
    )
    report = inspect(raw)
    assert report["subject"] == "Frösche im TankTank level low"
    assert report["from"] == "Domaže <a@example.com>"
    assert report["text"].startswith("Привет ") and report["recipients"] == ["ops@example.com"]


def test_uuencoded_attachment_is_stored_decoded() -> None:
    data = b"t,level\n1,0.42\n" * 10
    lines = b"".join(binascii.b2a_uu(data[i : i + 45]) for i in range(0, len(data), 45))
    raw = mixed(
        b"Content-Type: text/plain\n\nsee file " + BLOCK,
        b"Content-Type: application/octet-stream; name=trend.csv\nContent-Transfer-Encoding: x-uuencode\n\n"
        b"begin 644 trend.csv\n" + lines + b"`\nend",
    )
    assert [(a["filename"], a["size"]) for a in inspect(raw, 7)["attachments"]] == [("trend.csv", len(data))]


# -- where we read better than the standard library: kept so --------------------------------------


def test_unquoted_boundary_with_an_equals_sign() -> None:
    raw = (
        b"From: a@example.com\nSubject: s\nContent-Type: multipart/mixed; boundary=----=_Part_1_2.3\n\n"
        b"------=_Part_1_2.3\nContent-Type: text/plain\n\nbody " + BLOCK + b"\n"
        b"------=_Part_1_2.3\nContent-Type: text/csv; name=a.csv\n\na,b\n------=_Part_1_2.3--\n"
    )
    report = inspect(raw)
    assert report["recipients"] == ["ops@example.com"] and files(report) == [("a.csv", "text/csv")]
    modern = email.message_from_bytes(raw, policy=email.policy.default)
    assert modern.get_boundary() != "----=_Part_1_2.3"  # policy.default cuts it at the "="


def test_base64_with_a_trailing_blank_in_the_transfer_encoding() -> None:
    raw = single(b"Content-Type: text/plain\nContent-Transfer-Encoding: base64 ", b"UHVtcCAyIGFsYXJt\n")
    assert inspect(raw)["text"] == "Pump 2 alarm"
    compat = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert compat.get_payload(decode=True) != b"Pump 2 alarm"  # compat32 leaves it encoded


def test_unknown_charset_reads_as_utf8() -> None:
    raw = single(b"Content-Type: text/plain; charset=x-no-such-charset", "Grüße ".encode() + BLOCK)
    report = inspect(raw)
    assert report["text"].startswith("Grüße") and report["recipients"] == ["ops@example.com"]
    with pytest.raises(LookupError):
        stdlib_plain(raw)


def test_eight_bit_text_without_a_charset_reads_as_utf8() -> None:
    raw = single(b"Content-Type: text/plain", "Température 21 °C ".encode() + BLOCK)
    report = inspect(raw)
    assert report["text"].startswith("Température 21 °C")
    assert stdlib_plain(raw) != report["text"]  # the stdlib reads it as ASCII with replacements


def test_a_generated_email_reads_like_stdlib() -> None:
    msg = EmailMessage()
    msg["From"], msg["Subject"] = "a@example.com", "Ärger"
    msg.set_content("body " + BLOCK.decode())
    msg.add_attachment(b"\x00" * 10, maintype="application", subtype="octet-stream", filename="a.bin")
    report = inspect(bytes(msg))
    assert report["subject"] == "Ärger" and report["text"] == stdlib_plain(bytes(msg))


def test_large_chunks_are_parsed_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk of header blocks costs up to ~0.3 s to parse (bench/hostile.py): on the event loop
    it would stall every other email of the worker. Small chunks (small emails) stay on it."""
    import threading

    from tests.hostile_emails import huge_header_blocks
    from worker.mail import reader
    from worker.mail.mime import MimeParser

    threads: list[tuple[int, bool]] = []
    feed = MimeParser.feed

    def spy(self: MimeParser, chunk: bytes) -> Any:
        threads.append((len(chunk), threading.current_thread() is threading.main_thread()))
        return feed(self, chunk)

    monkeypatch.setattr(MimeParser, "feed", spy)
    raw = huge_header_blocks(600_000)
    inspect(raw, chunk=256 * 1024, limits=Limits(max_total_header_bytes=1 << 20))
    inspect(raw[:1000], chunk=1000)  # not an email's end, but a small chunk
    sizes = [len(raw[i : i + 256 * 1024]) for i in range(0, len(raw), 256 * 1024)] + [1000]
    assert threads == [(size, size < reader.INLINE_CHUNK_BYTES) for size in sizes]
    assert [on_loop for _, on_loop in threads] == [False, False, False, True]
