"""S3 and SQS: the incoming bucket notifies the queue, email has arrived, the redrive policy and
DLQ, the backlog, and the DLQ's depth with its top reasons.

The DLQ is read without consuming it: up to `PEEK_MESSAGES` messages are received with a short
visibility timeout (`PEEK_VISIBILITY_S`, so that successive receives do not return the same ones),
and every one is made visible again at once (visibility 0, shielded). A doctor killed in between
leaves them hidden for at most `PEEK_VISIBILITY_S`. Receiving counts as a receive (the DLQ's own
ApproximateReceiveCount grows); nothing is deleted.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import anyio

from worker.config import Settings
from worker.ops.doctor.report import Check, brief, fail, ok, unknown
from worker.ops.doctor.target import Target, notifies_queue, queue_url_of, redrive_target
from worker.ops.status import queue_status

SETUP_OBJECT = "AMAZON_SES_SETUP_NOTIFICATION"
PEEK_MESSAGES = 50
PEEK_VISIBILITY_S = 20
OLDEST_AGE_LIMIT_S = 180  # the pipeline stack's OldestMessageAlarmSeconds default
REASON = "sensormail.reason"


def notification_entry(queue_arn: str, prefix: str) -> dict[str, Any]:
    return {"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}}}


async def check_notification(s3: Any, target: Target) -> Check:
    title = "bucket notification"
    queue_arn = str(target.queue_arn)
    if not target.incoming_bucket:
        return fail(title, f"no bucket sends ObjectCreated events to {target.queue_name}, and no receipt rule or "
                           "stack names the incoming bucket",
                    "aws s3api put-bucket-notification-configuration --bucket <incoming bucket> "
                    f"--notification-configuration '{json.dumps({'QueueConfigurations': [notification_entry(queue_arn, target.incoming_prefix)]})}'")
    config = await s3.get_bucket_notification_configuration(Bucket=target.incoming_bucket)
    config.pop("ResponseMetadata", None)
    if notifies_queue(config, queue_arn, target.incoming_prefix):
        return ok(title, f"{target.incoming_bucket}/{target.incoming_prefix} → {target.queue_name} (ObjectCreated)")
    # put-bucket-notification-configuration replaces the whole configuration: keep what is there.
    merged = {**config, "QueueConfigurations": [*config.get("QueueConfigurations", []),
                                                notification_entry(queue_arn, target.incoming_prefix)]}
    return fail(title, f"{target.incoming_bucket} ({target.found_by.get('incoming_bucket', '')}) sends no "
                       f"ObjectCreated events for {target.incoming_prefix} to {target.queue_name}: emails are stored "
                       "but never processed",
                f"aws s3api put-bucket-notification-configuration --bucket {target.incoming_bucket} "
                f"--notification-configuration '{json.dumps(merged, separators=(',', ':'))}'")


async def check_arrivals(s3: Any, target: Target) -> Check:
    title = "emails received"
    if not target.incoming_bucket:
        return unknown(title, "incoming bucket unknown")
    listing = await s3.list_objects_v2(Bucket=target.incoming_bucket, Prefix=target.incoming_prefix, MaxKeys=1000)
    objects = listing.get("Contents", [])
    emails = [o for o in objects if not o["Key"].endswith(SETUP_OBJECT)]
    if emails:
        latest = max(o["LastModified"] for o in emails)
        more = "+" if listing.get("IsTruncated") else ""
        return ok(title, f"{len(emails)}{more} in {target.incoming_bucket}/{target.incoming_prefix}, "
                         f"latest {latest:%Y-%m-%d %H:%M:%S %Z}", needed=False)
    if objects:
        return unknown(title, "SES can write, but no email has arrived: check MX and the rule set "
                              f"(only {SETUP_OBJECT} in {target.incoming_prefix})")
    return unknown(title, f"{target.incoming_bucket}/{target.incoming_prefix} is empty: no email within the "
                          "retention period, and SES's setup write is gone or never happened")


async def check_redrive(sqs: Any, attrs: dict[str, str], target: Target) -> tuple[Check, str | None]:
    """The queue's redrive policy names an existing DLQ (the one the worker writes to); returns its URL."""
    title = "redrive policy and DLQ"
    dlq_arn, max_receives = redrive_target(attrs)
    if not dlq_arn:
        fix_policy = json.dumps({"RedrivePolicy": json.dumps({"deadLetterTargetArn": "<DLQ ARN>", "maxReceiveCount": "10"})})
        return fail(title, f"{target.queue_name} has no redrive policy: a poison message is retried until it expires",
                    f"aws sqs set-queue-attributes --queue-url {target.queue_url} --attributes '{fix_policy}'"), target.dlq_url
    dlq_url = queue_url_of(dlq_arn, target.queue_url)
    try:
        await sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
    except Exception as error:
        return fail(title, f"the redrive policy names {dlq_arn}, which cannot be read ({brief(error)})",
                    "deploy the pipeline stack again (it creates the DLQ), or point the policy at an existing queue"), None
    if target.dlq_url and target.dlq_url.rstrip("/").rsplit("/", 1)[-1] != dlq_arn.rsplit(":", 1)[-1]:
        return fail(title, f"the worker copies permanent failures to {target.dlq_url}, but the redrive policy "
                           f"moves poison messages to {dlq_arn}",
                    f"set SENSORMAIL_DLQ_URL={dlq_url} in the worker (the service stack does this itself)"), dlq_url
    return ok(title, f"after {max_receives} receives to {dlq_arn.rsplit(':', 1)[-1]}"), dlq_url


async def check_backlog(sqs: Any, cloudwatch: Any, target: Target) -> Check:
    title = "backlog"
    status = await queue_status(Settings(queue_url=target.queue_url), sqs, cloudwatch)
    age = "oldest age unknown (no CloudWatch data)" if status.oldest_age_s is None else f"oldest {status.oldest_age_s:.0f} s"
    saw = f"{status.visible} waiting, {status.in_flight} in flight, {age}"
    if status.oldest_age_s is not None and status.oldest_age_s > OLDEST_AGE_LIMIT_S:
        logs = f"aws logs tail {target.log_group} --since 15m" if target.log_group else "the worker's log"
        return fail(title, saw + f": emails wait longer than {OLDEST_AGE_LIMIT_S} s",
                    f"is the worker running and sending? see the ECS checks, then {logs}")
    return ok(title, saw)


async def peek_reasons(sqs: Any, dlq_url: str) -> Counter[str]:
    """Reasons of up to PEEK_MESSAGES DLQ messages, read without consuming them (see the module doc)."""
    reasons: Counter[str] = Counter()
    held: list[str] = []
    try:
        while len(held) < PEEK_MESSAGES:
            got = (await sqs.receive_message(
                QueueUrl=dlq_url, MaxNumberOfMessages=min(10, PEEK_MESSAGES - len(held)), WaitTimeSeconds=0,
                VisibilityTimeout=PEEK_VISIBILITY_S, MessageAttributeNames=[REASON],
            )).get("Messages", [])
            if not got:
                break
            for message in got:
                held.append(message["ReceiptHandle"])
                value = message.get("MessageAttributes", {}).get(REASON, {}).get("StringValue")
                reasons[value or "moved by the redrive policy (no reason recorded)"] += 1
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            for start in range(0, len(held), 10):
                await sqs.change_message_visibility_batch(QueueUrl=dlq_url, Entries=[
                    {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                    for i, h in enumerate(held[start:start + 10])])
    return reasons


async def check_dlq(sqs: Any, dlq_url: str | None, target: Target) -> Check:
    title = "dead-letter queue"
    if not dlq_url:
        return unknown(title, "no DLQ to read", needed=False)
    attrs = (await sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"]))["Attributes"]
    depth = int(attrs.get("ApproximateNumberOfMessages", 0))
    name = dlq_url.rstrip("/").rsplit("/", 1)[-1]
    if depth == 0:
        return ok(title, f"{name} is empty")
    reasons = await peek_reasons(sqs, dlq_url)
    top = "; ".join(f"{count} × {reason}" for reason, count in reasons.most_common(3))
    sampled = sum(reasons.values())
    return fail(title, f"{depth} in {name}; top reasons (of {sampled} read): {top or 'none readable now'}",
                f"fix the cause, then move them back: SENSORMAIL_QUEUE_URL={target.queue_url} "
                f"SENSORMAIL_DLQ_URL={dlq_url} sensormail redrive")
