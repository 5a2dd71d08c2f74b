"""The consumer against the emulator: S3 notification -> SQS -> worker -> settled message."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import anyio
import pytest

from tests.helpers import FlakySes, put_incoming, queue_depth, queue_empty, run_until, sent_to, wait_for
from worker.aws.clients import Clients
from worker.config import Limits, Settings
from worker.local.emulator import Emulator
from worker.local.provision import LocalResources
from worker.pipeline import Outcome
from worker.queue.consumer import serve

pytestmark = pytest.mark.anyio


async def test_s3_event_to_sent_email_and_deleted_message(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, sample: Any
) -> None:
    ref = await put_incoming(aws, resources, sample("alarm-with-csv.eml"))

    outcomes = await run_until(settings, aws, lambda seen: len(seen) >= 1)

    assert [(o.kind, o.ref.key) for o in outcomes] == [("sent", ref.key)]
    assert len(sent_to(emulator, ref.message_id)) == 1
    assert await wait_for(lambda: queue_empty(aws, settings.queue_url))
    assert await queue_depth(aws, resources.dlq_url) == 0


async def test_not_an_event_goes_to_the_dlq_with_its_reason(
    settings: Settings, aws: Clients, resources: LocalResources
) -> None:
    await aws.sqs.send_message(QueueUrl=settings.queue_url, MessageBody="this is not json")

    async def dlq_has_one() -> list[dict[str, Any]]:
        r = await aws.sqs.receive_message(
            QueueUrl=resources.dlq_url, MessageAttributeNames=["All"], WaitTimeSeconds=1
        )
        return list(r.get("Messages", []))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            stop = anyio.Event()
            tg.start_soon(lambda: serve(settings, None, clients=aws, stop=stop))
            [dead] = await wait_for(dlq_has_one)
            stop.set()
    assert dead["Body"] == "this is not json"
    attrs = {k: v["StringValue"] for k, v in dead["MessageAttributes"].items()}
    assert attrs["sensormail.error"] == "BadEvent"
    assert "not JSON" in attrs["sensormail.reason"] or "JSON" in attrs["sensormail.reason"]
    assert await queue_depth(aws, settings.queue_url) == 0


async def test_malformed_email_goes_to_the_dlq_and_the_worker_keeps_running(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, sample: Any
) -> None:
    tight = replace(settings, limits=Limits(max_header_bytes=1024))
    bad = b"Subject: huge\r\nX-Filler: " + b"a" * 4000 + b"\r\n\r\nbody\r\n"
    await put_incoming(aws, resources, bad)

    async def dead() -> list[dict[str, Any]]:
        r = await aws.sqs.receive_message(QueueUrl=resources.dlq_url, MessageAttributeNames=["All"])
        return list(r.get("Messages", []))

    with anyio.fail_after(40):
        async with anyio.create_task_group() as tg:
            stop = anyio.Event()
            outcomes: list[Outcome] = []

            async def seen(o: Outcome) -> None:
                outcomes.append(o)

            tg.start_soon(lambda: serve(tight, seen, clients=aws, stop=stop))
            [message] = await wait_for(dead)
            # the worker is still alive and handles the next email
            await put_incoming(aws, resources, sample("no-recipients.eml"))
            await wait_for(lambda: outcomes)
            stop.set()
    reason = message["MessageAttributes"]["sensormail.reason"]["StringValue"]
    assert "header" in reason.lower() and "1024" in reason
    assert json.loads(message["Body"])["Records"][0]["s3"]["object"]["key"].startswith("incoming")
    assert outcomes[0].kind == "fallback"


async def test_setup_notification_and_test_event_are_acknowledged_not_processed(
    settings: Settings, aws: Clients, resources: LocalResources
) -> None:
    await aws.s3.put_object(
        Bucket=resources.incoming_bucket, Key="incoming/AMAZON_SES_SETUP_NOTIFICATION", Body=b"setup"
    )
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": resources.incoming_bucket}
    await aws.sqs.send_message(QueueUrl=settings.queue_url, MessageBody=json.dumps(test_event))

    outcomes: list[Outcome] = []
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            stop = anyio.Event()

            async def seen(o: Outcome) -> None:
                outcomes.append(o)

            tg.start_soon(lambda: serve(settings, seen, clients=aws, stop=stop))
            await wait_for(lambda: queue_empty(aws, settings.queue_url))
            stop.set()
    assert outcomes == []
    assert await queue_depth(aws, resources.dlq_url) == 0


async def test_heartbeat_keeps_a_slow_email_invisible_so_it_is_handled_once(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, sample: Any
) -> None:
    """Visibility 10 s, work 14 s: without the heartbeat SQS would hand the message out again."""
    short = replace(settings, visibility_timeout_s=10, concurrency=2)
    ref = await put_incoming(aws, resources, sample("alarm-with-csv.eml"))
    outcomes: list[Outcome] = []

    async def slow(outcome: Outcome) -> None:
        outcomes.append(outcome)
        await anyio.sleep(14)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            stop = anyio.Event()
            tg.start_soon(lambda: serve(short, slow, clients=aws, stop=stop))
            await wait_for(lambda: outcomes)
            await wait_for(lambda: queue_empty(aws, short.queue_url), timeout=30)
            stop.set()
    assert len(outcomes) == 1
    assert len(sent_to(emulator, ref.message_id)) == 1


async def test_transient_failure_leaves_the_message_for_redelivery(
    settings: Settings, aws: Clients, resources: LocalResources, sample: Any
) -> None:
    """SES unreachable: not deleted, not dead-lettered, hidden for a backoff, then seen again."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    dead = AioConfig(retries={"max_attempts": 1}, connect_timeout=1)
    async with get_session().create_client("sesv2" if settings.ses_api == "v2" else "ses", endpoint_url="http://127.0.0.1:9", config=dead) as ses:
        broken = Clients(s3=aws.s3, sqs=aws.sqs, sns=aws.sns, ses=ses)
        await put_incoming(aws, resources, sample("alarm-with-csv.eml"))
        stop = anyio.Event()

        async def hidden() -> bool:
            a = await aws.sqs.get_queue_attributes(
                QueueUrl=settings.queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )
            return a["Attributes"] == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "1"}

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: serve(settings, None, clients=broken, stop=stop))
                await anyio.sleep(3)
                stop.set()
        assert await hidden()
        assert await queue_depth(aws, resources.dlq_url) == 0
        # the backoff hides it for 5-10 s on a first failure, then SQS offers it again
        r = await aws.sqs.receive_message(QueueUrl=settings.queue_url, WaitTimeSeconds=15,
                                          MessageSystemAttributeNames=["ApproximateReceiveCount"])
        [again] = r["Messages"]
        assert again["Attributes"]["ApproximateReceiveCount"] == "2"


async def test_one_ses_503_is_retried_on_the_next_delivery_not_after_the_lease(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, sample: Any
) -> None:
    """SES fails once (503): the message comes back after the first backoff (5-10 s) and is sent
    then, once, though the claim's lease is an hour. Before the handler released its claim, every
    redelivery met its own dead claim (InProgressElsewhere) until the lease ended."""
    long_lease = replace(settings, lease_s=3600)
    ses = FlakySes(aws.ses, fail={0})
    ref = await put_incoming(aws, resources, sample("alarm-with-csv.eml"))
    started = time.monotonic()

    outcomes = await run_until(long_lease, replace(aws, ses=ses), lambda seen: len(seen) >= 1, timeout=40)

    took = time.monotonic() - started
    assert [o.kind for o in outcomes] == ["sent"]
    assert ses.calls == 2  # the failed send and the one on the second delivery, nothing between
    assert took < 30, f"sent after {took:.0f} s"
    assert len(sent_to(emulator, ref.message_id)) == 1
    assert await wait_for(lambda: queue_empty(aws, settings.queue_url))
    assert await queue_depth(aws, resources.dlq_url) == 0
