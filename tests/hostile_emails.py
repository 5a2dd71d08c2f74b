"""Hostile emails of a chosen size: the inputs of bench/hostile.py and of the cost-ratio test.

Each generator returns about `size` bytes (never less than its hostile unit) whose hostile
construct is repeated as often as the size and the worker's caps allow. The emails stay readable
(or are refused with MalformedEmail at a cap, which is also an answer): the point is what reading
them costs, not what they contain.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

B = "hostile=_b0undary"
HEAD = (
    "From: Pump Station 7 <station7@devices.example.com>\r\n"
    "To: intake-7f3k@mail.example.com\r\n"
    "Date: Mon, 23 Nov 2026 08:29:00 +0000\r\n"
    "MIME-Version: 1.0\r\n"
)
TEXT = (
    f"--{B}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    "Pump 2 alarm.\r\n:Email_Rxers_Code:ops@example.com:Email_Rxers_Code:\r\n"
)
# Each part's header block stays below the parser's 256 KiB cap.
BLOCK = 200_000


def _random_b64(n: int, seed: str) -> bytes:
    """`n` pseudo-random bytes, base64 in 76-character CRLF lines."""
    return base64.encodebytes(hashlib.shake_256(seed.encode()).digest(n)).replace(b"\n", b"\r\n")


def _multipart(subject: str, parts: Callable[[int], bytes], size: int, extra_head: str = "") -> bytes:
    """A multipart/mixed email: text body, then parts(i) for i = 0, 1, ... until `size`."""
    out = bytearray(
        f"{HEAD}Subject: {subject}\r\n{extra_head}Content-Type: multipart/mixed; boundary=\"{B}\"\r\n\r\n{TEXT}".encode()
    )
    i = 0
    while len(out) < size:
        out += parts(i)
        i += 1
    out += f"--{B}--\r\n".encode()
    return bytes(out)


def normal(size: int) -> bytes:
    """The yardstick: a text body and one base64 attachment."""
    head = f"--{B}\r\nContent-Type: application/octet-stream; name=\"capture.bin\"\r\n" \
           "Content-Disposition: attachment; filename=\"capture.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    return _multipart("capture", lambda i: head.encode() + _random_b64(size * 57 // 78, "n"), size)


def _part(headers: str, body: bytes = b"x\r\n") -> bytes:
    return f"--{B}\r\n{headers}\r\n\r\n".encode() + body


def _filler(unit: str, width: int) -> str:
    return unit * max(1, width // len(unit))


def rfc2231_continuations(size: int) -> bytes:
    """`filename*0*=utf-8''a; filename*1*=%41; ...`: ~13,000 segments in each part's header."""
    def part(i: int) -> bytes:
        segs = "".join(f";\r\n filename*{n}*=%41" for n in range(1, BLOCK // 20))
        return _part(f"Content-Disposition: attachment; filename*0*=utf-8''a{i}{segs}")
    return _multipart("continuations", part, size)


def rfc2231_names_in_content_type(size: int) -> bytes:
    """The same in Content-Type (`name*N*=`), unordered, which get_filename falls back to."""
    def part(i: int) -> bytes:
        segs = "".join(f";\r\n name*{n}*=%42" for n in range(BLOCK // 20, 0, -1))
        return _part(f"Content-Type: application/octet-stream{segs}; name*0*=utf-8''b{i}")
    return _multipart("continuations", part, size)


def encoded_words(size: int) -> bytes:
    """Thousands of encoded words in the Subject and in every filename."""
    words = _filler("=?utf-8?q?caf=C3=A9?= ", BLOCK)
    return _multipart(
        words, lambda i: _part(f"Content-Disposition: attachment; filename=\"{words}{i}.txt\""), size
    )


def broken_encoded_words(size: int) -> bytes:
    """`=?utf-8?q?` openings that are never closed (a lazy match up to `?=` would rescan)."""
    words = _filler("=?utf-8?q?a ", BLOCK)
    return _multipart(
        words, lambda i: _part(f"Content-Disposition: attachment; filename=\"{words}{i}\""), size
    )


def many_parameters(size: int) -> bytes:
    """Content-Type and Content-Disposition with thousands of parameters."""
    params = _filler(";\r\n a=b", BLOCK // 2)
    return _multipart(
        "params",
        lambda i: _part(f"Content-Type: text/csv{params}; charset=utf-8\r\n"
                        f"Content-Disposition: attachment{params}; filename=p{i}.csv"),
        size,
    )


def semicolons_in_quotes(size: int) -> bytes:
    """Quoted values full of `;` (a parameter splitter that recounts quotes rescans)."""
    quoted = '"' + ";" * (BLOCK // 2) + '"'
    return _multipart(
        "quotes",
        lambda i: _part(f"Content-Type: text/csv; x={quoted}; charset=utf-8\r\n"
                        f"Content-Disposition: attachment; y={quoted}; filename=q{i}.csv"),
        size,
    )


def long_folded_headers(size: int) -> bytes:
    """One header folded over ~40,000 lines in every part."""
    return _multipart("folded", lambda i: _part("X-Folded: a" + _filler("\r\n a", BLOCK)), size)


def huge_header_blocks(size: int) -> bytes:
    """Every part's header block near the cap, in ~30,000 short headers."""
    return _multipart("headers", lambda i: _part(_filler("X-A: b\r\n", BLOCK).rstrip("\r\n")), size)


def one_long_line(size: int) -> bytes:
    """A single line of `size` bytes without a line break, as an attachment."""
    return _multipart("line", lambda i: _part("Content-Type: application/octet-stream", b"-" * size), size)


def bare_cr_lines(size: int) -> bytes:
    """A body of lines ended by a lone CR, with a `-` on each (so the boundary scan looks)."""
    return _multipart("cr", lambda i: _part("Content-Type: text/plain", b"--x\r" * (size // 4)), size)


def bare_lf_lines(size: int) -> bytes:
    """A body of very short lines ended by a lone LF, each starting with `--`."""
    return _multipart("lf", lambda i: _part("Content-Type: application/octet-stream", b"--\n" * (size // 3)), size)


def boundary_like_lines(size: int) -> bytes:
    """Lines that start with the delimiter and go on (`--boundaryX`): content, each checked."""
    line = f"--{B}X\r\n".encode()
    return _multipart("near", lambda i: _part("Content-Type: application/octet-stream", line * (size // len(line))), size)


def deep_nesting(size: int) -> bytes:
    """Multiparts nested to just under the depth cap (32), again and again."""
    def part(i: int) -> bytes:
        inner = b"x\r\n"
        for d in range(30, 0, -1):
            inner = (f"Content-Type: multipart/mixed; boundary=\"n{d}\"\r\n\r\n--n{d}\r\n").encode() + inner \
                + f"--n{d}--\r\n".encode()
        return f"--{B}\r\n".encode() + inner
    return _multipart("nesting", part, size)


def many_empty_multiparts(size: int) -> bytes:
    """Empty multiparts (no leaf, so no attachment): a header block each, as many as fit."""
    return _multipart("empty", lambda i: f"--{B}\r\nContent-Type: multipart/mixed; boundary=e\r\n\r\n--e--\r\n".encode(), size)


def many_empty_parts(size: int) -> bytes:
    """Empty leaf parts up to the attachment cap (1,000), then a normal attachment to the size."""
    empties = f"--{B}\r\n\r\n".encode() * 999
    return normal(max(size - len(empties), 1000)).replace(f"--{B}\r\nContent-Type: app".encode(),
                                                           empties + f"--{B}\r\nContent-Type: app".encode(), 1)


def many_tiny_attachments(size: int) -> bytes:
    """Up to 1,000 small base64 attachments."""
    each = max(200, size // 1000)
    def part(i: int) -> bytes:
        return _part(f"Content-Type: application/octet-stream; name=\"t{i}.bin\"\r\n"
                     f"Content-Disposition: attachment; filename=\"t{i}.bin\"\r\nContent-Transfer-Encoding: base64",
                     _random_b64(each * 57 // 78, str(i)))
    return _multipart("tiny", part, size)


CASES: dict[str, Callable[[int], bytes]] = {
    "RFC 2231 continuations (filename*N*)": rfc2231_continuations,
    "RFC 2231 continuations in Content-Type (name*N*, reversed)": rfc2231_names_in_content_type,
    "encoded words (Subject and filenames)": encoded_words,
    "unclosed encoded words": broken_encoded_words,
    "thousands of parameters": many_parameters,
    "semicolons inside quoted values": semicolons_in_quotes,
    "very long folded headers": long_folded_headers,
    "huge header blocks (short headers)": huge_header_blocks,
    "one line without a line break": one_long_line,
    "bare-CR lines": bare_cr_lines,
    "bare-LF lines": bare_lf_lines,
    "boundary-like lines (--boundaryX)": boundary_like_lines,
    "deep nesting (31 levels, repeated)": deep_nesting,
    "many empty multiparts": many_empty_multiparts,
    "many empty parts (to the attachment cap)": many_empty_parts,
    "many tiny base64 attachments": many_tiny_attachments,
}
