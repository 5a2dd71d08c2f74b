"""Sending hygiene without AWS: the account quota, pacing, suppression lookups, sandbox rejections,
and which SES refusals are worth a retry."""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
import pytest
from botocore.exceptions import ClientError

from worker.aws.ratelimit import TokenBucket
from worker.aws.sending import SuppressionList, effective_rate, pace_to_account, read_account, sandbox_rejection
from worker.errors import PermanentError, RetryableError, classify

pytestmark = pytest.mark.anyio
SENDER = "Alerts <alerts@sensormail.test>"


def client_error(code: str, message: str = "", status: int = 400, op: str = "SendEmail") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, op
    )


class FakeSesV2:
    """An SESv2 client as far as GetAccount and GetSuppressedDestination go."""

    def __init__(self, account: dict[str, Any] | Exception, suppressed: dict[str, str] | None = None) -> None:
        self.account = account
        self.suppressed = suppressed or {}
        self.lookups: list[str] = []
        self.fail_with: Exception | None = None

    async def get_account(self) -> dict[str, Any]:
        if isinstance(self.account, Exception):
            raise self.account
        return self.account

    async def get_suppressed_destination(self, EmailAddress: str) -> dict[str, Any]:
        self.lookups.append(EmailAddress)
        if self.fail_with is not None:
            raise self.fail_with
        if EmailAddress.lower() not in self.suppressed:
            raise client_error("NotFoundException", f"{EmailAddress} is not on the suppression list", 404,
                               "GetSuppressedDestination")
        return {"SuppressedDestination": {"EmailAddress": EmailAddress, "Reason": self.suppressed[EmailAddress.lower()]}}


SANDBOX = {
    "SendQuota": {"Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 3.0},
    "SendingEnabled": True,
    "ProductionAccessEnabled": False,
    "EnforcementStatus": "HEALTHY",
}
PRODUCTION = {**SANDBOX, "SendQuota": {"Max24HourSend": 50000.0, "MaxSendRate": 14.0}, "ProductionAccessEnabled": True}


# ------------------------------------------------------------------ quota and pacing


@pytest.mark.parametrize(
    ("configured", "account", "expected"),
    [(0, 14.0, 14.0), (5, 14.0, 5), (20, 14.0, 14.0), (5, None, 5), (0, None, 0), (3, 0.0, 3)],
)
def test_effective_rate_is_the_lower_of_configured_and_account(configured: float, account: float | None, expected: float) -> None:
    assert effective_rate(configured, account) == expected


async def test_read_account_v2() -> None:
    account = await read_account(FakeSesV2(SANDBOX), "v2")
    assert account.max_send_rate == 1.0 and account.max_24h_send == 200.0
    assert account.production is False and account.sending_enabled is True and account.enforcement == "HEALTHY"


async def test_read_account_v1_uses_send_quota_and_sending_enabled() -> None:
    class FakeSesV1:
        async def get_send_quota(self) -> dict[str, Any]:
            return {"Max24HourSend": 50000.0, "MaxSendRate": 14.0, "SentLast24Hours": 1.0}

        async def get_account_sending_enabled(self) -> dict[str, Any]:
            return {"Enabled": False}

    account = await read_account(FakeSesV1(), "v1")
    assert account.max_send_rate == 14.0 and account.sending_enabled is False
    assert account.production is None  # v1 cannot tell


async def test_start_up_paces_to_the_account_rate_and_warns_in_the_sandbox(caplog: pytest.LogCaptureFixture) -> None:
    bucket = TokenBucket(0)
    with caplog.at_level(logging.INFO, logger="worker.aws.sending"):
        await pace_to_account(FakeSesV2(SANDBOX), "v2", 0, bucket)
    assert bucket.rate == 1.0
    assert any("sandbox" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)

    bucket = TokenBucket(5)
    await pace_to_account(FakeSesV2(PRODUCTION), "v2", 5, bucket)
    assert bucket.rate == 5  # the configured rate is lower than the account's


async def test_start_up_keeps_the_configured_rate_when_the_account_cannot_be_read(caplog: pytest.LogCaptureFixture) -> None:
    bucket = TokenBucket(7)
    denied = client_error("AccessDeniedException", "not authorized to perform ses:GetAccount", 403, "GetAccount")
    with caplog.at_level(logging.WARNING, logger="worker.aws.sending"):
        assert await pace_to_account(FakeSesV2(denied), "v2", 7, bucket) is None
    assert bucket.rate == 7
    [record] = [r for r in caplog.records if "sending quota" in r.getMessage()]
    assert "AccessDeniedException" in record.__dict__["error"]
    # An emulator without the API answers with an HTML 404: said in a few words.
    missing = client_error("404", "<!doctype html><title>404 Not Found</title>", 404, "GetAccount")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="worker.aws.sending"):
        await pace_to_account(FakeSesV2(missing), "v2", 7, bucket)
    [record] = [r for r in caplog.records if "sending quota" in r.getMessage()]
    assert record.__dict__["error"] == "GetAccount: not available at this endpoint (HTTP 404)"


async def test_token_bucket_paces_concurrent_senders_to_the_configured_rate() -> None:
    """20 sends a second configured; 8 tasks sending 60 times in all: the sends come at the
    configured rate from the start, and no 1-second window holds more than rate + 1 sends."""
    rate, sends = 20.0, 60
    bucket = TokenBucket(rate)
    stamps: list[float] = []
    remaining = sends

    async def sender() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await bucket.acquire()
            stamps.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(sender)
    stamps.sort()
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    assert rate * 0.9 <= steady <= rate * 1.05, steady
    busiest = max(sum(1 for t in stamps if s <= t < s + 1.0) for s in stamps)
    assert busiest <= rate + 1
    print(f"configured {rate}/s, measured {steady:.2f}/s, busiest second {busiest}")


async def test_set_rate_changes_a_live_bucket() -> None:
    bucket = TokenBucket(0)
    bucket.set_rate(50)
    assert bucket.rate == 50 and bucket.capacity == 50
    bucket.set_rate(0)
    await bucket.acquire()  # unlimited again: returns at once


# ------------------------------------------------------------------ suppression list


async def test_suppressed_recipients_are_found_and_cached() -> None:
    ses = FakeSesV2(PRODUCTION, {"gone@example.com": "BOUNCE", "angry@example.com": "COMPLAINT"})
    suppression = SuppressionList(ses, ttl_s=60)
    found = await suppression.reasons(("ok@example.com", "Gone@example.com", "angry@example.com"))
    assert found == {"Gone@example.com": "BOUNCE", "angry@example.com": "COMPLAINT"}
    await suppression.reasons(("ok@example.com", "gone@example.com"))
    assert len(ses.lookups) == 3  # the second round came from the cache


async def test_suppression_list_errors_never_block_sending(caplog: pytest.LogCaptureFixture) -> None:
    ses = FakeSesV2(PRODUCTION, {"gone@example.com": "BOUNCE"})
    ses.fail_with = client_error("TooManyRequestsException", "slow down", 429, "GetSuppressedDestination")
    suppression = SuppressionList(ses)
    assert await suppression.reasons(("gone@example.com",)) == {}
    ses.fail_with = client_error("AccessDeniedException", "no", 403, "GetSuppressedDestination")
    with caplog.at_level(logging.WARNING, logger="worker.aws.sending"):
        assert await suppression.reasons(("gone@example.com",)) == {}
        assert await suppression.reasons(("other@example.com",)) == {}
    assert len(ses.lookups) == 2  # after AccessDenied the list is not asked again
    assert sum("no longer checked" in r.getMessage() for r in caplog.records) == 1


async def test_no_client_means_no_check() -> None:
    assert await SuppressionList(None).reasons(("a@example.com",)) == {}


# ------------------------------------------------------------------ sandbox rejections and retries

NOT_VERIFIED = (
    "Email address is not verified. The following identities failed the check in region EU-WEST-1: "
    "ops@example.com, Maintenance <maintenance@example.org>"
)


def test_sandbox_rejection_names_the_unverified_recipients() -> None:
    error = client_error("MessageRejected", NOT_VERIFIED)
    refusal = sandbox_rejection(error, SENDER, ("ops@example.com", "maintenance@example.org", "lead@example.com"))
    assert refusal is not None and isinstance(refusal, PermanentError)
    assert refusal.addresses == ("ops@example.com", "maintenance@example.org")
    assert str(refusal) == "SES sandbox: recipient not verified: ops@example.com, maintenance@example.org"


def test_truncated_identity_list_names_every_recipient_of_the_send() -> None:
    error = client_error("MessageRejected", "Email address is not verified. The following identities failed "
                                            "the check in region US-EAST-1: a1@example.com, a2@example.com...")
    refusal = sandbox_rejection(error, SENDER, ("b@example.com", "c@example.com"))
    assert refusal is not None and refusal.addresses == ("b@example.com", "c@example.com")


@pytest.mark.parametrize(
    "error",
    [
        # Our own sender unverified: a configuration error (DLQ, fix, redrive), not a fallback.
        client_error("MessageRejected", "Email address is not verified. The following identities failed the "
                                        "check in region US-EAST-1: alerts@sensormail.test"),
        client_error("MessageRejected", "Email address not verified alerts@sensormail.test"),  # moto's wording
        client_error("MessageRejected", "Message too large"),
        client_error("Throttling", "Maximum sending rate exceeded."),
    ],
)
def test_other_refusals_are_not_sandbox_rejections(error: ClientError) -> None:
    assert sandbox_rejection(error, SENDER, ("ops@example.com",)) is None


@pytest.mark.parametrize(
    "code", ["SendingPausedException", "AccountSendingPausedException", "ConfigurationSetSendingPausedException"]
)
def test_paused_sending_is_retried_not_dead_lettered(code: str) -> None:
    assert classify(client_error(code, "Sending paused")) is RetryableError


def test_message_rejected_stays_permanent() -> None:
    assert classify(client_error("MessageRejected", "Message too large")) is PermanentError


async def test_token_bucket_keeps_its_rate_when_the_event_loop_wakes_it_late() -> None:
    """A busy worker's event loop wakes sleepers late; the bucket must not lose that time. It did:
    with the loop held 12 ms at a time it sent 20 a second of the 50 configured (and the test
    above failed once on a busy machine)."""
    rate, sends = 50.0, 60
    bucket = TokenBucket(rate)
    stamps: list[float] = []
    done = anyio.Event()

    async def busy_loop() -> None:
        while not done.is_set():
            time.sleep(0.012)  # noqa: ASYNC251 - holding the event loop is the point
            await anyio.sleep(0)

    async def sender() -> None:
        for _ in range(sends):
            await bucket.acquire()
            stamps.append(anyio.current_time())
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(busy_loop)
        tg.start_soon(sender)
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    assert rate * 0.9 <= steady <= rate * 1.05, steady
