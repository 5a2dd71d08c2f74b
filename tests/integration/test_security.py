"""Who may send, to whom, and what SES said: each rule attacked through the real pipeline."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tests.helpers import fallback_notices, put_incoming, sent_to, wait_for
from worker.aws.clients import Clients
from worker.config import Settings
from worker.local.emulator import Emulator
from worker.local.provision import LocalResources
from worker.local.smtp import ses_headers
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
