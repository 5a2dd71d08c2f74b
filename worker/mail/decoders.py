"""Transfer-encoding removal for one leaf's body, fed in slices of any size; no I/O.

Each decoder gives, slice by slice, the bytes the standard library's decoder gives for the whole
body, carrying what a slice leaves incomplete (a base64 group, a quoted-printable escape) to the next.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from typing import Any, Final

_simd_b64decode: Callable[..., bytes] | None
try:  # a SIMD decoder: several GB/s where binascii decodes about 0.5 GB/s (bench/big_emails.py)
    from pybase64 import b64decode as _simd_b64decode
except ImportError:  # pragma: no cover - pybase64 is a dependency; binascii keeps the same results
    _simd_b64decode = None


def _b64_lenient(data: Any) -> bytes:
    """Bytes outside the alphabet dropped, as binascii does; raises when groups are not whole."""
    if _simd_b64decode is None:
        return binascii.a2b_base64(data)
    return _simd_b64decode(data)


def _b64_clean(data: Any) -> bytes:
    """Data known to hold only alphabet characters, in whole groups."""
    if _simd_b64decode is None:
        return binascii.a2b_base64(data)
    return _simd_b64decode(data, validate=True)


_B64_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_B64_JUNK: Final = bytes(sorted(set(range(256)) - set(_B64_ALPHABET)))
_QP_MAX_WAIT: Final = 1 << 16  # longest line held back for a quoted-printable "=\r"
_B64_FAST_MIN: Final = 4096  # shorter base64 slices take the exact path only


class Decoder:
    """Transfer-encoding removal for one leaf; 7bit, 8bit, binary and unknown pass through.
    `feed` takes data[start:end] (no slice is copied to hand it over) and returns decoded pieces."""

    def feed(self, data: bytes | bytearray, start: int, end: int) -> list[bytes]:
        raw = data[start:end]  # the whole of a bytes object is not copied
        return [raw if isinstance(raw, bytes) else bytes(raw)]

    def flush(self) -> bytes:
        return b""


class Base64Decoder(Decoder):
    """Decodes slices to what binascii's lenient decoder gives for the whole body (feedparser's
    fallback): bytes outside the alphabet are ignored, and a completed padding ends the data.

    The fast path (measured in bench/big_emails.py): the whole lines of a slice, when no '=' is in
    it and the lines before them left no partial 4-character group, go to the SIMD decoder in one
    call; its lenient mode drops line breaks and other bytes outside the alphabet as binascii does,
    and it refuses a group count that is not whole, so such slices take the exact path below. The
    partial lines at both ends (a few dozen bytes) always take the exact path."""

    def __init__(self) -> None:
        self._quad = b""  # characters of an incomplete 4-character group
        self._pad = False  # the last slice ended in a '=' after 2 characters of a group
        self._done = False

    def feed(self, data: bytes | bytearray, start: int, end: int) -> list[bytes]:
        if self._done or start >= end:
            return []
        if end - start < _B64_FAST_MIN or data.find(b"=", start, end) >= 0:
            return self._exact(data[start:end])
        first = data.find(b"\n", start, end) + 1
        last = data.rfind(b"\n", start, end) + 1
        if not 0 < first < last:  # fewer than two line breaks: no whole line to hand over
            return self._exact(data[start:end])
        out = self._exact(data[start:first])
        fast = None
        if not self._quad:
            with memoryview(data)[first:last] as lines:
                try:
                    fast = _b64_lenient(lines)
                except ValueError:  # binascii.Error: the lines do not hold whole groups
                    pass
        if fast is None:
            out += self._exact(data[first:last])
        elif fast:
            out.append(fast)
            self._pad = False
        out += self._exact(data[last:end])
        return out

    def _exact(self, raw: bytes | bytearray) -> list[bytes]:
        clean = raw.translate(None, _B64_JUNK)
        if b"=" in clean:
            clean = self._unpad(clean)
        elif clean:
            self._pad = False
        out, i = [], 0
        if self._quad:
            i = min(4 - len(self._quad), len(clean))
            self._quad += clean[:i]
            if len(self._quad) == 4:
                out.append(binascii.a2b_base64(self._quad))
                self._quad = b""
        if not self._quad:
            whole = i + ((len(clean) - i) & ~3)
            if whole > i:
                try:
                    out.append(_b64_clean(memoryview(clean)[i:whole]))
                except ValueError:  # binascii.Error; not expected on a cleaned slice
                    out.append(binascii.a2b_base64(memoryview(clean)[i:whole]))
            self._quad = bytes(clean[whole:])
        if self._done and (tail := self.flush()):
            out.append(tail)
        return out

    def _unpad(self, clean: bytes | bytearray) -> bytes | bytearray:
        """`clean` less the '=' that binascii ignores, cut where a completed padding ends the data."""
        seen, at = 0, clean.find(b"=")
        while at >= 0:
            group = (len(self._quad) + at - seen) % 4  # position in its group, as '=' do not count
            if group == 3 or (group == 2 and (clean[at - 1] == 0x3D if at else self._pad)):
                self._done = True
                return clean[:at].replace(b"=", b"")
            seen, at = seen + 1, clean.find(b"=", at + 1)
        self._pad = clean[-1] == 0x3D and (len(self._quad) + len(clean) - seen) % 4 == 2
        return clean.replace(b"=", b"")

    def flush(self) -> bytes:  # pads a group of 2 or 3 as email._encoded_words.decode_b does
        quad, self._quad = self._quad, b""
        return binascii.a2b_base64(quad + b"==") if len(quad) >= 2 else b""


class QuotedPrintableDecoder(Decoder):
    def __init__(self) -> None:
        self._carry = b""

    def feed(self, data: bytes | bytearray, start: int, end: int) -> list[bytes]:
        return [out] if (out := self._decode(self._carry + data[start:end])) else []

    def _decode(self, data: bytes) -> bytes:
        cut = len(data)  # the longest prefix a2b_qp decodes as it would inside the whole body
        line = data.rfind(b"\n") + 1
        if data.find(b"=\r", line) >= 0 and cut - line <= _QP_MAX_WAIT:
            cut = line  # a2b_qp drops everything from "=\r" to the next LF: wait for it
        elif (eq := data.rfind(b"=", max(0, cut - 2))) >= 0:
            run = eq + 1 - len(data[: eq + 1].rstrip(b"="))  # "==" decodes to "=": pairs are safe
            cut = cut if run % 2 == 0 else eq
        self._carry = data[cut:]
        return binascii.a2b_qp(data[:cut])

    def flush(self) -> bytes:
        carry, self._carry = self._carry, b""
        return binascii.a2b_qp(carry)


def decoder_for(transfer_encoding: str) -> Decoder:
    """The decoder for a lowercased Content-Transfer-Encoding; 7bit, 8bit, binary and unknown pass through."""
    decoders: dict[str, type[Decoder]] = {"base64": Base64Decoder, "quoted-printable": QuotedPrintableDecoder}
    return decoders.get(transfer_encoding, Decoder)()
