"""Deleting handled SQS messages in batches: one DeleteMessageBatch for up to 10 handled messages
instead of one DeleteMessage each (an AWS call costs ~1.2 ms of worker CPU; see
docs/performance.md).

A handler whose message is done hands its receipt to the one sender task and frees its slot at
once; the sender sends when 10 are waiting or the first has waited `linger_s`. Waiting is safe:
the message stays invisible for at least a third of the visibility timeout after its last
heartbeat (worker/config.py), far longer than the linger. A delete that fails or never goes out
(the worker stopping) only makes SQS redeliver a handled message, which the progress record then
recognises as done (worker/aws/ledger.py); it is logged with its reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskStatus

from worker.errors import describe

logger = logging.getLogger(__name__)

MAX_BATCH = 10  # SQS's limit per DeleteMessageBatch
LINGER_S = 0.5
CALL_TIMEOUT_S = 30.0
FLUSH_S = 3.0  # on shutdown; ECS allows the task 5 s to exit after the drain (deploy/service.yaml)


@dataclass(frozen=True, slots=True)
class _Entry:
    receipt: str
    message_id: str


class BatchDeleter:
    def __init__(self, sqs: Any, queue_url: str, linger_s: float = LINGER_S) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.linger_s = linger_s
        self._pending: list[_Entry] = []
        self._arrived = anyio.Event()
        self._full = anyio.Event()

    def submit(self, receipt: str, message_id: str) -> None:
        """Queue the delete of a handled message; the sender task sends it."""
        self._pending.append(_Entry(receipt, message_id))
        self._arrived.set()
        if len(self._pending) >= MAX_BATCH:
            self._full.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The sender (start it with `TaskGroup.start`). Cancelled, it sends what is still
        waiting, within FLUSH_S."""
        task_status.started()
        try:
            while True:
                if not self._pending:
                    self._arrived = anyio.Event()
                    await self._arrived.wait()
                if len(self._pending) < MAX_BATCH:
                    self._full = anyio.Event()
                    with anyio.move_on_after(self.linger_s):
                        await self._full.wait()
                await self._send_next()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(FLUSH_S):
                while self._pending:
                    await self._send_next()
            for entry in self._pending:
                logger.warning("not deleted before the worker stopped; SQS will redeliver it",
                               extra={"sqs_message_id": entry.message_id})
            self._pending = []

    async def _send_next(self) -> None:
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        try:
            with anyio.fail_after(CALL_TIMEOUT_S):
                response = await self.sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(n), "ReceiptHandle": e.receipt} for n, e in enumerate(batch)],
                )
        except anyio.get_cancelled_exc_class():
            self._pending[:0] = batch  # the shutdown flush tries them again
            raise
        except Exception as error:
            for entry in batch:
                self._failed(entry, f"DeleteMessageBatch failed: {describe(error)}")
            return
        # SQS answers 200 even when some entries fail: each entry is in Successful or Failed.
        failed = {f.get("Id"): f for f in response.get("Failed", [])}
        succeeded = {s.get("Id") for s in response.get("Successful", [])}
        for n, entry in enumerate(batch):
            if str(n) in failed:
                self._failed(entry, f"{failed[str(n)].get('Code')}: {failed[str(n)].get('Message', '')}")
            elif str(n) not in succeeded:
                self._failed(entry, "DeleteMessageBatch did not mention this message")

    @staticmethod
    def _failed(entry: _Entry, reason: str) -> None:
        logger.warning("delete failed; SQS will redeliver it",
                       extra={"sqs_message_id": entry.message_id, "error": reason})
