"""Progress records: a duplicated or redelivered event never sends twice."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from email.message import EmailMessage
from typing import Any

import anyio
import pytest

from tests.helpers import FlakySes, put_incoming, queue_depth, queue_empty, run_until, sent_to, wait_for
from worker.aws.clients import Clients
from worker.aws.ledger import InProgressElsewhere, Ledger, LostClaim, Record
from worker.config import Settings
from worker.errors import RetryableError
from worker.local.emulator import Emulator
from worker.local.provision import LocalResources
from worker.pipeline import Pipeline

pytestmark = pytest.mark.anyio


def many_recipients(count: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = "device@example.com"
    msg["Subject"] = "Batches"
    msg.set_content(":Email_Rxers_Code:" + ",".join(f"u{i}@example.com" for i in range(count)) + ":Email_Rxers_Code:")
    return bytes(msg)


async def test_the_same_object_processed_twice_sends_once(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, sample: Any
) -> None:
    ref = await put_incoming(aws, resources, sample("alarm-with-csv.eml"))
    first = await Pipeline(settings, aws).process(ref)
    second = await Pipeline(settings, aws).process(ref)
    assert (first.kind, second.kind, second.reason) == ("sent", "duplicate", "already sent")
    assert len(sent_to(emulator, ref.message_id)) == 1


async def test_fallback_is_also_published_once(
    settings: Settings, aws: Clients, resources: LocalResources, sample: Any
) -> None:
    ref = await put_incoming(aws, resources, sample("no-recipients.eml"))
    assert (await Pipeline(settings, aws).process(ref)).kind == "fallback"
    assert (await Pipeline(settings, aws).process(ref)).kind == "duplicate"
    r = await aws.sqs.receive_message(QueueUrl=resources.fallback_inbox_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    assert len(r["Messages"]) == 1


async def test_duplicated_sqs_events_with_two_handlers_send_once(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, sample: Any
) -> None:
    """S3 may emit two events for one object; both reach the queue, both are settled, one send."""
    ref = await put_incoming(aws, resources, sample("html-two-images.eml"))  # S3 notifies once
    again = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                          "s3": {"bucket": {"name": ref.bucket}, "object": {"key": ref.key, "eTag": ref.etag}}}]}
    for _ in range(2):
        await aws.sqs.send_message(QueueUrl=settings.queue_url, MessageBody=json.dumps(again))

    outcomes = await run_until(replace(settings, concurrency=3), aws, lambda seen: len(seen) >= 3)

    kinds = sorted(o.kind for o in outcomes)
    assert kinds == ["duplicate", "duplicate", "sent"]
    assert len(sent_to(emulator, ref.message_id)) == 1
    assert await wait_for(lambda: queue_empty(aws, settings.queue_url))
    assert await queue_depth(aws, resources.dlq_url) == 0


async def test_a_retry_after_a_partial_send_sends_only_the_missing_batches(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator
) -> None:
    ref = await put_incoming(aws, resources, many_recipients(120))
    ledger = Ledger(aws.s3, settings.attachments_bucket)
    crashed = Record(status="processing", owner="crashed-worker", lease_until=time.time() - 1,
                     sent_batches=(0,), ses_message_ids=("earlier",))
    await aws.s3.put_object(Bucket=settings.attachments_bucket, Key=ledger.key_for(ref), Body=crashed.to_json())

    outcome = await Pipeline(replace(settings, max_recipients=1000), aws).process(ref)

    sends = sent_to(emulator, ref.message_id)
    assert [len(m["To"].addresses) for m in sends] == [50, 20]  # batch 0 was already sent
    assert outcome.ses_message_ids[0] == "earlier" and len(outcome.ses_message_ids) == 3
    body = await aws.s3.get_object(Bucket=settings.attachments_bucket, Key=ledger.key_for(ref))
    record = json.loads(await body["Body"].read())
    assert record["status"] == "done" and record["sent_batches"] == [0, 1, 2] and record["attempts"] == 2


async def test_a_live_claim_elsewhere_is_retried_not_sent(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, sample: Any
) -> None:
    ref = await put_incoming(aws, resources, sample("alarm-with-csv.eml"))
    other = Ledger(aws.s3, settings.attachments_bucket, owner="other-worker")
    await other.claim(ref)
    with pytest.raises(InProgressElsewhere):
        await Pipeline(settings, aws).process(ref)
    assert sent_to(emulator, ref.message_id) == []


async def test_a_handler_that_lost_its_claim_stops_before_sending(
    settings: Settings, aws: Clients, resources: LocalResources
) -> None:
    ref = await put_incoming(aws, resources, many_recipients(3))
    slow = Ledger(aws.s3, settings.attachments_bucket, lease_s=30, owner="slow")
    claim = await slow.claim(ref)
    # the lease expires; another handler takes the record over
    expired = replace(claim.record, lease_until=time.time() - 1)
    put = await aws.s3.put_object(Bucket=settings.attachments_bucket, Key=claim.key, Body=expired.to_json(), IfMatch=claim.etag)
    claim.etag, claim.record = put["ETag"], expired
    await Ledger(aws.s3, settings.attachments_bucket, owner="fast").claim(ref)
    with pytest.raises(LostClaim):
        await slow.renew_if_needed(claim)


async def test_concurrent_claims_have_one_winner(settings: Settings, aws: Clients, resources: LocalResources, sample: Any) -> None:
    ref = await put_incoming(aws, resources, sample("alarm-with-csv.eml"))
    results: list[str] = []

    async def contend(owner: str) -> None:
        try:
            await Ledger(aws.s3, settings.attachments_bucket, owner=owner).claim(ref)
            results.append("won")
        except InProgressElsewhere:
            results.append("lost")

    async with anyio.create_task_group() as tg:
        for n in range(5):
            tg.start_soon(contend, f"w{n}")
    assert sorted(results) == ["lost"] * 4 + ["won"]


async def read_record(aws: Clients, settings: Settings, ref: Any) -> dict[str, Any]:
    key = Ledger(aws.s3, settings.attachments_bucket).key_for(ref)
    response = await aws.s3.get_object(Bucket=settings.attachments_bucket, Key=key)
    record: dict[str, Any] = json.loads(await response["Body"].read())
    return record


async def test_a_transient_failure_releases_the_claim_so_the_next_delivery_sends_at_once(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, sample: Any
) -> None:
    """SES answers 503 once: the handler gives its lease back, so the redelivery does not meet its
    own dead claim (InProgressElsewhere) for the rest of a one-hour lease."""
    long_lease = replace(settings, lease_s=3600)
    ref = await put_incoming(aws, resources, sample("alarm-with-csv.eml"))
    ses = FlakySes(aws.ses, fail={0})

    with pytest.raises(RetryableError, match="ServiceUnavailable"):
        await Pipeline(long_lease, replace(aws, ses=ses)).process(ref)
    released = await read_record(aws, settings, ref)
    assert released["status"] == "processing" and released["lease_until"] <= time.time()
    assert released["sent_batches"] == []

    outcome = await Pipeline(long_lease, replace(aws, ses=ses)).process(ref)

    assert outcome.kind == "sent" and ses.calls == 2
    assert len(sent_to(emulator, ref.message_id)) == 1
    record = await read_record(aws, settings, ref)
    assert (record["status"], record["attempts"]) == ("done", 2)
    assert (await Pipeline(long_lease, aws).process(ref)).kind == "duplicate"
    assert len(sent_to(emulator, ref.message_id)) == 1


async def test_a_failure_after_a_recorded_batch_does_not_resend_that_batch(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator
) -> None:
    """120 recipients, 3 batches; SES fails on the second: the retry sends batches 1 and 2 only."""
    long_lease = replace(settings, lease_s=3600, max_recipients=1000)
    ref = await put_incoming(aws, resources, many_recipients(120))
    ses = FlakySes(aws.ses, fail={1})

    with pytest.raises(RetryableError):
        await Pipeline(long_lease, replace(aws, ses=ses)).process(ref)
    released = await read_record(aws, settings, ref)
    assert released["sent_batches"] == [0] and released["lease_until"] <= time.time()
    assert [len(m["To"].addresses) for m in sent_to(emulator, ref.message_id)] == [50]

    outcome = await Pipeline(long_lease, replace(aws, ses=ses)).process(ref)

    sends = sent_to(emulator, ref.message_id)
    assert [len(m["To"].addresses) for m in sends] == [50, 50, 20]
    everyone = [a.addr_spec for m in sends for a in m["To"].addresses]
    assert sorted(everyone) == sorted(f"u{i}@example.com" for i in range(120))  # each exactly once
    assert outcome.kind == "sent" and len(outcome.ses_message_ids) == 3
    record = await read_record(aws, settings, ref)
    assert (record["status"], record["sent_batches"], record["attempts"]) == ("done", [0, 1, 2], 2)


async def test_a_release_never_undoes_a_take_over(
    settings: Settings, aws: Clients, resources: LocalResources, sample: Any
) -> None:
    """The release is a conditional write too: a handler whose claim was taken over releases
    nothing, so the new owner keeps its lease and nobody else can claim alongside it."""
    ref = await put_incoming(aws, resources, sample("alarm-with-csv.eml"))
    slow = Ledger(aws.s3, settings.attachments_bucket, lease_s=30, owner="slow")
    claim = await slow.claim(ref)
    expired = replace(claim.record, lease_until=time.time() - 1)
    put = await aws.s3.put_object(Bucket=settings.attachments_bucket, Key=claim.key, Body=expired.to_json(), IfMatch=claim.etag)
    claim.etag, claim.record = put["ETag"], expired
    fast = await Ledger(aws.s3, settings.attachments_bucket, owner="fast").claim(ref)

    await slow.release(claim)

    record = await read_record(aws, settings, ref)
    assert record["owner"] == fast.record.owner and record["lease_until"] > time.time()
    with pytest.raises(InProgressElsewhere):
        await Ledger(aws.s3, settings.attachments_bucket, owner="third").claim(ref)


async def test_losing_the_race_to_take_over_an_expired_claim_waits_for_the_winners_lease(
    settings: Settings, aws: Clients, resources: LocalResources, sample: Any
) -> None:
    """Two handlers find the same expired lease; one takes it over, the other looks again once the
    winner's fresh lease ends, not after a growing backoff (a SIGKILLed worker's duplicated events)."""
    ref = await put_incoming(aws, resources, sample("alarm-with-csv.eml"))
    ledger = Ledger(aws.s3, settings.attachments_bucket, lease_s=30)
    claim = await ledger.claim(ref)
    expired = replace(claim.record, lease_until=time.time() - 1)
    await aws.s3.put_object(Bucket=settings.attachments_bucket, Key=claim.key, Body=expired.to_json(), IfMatch=claim.etag)

    async def claim_or_error() -> object:
        try:
            return await ledger.claim(ref)
        except InProgressElsewhere as error:
            return error

    results: list[object] = []

    async def one() -> None:
        results.append(await claim_or_error())

    async with anyio.create_task_group() as group:
        for _ in range(4):
            group.start_soon(one)
    winners = [r for r in results if not isinstance(r, InProgressElsewhere)]
    losers = [r for r in results if isinstance(r, InProgressElsewhere)]
    assert len(winners) == 1 and len(losers) == 3, results
    assert all(loser.retry_after_s is not None and 1 < loser.retry_after_s <= 31 for loser in losers)
