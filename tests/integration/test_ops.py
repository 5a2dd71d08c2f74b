"""Operator tools against the emulator: redrive and status."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.helpers import queue_depth
from worker.aws.clients import Clients
from worker.config import Settings
from worker.local.provision import LocalResources
from worker.ops.status import queue_status, redrive

pytestmark = pytest.mark.anyio


async def dead_letter(aws: Clients, resources: LocalResources, n: int) -> None:
    for i in range(n):
        await aws.sqs.send_message(
            QueueUrl=resources.dlq_url,
            MessageBody=json.dumps({"n": i}),
            MessageAttributes={
                "sensormail.reason": {"DataType": "String", "StringValue": "BadEvent: test"},
                "origin": {"DataType": "String", "StringValue": "kept"},
            },
        )


async def test_redrive_moves_a_count_then_the_rest_without_our_attributes(
    settings: Settings, aws: Clients, resources: LocalResources
) -> None:
    await aws.sqs.purge_queue(QueueUrl=settings.queue_url)  # moto's s3:TestEvent
    await dead_letter(aws, resources, 13)

    assert await redrive(settings, aws.sqs, 5) == 5
    assert await queue_depth(aws, resources.dlq_url) == 8
    assert await redrive(settings, aws.sqs) == 8
    assert await queue_depth(aws, resources.dlq_url) == 0

    bodies, attrs = [], set()
    while True:
        r = await aws.sqs.receive_message(QueueUrl=settings.queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
        if not r.get("Messages"):
            break
        for m in r["Messages"]:
            bodies.append(json.loads(m["Body"])["n"])
            attrs |= set(m.get("MessageAttributes", {}))
            await aws.sqs.delete_message(QueueUrl=settings.queue_url, ReceiptHandle=m["ReceiptHandle"])
    assert sorted(bodies) == list(range(13))
    assert attrs == {"origin"}


async def test_redrive_without_a_dlq_is_refused(settings: Settings, aws: Clients) -> None:
    with pytest.raises(ValueError, match="SENSORMAIL_DLQ_URL"):
        await redrive(replace(settings, dlq_url=None), aws.sqs)


async def test_status_counts_waiting_in_flight_and_dlq(
    settings: Settings, aws: Clients, resources: LocalResources
) -> None:
    await aws.sqs.purge_queue(QueueUrl=settings.queue_url)
    for i in range(3):
        await aws.sqs.send_message(QueueUrl=settings.queue_url, MessageBody=str(i))
    await aws.sqs.receive_message(QueueUrl=settings.queue_url, MaxNumberOfMessages=1, VisibilityTimeout=60)
    await dead_letter(aws, resources, 2)

    status = await queue_status(settings, aws.sqs, None)

    assert (status.visible, status.in_flight, status.dlq) == (2, 1, 2)
    assert "waiting:    2" in status.lines()
