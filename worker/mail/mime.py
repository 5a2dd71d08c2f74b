"""Streaming MIME parser: raw email bytes in, header and decoded body events out, no I/O.

The standard library's parser holds the whole message in memory; this one keeps the header block
being read, a few bytes of look-behind and the decoders' carries, so a 500 MB attachment streams
in a few MiB. It reads MIME as ``email.feedparser`` does, and the tests use the standard library
as the oracle: a delimiter line is ``--boundary``, optionally ``--``, then only blanks; outer
boundaries end inner multiparts; the line break before a delimiter line belongs to it.

The state machine (``_mode``); every transition happens at a line start:

- HEADERS  a header block (the root's or a child's), line by line, up to a blank line, a line
           that is no header, a delimiter line of an enclosing multipart, or EOF.
- BODY     a leaf's body: ``bytes.find`` looks for ``\\n--``; everything before a candidate that
           is not a delimiter line is decoded and emitted in one slice.
- PARTS    a multipart's own loop: skips its preamble (or a child's epilogue) up to a delimiter
           line: a separator leads to SKIP; the close delimiter or an outer one ends the multipart
           and returns to the enclosing one's PARTS (or DONE, the rest being discarded).
- SKIP     after a separator, repeated delimiter lines are skipped (as feedparser does), then
           HEADERS for the next child.

Chosen differences from the standard library: a lone CR ends a line only in header blocks;
message/* parts are leaves holding the encapsulated message's bytes (transfer encoding removed,
where feedparser would parse them); Content-Transfer-Encoding is stripped of blanks;
x-uuencode is decoded as get_payload(decode=True) does, but streaming (see UUDecoder); a boundary
folded inside its quotes is unfolded, as policy.default (not compat32) reads it; base64 with one
dangling character loses it (the standard library returns the undecoded text then); a quoted-printable ``=`` + lone CR in a line over 64 KiB, or over
1 KiB of blanks after ``--boundary``, is read differently; a multipart with no delimiter line in
its first MiB raises MalformedEmail (the standard library makes it a leaf holding its preamble,
and so does this parser below that size).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any, Final

from worker.errors import MalformedEmail
from worker.mail.decoders import Decoder, decoder_for
from worker.mail.headers import boundary_of, content_charset, filename_of


@dataclass(frozen=True, slots=True)
class PartHeader:
    index: int  # 0-based among leaf parts, in order of appearance
    path: tuple[int, ...]  # () for a single-part message; (0, 1): 2nd child of the root's 1st child
    content_type: str  # as Message.get_content_type() gives it
    charset: str | None
    disposition: str | None
    filename: str | None  # as policy.default's get_filename() gives it
    content_id: str | None
    transfer_encoding: str  # lowercased, "7bit" when absent
    headers: Message  # this part's own headers (compat32)


@dataclass(frozen=True, slots=True)
class MessageHeaders:  # always the first event
    headers: Message


@dataclass(frozen=True, slots=True)
class PartStart:
    part: PartHeader


@dataclass(frozen=True, slots=True)
class PartData:  # the current leaf's data, transfer encoding removed
    data: bytes


@dataclass(frozen=True, slots=True)
class PartEnd:
    part: PartHeader


Event = MessageHeaders | PartStart | PartData | PartEnd

_HEADERS, _BODY, _PARTS, _SKIP, _DONE = range(5)
_HEADER_RE: Final = re.compile(rb"From |[\041-\071\073-\176]*:|[\t ]")  # feedparser.headerRE
# complete lines _HEADER_RE accepts, none starting "--": (all but the last one, the last one)
_HEADER_LINE: Final = rb"(?!--)(?:From |[\041-\071\073-\176]*:|[\t ])[^\r\n]*(?:\r\n|\n|\r(?=[^\n]))"
_HEADER_LINES: Final = re.compile(rb"((?:%s)*)(%s)" % (_HEADER_LINE, _HEADER_LINE))
_MAX_BLANKS: Final = 1024  # after "--boundary"; beyond this the line is content
_MAX_PREAMBLE: Final = 1 << 20  # kept in case the multipart never shows a delimiter line

_Delim = tuple[int, bool, int]  # (level in the multipart stack, is the close delimiter, line end)
_NEED: Final[_Delim] = (-1, False, -1)  # cannot tell before more input arrives


def _eol_start(data: bytes | bytearray, start: int, end: int) -> int:
    """`end` less one trailing CRLF, LF or CR within data[start:end]."""
    if end > start and data[end - 1] in (0x0A, 0x0D):
        end -= 2 if end - 1 > start and data[end - 2 : end] == b"\r\n" else 1
    return end


@lru_cache(maxsize=256)
def _delimiter_lines(boundaries: tuple[bytes, ...]) -> re.Pattern[bytes]:
    """A line break, then a line that may be a delimiter line of one of the boundaries."""
    if not boundaries:
        return re.compile(rb"(?!)")  # matches nothing
    either = b"|".join(re.escape(b) for b in boundaries)
    return re.compile(rb"\n--(?:%s)(?:--)?[ \t]{0,%d}(?:[\r\n]|\Z)" % (either, _MAX_BLANKS))


@dataclass(slots=True)
class _Multipart:
    boundary: bytes
    path: tuple[int, ...]
    headers: Message
    digest: bool
    children: int = 0
    started: bool = False  # its first delimiter line has been seen
    preamble: bytearray | None = field(default_factory=bytearray)  # None once over _MAX_PREAMBLE


class MimeParser:
    """Push parser: ``feed`` the raw email in chunks of any size, then ``close``; each call returns
    the events its input completed. Memory is bounded by the limits, not by the email's size."""

    def __init__(
        self, *, max_header_bytes: int = 256 * 1024, max_depth: int = 32, max_parts: int = 2_000,
        max_total_header_bytes: int = 1024 * 1024,
    ) -> None:
        self._limits = (max_header_bytes, max_depth, max_parts)
        # Reading headers costs ~0.2 ms a KB (the standard library's header parser): capped per
        # email, as are multiparts (each a header block), so no email costs more than ~0.3 s of them.
        self._max_total_header_bytes, self._header_bytes, self._multiparts = max_total_header_bytes, 0, 0
        self._buf = bytearray()  # input not consumed yet, kept between calls
        self._data: bytes | bytearray = b""  # the input being processed: _buf, or a chunk as is
        self._pos = 0  # first unconsumed byte of _data
        self._hstart = self._hlast = self._hlines = 0  # header block: start, last line, lines
        self._stack: list[_Multipart] = []
        self._bounds: tuple[tuple[int, bytes], ...] = ()  # (level, boundary) in matching order
        self._delimiters = _delimiter_lines(())
        self._line_start = True  # _pos is a line start not yet matched against _bounds
        self._mode, self._root_seen = _HEADERS, False
        self._path: tuple[int, ...] = ()  # of the entity whose header block is being read
        self._leaf: PartHeader | None = None
        self._decoder, self._strip = Decoder(), False  # strip: lose the last line break at the end
        self._leaves, self._events, self._closed = 0, list[Event](), False
        self._handlers = (self._headers, self._body, self._parts, self._skip)

    def feed(self, chunk: bytes) -> list[Event]:
        if self._closed:
            raise ValueError("MimeParser.feed() after close()")
        if self._buf:
            self._buf += chunk
        self._data = self._buf if self._buf else chunk
        return self._run(final=False)

    def close(self) -> list[Event]:
        if self._closed:
            return []
        self._closed, self._data = True, self._buf
        return self._run(final=True)

    def _run(self, final: bool) -> list[Event]:
        while self._mode != _DONE and self._handlers[self._mode](final):
            pass
        data = self._data
        keep = len(data) if self._mode == _DONE else self._hstart if self._mode == _HEADERS else self._pos
        if data is self._buf:
            del self._buf[:keep]
        else:
            self._buf = bytearray(memoryview(data)[keep:])
        self._pos, self._hstart, self._hlast = self._pos - keep, self._hstart - keep, self._hlast - keep
        self._data, events, self._events = b"", self._events, []
        return events

    def _set_mode(self, mode: int) -> None:
        self._mode, self._line_start = mode, True
        levels = [(level, part.boundary) for level, part in enumerate(self._stack)]
        # a multipart's own loop checks the outer boundaries first; inside a child, innermost first
        self._bounds = tuple(levels[-2::-1] + levels[-1:] if mode in (_PARTS, _SKIP) else reversed(levels))
        self._delimiters = _delimiter_lines(tuple(sorted({boundary for _, boundary in self._bounds})))

    def _match(self, ls: int, final: bool) -> _Delim | None:
        """Is the line starting at `ls` a delimiter line of one of _bounds?"""
        data, p = self._data, ls + 2
        n = len(data)
        if not data.startswith(b"--", ls):
            return _NEED if not final and n < p and b"--".startswith(data[ls:]) else None
        for level, boundary in self._bounds:
            if not data.startswith(boundary, p):
                if not final and n - p < len(boundary) and boundary.startswith(data[p:]):
                    return _NEED
                continue
            q = p + len(boundary)
            close = data.startswith(b"--", q)
            if close:
                q += 2
            elif not final and q == n - 1 and data[q] == 0x2D:
                return _NEED
            blanks = q
            while q < n and data[q] in (0x20, 0x09) and q - blanks <= _MAX_BLANKS:
                q += 1
            if q - blanks > _MAX_BLANKS:
                continue
            if q == n or (data[q] == 0x0D and q + 1 == n):
                return (level, close, n) if final else _NEED
            if data[q] in (0x0A, 0x0D):
                return level, close, q + 2 if data[q : q + 2] == b"\r\n" else q + 1
        return None

    def _scan(self, final: bool) -> tuple[int, _Delim | None]:
        """The next delimiter line from _pos: (its start, match); or, when there is none yet,
        (how far the bytes are known to be content, None)."""
        data, pos = self._data, self._pos
        if self._line_start:
            if (found := self._match(pos, final)) is _NEED or found is not None:
                return pos, None if found is _NEED else found
            self._line_start = False
        # memchr finds a '-' far faster than a regular expression runs (base64 has none); from
        # the first '-' on, the expression skips lines that only look like delimiters (it accepts
        # every line _match accepts, and _match decides), so each costs no Python step.
        i = pos
        if (k := data.find(b"-", i)) >= 0:
            while (candidate := self._delimiters.search(data, max(i, k - 1))) is not None:
                j = candidate.start()
                if (found := self._match(j + 1, final)) is _NEED:  # hold the line break: it belongs to it
                    return (j - 1 if j > pos and data[j - 1] == 0x0D else j), None
                if found is not None:
                    return j + 1, found
                i = k = j + 1
            # only the last line can be a delimiter line that more input completes
            j = data.rfind(b"\n", pos)
            if j >= 0 and self._match(j + 1, final) is _NEED:
                return (j - 1 if j > pos and data[j - 1] == 0x0D else j), None
        n = hold = len(data)
        if final or n == pos:
            return n, None
        if data[n - 1] in (0x0A, 0x0D):  # hold back what could begin "\r\n--"
            hold = n - 1
        elif data[n - 1] == 0x2D and n - 2 >= pos and data[n - 2] == 0x0A:
            hold = n - 2
        return (hold - 1 if pos < hold < n and data[hold - 1 : hold + 1] == b"\r\n" else hold), None

    def _headers(self, final: bool) -> bool:
        data = self._data
        while True:
            ls = self._pos
            if self._bounds and (found := self._match(ls, final)) is not None:
                if found is _NEED:
                    break
                return self._end_headers(ls, ls)
            # A run of complete header lines in one step (a line that starts "--" could be a
            # delimiter line: it takes the step below)
            if (run := _HEADER_LINES.match(data, ls)) is not None:
                self._hlast, self._hlines, self._pos = run.start(2), self._hlines + (2 if run[1] else 1), run.end()
                self._check_header_size(run.end())
                continue
            nl = data.find(b"\n", ls)
            cr = data.find(b"\r", ls, len(data) if nl < 0 else nl)  # a lone CR ends a line too
            if cr >= 0 and cr + 1 < len(data):
                le = cr + 2 if data[cr + 1] == 0x0A else cr + 1
            elif cr < 0 and nl >= 0:
                le = nl + 1
            elif final:
                le = len(data)
            else:
                break
            if le == ls or data[ls] in b"\r\n":  # EOF, or the blank line ending the block
                return self._end_headers(ls, le)
            if not _HEADER_RE.match(data, ls, le):  # no header: the body's first line
                return self._end_headers(ls, ls)
            self._hlast, self._hlines, self._pos = ls, self._hlines + 1, le
            self._check_header_size(le)
        self._check_header_size(len(data))
        return False

    def _check_header_size(self, end: int) -> None:
        if end - self._hstart > self._limits[0]:
            raise MalformedEmail(f"a header block is larger than max_header_bytes={self._limits[0]}")

    def _end_headers(self, block_end: int, body_start: int) -> bool:
        data = self._data
        if self._hlines > 1 and data.startswith(b"From ", self._hlast):
            # feedparser pushes a trailing "From " line back: it becomes the body's first line
            if body_start > block_end:
                self._data = data[:block_end] + data[body_start:]
            body_start = self._hlast
        parent = self._stack[-1] if self._stack else None
        self._header_bytes += block_end - self._hstart
        if self._header_bytes > self._max_total_header_bytes:
            raise MalformedEmail(f"the email's header blocks are larger than max_total_header_bytes={self._max_total_header_bytes}")
        try:  # the standard library reading untrusted header text
            msg = BytesHeaderParser(policy=compat32).parsebytes(bytes(data[self._hstart : block_end]))
            if parent is not None and parent.digest:
                msg.set_default_type("message/rfc822")
            ctype = msg.get_content_type()
            boundary = boundary_of(msg) if ctype.startswith("multipart/") else None
        except Exception as exc:
            raise MalformedEmail(f"unreadable MIME headers: {exc}") from exc
        if not self._root_seen:
            self._root_seen = True
            self._events.append(MessageHeaders(msg))
        self._pos = body_start
        if boundary is None:
            self._start_leaf(msg, self._path, strip=parent is not None and not ctype.startswith("multipart/"))
            self._set_mode(_BODY)
            return True
        if len(self._stack) >= self._limits[1]:
            raise MalformedEmail(f"multipart nesting is deeper than max_depth={self._limits[1]}")
        self._multiparts += 1
        if self._multiparts > self._limits[2]:
            raise MalformedEmail(f"the email has more than max_parts={self._limits[2]} multiparts")
        self._stack.append(_Multipart(boundary, self._path, msg, ctype == "multipart/digest"))
        self._set_mode(_PARTS)
        return True

    def _start_leaf(self, msg: Message, path: tuple[int, ...], strip: bool) -> None:
        if self._leaves >= self._limits[2]:
            raise MalformedEmail(f"the email has more than max_parts={self._limits[2]} parts")
        try:
            cid: Any = msg.get("content-id")
            part = PartHeader(
                index=self._leaves,
                path=path,
                content_type=msg.get_content_type(),
                charset=content_charset(msg),
                disposition=msg.get_content_disposition(),
                filename=filename_of(msg),
                content_id=None if cid is None else str(cid).strip(),
                transfer_encoding=str(msg.get("content-transfer-encoding", "")).strip().lower() or "7bit",
                headers=msg,
            )
        except Exception as exc:
            raise MalformedEmail(f"unreadable MIME headers: {exc}") from exc
        self._leaves, self._leaf, self._strip = self._leaves + 1, part, strip
        self._decoder = decoder_for(part.transfer_encoding)
        self._events.append(PartStart(part))

    def _emit(self, data: bytes | bytearray, start: int, end: int) -> None:
        if start < end:
            self._events.extend(PartData(out) for out in self._decoder.feed(data, start, end) if out)

    def _end_leaf(self) -> None:
        assert self._leaf is not None
        if out := self._decoder.flush():
            self._events.append(PartData(out))
        self._events.append(PartEnd(self._leaf))
        self._leaf = None

    def _body(self, final: bool) -> bool:
        data = self._data
        end, found = self._scan(final) if self._bounds else (len(data), None)
        ended = found is not None or final
        self._emit(data, self._pos, _eol_start(data, self._pos, end) if ended and self._strip else end)
        self._pos = end
        if ended:
            self._end_leaf()
            self._set_mode(_PARTS if self._stack else _DONE)
        return ended

    def _parts(self, final: bool) -> bool:
        top = self._stack[-1]
        end, found = self._scan(final)
        if not top.started and top.preamble is not None and end > self._pos:
            if len(top.preamble) + end - self._pos > _MAX_PREAMBLE:
                top.preamble = None
            else:
                top.preamble += self._data[self._pos : end]
        self._pos = end
        if found is None:
            if final:
                self._pop()
            return final
        level, close, line_end = found
        if level != len(self._stack) - 1:  # an outer delimiter: this multipart ends unclosed
            self._pop()
        elif close:  # the epilogue is left to the enclosing multipart's loop, which skips it
            self._pos = line_end
            self._pop()
        else:
            self._pos, top.started, top.preamble = line_end, True, None
            self._set_mode(_SKIP)
        return True

    def _pop(self) -> None:
        top = self._stack.pop()
        if not top.started:  # no delimiter line: feedparser makes it a leaf holding its preamble
            if top.preamble is None:
                raise MalformedEmail(f"a multipart has no delimiter line in its first {_MAX_PREAMBLE} bytes")
            self._start_leaf(top.headers, top.path, strip=False)
            self._emit(top.preamble, 0, len(top.preamble))
            self._end_leaf()
        self._set_mode(_PARTS if self._stack else _DONE)

    def _skip(self, final: bool) -> bool:
        found = self._match(self._pos, final)
        if found is _NEED:
            return False
        if found is not None and found[0] == len(self._stack) - 1:
            self._pos = found[2]
            return True
        top = self._stack[-1]
        self._path, top.children = (*top.path, top.children), top.children + 1
        self._hstart = self._hlast = self._pos
        self._hlines = 0
        self._set_mode(_HEADERS)
        return True


def parse(chunks: Iterable[bytes], **limits: int) -> Iterator[Event]:
    """Feed every chunk, then close: the events of one whole email, lazily."""
    parser = MimeParser(**limits)
    for chunk in chunks:
        yield from parser.feed(chunk)
    yield from parser.close()
