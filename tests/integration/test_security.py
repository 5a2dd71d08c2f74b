"""Who may send, to whom, and what SES said: each rule attacked through the real pipeline."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest

from tests.helpers import (
    fallback_notices,
    put_incoming,
    queue_depth,
    run_until,
    sent_to,
    ses_block,
    ses_smtp_block,
    text_of,
    wait_for,
)
from worker.aws.clients import Clients
from worker.config import Settings
from worker.errors import Deferred
from worker.local.emulator import Emulator
from worker.local.provision import LocalResources
from worker.local.smtp import ses_headers
from worker.mail.policy import SenderBudget
from worker.pipeline import Pipeline

pytestmark = pytest.mark.anyio


def as_received(raw: bytes, virus: str = "PASS", spam: str = "PASS") -> bytes:
    """The email as SES stores it: SES's header block on top."""
    block = ses_headers("abc", "station7@devices.example.com", "intake@mail.example.com", "192.0.2.1")
    block = block.replace(b"X-SES-Virus-Verdict: PASS", b"X-SES-Virus-Verdict: " + virus.encode())
    block = block.replace(b"X-SES-Spam-Verdict: PASS", b"X-SES-Spam-Verdict: " + spam.encode())
    return block + raw.replace(b"\n", b"\r\n")


async def stored_keys(aws: Clients, settings: Settings, message_id: str) -> list[str]:
    r = await aws.s3.list_objects_v2(Bucket=settings.attachments_bucket, Prefix=f"attachments/{message_id}/")
    return [o["Key"] for o in r.get("Contents", [])]


async def test_virus_fail_is_quarantined_even_with_a_forged_pass_below(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, sample: Any
) -> None:
    forged = b"X-SES-Virus-Verdict: PASS\n" + sample("alarm-with-csv.eml")
    ref = await put_incoming(aws, resources, as_received(forged, virus="FAIL"))

    outcome = await Pipeline(settings, aws).process(ref)

    assert outcome.kind == "fallback" and outcome.reason == "virus verdict FAIL"
    assert sent_to(emulator, ref.message_id) == []
    assert await stored_keys(aws, settings, ref.message_id) == []  # no links made
    [notice] = await wait_for(lambda: fallback_notices(aws, resources))
    assert notice["reason"] == "virus verdict FAIL"
    assert [a["url"] for a in notice["attachments"]] == [None]


async def test_spam_fail_passes_when_configured_to(
    settings: Settings, aws: Clients, resources: LocalResources, sample: Any
) -> None:
    raw = as_received(sample("alarm-with-csv.eml"), spam="FAIL")
    quarantined = await Pipeline(settings, aws).process(await put_incoming(aws, resources, raw))
    passed = await Pipeline(replace(settings, spam_action="pass"), aws).process(await put_incoming(aws, resources, raw))
    assert (quarantined.kind, quarantined.reason) == ("fallback", "spam verdict FAIL")
    assert passed.kind == "sent"


async def test_sender_outside_the_allowlist_is_quarantined(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, sample: Any
) -> None:
    strict = replace(settings, allowed_senders=("plant.example.net",))
    ref = await put_incoming(aws, resources, as_received(sample("alarm-with-csv.eml")))
    outcome = await Pipeline(strict, aws).process(ref)
    assert outcome.kind == "fallback" and outcome.reason is not None
    assert outcome.reason.startswith("sender not allowed: station7@devices.example.com")
    assert sent_to(emulator, ref.message_id) == []


async def test_recipients_outside_the_allowed_domains_are_dropped_with_a_reason(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, sample: Any
) -> None:
    only_example_com = replace(settings, allowed_recipient_domains=("example.com",))
    ref = await put_incoming(aws, resources, sample("alarm-with-csv.eml"))  # ops@example.com, maintenance@example.org
    outcome = await Pipeline(only_example_com, aws).process(ref)
    assert outcome.kind == "sent" and outcome.recipients == ("ops@example.com",)
    assert outcome.rejected == ("maintenance@example.org (domain not allowed)",)
    [msg] = sent_to(emulator, ref.message_id)
    assert [a.addr_spec for a in msg["To"].addresses] == ["ops@example.com"]


async def test_no_recipient_left_after_the_allowlist_goes_to_the_fallback_topic(
    settings: Settings, aws: Clients, resources: LocalResources, sample: Any
) -> None:
    elsewhere = replace(settings, allowed_recipient_domains=("corp.example",))
    outcome = await Pipeline(elsewhere, aws).process(await put_incoming(aws, resources, sample("html-two-images.eml")))
    assert (outcome.kind, outcome.reason) == ("fallback", "no recipient in the allowed domains")
    [notice] = await wait_for(lambda: fallback_notices(aws, resources))
    assert notice["rejected_recipients"] == ["security@example.com (domain not allowed)"]


# --- issue 13: no open relay ----------------------------------------------------------------------

M = ":Email_Rxers_Code:"
DEVICES = ("devices.example.com",)


def plain(block: bytes, body: str, sender: str = "Pump Station 7 <station7@devices.example.com>",
          extra: str = "", subject: str = "Vibration alarm, pump 2") -> bytes:
    """A one-part text email as SES stores it: SES's block, then what the device wrote."""
    return block + (
        f"From: {sender}\r\nTo: intake-7f3k@sensors.example.com\r\nSubject: {subject}\r\n{extra}"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + body.replace("\n", "\r\n") + "\r\n"
    ).encode()


async def test_a_forged_allowlisted_sender_is_not_forwarded(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator
) -> None:
    """From and Return-Path in the allowed domain, SES: spf=fail, dkim=none, dmarc=fail. Sent before."""
    strict = replace(settings, allowed_senders=DEVICES)
    raw = plain(ses_block(spf="fail", dkim=(), dmarc="fail"), f"Pay now.\n{M}ops@example.com{M}")
    ref = await put_incoming(aws, resources, raw)
    outcome = await Pipeline(strict, aws).process(ref)
    assert outcome.kind == "fallback" and outcome.reason is not None
    assert outcome.reason == "sender not authenticated: DMARC fail for devices.example.com"
    assert sent_to(emulator, ref.message_id) == []


@pytest.mark.parametrize("custom_mail_from", [False, True])
async def test_a_device_on_ses_smtp_with_aligned_dkim_is_forwarded(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, custom_mail_from: bool
) -> None:
    """The happy path: Easy DKIM on the device domain; the envelope sender at amazonses.com (no custom
    MAIL FROM, quarantined before) or in mail.devices.example.com."""
    strict = replace(settings, allowed_senders=DEVICES)
    block = ses_smtp_block(custom_mail_from=custom_mail_from, easy_dkim=True)
    ref = await put_incoming(aws, resources, plain(block, f"Pump 2 vibrates.\n{M}ops@example.com{M}"))
    outcome = await Pipeline(strict, aws).process(ref)
    assert (outcome.kind, outcome.recipients) == ("sent", ("ops@example.com",))
    [msg] = sent_to(emulator, ref.message_id)
    assert text_of(msg).startswith("Pump 2 vibrates.")


@pytest.mark.parametrize("custom_mail_from", [False, True])
async def test_a_device_on_ses_smtp_without_dkim_passes_only_with_a_custom_mail_from(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, custom_mail_from: bool
) -> None:
    """Without Easy DKIM only SPF can align, and only the custom MAIL FROM domain makes it align."""
    strict = replace(settings, allowed_senders=DEVICES)
    block = ses_smtp_block(custom_mail_from=custom_mail_from, easy_dkim=False)
    ref = await put_incoming(aws, resources, plain(block, f"Pump 2 vibrates.\n{M}ops@example.com{M}"))
    outcome = await Pipeline(strict, aws).process(ref)
    if custom_mail_from:
        assert outcome.kind == "sent"
    else:
        assert outcome.kind == "fallback" and outcome.reason is not None
        assert "no SPF or DKIM pass aligned" in outcome.reason
        assert sent_to(emulator, ref.message_id) == []


async def test_seventy_thousand_recipients_send_nothing(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator
) -> None:
    """An email whose body lists 70,000 addresses became 1,400 SES sends."""
    many = ",".join(f"{n}@ex.co" for n in range(70_000))  # 0.8 MB: within the 1 MiB body limit
    ref = await put_incoming(aws, resources, plain(ses_block(), f"Hello.\n{M}{many}{M}"))
    outcome = await Pipeline(settings, aws).process(ref)
    assert (outcome.kind, outcome.reason) == ("fallback", "too many recipients: 70000 (at most 50)")
    assert outcome.recipients == () and sent_to(emulator, ref.message_id) == []
    [notice] = await wait_for(lambda: fallback_notices(aws, resources))
    assert notice["reason"] == "too many recipients: 70000 (at most 50)"


async def test_our_own_output_coming_back_is_quarantined_as_a_loop(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, sample: Any
) -> None:
    """A forwarded email that reaches the intake again (a recipient forwarding rule, say)."""
    first = await Pipeline(settings, aws).process(await put_incoming(aws, resources, as_received(sample("alarm-with-csv.eml"))))
    [ours] = sent_to(emulator, first.ref.message_id)
    assert ours["Auto-Submitted"] == "auto-generated"
    looped = await put_incoming(aws, resources, ses_block() + ours.as_bytes().replace(b"\n", b"\r\n"))
    outcome = await Pipeline(settings, aws).process(looped)
    assert outcome.kind == "fallback" and outcome.reason == "loop: the email carries our own X-Sensormail-Source header"
    assert sent_to(emulator, looped.message_id) == []


async def test_mail_from_our_sender_address_is_a_loop_and_the_intake_domain_is_never_a_recipient(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator
) -> None:
    intake = replace(settings, intake_domains=("sensors.example.com",))
    ref = await put_incoming(aws, resources, plain(ses_block(dmarc="none"), f"{M}ops@example.com{M}", sender=settings.sender))
    outcome = await Pipeline(intake, aws).process(ref)
    assert outcome.kind == "fallback" and outcome.reason == f"loop: sent by our own address {settings.sender}"

    body = f"{M}intake-7f3k@sensors.example.com, ops@example.com{M}"
    ref = await put_incoming(aws, resources, plain(ses_block(), body))
    outcome = await Pipeline(intake, aws).process(ref)
    assert outcome.kind == "sent" and outcome.recipients == ("ops@example.com",)
    assert outcome.rejected == ("intake-7f3k@sensors.example.com (intake domain: would loop)",)
    [msg] = sent_to(emulator, ref.message_id)
    assert [a.addr_spec for a in msg["To"].addresses] == ["ops@example.com"]


async def test_a_block_made_by_removing_a_block_does_not_reach_recipients(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator
) -> None:
    nested = ":Email_" + M + "ops@example.com" + M + "Rxers_Code:x@attacker.example" + M
    ref = await put_incoming(aws, resources, plain(ses_block(), f"Pump 2.\n{nested}\nEnd."))
    outcome = await Pipeline(settings, aws).process(ref)
    assert outcome.kind == "sent" and outcome.recipients == ("ops@example.com",)
    [msg] = sent_to(emulator, ref.message_id)
    assert M not in text_of(msg) and "attacker" not in text_of(msg)


async def test_a_body_of_private_use_characters_is_an_email_not_an_error(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator
) -> None:
    """Every private-use character of the BMP in the body: StopIteration, RuntimeError, DLQ before."""
    odd = "".join(chr(c) for c in range(0xE001, 0xF900))
    ref = await put_incoming(aws, resources, plain(ses_block(), f"{odd}\n{M}ops@example.com{M}"))
    outcome = await Pipeline(settings, aws).process(ref)
    assert outcome.kind == "sent"
    [msg] = sent_to(emulator, ref.message_id)
    assert text_of(msg).startswith(odd)


async def test_a_sender_over_its_budget_waits_and_is_sent_later(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator
) -> None:
    """SENSORMAIL_SENDER_RATE: the email over the budget is deferred before anything is stored, its
    claim given back, and it goes once the budget has room."""
    pipeline = Pipeline(replace(settings, sender_rate=1), aws)
    first = await put_incoming(aws, resources, plain(ses_block(), f"one\n{M}ops@example.com{M}"))
    second = await put_incoming(aws, resources, plain(ses_block(), f"two\n{M}ops@example.com{M}"))
    assert (await pipeline.process(first)).kind == "sent"
    with pytest.raises(Deferred) as deferred:
        await pipeline.process(second)
    assert deferred.value.retry_after_s is not None and 50 < deferred.value.retry_after_s <= 60
    assert "over its budget of 1 emails a minute" in str(deferred.value)
    assert sent_to(emulator, second.message_id) == []
    pipeline.sender_budget = SenderBudget(1)  # a minute later
    assert (await pipeline.process(second)).kind == "sent"


async def test_over_budget_the_message_waits_in_the_queue_and_the_canonical_line_says_so(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the consumer: the email over the budget is neither deleted nor dead-lettered; it is
    hidden until the budget has room, and its "email processed" line carries Outcome=deferred (the
    EmailsProcessed metric the SenderOverBudget alarm in deploy/service.yaml watches)."""
    caplog.set_level(logging.INFO, logger="worker.queue.consumer")
    one_a_minute = replace(settings, sender_rate=1)
    for n in range(2):
        await put_incoming(aws, resources, plain(ses_block(), f"email {n}\n{M}ops@example.com{M}"))

    def deferred_lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage() == "email processed" and getattr(r, "outcome", "") == "deferred"]

    outcomes = await run_until(one_a_minute, aws, lambda seen: len(seen) >= 1 and deferred_lines())
    assert [o.kind for o in outcomes] == ["sent"]
    [line] = deferred_lines()[:1]
    assert getattr(line, "Outcome") == "deferred" and getattr(line, "EmailsProcessed") == 1
    waits = [r for r in caplog.records if r.getMessage() == "sender over its budget; the email waits"]
    assert waits and getattr(waits[0], "retry_in_s") >= 50  # hidden until the budget has room
    assert await queue_depth(aws, settings.queue_url) == 1  # still there, in flight (hidden)
    assert await queue_depth(aws, resources.dlq_url) == 0


def test_the_smtp_stand_in_authenticates_a_device_as_ses_smtp_would() -> None:
    """`sensormail local`'s stand-in writes the verdicts of a device on SES SMTP set up by
    deploy/sending.yaml (Easy DKIM, custom MAIL FROM): an allowlisted device passes, a session
    that did not authenticate does not."""
    from email.parser import BytesHeaderParser

    from worker.mail.policy import authenticated, ses_verdicts

    body = b"From: Station 7 <station7@devices.example.com>\r\nSubject: x\r\n\r\nbody\r\n"
    device = ses_headers("abc", "s7@mail.devices.example.com", "intake@mail.example.com", "192.0.2.1",
                         device_domain="devices.example.com")
    anonymous = ses_headers("abc", "s7@devices.example.com", "intake@mail.example.com", "192.0.2.1")
    assert authenticated("devices.example.com", ses_verdicts(BytesHeaderParser().parsebytes(device + body))) is None
    refused = authenticated("devices.example.com", ses_verdicts(BytesHeaderParser().parsebytes(anonymous + body)))
    assert refused is not None and "devices.example.com" in refused
