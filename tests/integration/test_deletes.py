"""Handled messages are deleted in shared DeleteMessageBatch calls against the emulator's SQS;
failures are logged with their reason, and stopping sends what is waiting."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import anyio
import pytest

from tests.helpers import put_incoming, queue_depth, queue_empty, run_until, sent_to, wait_for
from worker.aws.clients import Clients
from worker.config import Settings
from worker.local.emulator import Emulator
from worker.local.provision import LocalResources
from worker.queue.deletes import BatchDeleter

pytestmark = pytest.mark.anyio


class GatedSQS:
    """The real client, counting DeleteMessageBatch calls; while `gate` is set, calls wait for it."""

    def __init__(self, sqs: Any) -> None:
        self._sqs = sqs
        self.calls: list[int] = []
        self.gate: anyio.Event | None = None
        self.fail_with: Exception | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)

    async def delete_message(self, **kwargs: Any) -> Any:
        raise AssertionError("handled messages are deleted in batches")

    async def delete_message_batch(self, **kwargs: Any) -> Any:
        self.calls.append(len(kwargs["Entries"]))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return await self._sqs.delete_message_batch(**kwargs)


@pytest.fixture
async def url(aws: Clients) -> str:
    """A queue of its own: the worker's queue may still hold S3's test event."""
    created = await aws.sqs.create_queue(QueueName=f"deletes-{uuid.uuid4().hex[:12]}")
    return str(created["QueueUrl"])


async def receive(aws: Clients, url: str, count: int) -> list[str]:
    for n in range(count):
        await aws.sqs.send_message(QueueUrl=url, MessageBody=f"m{n}")
    receipts: list[str] = []
    while len(receipts) < count:
        got = await aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        receipts += [m["ReceiptHandle"] for m in got.get("Messages", [])]
    return receipts


@asynccontextmanager
async def sender(sqs: GatedSQS, url: str, linger_s: float = 0.2) -> AsyncIterator[BatchDeleter]:
    """A running sender; leaving the block stops it as the worker's shutdown does."""
    deleter = BatchDeleter(sqs, url, linger_s=linger_s)
    async with anyio.create_task_group() as tg:
        await tg.start(deleter.run)
        yield deleter
        tg.cancel_scope.cancel()


def warnings(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str]]:
    return [(r.getMessage(), getattr(r, "sqs_message_id", ""), getattr(r, "error", ""))
            for r in caplog.records if r.name == "worker.queue.deletes"]


async def test_handled_messages_go_ten_to_a_call(url: str, aws: Clients) -> None:
    receipts = await receive(aws, url, 13)
    sqs = GatedSQS(aws.sqs)

    async with sender(sqs, url) as deleter:
        for n, receipt in enumerate(receipts):
            deleter.submit(receipt, f"m{n}")
        await wait_for(lambda: sum(sqs.calls) == 13)

    assert sqs.calls == [10, 3]  # 10 at once; the other 3 after the linger
    assert await queue_empty(aws, url)


async def test_a_lone_message_goes_after_the_linger(url: str, aws: Clients) -> None:
    [receipt] = await receive(aws, url, 1)
    sqs = GatedSQS(aws.sqs)

    async with sender(sqs, url, linger_s=0.2) as deleter:
        deleter.submit(receipt, "m0")
        await wait_for(lambda: sqs.calls == [1], timeout=5)

    assert await queue_empty(aws, url)


async def test_a_refused_entry_is_logged_and_the_rest_deleted(
    url: str, aws: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    [good] = await receive(aws, url, 1)
    sqs = GatedSQS(aws.sqs)

    async with sender(sqs, url) as deleter:
        deleter.submit(good, "good")
        deleter.submit("not-a-receipt-handle", "bad")
        await wait_for(lambda: sqs.calls == [2])
        await wait_for(lambda: warnings(caplog))

    # SQS answers 200 with one entry failed: only that one is reported.
    [(message, message_id, error)] = warnings(caplog)
    assert (message, message_id) == ("delete failed; SQS will redeliver it", "bad")
    assert "ReceiptHandle" in error or "receipt" in error.lower()
    assert await queue_empty(aws, url)


async def test_a_failed_call_is_logged_and_the_sender_goes_on(
    url: str, aws: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    doomed, later = await receive(aws, url, 2)
    sqs = GatedSQS(aws.sqs)
    sqs.fail_with = ConnectionError("queue unreachable")

    async with sender(sqs, url, linger_s=0.05) as deleter:
        deleter.submit(doomed, "doomed")
        await wait_for(lambda: warnings(caplog))
        sqs.fail_with = None
        deleter.submit(later, "later")
        await wait_for(lambda: sqs.calls == [1, 1])

    [(_, message_id, error)] = warnings(caplog)
    assert message_id == "doomed" and "queue unreachable" in error
    assert await queue_depth(aws, url) == 1  # the doomed one, to be redelivered


async def test_stopping_sends_what_is_waiting(url: str, aws: Clients) -> None:
    receipts = await receive(aws, url, 3)
    sqs = GatedSQS(aws.sqs)

    with anyio.fail_after(10):
        async with sender(sqs, url, linger_s=60) as deleter:  # a linger that never ends by itself
            for n, receipt in enumerate(receipts):
                deleter.submit(receipt, f"m{n}")
            await anyio.wait_all_tasks_blocked()

    assert sqs.calls == [3]
    assert await queue_empty(aws, url)


async def test_stopping_gives_up_on_a_hanging_call_within_its_limit(
    url: str, aws: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    [receipt] = await receive(aws, url, 1)
    sqs = GatedSQS(aws.sqs)
    sqs.gate = anyio.Event()  # never set: every call hangs

    with anyio.fail_after(10):  # FLUSH_S, not the 30 s call timeout
        async with sender(sqs, url, linger_s=0.01) as deleter:
            deleter.submit(receipt, "m0")
            await wait_for(lambda: sqs.calls)

    assert ("not deleted before the worker stopped; SQS will redeliver it", "m0", "") in warnings(caplog)
    assert await queue_depth(aws, url) == 1


async def test_the_worker_deletes_handled_messages_in_batches(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, sample: Any
) -> None:
    refs = [await put_incoming(aws, resources, sample("alarm-with-csv.eml")) for _ in range(8)]
    sqs = GatedSQS(aws.sqs)

    outcomes = await run_until(replace(settings, concurrency=8), replace(aws, sqs=sqs), lambda seen: len(seen) >= 8)

    assert sorted(o.ref.key for o in outcomes) == sorted(r.key for r in refs)
    assert all(len(sent_to(emulator, r.message_id)) == 1 for r in refs)
    assert await wait_for(lambda: queue_empty(aws, settings.queue_url))
    assert sum(sqs.calls) in (8, 9)  # the 8 emails, and S3's test event when it is still queued
