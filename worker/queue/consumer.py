"""The SQS loop: receive what we can run, heartbeat, settle each message by its outcome, drain.

A message is settled only once its outcome is known:
- every email in it sent, or handed to the fallback topic, or the event ignored -> delete
  (queued for a shared DeleteMessageBatch: the handler's slot is free at once, worker/queue/deletes.py);
- transient failure -> leave it; its visibility is set to a backoff so SQS redelivers it later;
- permanent failure -> copy to the DLQ with the reason as attributes, then delete (without a
  DLQ configured, it is left for the queue's redrive policy);
- cancelled (drain deadline passed) -> handed back at once (visibility 0).
"""

from __future__ import annotations

import logging
import math
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskGroup

from worker.aws.clients import Clients, open_clients
from worker.aws.sending import pace_to_account
from worker.config import Settings
from worker.errors import Deferred, RetryableError, classify, describe
from worker.events import Ignored, S3ObjectRef, decode_body
from worker.pipeline import Outcome, Pipeline
from worker.queue.deletes import BatchDeleter
from worker.telemetry import emf

logger = logging.getLogger(__name__)

# SQS counts visibility from the first receive and refuses to extend past 12 hours.
SQS_MAX_VISIBILITY_S = 12 * 3600
MAX_BACKOFF_S = 15 * 60

OutcomeHook = Callable[[Outcome], Awaitable[None]]


@dataclass(slots=True)
class _Held:
    """One received SQS message while we hold it."""

    message_id: str
    receipt: str
    body: str
    receive_count: int
    received_at: float


class Consumer:
    def __init__(self, settings: Settings, aws: Clients, on_outcome: OutcomeHook | None = None) -> None:
        self.settings = settings
        self.aws = aws
        self.pipeline = Pipeline(settings, aws)
        self.on_outcome = on_outcome
        self.slots = anyio.Semaphore(settings.concurrency)
        self.deletes = BatchDeleter(aws.sqs, settings.queue_url)

    async def poll(self, handlers: TaskGroup) -> None:
        """Receive forever, never more messages than free slots; cancel the scope to stop."""
        failures = 0
        while True:
            await self.slots.acquire()
            free = 1
            while free < min(10, self.settings.concurrency) and self.slots.value > 0:
                await self.slots.acquire()
                free += 1
            try:
                messages = await self._receive(free)
                failures = 0
            except Exception as error:
                for _ in range(free):
                    self.slots.release()
                failures += 1
                delay = min(20.0, 0.5 * 2**failures) * random.uniform(0.5, 1.0)
                logger.warning(
                    "receive failed; retrying", extra={"error": describe(error), "retry_in_s": round(delay, 1)}
                )
                await anyio.sleep(delay)
                continue
            # Start the handlers before any other await: a cancellation now must not strand them.
            for raw in messages:
                handlers.start_soon(self._handle, _held(raw))
            for _ in range(free - len(messages)):
                self.slots.release()

    async def _receive(self, count: int) -> list[dict[str, Any]]:
        response = await self.aws.sqs.receive_message(
            QueueUrl=self.settings.queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=self.settings.wait_time_s,
            VisibilityTimeout=self.settings.visibility_timeout_s,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return list(response.get("Messages", []))

    async def _handle(self, held: _Held) -> None:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._heartbeat, held)
                try:
                    await self._process(held)
                finally:
                    tg.cancel_scope.cancel()
        except Exception:
            # Settlement itself failed (e.g. the queue is unreachable): the message reappears
            # after its visibility timeout and the progress record prevents a second send.
            logger.exception("could not settle message; SQS will redeliver it", extra={"sqs_message_id": held.message_id})
        finally:
            self.slots.release()

    async def _process(self, held: _Held) -> None:
        log: dict[str, Any] = {"sqs_message_id": held.message_id, "receive_count": held.receive_count}
        try:
            with anyio.fail_after(self.settings.email_timeout_s):
                for item in decode_body(held.body):
                    if isinstance(item, Ignored):
                        logger.info("event ignored", extra={**log, "reason": item.reason})
                        continue
                    await self._process_email(item, log)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self._release(held, 0)
                logger.warning("handed back on shutdown", extra=log)
            raise
        except Exception as error:
            reason = describe(error)
            if isinstance(error, Deferred):
                # Its turn comes no sooner than the hint; the backoff spreads a sender's waiting
                # emails out, so they do not all come back at the moment one may go.
                delay = min(MAX_BACKOFF_S, max(_backoff(held.receive_count), math.ceil(error.retry_after_s or 0)))
                logger.info("sender over its budget; the email waits", extra={**log, "error": reason, "retry_in_s": delay})
                await self._release(held, delay)
            elif classify(error) is RetryableError:
                hint = error.retry_after_s if isinstance(error, RetryableError) else None
                # A hint (a lease that ends then) is a latest time to look again, not a minimum:
                # the other handler usually finishes well before its lease ends.
                delay = _backoff(held.receive_count)
                if hint is not None:
                    delay = min(delay, int(hint) + 1)
                logger.warning("transient failure; will retry", extra={**log, "error": reason, "retry_in_s": delay})
                await self._release(held, delay)
            else:
                await self._dead_letter(held, error, reason, log)
            return
        self.deletes.submit(held.receipt, held.message_id)

    async def _process_email(self, ref: S3ObjectRef, log: dict[str, Any]) -> None:
        started = time.perf_counter()
        line = {**log, "s3_key": ref.key, "s3_bucket": ref.bucket}
        try:
            outcome = await self.pipeline.process(ref)
        except Exception as error:
            kind = "deferred" if isinstance(error, Deferred) else "retry" if classify(error) is RetryableError else "failed"
            duration = time.perf_counter() - started
            logger.info(
                "email processed",
                extra={**line, "outcome": kind, "error": describe(error), "duration_s": round(duration, 3),
                       **emf(kind, duration)},
            )
            raise
        duration = time.perf_counter() - started
        stored = sum(a.size for a in outcome.attachments)
        logger.info(
            "email processed",
            extra={
                **line,
                "outcome": outcome.kind,
                "duration_s": round(duration, 3),
                "bytes": outcome.size,
                "attachments": len(outcome.attachments),
                "recipients": len(outcome.recipients),
                "skipped": len(outcome.skipped),
                "reason": outcome.reason,
                **emf(outcome.kind, duration, len(outcome.attachments), stored),
            },
        )
        if self.on_outcome is not None:
            try:
                await self.on_outcome(outcome)
            except Exception:
                logger.exception("outcome hook failed", extra=line)

    async def _heartbeat(self, held: _Held) -> None:
        """Keep the message invisible while we work, in short steps, never past SQS's 12 h cap."""
        step = self.settings.visibility_timeout_s
        while True:
            await anyio.sleep(self.settings.heartbeat_interval_s)
            held_for = time.monotonic() - held.received_at
            extension = min(step, int(SQS_MAX_VISIBILITY_S - held_for - 60))
            if extension <= 0:
                logger.warning("visibility cap reached; SQS will redeliver", extra={"sqs_message_id": held.message_id})
                return
            try:
                await self._release(held, extension)
            except Exception as error:
                logger.warning("heartbeat failed", extra={"sqs_message_id": held.message_id, "error": describe(error)})

    async def _release(self, held: _Held, visibility_s: int) -> None:
        await self.aws.sqs.change_message_visibility(
            QueueUrl=self.settings.queue_url, ReceiptHandle=held.receipt, VisibilityTimeout=visibility_s
        )

    async def _dead_letter(self, held: _Held, error: Exception, reason: str, log: dict[str, Any]) -> None:
        if self.settings.dlq_url is None:
            logger.error("permanent failure; left for the redrive policy", extra={**log, "error": reason})
            await self._release(held, _backoff(held.receive_count))
            return
        attributes = {
            "sensormail.reason": reason[:1000],
            "sensormail.error": type(error).__name__,
            "sensormail.source_message_id": held.message_id,
            "sensormail.receive_count": str(held.receive_count),
        }
        await self.aws.sqs.send_message(
            QueueUrl=self.settings.dlq_url,
            MessageBody=held.body,
            MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        )
        await self.aws.sqs.delete_message(QueueUrl=self.settings.queue_url, ReceiptHandle=held.receipt)
        logger.error("permanent failure; moved to the DLQ", extra={**log, "error": reason})


def _held(raw: dict[str, Any]) -> _Held:
    attrs = raw.get("Attributes", {})
    return _Held(
        message_id=str(raw.get("MessageId", "")),
        receipt=str(raw["ReceiptHandle"]),
        body=str(raw.get("Body", "")),
        receive_count=int(attrs.get("ApproximateReceiveCount", "1")),
        received_at=time.monotonic(),
    )


def _backoff(receive_count: int) -> int:
    """Seconds before SQS shows a failed message again: 10 s, 20 s, 40 s ... up to 15 min, jittered."""
    base = min(MAX_BACKOFF_S, 10 * 2 ** max(0, receive_count - 1))
    return int(base * random.uniform(0.5, 1.0)) or 1


async def _cancel_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            logger.info("stopping: no new messages", extra={"signal": signal.Signals(signum).name})
            scope.cancel()
            return


HEALTH_INTERVAL_S = 15


async def _touch_health_file(path: str) -> None:
    """Prove the event loop turns: the container health check (`sensormail health`) reads the
    file's age. A loop blocked by a runaway parse or a deadlock stops touching it."""
    target = anyio.Path(path)
    while True:
        try:
            await target.touch()
        except OSError as error:
            logger.warning("cannot write the health file", extra={"path": path, "error": str(error)})
            return
        await anyio.sleep(HEALTH_INTERVAL_S)


async def _cancel_on_event(scope: anyio.CancelScope, event: anyio.Event) -> None:
    await event.wait()
    scope.cancel()


async def serve(
    settings: Settings,
    on_outcome: OutcomeHook | None = None,
    *,
    clients: Clients | None = None,
    stop: anyio.Event | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or `stop` is set), then drain within drain_timeout_s and return."""
    if clients is None:
        async with open_clients(settings) as aws:
            await serve(settings, on_outcome, clients=aws, stop=stop)
        return
    consumer = Consumer(settings, clients, on_outcome)
    # One call at start-up: pace sends to the account's max send rate across all handlers.
    await pace_to_account(clients.ses, settings.ses_api, settings.max_send_rate, consumer.pipeline.send_rate)
    if settings.any_recipient:
        logger.warning(
            "OPEN RELAY: SENSORMAIL_ALLOWED_RECIPIENT_DOMAINS is *, so anyone who gets an email in can have it"
            " sent to any address from our sender; set the domains recipients may be in",
            extra={"allowed_recipient_domains": list(settings.allowed_recipient_domains)},
        )
    logger.info("worker started", extra={"queue_url": settings.queue_url, "concurrency": settings.concurrency,
                                         "allowed_recipient_domains": list(settings.allowed_recipient_domains),
                                         "intake_domains": list(settings.intake_domains),
                                         "max_recipients": settings.max_recipients, "sender_rate": settings.sender_rate})
    async with anyio.create_task_group() as root:
        await root.start(consumer.deletes.run)  # deletes until the handlers have drained, then flushes
        async with anyio.create_task_group() as handlers:
            with anyio.CancelScope() as polling:
                root.start_soon(_cancel_on_signal, polling)
                root.start_soon(_touch_health_file, settings.health_file)
                if stop is not None:
                    root.start_soon(_cancel_on_event, polling, stop)
                await consumer.poll(handlers)
            handlers.cancel_scope.deadline = anyio.current_time() + settings.drain_timeout_s
        root.cancel_scope.cancel()
    logger.info("worker stopped")
