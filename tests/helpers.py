"""Shared test helpers: put an email where SES would, read back what the emulator 'sent'."""

from __future__ import annotations

import email
import email.policy
import json
import secrets
from dataclasses import dataclass
from email.message import EmailMessage, Message
from typing import Any

import anyio

from worker.config import Settings
from worker.events import S3ObjectRef
from worker.local.emulator import Emulator, sent_emails
from worker.local.provision import INCOMING_PREFIX, LocalResources
from worker.pipeline import Outcome
from worker.queue.consumer import serve


def ses_block(
    *,
    envelope_from: str = "station7@devices.example.com",
    spf: str = "pass",
    dkim: tuple[tuple[str, str], ...] = (("pass", "devices.example.com"),),
    dmarc: str = "pass",
    dmarc_from: str = "devices.example.com",
    virus: str = "PASS",
    spam: str = "PASS",
) -> bytes:
    """The block SES prepends to a received email, as SES writes it."""
    dkim_results = " ".join(f"dkim={r} header.i=@{d};" for r, d in dkim) if dkim else "dkim=none;"
    return (
        f"Return-Path: <{envelope_from}>\r\n"
        "Received: from a8-1.smtp-out.amazonses.com (a8-1.smtp-out.amazonses.com [54.240.8.1]) by"
        " inbound-smtp.eu-west-1.amazonaws.com with SMTP id abc for intake-7f3k@sensors.example.com;"
        " Mon, 02 Mar 2026 10:00:00 +0000 (UTC)\r\n"
        f"X-SES-Spam-Verdict: {spam}\r\n"
        f"X-SES-Virus-Verdict: {virus}\r\n"
        f"Received-SPF: {spf} (spfCheck: domain of {envelope_from.rpartition('@')[2]} designates 54.240.8.1 as"
        f" permitted sender) client-ip=54.240.8.1; envelope-from={envelope_from}; helo=a8-1.smtp-out.amazonses.com;\r\n"
        f"Authentication-Results: amazonses.com;\r\n spf={spf} (spfCheck: domain of {envelope_from.rpartition('@')[2]}"
        f" designates 54.240.8.1 as permitted sender) client-ip=54.240.8.1; envelope-from={envelope_from};"
        f" helo=a8-1.smtp-out.amazonses.com;\r\n {dkim_results}\r\n dmarc={dmarc} header.from={dmarc_from};\r\n"
        "X-SES-RECEIPT: AEFBQUFBQUFBQUFF\r\n"
    ).encode()


def ses_smtp_block(*, custom_mail_from: bool, easy_dkim: bool, dmarc: str = "none") -> bytes:
    """SES's block on a device's email sent through SES SMTP: SES signs with the amazonses.com key
    always and, with Easy DKIM on the device domain, with that domain's key too; the envelope sender
    is a bounce address at amazonses.com unless a custom MAIL FROM domain is set."""
    envelope = ("0102018e-bounce@mail.devices.example.com" if custom_mail_from
                else "0102018e5c7f1d2a-bounce-000000@eu-west-1.amazonses.com")
    signatures = ((("pass", "devices.example.com"),) if easy_dkim else ()) + (("pass", "amazonses.com"),)
    return ses_block(envelope_from=envelope, dkim=signatures, dmarc=dmarc)


async def put_incoming(aws: Any, resources: LocalResources, raw: bytes, message_id: str | None = None) -> S3ObjectRef:
    """Store a raw email as the SES receipt rule would; returns the ref an S3 event would carry."""
    message_id = message_id or secrets.token_hex(20)
    key = INCOMING_PREFIX + message_id
    put = await aws.s3.put_object(Bucket=resources.incoming_bucket, Key=key, Body=raw)
    return S3ObjectRef(
        bucket=resources.incoming_bucket,
        key=key,
        size=len(raw),
        etag=str(put.get("ETag", "")).strip('"') or None,
        version_id=None,
        sequencer=None,
        event_name="ObjectCreated:Put",
    )


def sent_to(emulator: Emulator, source: str | None = None, subject: str | None = None) -> list[EmailMessage]:
    """Emails the emulator's SES accepted, parsed; filtered by the SES id of the email they came
    from (`X-Sensormail-Source`, unique per test) and/or by subject."""
    found = []
    for item in sent_emails(emulator):
        msg = email.message_from_string(item["raw"], policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        if source is not None and msg["X-Sensormail-Source"] != source:
            continue
        if subject is not None and msg["Subject"] != subject:
            continue
        found.append(msg)
    return found


async def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Poll a sync or async predicate until it returns something truthy."""
    with anyio.fail_after(timeout):
        while True:
            value = predicate()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return value
            await anyio.sleep(interval)


async def fallback_notices(aws: Any, resources: LocalResources) -> list[dict[str, Any]]:
    response = await aws.sqs.receive_message(
        QueueUrl=resources.fallback_inbox_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
    )
    return [json.loads(m["Body"]) for m in response.get("Messages", [])]


def attachments_of(raw: bytes) -> dict[str, bytes]:
    """The standard library's view of an email's attachments: filename -> decoded bytes."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    out: dict[str, bytes] = {}
    for part in msg.walk():
        if isinstance(part, Message) and part.get_filename():
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            out[str(part.get_filename())] = payload
    return out


def text_of(msg: EmailMessage) -> str:
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None
    content = body.get_content()
    assert isinstance(content, str)
    return content


def html_of(msg: EmailMessage) -> str:
    body = msg.get_body(preferencelist=("html",))
    assert body is not None
    content = body.get_content()
    assert isinstance(content, str)
    return content


async def queue_depth(aws: Any, url: str) -> int:
    """Messages waiting plus messages in flight."""
    attrs = await aws.sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    a = attrs["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


async def queue_empty(aws: Any, url: str) -> bool:
    return await queue_depth(aws, url) == 0


async def run_until(settings: Settings, aws: Any, done: Any, timeout: float = 30) -> list[Outcome]:
    """Run the worker until `done(outcomes)` is true, then stop it as SIGTERM would."""
    outcomes: list[Outcome] = []
    stop = anyio.Event()

    async def seen(outcome: Outcome) -> None:
        outcomes.append(outcome)

    async def watch() -> None:
        await wait_for(lambda: done(outcomes), timeout=timeout)
        stop.set()

    with anyio.fail_after(timeout + settings.drain_timeout_s + 5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await serve(settings, seen, clients=aws, stop=stop)
    return outcomes


class FlakySes:
    """The worker's SES client, except that the sends numbered in `fail` (0-based, counted over
    send_email and send_raw_email together) fail as SES does when it is briefly unavailable: HTTP 503,
    after botocore's own retries gave up."""

    def __init__(self, real: Any, fail: set[int]) -> None:
        self.real = real
        self.fail = fail
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def _maybe_fail(self, operation: str) -> None:
        from botocore.exceptions import ClientError

        n, self.calls = self.calls, self.calls + 1
        if n in self.fail:
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "Service Unavailable"},
                               "ResponseMetadata": {"HTTPStatusCode": 503}}, operation)

    async def send_email(self, **kwargs: Any) -> Any:
        self._maybe_fail("SendEmail")
        return await self.real.send_email(**kwargs)

    async def send_raw_email(self, **kwargs: Any) -> Any:
        self._maybe_fail("SendRawEmail")
        return await self.real.send_raw_email(**kwargs)


@dataclass(frozen=True)
class EcsService:
    cluster: str
    name: str

    @property
    def resource_id(self) -> str:
        return f"service/{self.cluster}/{self.name}"


def create_ecs_service() -> EcsService:
    """A cluster and a two-task service on the emulator's ECS (moto: LocalStack Community has none)."""
    import boto3

    cluster, name = f"t{secrets.token_hex(4)}", "sensormail-worker"
    ecs = boto3.client("ecs")
    ecs.create_cluster(clusterName=cluster)
    ecs.register_task_definition(family=cluster, containerDefinitions=[{"name": "worker", "image": "w", "memory": 512}])
    ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=cluster, desiredCount=2)
    return EcsService(cluster, name)
