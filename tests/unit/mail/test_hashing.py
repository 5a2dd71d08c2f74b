"""The threaded SHA-256 gives hashlib's digest, whatever the sizes and order of the pieces."""

from __future__ import annotations

import hashlib
import random

from worker.mail.hashing import OFFLOAD_MIN_BYTES, StreamHash


def test_pieces_small_and_large_hash_in_order() -> None:
    rng = random.Random(7)
    sizes = [0, 1, 70, OFFLOAD_MIN_BYTES - 1, OFFLOAD_MIN_BYTES, 3 * OFFLOAD_MIN_BYTES + 5, 12, 2 * OFFLOAD_MIN_BYTES]
    rng.shuffle(sizes)
    pieces = [rng.randbytes(n) for n in sizes * 3]
    stream = StreamHash()
    for piece in pieces:
        stream.update(piece)
    assert stream.hexdigest() == hashlib.sha256(b"".join(pieces)).hexdigest()


def test_empty_stream() -> None:
    assert StreamHash().hexdigest() == hashlib.sha256().hexdigest()


def test_streams_hashed_side_by_side_stay_apart() -> None:
    a, b = StreamHash(), StreamHash()
    big = bytes(range(256)) * (OFFLOAD_MIN_BYTES // 128)
    for n in range(6):
        a.update(big + bytes([n]))
        b.update(bytes([n]) + big)
    assert a.hexdigest() == hashlib.sha256(b"".join(big + bytes([n]) for n in range(6))).hexdigest()
    assert b.hexdigest() == hashlib.sha256(b"".join(bytes([n]) + big for n in range(6))).hexdigest()
