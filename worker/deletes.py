"""Deleting handled SQS messages in batches: one DeleteMessageBatch for the emails that finish
together, instead of one DeleteMessage each (an AWS call costs ~1.5 ms of worker CPU; see
docs/performance.md).

The first handler to finish becomes the batch's sender: when other handlers are still busy it
waits up to `linger_s` for them to join, and sends as soon as every busy handler has joined or
the batch holds 10 (SQS's limit), whichever comes first.
Each handler still waits for its own delete and gets its own error, so settling a message means
what it meant with DeleteMessage. A delete that fails only makes SQS redeliver a handled message,
which the progress record then recognises as done (worker/ledger.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

MAX_BATCH = 10  # SQS's limit per DeleteMessageBatch


class DeleteFailed(Exception):
    """SQS refused to delete one message of a batch."""


@dataclass(slots=True)
class _Entry:
    receipt: str
    done: anyio.Event = field(default_factory=anyio.Event)
    error: Exception | None = None


class BatchDeleter:
    def __init__(self, sqs: Any, queue_url: str, busy: Callable[[], int], linger_s: float = 0.05) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.busy = busy  # handlers still working, this one included
        self.linger_s = linger_s
        self._pending: list[_Entry] = []
        self._ready = anyio.Event()

    async def delete(self, receipt: str) -> None:
        entry = _Entry(receipt)
        self._pending.append(entry)
        if len(self._pending) == 1:
            await self._send_all()
        else:
            self.wake()
            await entry.done.wait()
        if entry.error is not None:
            raise entry.error

    def wake(self) -> None:
        """Send now if no busy handler is left to join; the consumer calls it when one ends."""
        if self._pending and len(self._pending) >= min(MAX_BATCH, self.busy()):
            self._ready.set()

    async def _send_all(self) -> None:
        # Shielded: the others wait on this sender, so a shutdown must not strand them.
        with anyio.CancelScope(shield=True):
            self.wake()
            if self.linger_s > 0:
                with anyio.move_on_after(self.linger_s):
                    await self._ready.wait()
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                self._ready = anyio.Event()
                with anyio.move_on_after(30) as timer:
                    await self._send(batch)
                if timer.cancelled_caught:
                    self._fail(batch, TimeoutError("DeleteMessageBatch did not answer in 30 s"))

    async def _send(self, batch: list[_Entry]) -> None:
        try:
            response = await self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": e.receipt} for n, e in enumerate(batch)],
            )
        except Exception as error:
            self._fail(batch, error)
            return
        for failure in response.get("Failed", []):
            entry = batch[int(failure["Id"])]
            entry.error = DeleteFailed(f"{failure.get('Code')}: {failure.get('Message', '')}")
        for entry in batch:
            entry.done.set()

    @staticmethod
    def _fail(batch: list[_Entry], error: Exception) -> None:
        for entry in batch:
            if not entry.done.is_set():
                entry.error = error
                entry.done.set()
