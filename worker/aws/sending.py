"""What SES lets this account send: the quota read at start-up, the suppression list, and the
sandbox's "recipient not verified" rejections.

- `read_account`: SESv2 `GetAccount` (v1: `GetSendQuota` and `GetAccountSendingEnabled`): max send
  rate, 24-hour quota, sending enabled, sandbox or production. One call at start-up; a failure is
  logged and the configured rate kept.
- `SuppressionList`: SESv2 `GetSuppressedDestination` per recipient (`NotFoundException`: not
  suppressed), cached briefly. SES would accept a send to a suppressed address and drop it
  (counting a bounce), so the worker skips such recipients itself and says so.
- `sandbox_rejection`: in the sandbox SES refuses a whole message when one recipient is not a
  verified identity (`MessageRejected: Email address is not verified. The following identities
  failed the check in region ...: a@x.com, b@y.com`). That is no reason to retry or dead-letter
  the email: it ends as a fallback notice naming the rejected recipients.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from email.utils import getaddresses
from typing import Any

import anyio
from botocore.exceptions import ClientError

from worker.errors import PermanentError, describe

logger = logging.getLogger(__name__)

ACCOUNT_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class Account:
    """The account's sending limits in this region (None: the API did not say)."""

    max_send_rate: float | None  # emails per second
    max_24h_send: float | None  # -1: unlimited
    sent_last_24h: float | None
    sending_enabled: bool | None
    production: bool | None  # False: the SES sandbox
    enforcement: str | None = None  # HEALTHY, PROBATION, SHUTDOWN


def effective_rate(configured: float, account_max: float | None) -> float:
    """Sends per second to pace at: the lower of the configured rate (0: none) and the account's."""
    if account_max is None or account_max <= 0:
        return configured
    if configured <= 0:
        return account_max
    return min(configured, account_max)


async def read_account(ses: Any, api: str) -> Account:
    """One call (v1: two) to learn the account's quota; raises what the API raises."""
    if api == "v2":
        response = await ses.get_account()
        quota = response.get("SendQuota", {})
        return Account(
            max_send_rate=_number(quota.get("MaxSendRate")),
            max_24h_send=_number(quota.get("Max24HourSend")),
            sent_last_24h=_number(quota.get("SentLast24Hours")),
            sending_enabled=response.get("SendingEnabled"),
            production=response.get("ProductionAccessEnabled"),
            enforcement=response.get("EnforcementStatus"),
        )
    quota = await ses.get_send_quota()
    try:
        enabled: bool | None = bool((await ses.get_account_sending_enabled()).get("Enabled"))
    except Exception as error:  # an older emulator: the quota alone is still worth having
        logger.debug("GetAccountSendingEnabled failed", extra={"error": describe(error)})
        enabled = None
    # SES v1 has no call that says "sandbox": GetAccount is SESv2 only.
    return Account(
        max_send_rate=_number(quota.get("MaxSendRate")),
        max_24h_send=_number(quota.get("Max24HourSend")),
        sent_last_24h=_number(quota.get("SentLast24Hours")),
        sending_enabled=enabled,
        production=None,
    )


async def pace_to_account(ses: Any, api: str, configured_rate: float, bucket: Any) -> Account | None:
    """Read the account at start-up and set `bucket`'s rate to what SES allows; log what it found.

    Never fails start-up: an emulator without the API, missing permissions or an outage leave the
    configured rate in place, with a warning.
    """
    try:
        with anyio.fail_after(ACCOUNT_TIMEOUT_S):
            account = await read_account(ses, api)
    except Exception as error:
        logger.warning(
            "could not read the SES account's sending quota; keeping the configured send rate",
            extra={"error": brief(error), "max_send_rate": configured_rate or "unlimited"},
        )
        return None
    rate = effective_rate(configured_rate, account.max_send_rate)
    bucket.set_rate(rate)
    logger.info(
        "SES account",
        extra={
            "max_send_rate": account.max_send_rate,
            "max_24h_send": account.max_24h_send,
            "sent_last_24h": account.sent_last_24h,
            "sending_enabled": account.sending_enabled,
            "production_access": account.production,
            "enforcement_status": account.enforcement,
            "pacing_sends_per_s": rate or "unlimited",
        },
    )
    if account.production is False:
        logger.warning(
            "SES account is in the sandbox: only verified addresses receive email; a send to any "
            "other recipient is rejected and that email goes to the fallback topic instead"
        )
    if account.sending_enabled is False:
        logger.warning("SES sending is disabled for this account: sends will fail and be retried")
    return account


def brief(error: BaseException) -> str:
    """describe(), but an operation the endpoint does not know (an emulator's HTML 404) in a few words."""
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code.isdigit():
            return f"{error.operation_name}: not available at this endpoint (HTTP {code})"
    return describe(error).splitlines()[0][:300]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


# ------------------------------------------------------------------ suppression list


class SuppressionList:
    """Which recipients are on the account-level suppression list, cached for `ttl_s`.

    Advisory: when the list cannot be read (throttled, no permission, an emulator without the
    API), recipients count as not suppressed and SES has the last word, as it would anyway.
    """

    def __init__(self, ses: Any | None, ttl_s: float = 300.0, max_entries: int = 10_000) -> None:
        self.ses = ses  # an SESv2 client, or None to skip the check (SES v1 has no such API)
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._disabled_reason: str | None = None

    async def reasons(self, addresses: tuple[str, ...]) -> dict[str, str]:
        """{address: reason} for the suppressed ones among `addresses` (e.g. "BOUNCE")."""
        found: dict[str, str] = {}
        for address in addresses:
            reason = await self._lookup(address)
            if reason is not None:
                found[address] = reason
        return found

    async def _lookup(self, address: str) -> str | None:
        if self.ses is None or self._disabled_reason is not None:
            return None
        key = address.lower()
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            response = await self.ses.get_suppressed_destination(EmailAddress=address)
            reason: str | None = str(response.get("SuppressedDestination", {}).get("Reason") or "SUPPRESSED")
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NotFoundException" or status == 404:  # not on the list
                reason = None
            elif code in ("AccessDenied", "AccessDeniedException", "UnrecognizedClientException"):
                self._disabled_reason = describe(error)
                logger.warning(
                    "cannot read the SES suppression list; recipients are no longer checked",
                    extra={"error": self._disabled_reason},
                )
                return None
            else:
                logger.warning("suppression check failed; sending anyway", extra={"error": brief(error)})
                return None
        except Exception as error:
            logger.warning("suppression check failed; sending anyway", extra={"error": brief(error)})
            return None
        if len(self._cache) >= self.max_entries:
            self._cache.clear()
        self._cache[key] = (now + self.ttl_s, reason)
        return reason


# ------------------------------------------------------------------ sandbox rejections

_NOT_VERIFIED = re.compile(r"not verified", re.IGNORECASE)
_IDENTITIES = re.compile(r"failed the check in region [^:]*:\s*(?P<list>.*)$", re.IGNORECASE | re.DOTALL)


class UnverifiedRecipients(PermanentError):
    """SES (in the sandbox) refused a send because recipients are not verified identities."""

    def __init__(self, message: str, addresses: tuple[str, ...]) -> None:
        super().__init__(message)
        self.addresses = addresses


def sandbox_rejection(error: BaseException, sender: str, recipients: tuple[str, ...]) -> UnverifiedRecipients | None:
    """The recipients a sandbox rejection names, or None when it is another refusal (the sender
    itself unverified is a configuration error for the DLQ, not a fallback)."""
    if not isinstance(error, ClientError):
        return None
    err = error.response.get("Error", {})
    message = str(err.get("Message", ""))
    if err.get("Code") != "MessageRejected" or not _NOT_VERIFIED.search(message):
        return None
    match = _IDENTITIES.search(message)
    named = match.group("list").rstrip(". ").removesuffix("...") if match else ""
    failed = {addr.lower() for _, addr in getaddresses([named]) if "@" in addr}
    own = _address(sender)
    if own in failed or (not failed and own in message.lower()):
        return None
    wanted = {r.lower(): r for r in recipients}
    # SES lists at most a few identities and ends with "..." when there are more: when none of
    # ours can be matched, every recipient of the send is named.
    addresses = tuple(wanted[a] for a in wanted if a in failed) or recipients
    return UnverifiedRecipients(
        f"SES sandbox: recipient not verified: {', '.join(addresses)}", addresses
    )


def _address(value: str) -> str:
    parsed = getaddresses([value])
    return (parsed[0][1] if parsed else value).lower()
