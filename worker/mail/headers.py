"""Header values and MIME parameters: RFC 2047 encoded words, filenames, boundaries; no I/O."""

from __future__ import annotations

import binascii
import logging
import re
from email.header import Header, decode_header
from email.message import Message
from email.utils import unquote
from typing import Final

from worker.mail.charsets import decode_bytes
from worker.mail.params import MAX_PARAMS, MAX_VALUE_CHARS, OverCap, get_param

logger = logging.getLogger(__name__)

_FOLD_RE: Final = re.compile(r"\r?\n(?=[ \t])")
_FOLD_BYTES_RE: Final = re.compile(rb"\r?\n(?=[ \t])")
_LINEBREAK_RE: Final = re.compile(r"[\r\n]")


# The text runs to the first "?=" and never across a "=?" (the start of another word; "==?="
# still ends a base64 word): so each
# attempt stops at the next word, and thousands of unclosed words cost linear time, not quadratic.
_ENCODED_WORD_RE: Final = re.compile(rb"=\?([^?\s]+)\?([QqBb])\?((?:[^?=\r\n]|=(?!\?)|=(?=\?=)|\?(?!=))*)\?=")
_BLANK_RE: Final = re.compile(rb"[ \t\r\n]*")


def _raw_bytes(value: str | Header) -> bytes:
    """The header's bytes: compat32 keeps 8-bit bytes as surrogates in a str, or in a Header."""
    if isinstance(value, Header):
        return b"".join(
            chunk if isinstance(chunk, bytes) else chunk.encode("utf-8", "surrogateescape")
            for chunk, _ in decode_header(value)
        )
    return value.encode("utf-8", "surrogateescape")


def _word_bytes(encoding: bytes, text: bytes) -> bytes | None:
    """An encoded word's bytes (RFC 2047 §4), or None when it does not decode."""
    if encoding in b"Qq":
        return binascii.a2b_qp(text, header=True)
    text = bytes(text.translate(None, b" \t"))
    try:
        return binascii.a2b_base64(text + b"=" * (-len(text) % 4))
    except binascii.Error:
        return None


def decode_header_value(value: str | Header | None) -> str:
    """A header value as mail clients show it; never raises.

    Folds are undone (RFC 5322 §2.2.3: the line break goes, the blank after it stays). Encoded
    words (RFC 2047) are decoded wherever they stand, with the raw 8-bit bytes some mailers
    (Eudora) leave inside them read in the word's charset; a language after the charset
    (RFC 2231 §5, `=?iso-8859-2*sl?Q?...?=`) is ignored; blanks between two encoded words are
    dropped (RFC 2047 §6.2), and adjacent words of one charset are joined before decoding, so a
    character split across them survives. Text outside encoded words, 8-bit included, is read
    as UTF-8; an unknown charset too; a word that does not decode stays as written."""
    if value is None:
        return ""
    try:
        # the blanks of a fold right after the colon are no content (policy.default keeps them)
        data = _FOLD_BYTES_RE.sub(b"", _raw_bytes(value)).lstrip(b" \t\r\n")
    except Exception:  # a Header that does not even decode: as it is
        return str(value)
    out: list[str] = []
    pending: tuple[bytes, bytearray] | None = None  # (charset, bytes) of the words being joined
    pos = 0
    for word in _ENCODED_WORD_RE.finditer(data):
        decoded = _word_bytes(word[2], word[3])
        if decoded is None:
            continue
        gap = data[pos : word.start()]
        if pending is not None and not _BLANK_RE.fullmatch(gap):
            out.append(decode_bytes(bytes(pending[1]), pending[0].decode("ascii", "replace")))
            pending = None
        if pending is None:
            out.append(gap.decode("utf-8", "replace"))
        charset = word[1].split(b"*", 1)[0].lower()
        if pending is not None and pending[0] != charset:
            out.append(decode_bytes(bytes(pending[1]), pending[0].decode("ascii", "replace")))
            pending = None
        if pending is None:
            pending = (charset, bytearray())
        pending[1].extend(decoded)
        pos = word.end()
    if pending is not None:
        out.append(decode_bytes(bytes(pending[1]), pending[0].decode("ascii", "replace")))
    out.append(data[pos:].decode("utf-8", "replace"))
    return "".join(out)


def filename_of(msg: Message) -> str | None:
    """policy.default's get_filename(): Content-Disposition's `filename`, else Content-Type's
    `name`, decoded (RFC 2231, RFC 2047 in the name), without quotes, stripped.

    Read by worker.mail.params in time linear in the value, never by the standard library's
    parsers (super-linear on hostile values). A value over the caps (16 KiB, 128 parameters,
    continuations numbered up to 127) gives None: the part gets a generated name, as a part
    without one does. A cut name could be made to read `invoice.pdf` over an `.exe`; a generated
    one shows nothing the sender chose. It is logged."""
    values: dict[str, str] = {}
    for name, value in msg.raw_items():
        key = name.lower()
        if key in ("content-disposition", "content-type") and key not in values:
            values[key] = value if isinstance(value, str) else str(value)
    try:
        for key, param in (("content-disposition", "filename"), ("content-type", "name")):
            if key in values:
                value = values[key]
                if len(value) > MAX_VALUE_CHARS:  # before any pass over it
                    raise OverCap(f"{len(value)} characters of parameters (at most {MAX_VALUE_CHARS})")
                found = get_param(_LINEBREAK_RE.sub("", value), param, decode_header_value)
                if found is not None:
                    return unquote(found).strip()
    except OverCap as cap:
        logger.warning("attachment name not read, a generated one is used: %s", cap)
    return None


def _content_type_within_caps(msg: Message) -> Message:
    """msg, or a stand-in holding only its Content-Type cut to the caps (at most 16 KiB and 128
    parameters): compat32's parameter lookup recounts quotes from the start at every `;`."""
    value = next((v for k, v in msg.raw_items() if k.lower() == "content-type"), None)
    if not isinstance(value, str) or (len(value) <= MAX_VALUE_CHARS and value.count(";") <= MAX_PARAMS):
        return msg
    cut = value[:MAX_VALUE_CHARS]
    at = -1
    for _ in range(MAX_PARAMS + 1):
        at = cut.find(";", at + 1)
        if at < 0:
            break
    if at >= 0:
        cut = cut[:at]
    logger.warning("Content-Type parameters beyond the caps ignored (%d characters)", len(value))
    probe = Message()
    probe["Content-Type"] = cut
    return probe


def content_charset(msg: Message) -> str | None:
    """compat32's get_content_charset(), on a Content-Type within the caps."""
    return _content_type_within_caps(msg).get_content_charset()


def boundary_of(msg: Message) -> bytes | None:
    """The boundary as bytes; None when absent or when it could never match a line."""
    boundary = _content_type_within_caps(msg).get_boundary()
    if boundary is None:
        return None
    # A boundary folded inside its quotes keeps the blank after the fold (RFC 5322 §2.2.3), and
    # its delimiter lines carry that blank: compat32 leaves the line break in, policy.default not.
    boundary = _FOLD_RE.sub("", boundary)
    try:
        raw = boundary.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return None
    return None if b"\r" in raw or b"\n" in raw else raw
