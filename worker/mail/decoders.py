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
_UU_MAX_LINE: Final = 1024  # a uuencoded line says at most 63 bytes (84 characters); the rest is ignored
_UU_MAX_HOLD: Final = 1 << 16  # how far a begin line is looked for before the body passes through


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


class UUDecoder(Decoder):
    """x-uuencode, read as the standard library's get_payload(decode=True) reads it: lines up to
    `begin <octal mode> <name>` are skipped, each line after it decodes by its length character
    (a line that says more than it holds is cut to what it says), `end` ends the data.

    Memory stays bounded: a line is held only up to the longest a length character can ask for,
    and what comes before the begin line only up to _UU_MAX_HOLD. Chosen differences, where the
    standard library gives back the whole body undecoded: with no begin line in the first
    _UU_MAX_HOLD bytes, the body passes through undecoded from there on; blank lines inside the
    data are skipped (it calls the data truncated); a line that does not decode at all is dropped."""

    def __init__(self) -> None:
        self._line = bytearray()  # the line being read, cut at _UU_MAX_LINE
        self._held = bytearray()  # everything before the begin line, kept in case there is none
        self._state = "seek"  # seek (a begin line), data, done, or raw (passing through)

    def feed(self, data: bytes | bytearray, start: int, end: int) -> list[bytes]:
        if self._state == "raw":
            return super().feed(data, start, end)
        if self._state == "done" or start >= end:
            return []
        out = self._lines(data, start, end)
        if self._state == "seek":
            self._held += data[start:end]
            if len(self._held) > _UU_MAX_HOLD:  # no begin line so far: not uuencoded data
                self._state, held, self._held, self._line = "raw", bytes(self._held), bytearray(), bytearray()
                return [held]
        return out

    def _lines(self, data: bytes | bytearray, start: int, end: int) -> list[bytes]:
        out: list[bytes] = []
        i = start
        while i < end and self._state in ("seek", "data"):
            lf, cr = data.find(b"\n", i, end), data.find(b"\r", i, end)
            stop = min(lf if lf >= 0 else end, cr if cr >= 0 else end)
            room = _UU_MAX_LINE - len(self._line)
            if room > 0:
                self._line += data[i : min(stop, i + room)]
            if stop == end:
                break
            self._line_done(out)
            i = stop + 1
        return out

    def _line_done(self, out: list[bytes]) -> None:
        line, self._line = bytes(self._line), bytearray()
        if self._state == "seek":
            if line.startswith(b"begin "):
                mode = line[6:].partition(b" ")[0]
                try:
                    int(mode, 8)
                except ValueError:
                    return
                self._state, self._held = "data", bytearray()
            return
        if not line.strip(b" \t\f"):
            return
        if line.strip(b" \t\r\n\f") == b"end":
            self._state = "done"
            return
        try:
            out.append(binascii.a2b_uu(line))
        except binascii.Error:
            try:  # broken encoders pad past the length character: cut to what it announces
                out.append(binascii.a2b_uu(line[: (((line[0] - 32) & 63) * 4 + 5) // 3]))
            except binascii.Error:
                pass

    def flush(self) -> bytes:
        if self._state == "seek":  # no begin line at all: the body as it is, as the stdlib does
            held, self._held, self._line = bytes(self._held), bytearray(), bytearray()
            return held
        out: list[bytes] = []
        if self._state == "data" and self._line:
            self._line_done(out)
        self._line = bytearray()
        return b"".join(out)


def decoder_for(transfer_encoding: str) -> Decoder:
    """The decoder for a lowercased Content-Transfer-Encoding; 7bit, 8bit, binary and unknown pass through."""
    return _DECODERS.get(transfer_encoding, Decoder)()


_DECODERS: Final[dict[str, type[Decoder]]] = {
    "base64": Base64Decoder,
    "quoted-printable": QuotedPrintableDecoder,
    "x-uuencode": UUDecoder,
    "uuencode": UUDecoder,
    "x-uue": UUDecoder,
    "uue": UUDecoder,
}
