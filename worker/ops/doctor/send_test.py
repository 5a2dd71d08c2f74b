"""End to end: a test email into the intake through SES SMTP, as a device sends it, and its outcome.

The email goes From `--test-from` To the intake with `ADDRESS` in its recipient block and a token
in a header. The doctor then finds it in incoming/ (the newest objects, read until the token shows),
and follows its progress record in the attachments bucket (`state/…`, written by the worker) to
its outcome: sent, fallback, or the DLQ (its reason read from the DLQ without consuming it).
"""

from __future__ import annotations

import secrets
import smtplib
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import anyio

from worker.config import DEFAULT_MARKER
from worker.ops.doctor.report import Check, brief, fail, ok
from worker.ops.doctor.target import Target
from worker.ops.smtp_credentials import DeviceSettings, device_settings, parse_device_secret

TITLE = "test email"
POLL_S = 2.0
HEAD_BYTES = 64 * 1024
TOKEN_HEADER = "X-Sensormail-Doctor"


@dataclass(frozen=True, slots=True)
class SendTest:
    recipient: str
    secret_id: str
    test_from: str
    timeout_s: float = 180.0
    smtp_host: str | None = None  # default: SES SMTP of the secret's region
    smtp_port: int = 587  # STARTTLS
    tls: ssl.SSLContext | None = None  # default: the system's trust store


def test_email(sender: str, intake: str, recipient: str, token: str, marker: str = DEFAULT_MARKER) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"] = sender, intake
    msg["Subject"] = f"sensormail doctor test {token}"
    msg[TOKEN_HEADER] = token
    msg.set_content(f"A test from `sensormail doctor`; it should reach {recipient}.\n\n{marker}{recipient}{marker}\n")
    return msg


def _send(device: DeviceSettings, port: int, msg: EmailMessage, tls: ssl.SSLContext) -> None:
    with smtplib.SMTP(device.host, port, timeout=30) as smtp:
        smtp.starttls(context=tls)
        smtp.login(device.username, device.password)
        smtp.send_message(msg)


async def _find_incoming(s3: Any, target: Target, token: str, since: datetime, seen: set[str]) -> dict[str, Any] | None:
    # Keys are SES message ids, in no useful order: every page is read, the new ones first.
    objects: list[dict[str, Any]] = []
    more: str | None = None
    while True:
        page = await s3.list_objects_v2(Bucket=target.incoming_bucket, Prefix=target.incoming_prefix,
                                        **({"ContinuationToken": more} if more else {}))
        objects += page.get("Contents", [])
        more = page.get("NextContinuationToken")
        if not more:
            break
    for obj in sorted(objects, key=lambda o: o["LastModified"], reverse=True):
        if obj["LastModified"] < since or obj["Key"] in seen:
            continue
        seen.add(obj["Key"])
        head = await s3.get_object(Bucket=target.incoming_bucket, Key=obj["Key"], Range=f"bytes=0-{HEAD_BYTES - 1}")
        async with head["Body"] as body:
            if token.encode() in await body.read():
                return dict(obj)
    return None


async def _record(s3: Any, target: Target, key: str, etag: str) -> dict[str, Any] | None:
    import json

    state = f"state/{target.incoming_bucket}/{key}@{etag.strip(chr(34))}.json"
    try:
        response = await s3.get_object(Bucket=target.attachments_bucket, Key=state)
    except Exception:
        return None
    async with response["Body"] as body:
        record: dict[str, Any] = json.loads(await body.read())
    return record


async def _dead_lettered(sqs: Any, dlq_url: str | None, key: str) -> str | None:
    if not dlq_url:
        return None
    from worker.ops.doctor.queue_checks import PEEK_VISIBILITY_S, REASON

    got = (await sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                     VisibilityTimeout=PEEK_VISIBILITY_S, MessageAttributeNames=[REASON])).get("Messages", [])
    if got:
        with anyio.CancelScope(shield=True):
            await sqs.change_message_visibility_batch(QueueUrl=dlq_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for i, m in enumerate(got)])
    for message in got:
        if key in message.get("Body", ""):
            return str(message.get("MessageAttributes", {}).get(REASON, {}).get("StringValue", "no reason recorded"))
    return None


async def run_send_test(clients: Any, target: Target, test: SendTest, dlq_url: str | None) -> Check:
    if not (target.incoming_bucket and target.attachments_bucket):
        return fail(TITLE, "not sent: the incoming or attachments bucket is unknown", "fix the checks above first")
    try:
        value = await clients.secrets.get_secret_value(SecretId=test.secret_id)
        key = parse_device_secret(str(value.get("SecretString", "")))
    except Exception as error:
        return fail(TITLE, f"not sent: the device key in {test.secret_id} cannot be read ({brief(error)})",
                    "give --smtp-secret the DeviceCredentialsSecretArn output of deploy/sending.yaml")
    intake = target.intake or key.intake
    if not intake:
        return fail(TITLE, "not sent: intake address unknown", "set SENSORMAIL_INTAKE_ADDRESS")
    device = device_settings(key.access_key_id, key.secret_access_key, key.region or target.region, intake,
                             host=test.smtp_host)
    token = secrets.token_hex(8)
    since = datetime.now(UTC) - timedelta(seconds=5)
    started = time.monotonic()
    try:
        await anyio.to_thread.run_sync(_send, device, test.smtp_port, test_email(test.test_from, intake, test.recipient, token),
                                       test.tls or ssl.create_default_context())
    except (smtplib.SMTPException, OSError) as error:
        return fail(TITLE, f"{device.host}:{test.smtp_port} refused it: {error}",
                    "check the device key's policy (deploy/sending.yaml: IntakeAddress, DeviceFromAddresses) "
                    "and that --test-from matches DeviceFromAddresses")
    seen: set[str] = set()
    arrived: dict[str, Any] | None = None
    with anyio.move_on_after(test.timeout_s):
        while arrived is None:
            arrived = await _find_incoming(clients.s3, target, token, since, seen)
            if arrived is None:
                await anyio.sleep(POLL_S)
        while True:
            record = await _record(clients.s3, target, arrived["Key"], str(arrived.get("ETag", "")))
            if record and record.get("status") == "done":
                took = time.monotonic() - started
                if record.get("outcome") == "sent":
                    return ok(TITLE, f"sent by SMTP, stored as {arrived['Key']}, forwarded to {test.recipient} in {took:.1f} s")
                return fail(TITLE, f"stored as {arrived['Key']}, then {record.get('outcome')} instead of sent "
                                   f"(the notice on the fallback topic gives the reason)",
                            "see the SES account, sender and suppression checks; sandbox: verify the recipient")
            reason = await _dead_lettered(clients.sqs, dlq_url, arrived["Key"])
            if reason:
                return fail(TITLE, f"stored as {arrived['Key']}, then dead-lettered: {reason}",
                            "fix the cause, then sensormail redrive")
            await anyio.sleep(POLL_S)
    if arrived is None:
        return fail(TITLE, f"SES SMTP accepted it, but it did not reach {target.incoming_bucket}/{target.incoming_prefix} "
                           f"within {test.timeout_s:.0f} s", "check the MX record and the receipt rule checks above")
    return fail(TITLE, f"stored as {arrived['Key']}, but no outcome within {test.timeout_s:.0f} s",
                "is the worker running? see the ECS and backlog checks, and the worker's log")
