"""The outbox journal: the feeds joined into one journey per email, whatever order they arrive in."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesHeaderParser

import anyio
import pytest

from worker.events import S3ObjectRef
from worker.local.journal import Journal, dropped_reasons, is_quarantine
from worker.local.linkcheck import expiry_of
from worker.local.observe import Handled, Link
from worker.mail.policy import screen
from worker.mail.reader import Attachment, StoredFile
from worker.pipeline import Outcome


def ref(message_id: str) -> S3ObjectRef:
    return S3ObjectRef(bucket="in", key=f"incoming/{message_id}", size=10, etag="e", version_id=None,
                       sequencer=None, event_name="ObjectCreated:Put")


def headers(raw: bytes) -> Message:
    return BytesHeaderParser().parsebytes(raw, headersonly=True)


def stored(n: int) -> Attachment:
    return Attachment(n=n, filename=f"f{n}.bin", content_type="application/octet-stream", size=3, sha256="ab" * 32,
                      stored=StoredFile(key=f"attachments/m1/{n}-f{n}.bin", url=f"http://s3/f{n}", expires_at=None))


def test_smtp_then_outcome_is_one_entry_with_the_workers_view() -> None:
    journal = Journal()
    journal.received("m1", "in", "incoming/m1", "dev@x.example", 120,
                     headers(b"From: Dev <dev@x.example>\r\nSubject: =?utf-8?q?Pump_=C3=BC?=\r\n\r\n"))
    [entry] = journal.entries()
    assert (entry.status, entry.subject, entry.sender) == ("received", "Pump ü", "Dev <dev@x.example>")
    journal.outcome(Outcome(kind="sent", ref=ref("m1"), subject="Pump ü", sender="Dev <dev@x.example>",
                            recipients=("a@x.example",), rejected=("nonsense", "b@y.example (domain not allowed)"),
                            attachments=(stored(1),), timings=(("claim", 0.01), ("send", 0.02))))
    [entry] = journal.entries()
    assert entry.status == "sent" and entry.recipients == ("a@x.example",)
    assert entry.dropped == (("nonsense", "not a valid address"), ("b@y.example", "domain not allowed"))
    assert [a.key for a in entry.attachments] == ["attachments/m1/1-f1.bin"]
    assert entry.timings == (("claim", 0.01), ("send", 0.02)) and entry.handled_at is not None


def test_an_observation_before_the_outcome_waits_for_its_email() -> None:
    journal = Journal()
    journal.observed(Handled(kind="sent", subject="s", message_id="m2", raw="From: a\r\n\r\nbody"))
    assert journal.entries() == []
    journal.outcome(Outcome(kind="sent", ref=ref("m2"), subject="s"))
    [entry] = journal.entries()
    assert entry.sent == ["From: a\r\n\r\nbody"] and entry.status == "sent"


def test_the_workers_outcome_wins_over_a_guess_from_the_notice() -> None:
    journal = Journal()
    journal.received("m3", "in", "incoming/m3", "", 1, headers(b"Subject: x\r\n\r\n"))
    journal.outcome(Outcome(kind="fallback", ref=ref("m3"), reason="no recipient block"))
    journal.observed(Handled(kind="fallback", subject="x", reason="virus verdict FAIL", message_id="m3", raw="{}"))
    [entry] = journal.entries()
    assert (entry.status, entry.reason, entry.notice) == ("fallback", "no recipient block", "{}")


def test_a_duplicate_event_is_its_own_entry_pointing_at_the_email() -> None:
    journal = Journal()
    journal.outcome(Outcome(kind="sent", ref=ref("m4"), subject="Alarm", sender="dev@x.example"))
    journal.outcome(Outcome(kind="duplicate", ref=ref("m4"), reason="already sent"))
    journal.outcome(Outcome(kind="duplicate", ref=ref("m4"), reason="already sent"))
    newest, older, original = journal.entries()
    assert (newest.id, older.id, original.id) == ("m4~duplicate-2", "m4~duplicate-1", "m4")
    assert newest.duplicate_of == "m4" and newest.subject == "Alarm" and newest.status == "duplicate"
    assert journal.get("m4") is original and original.status == "sent"


def test_container_mode_learns_outcomes_from_the_emulator_alone() -> None:
    journal = Journal("container")
    journal.observed(Handled(kind="fallback", subject="S", reason="sender not allowed: a@b.example", message_id="q",
                             links=(Link("f.bin", None, "cd" * 32),), raw="{}"))
    journal.observed(Handled(kind="dlq", subject="", reason="MalformedEmail: deep", message_id="d", raw="{}"))
    journal.observed(Handled(kind="sent", subject="T", recipients=("a@x.example",), message_id="s", raw="raw"))
    assert [(e.id, e.status) for e in journal.entries()] == [("s", "sent"), ("d", "dlq"), ("q", "quarantined")]
    assert journal.get("q").attachments[0].url is None  # type: ignore[union-attr]
    assert journal.get("s").recipients == ("a@x.example",)  # type: ignore[union-attr]


def test_filters_and_search() -> None:
    journal = Journal()
    for n, (subject, sender) in enumerate([("Pump alarm", "a@x.example"), ("Report", "Station <b@y.example>")]):
        journal.received(f"m{n}", "in", f"incoming/m{n}", "", 1, headers(f"Subject: {subject}\r\nFrom: {sender}\r\n\r\n".encode()))
    journal.outcome(Outcome(kind="fallback", ref=ref("m1"), subject="Report", sender="Station <b@y.example>"))
    assert [e.id for e in journal.entries()] == ["m1", "m0"]
    assert [e.id for e in journal.entries(outcome="fallback")] == ["m1"]
    assert [e.id for e in journal.entries(outcome="received")] == ["m0"]
    assert [e.id for e in journal.entries(query="PUMP")] == ["m0"]
    assert [e.id for e in journal.entries(query="station")] == ["m1"]
    assert journal.entries(outcome="sent", query="pump") == []


@pytest.mark.anyio
async def test_waiters_wake_on_a_change_and_time_out_without_one() -> None:
    journal = Journal()
    assert await journal.wait(journal.version, 0.05) is False
    seen = journal.version

    async def later() -> None:
        await anyio.sleep(0.05)
        journal.outcome(Outcome(kind="sent", ref=ref("m9")))

    async with anyio.create_task_group() as tg:
        tg.start_soon(later)
        with anyio.fail_after(5):
            assert await journal.wait(seen, 10) is True
    assert [e.id for e in journal.changed_since(seen)] == ["m9"]
    journal.close()
    assert await journal.wait(journal.version, 10) is False  # closed: returns at once


@pytest.mark.parametrize("block, reason", [
    ("X-SES-Virus-Verdict: FAIL\r\n", "virus verdict FAIL"),
    ("X-SES-Spam-Verdict: FAIL\r\n", "spam verdict FAIL"),
    ("From: someone@elsewhere.example\r\n", "sender not allowed"),
])
def test_every_quarantine_reason_of_the_policy_is_recognised(block: str, reason: str) -> None:
    raw = (f"Return-Path: <a@devices.example>\r\n{block}X-SES-RECEIPT: r\r\nFrom: a@devices.example\r\n\r\n").encode()
    found = screen(headers(raw), allowed_senders=["devices.example"], spam_action="quarantine")
    assert found is not None and found.startswith(reason) and is_quarantine(found)
    assert not is_quarantine("no recipient block") and not is_quarantine(None)


def test_dropped_reasons_keep_nested_parentheses() -> None:
    assert dropped_reasons(["a@x.example (suppressed: BOUNCE (hard))", "<junk>"]) == (
        ("a@x.example", "suppressed: BOUNCE (hard)"), ("<junk>", "not a valid address"))


def test_expiry_is_read_from_sigv4_and_sigv2_urls() -> None:
    v4 = "http://s3/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-Signature=s"
    assert expiry_of(v4) == datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
    assert expiry_of("http://s3/b/k?AWSAccessKeyId=a&Expires=1767225600&Signature=s") == datetime(2026, 1, 1, tzinfo=UTC)
    assert expiry_of("http://s3/b/k") is None
    assert expiry_of("http://s3/b/k?X-Amz-Date=garbage&X-Amz-Expires=1") is None


@pytest.mark.anyio
async def test_a_link_past_its_expiry_is_expired_without_asking_s3() -> None:
    import aiohttp

    from worker.local.linkcheck import check_link

    url = "http://127.0.0.1:9/b/k?X-Amz-Date=20260101T000000Z&X-Amz-Expires=60&X-Amz-Signature=s"  # port 9: nothing
    async with aiohttp.ClientSession() as http:
        assert (await check_link(http, url, at=datetime(2026, 1, 1, 0, 2, tzinfo=UTC))).state == "expired"
        assert (await check_link(http, None)).state == "not stored"
        assert (await check_link(http, url, at=datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC))).state == "unreachable"
