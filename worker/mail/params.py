"""MIME header parameters (RFC 2045 §5.1, RFC 2231, RFC 2047 in quoted names) in linear time; no I/O.

The standard library's modern header parser slices the rest of the value at every token and
rescans for `?=` at every `=?`, so thousands of `filename*N*=` continuations cost seconds
(docs/performance.md), and compat32's `_parseparam` recounts quotes from the start of the value at
every `;`. This reads a value once, left to right, with anchored regular expressions, and stops at
the caps below; what it gives for a filename is what `policy.default`'s `get_filename()` gives on
well-formed values (tests/unit/mail/test_params.py holds it to that).

Over a cap the parameters are not read at all and the caller treats the name as missing. The
caps sit well above what mail clients write: a name is at most 255 bytes on common file systems
(~20 continuations percent-encoded), and the standard library itself writes a 5,000-character
name as 80 continuations of ~5 KB, which tests/unit/mail/test_mime.py reads back as it is.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from worker.mail.charsets import codec_for

MAX_VALUE_CHARS: Final = 16 * 1024  # a parameter list longer than this is not read
MAX_PARAMS: Final = 128  # parameters (continuation sections included) read from one value
MAX_SECTIONS: Final = 128  # RFC 2231 continuation numbers 0..127

_BLANKS: Final = re.compile(r"[ \t\r\n]*")
# name, then `*N` (a continuation section) and/or `*` (an extended, percent-encoded value)
_NAME: Final = re.compile(r"([^\x00-\x20\x7f()<>@,;:\\\"/\[\]?=*]+)(?:\*(\d+))?(\*)?")
_QUOTED: Final = re.compile(r'"((?:[^"\\]|\\.)*)"?', re.DOTALL)
_TOKEN: Final = re.compile(r"[^\x00-\x20\x7f;\"()]*")
_TO_SEMICOLON: Final = re.compile(r'(?:[^;"(]|"(?:[^"\\]|\\.)*"?|\((?:[^()\\]|\\.)*\)?)*', re.DOTALL)
_ESCAPE: Final = re.compile(r"\\(.)", re.DOTALL)


class OverCap(ValueError):
    """The parameter list is longer than the caps allow: its parameters are not read."""


@dataclass(frozen=True, slots=True)
class _Section:
    number: int  # 0 for a parameter without `*N`
    sectioned: bool
    extended: bool
    value: str  # unquoted; still percent-encoded when extended


def _skip_cfws(value: str, pos: int) -> int:
    """Past blanks and comments (nested, with backslash escapes), in one pass."""
    n = len(value)
    while True:
        pos = _BLANKS.match(value, pos).end()  # type: ignore[union-attr]  # always matches
        if pos >= n or value[pos] != "(":
            return pos
        depth = 0
        while pos < n:
            char = value[pos]
            if char == "\\":
                pos += 1
            elif char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
                if depth == 0:
                    pos += 1
                    break
            pos += 1


def _value(value: str, pos: int) -> tuple[str | None, int]:
    """A quoted string (unescaped; an unclosed one runs to the end) or a token; None for none."""
    if quoted := _QUOTED.match(value, pos):
        return _ESCAPE.sub(r"\1", quoted[1]), quoted.end()
    token = _TOKEN.match(value, pos)
    assert token is not None  # the pattern matches the empty string
    return token[0] or None, token.end()  # `name=` alone is no parameter


def _sections(value: str) -> dict[str, list[_Section]]:
    """The parameters after the first `;`, by name as written, in order of first appearance."""
    if len(value) > MAX_VALUE_CHARS:
        raise OverCap(f"{len(value)} characters of parameters (at most {MAX_VALUE_CHARS})")
    found: dict[str, list[_Section]] = {}
    head = _end_of_param(value, 0)
    if "=" in value[:head]:  # compat32's lookup reads a main value with "=" as a parameter too
        written, _, rest = value[:head].partition("=")
        raw, _ = _value(rest.strip(), 0)
        found.setdefault(written.strip(), []).append(_Section(0, False, False, raw or ""))
    pos, count, n = head, 0, len(value)
    while pos < n:
        pos = _skip_cfws(value, pos + 1)  # past the ";"
        name = _NAME.match(value, pos)
        if name is not None and (pos := _skip_cfws(value, name.end())) < n and value[pos] == "=":
            count += 1
            if count > MAX_PARAMS:
                raise OverCap(f"more than {MAX_PARAMS} parameters")
            raw, pos = _value(value, _skip_cfws(value, pos + 1))
            # the length first: int() of thousands of digits is slow, then raises
            number = 0 if name[2] is None else MAX_SECTIONS if len(name[2]) > 3 else int(name[2])
            if number >= MAX_SECTIONS:
                raise OverCap(f"a continuation numbered {name[2]} (at most {MAX_SECTIONS - 1})")
            if raw is not None:
                found.setdefault(name[1], []).append(_Section(number, name[2] is not None, bool(name[3]), raw))
        pos = _end_of_param(value, pos)  # what follows a value up to the next ";" is junk
    return found


def _end_of_param(value: str, pos: int) -> int:
    """The next `;` outside quotes and comments, or the end."""
    found = _TO_SEMICOLON.match(value, pos)
    assert found is not None  # the pattern matches the empty string
    return found.end()


def _sanitize(text: str) -> str:
    """Raw 8-bit bytes (kept as surrogates) read as UTF-8, as policy.default does."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _percent_decoded(value: str, charset: str) -> str:
    try:
        data = urllib.parse.unquote_to_bytes(value)
    except UnicodeEncodeError:  # raw 8-bit bytes among the escapes: as the standard library does
        return urllib.parse.unquote(value, encoding="latin-1")
    info = codec_for(charset)
    if info is None:
        return data.decode("ascii", "surrogateescape")
    try:
        return info.decode(data, "surrogateescape")[0]
    except Exception:  # a codec without surrogateescape support, or one that fails anyway
        return data.decode("ascii", "surrogateescape")


def _joined(sections: list[_Section], words: Callable[[str], str] | None) -> str | None:
    """One parameter's value from its sections, as policy.default joins them: ordered by number,
    the charset from section 0, a duplicate plain parameter ignored, a gap skipped."""
    parts = sorted(sections, key=lambda s: s.number)  # stable: duplicates keep their order
    first = parts[0]
    charset = "us-ascii"
    if first.extended and (first.number == 0 or not first.sectioned):
        if first.value.count("'") == 1:
            return None  # `charset'value`: policy.default drops the parameter
        if "'" in first.value:
            charset, _, rest = first.value.split("'", 2)
            parts[0] = _Section(first.number, first.sectioned, True, rest)
            charset = charset or "us-ascii"
            if not rest and len(parts) == 1:
                return None
    if not first.extended and len(parts) > 1 and parts[1].number == 0:
        parts = parts[:1]
    out, expected = [], 0
    for part in parts:
        if part.number != expected and not part.extended:
            continue
        expected += 1
        if part.extended:
            out.append(_percent_decoded(part.value, charset))
        else:
            out.append(words(part.value) if words is not None and "=?" in part.value else part.value)
    return _sanitize("".join(out))


def get_param(value: str, name: str, words: Callable[[str], str] | None = None) -> str | None:
    """The parameter `name` (any case) of a Content-Type/Disposition value, decoded: RFC 2231
    sections joined and percent-decoded in their charset; None when absent. `words` decodes
    the RFC 2047 encoded words of a section that is not percent-encoded. Raises OverCap."""
    wanted = name.lower()
    for written, sections in _sections(value).items():
        if written.strip().lower() == wanted:
            return _joined(sections, words)
    return None
