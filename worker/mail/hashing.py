"""SHA-256 of an attachment, computed on a helper thread while the next piece is decoded.

hashlib releases the GIL while it hashes more than 2 KiB, so with two cores the hash of one piece
runs alongside the decoding of the next (SHA-256 was 0.084 s of a 0.19 s parse of 200 MB; see
docs/performance.md). Pieces of one stream are hashed in order: each waits for the one before.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache

# Below this a thread hand-off (tens of microseconds) costs about what hashing the piece does.
OFFLOAD_MIN_BYTES = 256 * 1024


@cache
def _hasher() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="sha256")


class StreamHash:
    """`update` returns at once; pieces queue up until there are enough to hand to the thread,
    and `hexdigest` waits for the last hand-off."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._queued: list[bytes] = []
        self._queued_bytes = 0
        self._pending: Future[None] | None = None

    def update(self, data: bytes) -> None:
        self._queued.append(data)
        self._queued_bytes += len(data)
        if self._queued_bytes >= OFFLOAD_MIN_BYTES:
            self._wait()
            pieces, self._queued, self._queued_bytes = self._queued, [], 0
            self._pending = _hasher().submit(self._hash, pieces)

    def hexdigest(self) -> str:
        self._wait()
        self._hash(self._queued)
        self._queued, self._queued_bytes = [], 0
        return self._sha.hexdigest()

    def _hash(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self._sha.update(piece)

    def _wait(self) -> None:
        # Blocks the event loop for at most one hand-off's hash: no longer than hashing it inline.
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()
