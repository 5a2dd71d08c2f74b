"""Progress records that make sending effectively-once over at-least-once delivery.

SQS may deliver a message twice and S3 may emit two events for one object, so the same raw email
can reach two handlers, in one worker or in two. One small JSON object per incoming object, in the
attachments bucket under `state/`, keyed by (bucket, key, version or ETag), records who is working
on it and which sends already happened. Every write is conditional: `If-None-Match: *` to create it,
`If-Match: <etag>` to change it, so two writers can never both believe they own it.

- claim: create the record, or take it over when its lease has expired; a live lease held by
  another handler means "in progress elsewhere" (retry later); a finished record means duplicate.
- before each send the lease is renewed when less than half of it is left (a compare-and-swap, so a
  handler that lost the record to a take-over stops before sending);
- after each send the batch is recorded; the last write marks the email done;
- a handler that fails gives its lease back (release), so the redelivery claims at once instead
  of meeting its own dead claim until the lease ends. The handler has stopped by then, the write is
  conditional like every other (a record taken over meanwhile is left alone), and the batches
  already recorded stay recorded, so the next handler sends only the rest.

The window that remains: a handler killed after SES accepted a batch and before that batch's record
was written. The batch is sent again by whoever takes the record over. It is one S3 PUT long.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from botocore.exceptions import ClientError

from worker.errors import RetryableError
from worker.events import S3ObjectRef

logger = logging.getLogger(__name__)

Status = Literal["processing", "done"]
OWNER = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class InProgressElsewhere(RetryableError):
    """Another handler holds a live lease on this email."""


class LostClaim(RetryableError):
    """Our lease expired and another handler took the email over; stop before sending."""


@dataclass(frozen=True, slots=True)
class Record:
    status: Status
    owner: str
    lease_until: float  # epoch seconds
    sent_batches: tuple[int, ...] = ()
    ses_message_ids: tuple[str, ...] = ()
    outcome: str | None = None
    attempts: int = 1

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Record:
        raw: dict[str, Any] = json.loads(data)
        return cls(
            status=raw["status"],
            owner=str(raw["owner"]),
            lease_until=float(raw["lease_until"]),
            sent_batches=tuple(int(b) for b in raw.get("sent_batches", ())),
            ses_message_ids=tuple(str(i) for i in raw.get("ses_message_ids", ())),
            outcome=raw.get("outcome"),
            attempts=int(raw.get("attempts", 1)),
        )


@dataclass(slots=True)
class Claim:
    """Our hold on one email's record; `etag` is what the next conditional write must match."""

    key: str
    etag: str
    record: Record
    done_before: bool = field(default=False)


def _precondition_failed(error: ClientError) -> bool:
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = error.response.get("Error", {}).get("Code")
    # 409 ConditionalRequestConflict: a concurrent conditional write to the same key won.
    return status in (409, 412) or code in ("PreconditionFailed", "ConditionalRequestConflict")


class Ledger:
    def __init__(self, s3: Any, bucket: str, prefix: str = "state/", lease_s: float = 120.0, owner: str = OWNER) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix
        self.lease_s = lease_s
        self.owner = owner

    def key_for(self, ref: S3ObjectRef) -> str:
        identity = ref.version_id or (ref.etag or "").strip('"') or "unversioned"
        return f"{self.prefix}{ref.bucket}/{ref.key}@{identity}.json"

    async def claim(self, ref: S3ObjectRef) -> Claim:
        """Own the record for `ref`, or learn that it is done (Claim.done_before)."""
        key = self.key_for(ref)
        # One owner per claim, not per process: two handlers in one worker must exclude each other.
        owner = f"{self.owner}/{secrets.token_hex(3)}"
        fresh = Record(status="processing", owner=owner, lease_until=time.time() + self.lease_s)
        try:
            put = await self.s3.put_object(Bucket=self.bucket, Key=key, Body=fresh.to_json(), IfNoneMatch="*")
            return Claim(key, str(put["ETag"]), fresh)
        except ClientError as error:
            if not _precondition_failed(error):
                raise
        current, etag = await self._read(key)
        if current.status == "done":
            return Claim(key, etag, current, done_before=True)
        left = current.lease_until - time.time()
        if left > 0:
            raise InProgressElsewhere(f"{ref.uri} is being processed by {current.owner}", retry_after_s=left + 1)
        taken = replace(current, owner=owner, lease_until=time.time() + self.lease_s, attempts=current.attempts + 1)
        claim = Claim(key, etag, current)
        try:
            await self._swap(claim, taken)
        except LostClaim:
            # Another handler took it over first, with a fresh lease: look again once that lease
            # ends at the latest (the consumer's backoff is longer after a few receives).
            raise InProgressElsewhere(f"{ref.uri} was just taken over by another handler",
                                      retry_after_s=self.lease_s + 1) from None
        logger.info("took over an expired claim", extra={"s3_key": ref.key, "previous_owner": current.owner})
        return claim

    async def renew_if_needed(self, claim: Claim) -> None:
        """Extend our lease before a send when less than half of it is left."""
        if claim.record.lease_until - time.time() < self.lease_s / 2:
            await self._swap(claim, replace(claim.record, lease_until=time.time() + self.lease_s))

    async def record_send(self, claim: Claim, batch: int, ses_message_id: str, *, last: bool) -> None:
        record = replace(
            claim.record,
            sent_batches=(*claim.record.sent_batches, batch),
            ses_message_ids=(*claim.record.ses_message_ids, ses_message_id),
        )
        if last:
            record = replace(record, status="done", outcome="sent")
        await self._swap(claim, record)

    async def finish(self, claim: Claim, outcome: str) -> None:
        if claim.record.status != "done":
            await self._swap(claim, replace(claim.record, status="done", outcome=outcome))

    async def release(self, claim: Claim) -> None:
        """Give our lease back after a failure; call it only once this handler has stopped sending.

        Everything else in the record stays (sent batches, attempts). A record that changed under
        us (our lease expired and another handler took over) is not ours to release: left alone."""
        if claim.record.status == "done":
            return
        try:
            await self._swap(claim, replace(claim.record, lease_until=0.0))
        except LostClaim:
            logger.info("claim not released: taken over meanwhile", extra={"state_key": claim.key})

    async def _read(self, key: str) -> tuple[Record, str]:
        response = await self.s3.get_object(Bucket=self.bucket, Key=key)
        async with response["Body"] as body:
            data = await body.read()
        return Record.from_json(data), str(response["ETag"])

    async def _swap(self, claim: Claim, record: Record) -> None:
        try:
            put = await self.s3.put_object(Bucket=self.bucket, Key=claim.key, Body=record.to_json(), IfMatch=claim.etag)
        except ClientError as error:
            if _precondition_failed(error):
                raise LostClaim(f"progress record {claim.key} changed under us") from error
            raise
        claim.etag = str(put["ETag"])
        claim.record = record
