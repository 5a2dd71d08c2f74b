"""What the doctor examines, found from as little as the worker's own settings.

Given the queue (SENSORMAIL_QUEUE_URL, or a pipeline stack's outputs) it finds the rest: the stacks'
outputs and parameters when named, the incoming bucket from the S3 notifications that target the
queue (or the receipt rule's S3 action), the receipt rule and the intake address from SES, the DLQ
from the queue's redrive policy, the alarms topic from the alarms that watch the queue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import anyio

from worker.config import Settings

NOTIFICATION_SCAN_LIMIT = 8  # buckets whose notifications are read at once while looking for ours


@dataclass(frozen=True, slots=True)
class DoctorClients:
    """One client per service; `ses` is SES v1 (receipt rules and identities exist only there)."""

    s3: Any
    sqs: Any
    sns: Any
    ses: Any
    sesv2: Any
    cloudwatch: Any
    ecs: Any
    cloudformation: Any
    secrets: Any


@dataclass(slots=True)
class Target:
    region: str
    queue_url: str
    emulator: bool = False  # AWS_ENDPOINT_URL set: `sensormail local` or a test
    queue_arn: str | None = None
    dlq_url: str | None = None  # as the worker is configured (SENSORMAIL_DLQ_URL)
    attachments_bucket: str | None = None
    sender: str | None = None
    fallback_topic_arn: str | None = None
    alarms_topic_arn: str | None = None
    incoming_bucket: str | None = None
    incoming_prefix: str = "incoming/"
    intake: str | None = None
    mail_domain: str | None = None
    configuration_set: str | None = None
    cluster: str | None = None
    service: str | None = None
    log_group: str | None = None
    device_domains: tuple[str, ...] = ()
    recipients: tuple[str, ...] = ()  # addresses to check against the sandbox and suppression list
    allowed_recipient_domains: tuple[str, ...] = ()
    found_by: dict[str, str] = field(default_factory=dict)  # what came from where, for the report

    @property
    def queue_name(self) -> str:
        return self.queue_url.rstrip("/").rsplit("/", 1)[-1]

    def note(self, name: str, value: object, how: str) -> None:
        if value:
            self.found_by[name] = how

    def as_dict(self) -> dict[str, object]:
        keys = ("region", "queue_url", "dlq_url", "incoming_bucket", "attachments_bucket", "sender",
                "fallback_topic_arn", "alarms_topic_arn", "intake", "mail_domain", "configuration_set",
                "cluster", "service")
        return {k: getattr(self, k) for k in keys} | {"found_by": dict(self.found_by)}


def from_settings(settings: Settings, region: str, *, recipients: tuple[str, ...] = (),
                  device_domains: tuple[str, ...] = ()) -> Target:
    senders = tuple(s.rsplit("@", 1)[-1] for s in settings.allowed_senders)
    target = Target(
        region=region, queue_url=settings.queue_url, emulator=bool(settings.endpoint_url),
        dlq_url=settings.dlq_url, attachments_bucket=settings.attachments_bucket or None,
        sender=settings.sender or None, fallback_topic_arn=settings.fallback_topic_arn or None,
        intake=settings.intake_address, configuration_set=settings.configuration_set,
        cluster=settings.ecs_cluster, service=settings.ecs_service,
        device_domains=tuple(dict.fromkeys(device_domains + senders)),
        recipients=recipients, allowed_recipient_domains=settings.allowed_recipient_domains,
    )
    for name in ("queue_url", "dlq_url", "attachments_bucket", "sender", "fallback_topic_arn", "intake",
                 "configuration_set", "cluster", "service"):
        target.note(name, getattr(target, name), "settings")
    return target


async def stack_outputs(cloudformation: Any, name: str) -> tuple[dict[str, str], dict[str, str]]:
    """(outputs, parameters) of one stack."""
    [stack] = (await cloudformation.describe_stacks(StackName=name))["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
    return outputs, parameters


def apply_pipeline_stack(target: Target, name: str, outputs: dict[str, str]) -> None:
    """Outputs fill what the settings left open (the settings win: they are what the worker uses)."""
    for attr, key in (("queue_url", "QueueUrl"), ("dlq_url", "DeadLetterQueueUrl"),
                      ("incoming_bucket", "IncomingBucketName"), ("attachments_bucket", "AttachmentsBucketName"),
                      ("fallback_topic_arn", "FallbackTopicArn"), ("alarms_topic_arn", "AlarmsTopicArn"),
                      ("mail_domain", "MailDomain")):
        if not getattr(target, attr) and outputs.get(key):
            setattr(target, attr, outputs[key])
            target.note(attr, outputs[key], f"stack {name}")


def apply_service_stack(target: Target, name: str, outputs: dict[str, str], parameters: dict[str, str]) -> None:
    for attr, value in (("cluster", outputs.get("ClusterName")), ("service", outputs.get("ServiceName")),
                        ("log_group", outputs.get("LogGroupName")), ("sender", parameters.get("SenderAddress")),
                        ("configuration_set", parameters.get("ConfigurationSetName"))):
        if not getattr(target, attr) and value:
            setattr(target, attr, value)
            target.note(attr, value, f"stack {name}")
    allowed = [s.strip().lower() for s in parameters.get("AllowedSenders", "").split(",") if s.strip()]
    target.device_domains = tuple(dict.fromkeys(target.device_domains + tuple(a.rsplit("@", 1)[-1] for a in allowed)))


async def queue_facts(sqs: Any, target: Target) -> dict[str, str]:
    """The queue's attributes; sets its ARN. Raises what SQS raises when the queue is not there."""
    attrs: dict[str, str] = (await sqs.get_queue_attributes(QueueUrl=target.queue_url, AttributeNames=["All"]))["Attributes"]
    target.queue_arn = attrs.get("QueueArn")
    return attrs


def redrive_target(attrs: dict[str, str]) -> tuple[str | None, int | None]:
    """(DLQ ARN, maxReceiveCount) from a queue's RedrivePolicy, or (None, None)."""
    raw = attrs.get("RedrivePolicy")
    if not raw:
        return None, None
    policy = json.loads(raw)
    return policy.get("deadLetterTargetArn"), int(policy.get("maxReceiveCount", 0)) or None


def queue_url_of(arn: str, like: str) -> str:
    """The URL of the queue `arn` on the endpoint of the queue URL `like`: SQS URLs are
    <endpoint>/<account>/<name>, and an emulator's endpoint is the one this machine reaches."""
    _, _, _, _, account, name = arn.split(":", 5)
    base = like.rstrip("/").rsplit("/", 2)[0]
    return f"{base}/{account}/{name}"


def notifies_queue(config: dict[str, Any], queue_arn: str, prefix: str) -> dict[str, Any] | None:
    """The bucket's queue notification that sends ObjectCreated events for `prefix` to `queue_arn`."""
    for entry in config.get("QueueConfigurations", []):
        if entry.get("QueueArn") != queue_arn:
            continue
        if not any(e in ("s3:ObjectCreated:*", "s3:ObjectCreated:Put") for e in entry.get("Events", [])):
            continue
        rules = entry.get("Filter", {}).get("Key", {}).get("FilterRules", [])
        wanted = {r.get("Name", "").lower(): r.get("Value", "") for r in rules}
        if prefix.startswith(wanted.get("prefix", "")) and not wanted.get("suffix"):
            return dict(entry)
    return None


async def bucket_notifying(s3: Any, queue_arn: str, prefix: str, first: list[str]) -> str | None:
    """The bucket whose notifications send `prefix`'s new objects to the queue: the candidates in
    `first` (a stack output, the receipt rule's bucket), then every bucket of the account."""

    async def check(bucket: str) -> bool:
        try:
            config = await s3.get_bucket_notification_configuration(Bucket=bucket)
        except Exception:
            return False  # another owner's or a vanished bucket: not ours
        return notifies_queue(config, queue_arn, prefix) is not None

    for bucket in first:
        if await check(bucket):
            return bucket
    names = [b["Name"] for b in (await s3.list_buckets()).get("Buckets", []) if b["Name"] not in first]
    found: list[str] = []
    limiter = anyio.CapacityLimiter(NOTIFICATION_SCAN_LIMIT)

    async def scan(bucket: str) -> None:
        async with limiter:
            if not found and await check(bucket):
                found.append(bucket)

    async with anyio.create_task_group() as tg:
        for name in names:
            tg.start_soon(scan, name)
    return found[0] if found else None
