"""Handled messages are deleted in shared DeleteMessageBatch calls, each handler getting its own
result, against the emulator's SQS."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import anyio
import pytest

from tests.helpers import put_incoming, queue_depth, queue_empty, run_until, sent_to, wait_for
from worker.aws import Clients
from worker.config import Settings
from worker.deletes import BatchDeleter, DeleteFailed
from worker.local.emulator import Emulator
from worker.local.provision import LocalResources

pytestmark = pytest.mark.anyio


class CountingSQS:
    def __init__(self, sqs: Any) -> None:
        self._sqs = sqs
        self.calls: list[tuple[str, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)

    async def delete_message(self, **kwargs: Any) -> Any:
        self.calls.append(("DeleteMessage", 1))
        return await self._sqs.delete_message(**kwargs)

    async def delete_message_batch(self, **kwargs: Any) -> Any:
        self.calls.append(("DeleteMessageBatch", len(kwargs["Entries"])))
        return await self._sqs.delete_message_batch(**kwargs)


async def test_emails_finishing_together_share_delete_calls(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, sample: Any
) -> None:
    refs = [await put_incoming(aws, resources, sample("alarm-with-csv.eml")) for _ in range(8)]
    sqs = CountingSQS(aws.sqs)

    outcomes = await run_until(replace(settings, concurrency=8), replace(aws, sqs=sqs), lambda seen: len(seen) >= 8)

    assert sorted(o.ref.key for o in outcomes) == sorted(r.key for r in refs)
    assert all(len(sent_to(emulator, r.message_id)) == 1 for r in refs)
    assert await wait_for(lambda: queue_empty(aws, settings.queue_url))
    assert [name for name, _ in sqs.calls] == ["DeleteMessageBatch"] * len(sqs.calls)
    deleted = sum(n for _, n in sqs.calls)  # the 8 emails, and S3's test event when it is still queued
    assert deleted in (8, 9)
    assert len(sqs.calls) < deleted  # some shared a call


async def test_a_refused_entry_fails_only_its_own_handler(settings: Settings, aws: Clients) -> None:
    await aws.sqs.send_message(QueueUrl=settings.queue_url, MessageBody="x")
    [message] = (await aws.sqs.receive_message(QueueUrl=settings.queue_url, WaitTimeSeconds=1))["Messages"]
    before = await queue_depth(aws, settings.queue_url)
    deleter = BatchDeleter(aws.sqs, settings.queue_url, busy=lambda: 2, linger_s=1.0)
    results: dict[str, Exception | None] = {}

    async def delete(name: str, receipt: str) -> None:
        try:
            await deleter.delete(receipt)
            results[name] = None
        except Exception as error:
            results[name] = error

    async with anyio.create_task_group() as tg:
        tg.start_soon(delete, "good", message["ReceiptHandle"])
        await anyio.sleep(0.1)
        tg.start_soon(delete, "bad", "not-a-receipt-handle")

    assert results["good"] is None
    assert isinstance(results["bad"], DeleteFailed)
    assert await queue_depth(aws, settings.queue_url) == before - 1


async def test_the_batch_goes_as_soon_as_every_busy_handler_has_joined(settings: Settings, aws: Clients) -> None:
    for body in ("a", "b"):
        await aws.sqs.send_message(QueueUrl=settings.queue_url, MessageBody=body)
    received = (await aws.sqs.receive_message(QueueUrl=settings.queue_url, MaxNumberOfMessages=2, WaitTimeSeconds=1))
    assert len(received["Messages"]) == 2
    sqs = CountingSQS(aws.sqs)
    deleter = BatchDeleter(sqs, settings.queue_url, busy=lambda: 2, linger_s=60.0)

    with anyio.fail_after(10):  # not the 60 s linger
        async with anyio.create_task_group() as tg:
            for message in received["Messages"]:
                tg.start_soon(deleter.delete, message["ReceiptHandle"])

    assert sqs.calls == [("DeleteMessageBatch", 2)]


async def test_a_handler_ending_without_a_delete_releases_the_linger(settings: Settings, aws: Clients) -> None:
    await aws.sqs.send_message(QueueUrl=settings.queue_url, MessageBody="x")
    [message] = (await aws.sqs.receive_message(QueueUrl=settings.queue_url, WaitTimeSeconds=1))["Messages"]
    busy = 2
    deleter = BatchDeleter(aws.sqs, settings.queue_url, busy=lambda: busy, linger_s=60.0)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(deleter.delete, message["ReceiptHandle"])
            await anyio.sleep(0.1)
            busy = 1  # the other handler settled its message another way (retry, dead letter)
            deleter.wake()
