"""Sending hygiene against the emulator over HTTP: the sandbox's refusal ends in the fallback topic,
suppressed recipients are skipped, a paused configuration set means "retry later", sends are paced
to the configured rate, and the start-up quota read survives an emulator without GetAccount.

moto has no SESv2 GetAccount, GetSuppressedDestination or sandbox recipient check, so a thin
wrapper around the worker's real SES client plays those parts; S3, SQS, SNS and the sends
themselves are the emulator's.
"""

from __future__ import annotations

import email
import email.policy
import json
import secrets
from dataclasses import replace
from typing import Any

import anyio
import pytest
from botocore.exceptions import ClientError

from tests.helpers import fallback_notices, put_incoming, queue_depth, queue_empty, run_until, sent_to, wait_for
from worker.aws.clients import Clients
from worker.aws.ratelimit import TokenBucket
from worker.aws.sending import pace_to_account
from worker.cli import main
from worker.config import Settings
from worker.errors import RetryableError
from worker.local.emulator import Emulator
from worker.local.provision import LocalResources
from worker.pipeline import Pipeline

pytestmark = pytest.mark.anyio


def email_to(*recipients: str, subject: str = "Pump 2 alarm") -> bytes:
    block = ":Email_Rxers_Code:" + ", ".join(recipients) + ":Email_Rxers_Code:"
    return (
        f"From: Pump Station 7 <station7@devices.example.com>\r\nTo: intake@mail.example.com\r\n"
        f"Subject: {subject}\r\nMessage-ID: <{secrets.token_hex(6)}@devices.example.com>\r\n\r\n"
        f"Vibration above limit.\r\n{block}\r\n"
    ).encode()


class SesAsAccount:
    """The worker's SES client with an account around it: sandbox, suppression list, pause."""

    def __init__(self, real: Any, *, verified: set[str] | None = None, suppressed: dict[str, str] | None = None) -> None:
        self.real = real
        self.verified = verified  # None: production access
        self.suppressed = suppressed or {}
        self.paused = False
        self.send_times: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def send_email(self, **kwargs: Any) -> Any:
        if self.paused:
            raise ClientError({"Error": {"Code": "SendingPausedException", "Message": "Sending is paused"},
                               "ResponseMetadata": {"HTTPStatusCode": 400}}, "SendEmail")
        msg = email.message_from_bytes(kwargs["Content"]["Raw"]["Data"], policy=email.policy.default)
        to = [a.addr_spec for a in msg["To"].addresses]
        unverified = [a for a in to if self.verified is not None and a not in self.verified]
        if unverified:
            raise ClientError({"Error": {"Code": "MessageRejected", "Message": (
                "Email address is not verified. The following identities failed the check in region "
                f"US-EAST-1: {', '.join(unverified)}")}, "ResponseMetadata": {"HTTPStatusCode": 400}}, "SendEmail")
        self.send_times.append(anyio.current_time())
        return await self.real.send_email(**kwargs)

    async def get_suppressed_destination(self, EmailAddress: str) -> Any:
        if EmailAddress in self.suppressed:
            return {"SuppressedDestination": {"EmailAddress": EmailAddress, "Reason": self.suppressed[EmailAddress]}}
        return await self.real.get_suppressed_destination(EmailAddress=EmailAddress)  # moto: HTTP 404


@pytest.fixture
def v2_only(settings: Settings) -> None:
    if settings.ses_api != "v2":
        pytest.skip("the suppression list and this sandbox stand-in are SESv2")


async def test_sandbox_rejection_ends_in_the_fallback_topic_not_a_retry_or_the_dlq(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, v2_only: None
) -> None:
    ses = SesAsAccount(aws.ses, verified={"ops@example.com"})
    account = replace(aws, ses=ses)
    ref = await put_incoming(aws, resources, email_to("ops@example.com", "stranger@example.org"))

    outcomes = await run_until(settings, account, lambda seen: len(seen) >= 1)

    [outcome] = outcomes
    assert outcome.kind == "fallback"
    assert outcome.reason == "SES sandbox: recipient not verified: stranger@example.org"
    assert outcome.rejected == ("stranger@example.org (not verified in the SES sandbox)",)
    [notice] = await wait_for(lambda: fallback_notices(aws, resources))
    assert notice["reason"] == outcome.reason and notice["message_id"] == ref.message_id
    assert notice["rejected_recipients"] == ["stranger@example.org (not verified in the SES sandbox)"]
    assert sent_to(emulator, ref.message_id) == []
    assert await wait_for(lambda: queue_empty(aws, settings.queue_url))
    assert await queue_depth(aws, resources.dlq_url) == 0
    # Settled for good: the same event again is a duplicate, nothing more published.
    again = await Pipeline(settings, account).process(ref)
    assert again.kind == "duplicate" and again.reason == "already fallback"


async def test_suppressed_recipients_are_skipped_with_a_reason(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, v2_only: None
) -> None:
    ses = SesAsAccount(aws.ses, suppressed={"bounced@example.com": "BOUNCE"})
    ref = await put_incoming(aws, resources, email_to("ops@example.com", "bounced@example.com"))

    outcome = await Pipeline(settings, replace(aws, ses=ses)).process(ref)

    assert outcome.kind == "sent"
    assert outcome.recipients == ("ops@example.com",)
    assert outcome.skipped == ("bounced@example.com (suppressed: BOUNCE)",)
    [msg] = sent_to(emulator, ref.message_id)
    assert [a.addr_spec for a in msg["To"].addresses] == ["ops@example.com"]


async def test_all_recipients_suppressed_goes_to_the_fallback_topic(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, v2_only: None
) -> None:
    ses = SesAsAccount(aws.ses, suppressed={"bounced@example.com": "BOUNCE", "angry@example.com": "COMPLAINT"})
    ref = await put_incoming(aws, resources, email_to("bounced@example.com", "angry@example.com"))

    outcome = await Pipeline(settings, replace(aws, ses=ses)).process(ref)

    assert (outcome.kind, outcome.reason) == ("fallback", "all recipients suppressed")
    [notice] = await wait_for(lambda: fallback_notices(aws, resources))
    assert notice["reason"] == "all recipients suppressed"
    assert set(notice["rejected_recipients"]) == {
        "bounced@example.com (suppressed: BOUNCE)", "angry@example.com (suppressed: COMPLAINT)"
    }
    assert sent_to(emulator, ref.message_id) == []


async def test_paused_sending_is_a_transient_failure_and_resumes(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, v2_only: None
) -> None:
    ses = SesAsAccount(aws.ses)
    ses.paused = True  # `sensormail pause`: SES refuses sends through the configuration set
    account = replace(aws, ses=ses)
    short_lease = replace(settings, lease_s=1)  # the retry may take the email over at once
    ref = await put_incoming(aws, resources, email_to("ops@example.com"))

    with pytest.raises(RetryableError, match="SendingPausedException"):
        await Pipeline(short_lease, account).process(ref)
    assert sent_to(emulator, ref.message_id) == []

    ses.paused = False  # `sensormail resume`; SQS delivers the message again
    await anyio.sleep(1.1)
    outcome = await Pipeline(short_lease, account).process(ref)
    assert outcome.kind == "sent"
    assert len(sent_to(emulator, ref.message_id)) == 1


async def test_sends_are_paced_to_the_configured_rate_across_all_handlers(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, v2_only: None
) -> None:
    """Sends at 5 a second configured, 12 emails processed by 8 concurrent handlers."""
    rate, count = 5.0, 12
    ses = SesAsAccount(aws.ses)
    pipeline = Pipeline(replace(settings, max_send_rate=rate, concurrency=8), replace(aws, ses=ses))
    refs = [await put_incoming(aws, resources, email_to("ops@example.com", subject=f"n{n}")) for n in range(count)]
    limiter = anyio.Semaphore(8)

    async def handle(ref: Any) -> None:
        async with limiter:
            await pipeline.process(ref)

    async with anyio.create_task_group() as tg:
        for ref in refs:
            tg.start_soon(handle, ref)
    stamps = sorted(ses.send_times)
    measured = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    print(f"configured {rate}/s; measured {measured:.2f}/s over {len(stamps)} sends")
    assert len(stamps) == count
    assert rate * 0.7 <= measured <= rate * 1.1


async def test_start_up_quota_read_on_an_emulator_without_get_account(
    settings: Settings, aws: Clients, v2_only: None
) -> None:
    """moto answers GetAccount with a 404: the worker starts anyway, at the configured rate."""
    bucket = TokenBucket(3)
    assert await pace_to_account(aws.ses, settings.ses_api, 3, bucket) is None
    assert bucket.rate == 3


async def test_smtp_credentials_from_a_secrets_manager_secret(
    emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """What deploy/sending.yaml stores, read back by `sensormail smtp-credentials --secret-id`."""
    import boto3

    secret = {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "SECRET_KEY",
              "region": "eu-west-1", "intake": "intake-7f3k@sensors.example.com"}
    arn = boto3.client("secretsmanager").create_secret(
        Name=f"t{secrets.token_hex(4)}-device", SecretString=json.dumps(secret)
    )["ARN"]
    assert await anyio.to_thread.run_sync(lambda: main(["smtp-credentials", "--secret-id", arn, "--json"])) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["host"] == "email-smtp.eu-west-1.amazonaws.com"
    assert out["password"] == "BIhFZ/Ylx0jPVY7JeKUnHT4rO9jfB1VuZu4qglc/3gj9"
    assert out["intake"] == "intake-7f3k@sensors.example.com"
