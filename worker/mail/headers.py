"""Header values and MIME parameters: RFC 2047 encoded words, filenames, boundaries; no I/O."""

from __future__ import annotations

import re
from email.header import Header, decode_header, make_header
from email.message import Message
from email.policy import default
from typing import Final

_FOLD_RE: Final = re.compile(r"\r?\n(?=[ \t])")
_LINEBREAK_RE: Final = re.compile(r"[\r\n]")
# type/subtype; then name=token or name="quoted", nothing policy.default would decode or re-read
_PLAIN_PARAMS_RE: Final = re.compile(
    r'[ \t]*[A-Za-z0-9!#$&+.^_`{|}~-]+(?:/[A-Za-z0-9!#$&+.^_`{|}~-]+)?[ \t]*'
    r'(?:;[ \t]*[A-Za-z0-9_-]+[ \t]*=[ \t]*(?:[A-Za-z0-9!#$&+.^_`{|}~-]+|"[A-Za-z0-9 !#$&+,./:;<>@\[\]^_`{|}~-]*")[ \t]*)*;?[ \t]*'
)


def _chunk_text(chunk: bytes | str, charset: str | None) -> str:
    if isinstance(chunk, str):
        return chunk
    try:  # no charset: decode_header's raw-unicode-escape; unknown-8bit: UTF-8, as policy.default
        return chunk.decode(charset or "raw-unicode-escape", "replace")
    except (LookupError, ValueError):  # unknown, or not a name at all ("utf-8\x00")
        return chunk.decode("utf-8", "replace")


def decode_header_value(value: str | Header | None) -> str:
    """A header value with folds undone and RFC 2047 encoded words decoded; never raises.
    Raw 8-bit bytes (compat32 gives them as an unknown-8bit Header) are read as UTF-8."""
    text = ""
    try:
        if isinstance(value, Header):
            value = "".join(_chunk_text(chunk, charset) for chunk, charset in decode_header(value))
        text = _FOLD_RE.sub("", value or "").encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        chunks = decode_header(text)
    except Exception:  # lone surrogates, an encoded word that is not base64: as it is
        return text or str(value or "")
    try:
        return str(make_header(chunks))
    except Exception:  # an unknown charset or bad bytes: decode what can be decoded
        return "".join(_chunk_text(chunk, charset) for chunk, charset in chunks)


def filename_of(msg: Message) -> str | None:
    """policy.default's get_filename(): the same lookup, on its parsed (decoded) header values.

    The modern header parser costs about 50 us a header (bench/small_emails.py); a plain value
    (printable ASCII without encoded words, RFC 2231 parameters, comments or escapes) reads the
    same through it, so only other values pay for it."""
    probe = Message()
    for name, value in msg.raw_items():
        if name.lower() in ("content-disposition", "content-type") and "name" in value.lower():
            value = _LINEBREAK_RE.sub("", value)
            if _PLAIN_PARAMS_RE.fullmatch(value):
                probe[name] = value
                continue
            try:
                probe[name] = str(default.header_factory(name, value))
            except Exception:  # the modern header parser gave up: decode it ourselves
                probe[name] = decode_header_value(value)
    return probe.get_filename()


def boundary_of(msg: Message) -> bytes | None:
    """The boundary as bytes; None when absent or when it could never match a line."""
    boundary = msg.get_boundary()
    if boundary is None:
        return None
    try:
        raw = boundary.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return None
    return None if b"\r" in raw or b"\n" in raw else raw
