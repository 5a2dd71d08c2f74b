"""Creates what the CloudFormation templates create in production, on an emulator, through the API.

Emulators skip parts of CloudFormation (moto ignores bucket notifications and lifecycle rules in
templates), so local runs and tests create the resources directly: both buckets, the incoming
queue with its DLQ and redrive policy, the ObjectCreated notification, both topics, the verified
sender, and a queue subscribed to the fallback topic so notices can be read back.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

INCOMING_PREFIX = "incoming/"
MAX_RECEIVE_COUNT = 10  # as deploy/pipeline.yaml's default


@dataclass(frozen=True, slots=True)
class LocalResources:
    incoming_bucket: str
    attachments_bucket: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    fallback_topic_arn: str
    alarms_topic_arn: str
    fallback_inbox_url: str  # an SQS queue subscribed (raw) to the fallback topic
    sender: str

    def worker_env(self) -> dict[str, str]:
        """The SENSORMAIL_* variables `sensormail run` needs for these resources."""
        return {
            "SENSORMAIL_QUEUE_URL": self.queue_url,
            "SENSORMAIL_DLQ_URL": self.dlq_url,
            "SENSORMAIL_ATTACHMENTS_BUCKET": self.attachments_bucket,
            "SENSORMAIL_SENDER": self.sender,
            "SENSORMAIL_FALLBACK_TOPIC_ARN": self.fallback_topic_arn,
            # Closed by default: the bundled samples write to these domains only.
            "SENSORMAIL_ALLOWED_RECIPIENT_DOMAINS": "example.com,example.org",
        }


@asynccontextmanager
async def emulator_clients() -> AsyncIterator[dict[str, Any]]:
    """Plain clients on the emulator named by AWS_ENDPOINT_URL (path-style S3)."""
    session = get_session()
    async with AsyncExitStack() as stack:
        clients = {}
        for name in ("s3", "sqs", "sns", "ses"):
            config = AioConfig(s3={"addressing_style": "path"}) if name == "s3" else None
            clients[name] = await stack.enter_async_context(session.create_client(name, config=config))
        yield clients


async def provision(prefix: str = "sensormail", sender: str = "sensormail@example.com") -> LocalResources:
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    async with emulator_clients() as c:
        s3, sqs, sns, ses = c["s3"], c["sqs"], c["sns"], c["ses"]
        incoming, attachments = f"{prefix}-incoming", f"{prefix}-attachments"
        for bucket in (incoming, attachments):
            await _create_bucket(s3, bucket)

        dlq_url = on_endpoint((await sqs.create_queue(QueueName=f"{prefix}-dlq"))["QueueUrl"], endpoint)
        dlq_arn = await _queue_arn(sqs, dlq_url)
        queue_url = on_endpoint((
            await sqs.create_queue(
                QueueName=f"{prefix}-incoming",
                Attributes={
                    "VisibilityTimeout": "60",
                    "RedrivePolicy": json.dumps(
                        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
                    ),
                },
            )
        )["QueueUrl"], endpoint)
        queue_arn = await _queue_arn(sqs, queue_url)
        await s3.put_bucket_notification_configuration(
            Bucket=incoming,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": queue_arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": INCOMING_PREFIX}]}},
                    }
                ]
            },
        )

        fallback_arn = (await sns.create_topic(Name=f"{prefix}-fallback"))["TopicArn"]
        alarms_arn = (await sns.create_topic(Name=f"{prefix}-alarms"))["TopicArn"]
        inbox_url = on_endpoint((await sqs.create_queue(QueueName=f"{prefix}-fallback-inbox"))["QueueUrl"], endpoint)
        await sns.subscribe(
            TopicArn=fallback_arn,
            Protocol="sqs",
            Endpoint=await _queue_arn(sqs, inbox_url),
            Attributes={"RawMessageDelivery": "true"},
        )
        await ses.verify_email_identity(EmailAddress=sender)
        return LocalResources(
            incoming_bucket=incoming,
            attachments_bucket=attachments,
            queue_url=queue_url,
            queue_arn=queue_arn,
            dlq_url=dlq_url,
            fallback_topic_arn=fallback_arn,
            alarms_topic_arn=alarms_arn,
            fallback_inbox_url=inbox_url,
            sender=sender,
        )


def on_endpoint(queue_url: str, endpoint: str) -> str:
    """The queue's URL on the emulator's endpoint. LocalStack names its queues on
    `sqs.<region>.localhost.localstack.cloud:4566`, which needs public DNS and the container's own
    port; SQS finds a queue by the account and name in the URL's path, so the endpoint that the
    caller (or a container) reaches serves as well."""
    account, name = urlsplit(queue_url).path.rstrip("/").split("/")[-2:]
    return f"{endpoint.rstrip('/')}/{account}/{name}"


async def _create_bucket(s3: Any, bucket: str) -> None:
    region = s3.meta.region_name
    args: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        args["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        await s3.create_bucket(**args)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass


async def _queue_arn(sqs: Any, url: str) -> str:
    attrs = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attrs["Attributes"]["QueueArn"])
