"""process(one S3 object) -> Outcome: the one module that knows the order of the steps.

1. stream the raw email from S3 through the MIME reader;
2. store every attachment and sign its link (done by the reader as parts stream past);
3. find the recipients in the text body, else in the html body;
4. send the rebuilt email through SES (50 recipients per send), or
5. post the fallback notice to SNS when there is no usable recipient.
Errors propagate: the consumer settles the SQS message by their class.

An email whose links an operator revoked (`sensormail revoke`) is not stored or sent again when it
comes back (a redrive, a redelivered event, a retry after a partial send): checked after the claim,
before each further send and before the fallback notice; its record is finished as `revoked` and
the outcome is `duplicate`. Sending the rest with fresh links would undo the revocation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from functools import partial
from typing import Any, Literal, TypeVar

import anyio
from botocore.exceptions import ClientError

from worker.aws.clients import Clients
from worker.aws.ledger import Claim, Ledger, LostClaim
from worker.aws.links import S3AttachmentStore
from worker.aws.ratelimit import TokenBucket
from worker.aws.revocation import is_revoked
from worker.aws.sending import SuppressionList, UnverifiedRecipients, sandbox_rejection
from worker.config import Settings
from worker.errors import Deferred, PermanentError, classify, describe
from worker.events import S3ObjectRef
from worker.mail import recipients as rcpt
from worker.mail.compose import compose_email, fallback_notice
from worker.mail.policy import SenderBudget, decide_recipients, from_addresses, screen
from worker.mail.reader import INLINE_CHUNK_BYTES, Attachment, ReadEmail, read_email

logger = logging.getLogger(__name__)

OutcomeKind = Literal["sent", "fallback", "duplicate"]
REVOKED_REASON = "links revoked by an operator: nothing stored or sent again"


class _Revoked(Exception):
    """The email's links were revoked while it was being processed: stop before the next send."""


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    ref: S3ObjectRef
    subject: str = ""
    sender: str = ""
    size: int = 0
    recipients: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    reason: str | None = None  # why the fallback topic got it
    ses_message_ids: tuple[str, ...] = field(default=())
    skipped: tuple[str, ...] = ()  # recipients on the SES suppression list, with the reason
    quarantined: bool = False  # SES verdicts or the sender policy stopped it: nothing stored
    # (step, seconds) in order: claim, read_and_store, recipients, then send or fallback. For
    # `sensormail local`'s outbox page; the canonical log line keeps its one duration_s.
    timings: tuple[tuple[str, float], ...] = ()


class _Steps:
    """Seconds spent in each step of one email, on the monotonic clock."""

    def __init__(self) -> None:
        self.done: list[tuple[str, float]] = []
        self._mark = time.perf_counter()

    def step(self, name: str) -> None:
        now = time.perf_counter()
        self.done.append((name, round(now - self._mark, 6)))
        self._mark = now

    def all(self) -> tuple[tuple[str, float], ...]:
        return tuple(self.done)


def visible_bodies(email: ReadEmail, marker: str) -> tuple[str, str | None]:
    """The text and html that recipients see: the recipient blocks removed."""
    text = rcpt.remove_blocks(email.text, marker) if email.text is not None else None
    html = rcpt.remove_blocks_html(email.html, marker) if email.html is not None else None
    if text is None:
        text = rcpt.html_to_text(html) if html is not None else ""
    return text, html


T = TypeVar("T")


async def on_bodies(email: ReadEmail, work: Callable[[], T]) -> T:
    """Pure work on the email's bodies (recipients, blocks removed, the email composed): on a
    thread when the bodies are large, so the event loop stays free for the other emails. Reading
    1 MiB of html as text costs ~0.2 s a pass (`recipients._parse_html`); small bodies stay on
    the loop, where the hand-off would cost more than the work."""
    size = len(email.text or "") + len(email.html or "")
    if size < INLINE_CHUNK_BYTES:
        return work()
    return await anyio.to_thread.run_sync(work)


class Pipeline:
    def __init__(self, settings: Settings, aws: Clients) -> None:
        self.settings = settings
        self.aws = aws
        self.ledger = Ledger(aws.s3, settings.attachments_bucket, settings.state_prefix, settings.lease_s)
        self.send_rate = TokenBucket(settings.max_send_rate)
        # SES v1 has no suppression-list API; SES itself still drops suppressed recipients.
        self.suppression = SuppressionList(aws.ses if settings.ses_api == "v2" else None)
        # The one window that can duplicate a send is "SES accepted, record not yet written".
        # Only one handler at a time is inside it, so a killed worker duplicates at most one email.
        self.send_window = anyio.Lock()
        # Emails a minute per sender address, per worker (each task keeps its own count).
        self.sender_budget = SenderBudget(settings.sender_rate)

    async def process(self, ref: S3ObjectRef) -> Outcome:
        steps = _Steps()
        claim = await self.ledger.claim(ref)
        steps.step("claim")
        if claim.done_before:
            return Outcome(kind="duplicate", ref=ref, reason=f"already {claim.record.outcome}", timings=steps.all())
        try:
            return await self._process_claimed(ref, claim, steps)
        except LostClaim:
            raise  # the record is someone else's now
        except Exception:
            # This handler has stopped: its lease would only make the redelivery wait for it.
            await self._release(claim, ref)
            raise

    async def _release(self, claim: Claim, ref: S3ObjectRef) -> None:
        try:
            await self.ledger.release(claim)
        except Exception as error:  # the lease then ends by itself; the original error matters more
            logger.warning("could not release the claim", extra={"s3_key": ref.key, "error": describe(error)})

    async def _process_claimed(self, ref: S3ObjectRef, claim: Claim, steps: _Steps) -> Outcome:
        try:
            await self._stop_if_revoked(ref)  # before anything is stored
            return await self._read_and_deliver(ref, claim, steps)
        except _Revoked:
            await self.ledger.finish(claim, "revoked")
            logger.warning("links revoked: not stored or sent again", extra={"s3_key": ref.key})
            steps.step("revoked")
            return Outcome(kind="duplicate", ref=ref, reason=REVOKED_REASON, timings=steps.all())

    async def _stop_if_revoked(self, ref: S3ObjectRef) -> None:
        if await is_revoked(self.aws.s3, self.settings.attachments_bucket, ref.message_id):
            raise _Revoked(ref.message_id)

    async def _read_and_deliver(self, ref: S3ObjectRef, claim: Claim, steps: _Steps) -> Outcome:
        store = S3AttachmentStore(
            self.aws.s3,
            self.settings.attachments_bucket,
            self.settings.attachments_prefix,
            ref.message_id,
            self.settings.link_expiry_s,
            self.settings.part_size_bytes,
            self.settings.parts_in_flight,
            signer=self.aws.signer,
        )
        async with store:  # part uploads overlap the reading; an email that fails cancels its own
            email = await read_email(self._raw_chunks(ref), store, self.settings.limits, self._screen)
        steps.step("read_and_store")
        marker = self.settings.recipient_marker
        found = await on_bodies(email, partial(rcpt.choose_recipients, email.text, email.html, marker))
        decision = decide_recipients(
            found.block.recipients,
            allowed_domains=self.settings.allowed_recipient_domains,
            intake_domains=self.settings.intake_domains,
            max_recipients=self.settings.max_recipients,
        )
        recipients = decision.kept
        rejected = found.block.rejected + decision.rejected
        if rejected:
            logger.warning("recipients dropped", extra={"s3_key": ref.key, "rejected": list(rejected)[:20]})
        reason = email.quarantine or found.fallback_reason or decision.reason
        if reason is None and not recipients:
            reason = "no recipient in the allowed domains"
        suppressed = await self.suppression.reasons(recipients) if reason is None else {}
        skipped = tuple(f"{address} (suppressed: {why})" for address, why in suppressed.items())
        if skipped:
            logger.warning("suppressed recipients skipped", extra={"s3_key": ref.key, "skipped": list(skipped)[:20]})
            if len(suppressed) == len(recipients) and not claim.record.sent_batches:
                reason = "all recipients suppressed"
        steps.step("recipients")
        common = dict(
            ref=ref,
            subject=email.subject,
            sender=email.sender,
            size=email.size,
            rejected=rejected,
            attachments=tuple(email.attachments),
            skipped=skipped,
            quarantined=email.quarantine is not None,
        )
        if reason is not None:
            await self._fallback(claim, ref, email, reason, rejected + skipped)
            steps.step("fallback")
            return Outcome(kind="fallback", reason=reason, timings=steps.all(), **common)  # type: ignore[arg-type]
        try:
            ids = await self._send(ref, email, recipients, claim, suppressed)
        except UnverifiedRecipients as refusal:
            # The SES sandbox: retrying cannot help and the email is fine, so the fallback topic gets it.
            logger.warning("SES sandbox refused unverified recipients", extra={"s3_key": ref.key, "error": str(refusal)})
            unverified = rejected + tuple(f"{a} (not verified in the SES sandbox)" for a in refusal.addresses)
            await self._fallback(claim, ref, email, str(refusal), unverified + skipped)
            steps.step("fallback")
            common["rejected"] = unverified
            return Outcome(kind="fallback", reason=str(refusal), ses_message_ids=claim.record.ses_message_ids,
                           timings=steps.all(), **common)  # type: ignore[arg-type]
        steps.step("send")
        sent_to = tuple(r for r in recipients if r not in suppressed)
        return Outcome(kind="sent", recipients=sent_to, ses_message_ids=ids, timings=steps.all(), **common)  # type: ignore[arg-type]

    async def _fallback(self, claim: Claim, ref: S3ObjectRef, email: ReadEmail, reason: str, rejected: tuple[str, ...]) -> None:
        await self.ledger.renew_if_needed(claim)
        await self._stop_if_revoked(ref)
        async with self.send_window:
            await self._publish_fallback(ref, email, reason, rejected)
            await self.ledger.finish(claim, "fallback")

    def _screen(self, headers: Message) -> str | None:
        """Quarantine reason, or None; an authenticated sender over its budget waits (Deferred),
        raised before any attachment is stored."""
        reason = screen(
            headers,
            allowed_senders=self.settings.allowed_senders,
            spam_action=self.settings.spam_action,
            own_addresses=(self.settings.sender,),
        )
        senders = from_addresses(headers)
        if reason is None and senders:
            wait = self.sender_budget.take(senders[0], anyio.current_time())
            if wait is not None:
                raise Deferred(
                    f"sender {senders[0]} over its budget of {self.settings.sender_rate} emails a minute",
                    retry_after_s=wait,
                )
        return reason

    async def _raw_chunks(self, ref: S3ObjectRef) -> AsyncIterator[bytes]:
        """The raw email in chunks of about read_chunk_bytes (botocore's default is 1 KiB)."""
        try:
            response = await self.aws.s3.get_object(Bucket=ref.bucket, Key=ref.key)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404", "NoSuchBucket", "AccessDenied", "403"):
                raise PermanentError(f"raw email unreadable at {ref.uri}: {describe(error)}") from error
            raise
        want = self.settings.read_chunk_bytes
        pending = bytearray()
        async with response["Body"] as body:
            # aiohttp hands over whatever has arrived (often 64 KiB): coalesce to large chunks so
            # the parser's per-chunk work is amortised.
            while chunk := await body.read(want):
                if not pending and len(chunk) >= want // 2:
                    yield chunk
                    continue
                pending += chunk
                if len(pending) >= want // 2:
                    yield bytes(pending)
                    pending.clear()
        if pending:
            yield bytes(pending)

    async def _publish_fallback(
        self, ref: S3ObjectRef, email: ReadEmail, reason: str, rejected: tuple[str, ...]
    ) -> None:
        subject, message = fallback_notice(
            reason=reason,
            sender=email.sender,
            subject=email.subject,
            raw_uri=ref.uri,
            message_id=ref.message_id,
            text=email.text if email.text is not None else email.html,
            attachments=email.attachments,
            rejected=rejected,
        )
        await self.aws.sns.publish(
            TopicArn=self.settings.fallback_topic_arn, Subject=subject, Message=message
        )

    async def _send(
        self, ref: S3ObjectRef, email: ReadEmail, to: tuple[str, ...], claim: Claim, suppressed: Mapping[str, str]
    ) -> tuple[str, ...]:
        text, html = await on_bodies(email, partial(visible_bodies, email, self.settings.recipient_marker))
        note = (
            "The message body was too long to include in full; the whole body is attached."
            if email.body_truncated
            else None
        )
        batches = rcpt.batches(to)
        sent_now = False
        for n, batch in enumerate(batches):
            if n in claim.record.sent_batches:  # sent by an earlier attempt
                continue
            # Batches stay positional over the whole list (the record counts them), so suppressed
            # recipients are left out within their batch, never by shifting the others.
            batch = tuple(r for r in batch if r not in suppressed)
            if not batch:
                continue
            await self.ledger.renew_if_needed(claim)
            if sent_now:  # the check after the claim covers the first send; each is an S3 call
                await self._stop_if_revoked(ref)
            raw = await on_bodies(email, partial(
                compose_email,
                sender=self.settings.sender,
                recipients=batch,
                subject=email.subject,
                text=text,
                html_body=html,
                attachments=email.attachments,
                source_id=ref.message_id,
                note=note,
            ))
            await self.send_rate.acquire()
            async with self.send_window:
                ses_id = await self._send_raw(raw, batch)
                # Until this write lands, a crash would send the batch again: nothing in between.
                await self.ledger.record_send(claim, n, ses_id, last=n == len(batches) - 1)
            sent_now = True
        await self.ledger.finish(claim, "sent")
        return claim.record.ses_message_ids

    async def _send_raw(self, raw: bytes, batch: tuple[str, ...]) -> str:
        """One SES send; recipients are read from the message's To: header."""
        extra: dict[str, Any] = {}
        if self.settings.configuration_set:
            extra["ConfigurationSetName"] = self.settings.configuration_set
        try:
            if self.settings.ses_api == "v2":
                response = await self.aws.ses.send_email(
                    FromEmailAddress=self.settings.sender, Content={"Raw": {"Data": raw}}, **extra
                )
            else:
                response = await self.aws.ses.send_raw_email(
                    Source=self.settings.sender, RawMessage={"Data": raw}, **extra
                )
        except ClientError as error:
            refusal = sandbox_rejection(error, self.settings.sender, batch)
            if refusal is not None:
                raise refusal from error
            kind = classify(error)
            raise kind(f"SES refused the email: {describe(error)}") from error
        return str(response.get("MessageId", ""))


