"""A revoked email's links stay dead when the email comes back (a redrive, a redelivered event).

Before: keys were `attachments/<id>/<n>-<name>`, so reprocessing an email whose send had not
finished wrote its files back to the very keys revoke had emptied, and the revoked links worked
again; the rest of the recipients then got links too.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from email.message import EmailMessage

import aiohttp
import pytest

from tests.helpers import FlakySes, put_incoming, queue_depth, run_until, sent_to, text_of
from worker.aws.clients import Clients
from worker.aws.revocation import REVOKED_PREFIX
from worker.config import Settings
from worker.errors import RetryableError
from worker.events import S3ObjectRef
from worker.local.emulator import Emulator
from worker.local.provision import LocalResources
from worker.ops.revoke import revoke
from worker.pipeline import REVOKED_REASON, Pipeline

pytestmark = pytest.mark.anyio

CSV = b"time,vibration_mm_s\n08:00,2.1\n08:05,7.9\n" * 50
LINK = re.compile(r"https?://\S+X-Amz-Signature=[0-9a-f]+")


def alarm_for(count: int) -> bytes:
    """An alarm with one attachment for `count` recipients: 50 a send, so two sends for 60."""
    msg = EmailMessage()
    msg["From"] = "station7@devices.example.com"
    msg["Subject"] = "Vibration alarm, pump 2"
    msg.set_content(":Email_Rxers_Code:" + ",".join(f"u{i}@example.com" for i in range(count)) + ":Email_Rxers_Code:")
    msg.add_attachment(CSV, maintype="text", subtype="csv", filename="trend.csv")
    return bytes(msg)


async def fetch(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.read()


def links_sent(emulator: Emulator, ref: S3ObjectRef) -> list[str]:
    return [url for msg in sent_to(emulator, ref.message_id) for url in LINK.findall(text_of(msg))]


def event_for(ref: S3ObjectRef) -> str:
    """The S3 event SQS would deliver again for this object."""
    return json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                                    "s3": {"bucket": {"name": ref.bucket}, "object": {"key": ref.key, "eTag": ref.etag}}}]})


async def assert_dead(emulator: Emulator, url: str) -> None:
    status, body = await fetch(url)
    # S3 answers 403 AccessDenied: the signer may not list the bucket, so S3 does not say the key
    # is gone. The emulators enforce no IAM and say so: 404 NoSuchKey.
    assert status in (403, 404) and CSV not in body
    if emulator.kind == "localstack":
        assert status == 404 and b"NoSuchKey" in body


async def test_a_revoked_email_redelivered_after_a_partial_send_stores_and_sends_nothing(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator
) -> None:
    wide = replace(settings, max_recipients=1000, lease_s=3600)
    ref = await put_incoming(aws, resources, alarm_for(60))
    # SES fails on the second send: the first 50 recipients have their links, 10 are still to go.
    with pytest.raises(RetryableError):
        await Pipeline(wide, replace(aws, ses=FlakySes(aws.ses, fail={1}))).process(ref)
    [link] = links_sent(emulator, ref)
    assert await fetch(link) == (200, CSV)

    moved = await revoke(aws.s3, settings.attachments_bucket, settings.attachments_prefix, message_id=ref.message_id)
    assert len(moved) == 1 and moved[0].startswith(f"{REVOKED_PREFIX}{ref.message_id}/")
    await assert_dead(emulator, link)

    # The event comes back (SQS redelivers it, or an operator redrives it from the DLQ).
    await aws.sqs.send_message(QueueUrl=settings.queue_url, MessageBody=event_for(ref))
    [outcome] = await run_until(wide, aws, lambda seen: len(seen) >= 1)

    await assert_dead(emulator, link)  # before: 200, the file was written back to its old key
    assert (outcome.kind, outcome.reason) == ("duplicate", REVOKED_REASON)
    assert links_sent(emulator, ref) == [link]  # the other 10 recipients got nothing
    assert [len(m["To"].addresses) for m in sent_to(emulator, ref.message_id)] == [50]
    stored = await aws.s3.list_objects_v2(Bucket=settings.attachments_bucket, Prefix=f"attachments/{ref.message_id}/")
    assert stored.get("Contents", []) == []  # no fresh copy of the revoked file
    assert await queue_depth(aws, resources.dlq_url) == 0
    # Later events for it are plain duplicates: the record says revoked.
    again = await Pipeline(wide, aws).process(ref)
    assert (again.kind, again.reason) == ("duplicate", "already revoked")


async def test_a_revoked_email_whose_record_is_gone_is_not_stored_again(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator
) -> None:
    """No progress record (expired, or never written): the files under revoked/ still stop it."""
    ref = await put_incoming(aws, resources, alarm_for(1))
    pipeline = Pipeline(settings, aws)
    first = await pipeline.process(ref)
    [link] = links_sent(emulator, ref)
    await revoke(aws.s3, settings.attachments_bucket, settings.attachments_prefix, message_id=ref.message_id)
    await aws.s3.delete_object(Bucket=settings.attachments_bucket, Key=pipeline.ledger.key_for(ref))

    second = await pipeline.process(ref)

    assert (first.kind, second.kind, second.reason) == ("sent", "duplicate", REVOKED_REASON)
    await assert_dead(emulator, link)
    assert len(sent_to(emulator, ref.message_id)) == 1


async def test_one_revoked_file_stops_the_rest_of_the_send(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator
) -> None:
    """Revoked between two sends of one attempt: the next send does not happen."""
    wide = replace(settings, max_recipients=1000)
    ref = await put_incoming(aws, resources, alarm_for(60))
    ses = FlakySes(aws.ses, fail=set())
    revoked: list[str] = []

    async def send_then_revoke(**kwargs: object) -> object:
        sent = await (ses.real.send_email(**kwargs) if "Content" in kwargs else ses.real.send_raw_email(**kwargs))
        if not revoked:  # an operator revokes the file right after the first send
            [link] = links_sent(emulator, ref)
            key = link.split(f"/{settings.attachments_bucket}/", 1)[1].split("?", 1)[0]
            revoked.extend(await revoke(aws.s3, settings.attachments_bucket, settings.attachments_prefix, key=key))
        return sent

    ses.send_email = send_then_revoke  # type: ignore[method-assign]
    ses.send_raw_email = send_then_revoke  # type: ignore[method-assign]
    outcome = await Pipeline(wide, replace(aws, ses=ses)).process(ref)

    assert (outcome.kind, outcome.reason) == ("duplicate", REVOKED_REASON) and len(revoked) == 1
    assert [len(m["To"].addresses) for m in sent_to(emulator, ref.message_id)] == [50]


async def test_a_retry_without_revocation_stores_new_keys_and_the_first_links_keep_working(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator
) -> None:
    wide = replace(settings, max_recipients=1000, lease_s=3600)
    ref = await put_incoming(aws, resources, alarm_for(60))
    ses = FlakySes(aws.ses, fail={1})
    with pytest.raises(RetryableError):
        await Pipeline(wide, replace(aws, ses=ses)).process(ref)
    outcome = await Pipeline(wide, replace(aws, ses=ses)).process(ref)

    first, second = links_sent(emulator, ref)
    assert outcome.kind == "sent"
    assert first.split("?")[0] != second.split("?")[0]  # another attempt, another key
    assert await fetch(first) == (200, CSV) and await fetch(second) == (200, CSV)
    # revoke by message id reaches the files of every attempt
    moved = await revoke(aws.s3, settings.attachments_bucket, settings.attachments_prefix, message_id=ref.message_id)
    assert len(moved) == 2
    for url in (first, second):
        await assert_dead(emulator, url)
