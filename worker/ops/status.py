"""Operator tools: `sensormail status` and `sensormail redrive`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from worker.config import Settings

# Attributes the worker adds when it dead-letters a message; dropped when it goes back.
_OUR_ATTRIBUTES = "sensormail."


@dataclass(frozen=True, slots=True)
class QueueStatus:
    visible: int
    in_flight: int
    delayed: int
    dlq: int | None
    oldest_age_s: float | None  # from CloudWatch; None when it has no data point

    def lines(self) -> list[str]:
        age = "n/a (no CloudWatch data yet)" if self.oldest_age_s is None else f"{self.oldest_age_s:.0f} s"
        return [
            f"waiting:    {self.visible}",
            f"in flight:  {self.in_flight}",
            f"delayed:    {self.delayed}",
            f"oldest:     {age}",
            f"DLQ:        {'not configured' if self.dlq is None else self.dlq}",
        ]


async def queue_status(settings: Settings, sqs: Any, cloudwatch: Any | None) -> QueueStatus:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"]
    attrs = (await sqs.get_queue_attributes(QueueUrl=settings.queue_url, AttributeNames=names))["Attributes"]
    dlq = None
    if settings.dlq_url:
        d = await sqs.get_queue_attributes(QueueUrl=settings.dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
        dlq = int(d["Attributes"]["ApproximateNumberOfMessages"])
    return QueueStatus(
        visible=int(attrs.get(names[0], 0)),
        in_flight=int(attrs.get(names[1], 0)),
        delayed=int(attrs.get(names[2], 0)),
        dlq=dlq,
        oldest_age_s=await _oldest_age(settings.queue_url, cloudwatch) if cloudwatch is not None else None,
    )


async def _oldest_age(queue_url: str, cloudwatch: Any) -> float | None:
    """SQS itself does not report the oldest message's age; CloudWatch does, per minute."""
    now = datetime.now(UTC)
    try:
        stats = await cloudwatch.get_metric_statistics(
            Namespace="AWS/SQS",
            MetricName="ApproximateAgeOfOldestMessage",
            Dimensions=[{"Name": "QueueName", "Value": queue_url.rstrip("/").rsplit("/", 1)[-1]}],
            StartTime=now - timedelta(minutes=10),
            EndTime=now,
            Period=60,
            Statistics=["Maximum"],
        )
    except Exception:
        return None
    points = sorted(stats.get("Datapoints", []), key=lambda p: p["Timestamp"])
    return float(points[-1]["Maximum"]) if points else None


async def redrive(settings: Settings, sqs: Any, limit: int | None = None) -> int:
    """Move up to `limit` (all when None) messages from the DLQ back to the incoming queue.

    Each is sent to the queue before it is deleted from the DLQ, so a crash in between duplicates
    an event (which the progress records absorb) and never loses one.
    """
    if not settings.dlq_url:
        raise ValueError("SENSORMAIL_DLQ_URL is not set: there is no DLQ to redrive")
    moved = 0
    while limit is None or moved < limit:
        want = 10 if limit is None else min(10, limit - moved)
        response = await sqs.receive_message(
            QueueUrl=settings.dlq_url, MaxNumberOfMessages=want, WaitTimeSeconds=1,
            VisibilityTimeout=60, MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if not messages:
            break
        for message in messages:
            attributes = {
                k: v for k, v in message.get("MessageAttributes", {}).items() if not k.startswith(_OUR_ATTRIBUTES)
            }
            extra = {"MessageAttributes": attributes} if attributes else {}
            await sqs.send_message(QueueUrl=settings.queue_url, MessageBody=message["Body"], **extra)
            await sqs.delete_message(QueueUrl=settings.dlq_url, ReceiptHandle=message["ReceiptHandle"])
            moved += 1
    return moved
