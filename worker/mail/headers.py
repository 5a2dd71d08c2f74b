"""Header values and MIME parameters: RFC 2047 encoded words, filenames, boundaries; no I/O."""

from __future__ import annotations

import binascii
import re
from email.header import Header, decode_header
from email.message import Message
from email.policy import default
from typing import Final

from worker.mail.charsets import decode_bytes

_FOLD_RE: Final = re.compile(r"\r?\n(?=[ \t])")
_FOLD_BYTES_RE: Final = re.compile(rb"\r?\n(?=[ \t])")
_LINEBREAK_RE: Final = re.compile(r"[\r\n]")
# type/subtype; then name=token or name="quoted", nothing policy.default would decode or re-read
_PLAIN_PARAMS_RE: Final = re.compile(
    r'[ \t]*[A-Za-z0-9!#$&+.^_`{|}~-]+(?:/[A-Za-z0-9!#$&+.^_`{|}~-]+)?[ \t]*'
    r'(?:;[ \t]*[A-Za-z0-9_-]+[ \t]*=[ \t]*(?:[A-Za-z0-9!#$&+.^_`{|}~-]+|"[A-Za-z0-9 !#$&+,./:;<>@\[\]^_`{|}~-]*")[ \t]*)*;?[ \t]*'
)


_ENCODED_WORD_RE: Final = re.compile(rb"=\?([^?\s]+)\?([QqBb])\?([^\r\n]*?)\?=")
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
    # A boundary folded inside its quotes keeps the blank after the fold (RFC 5322 §2.2.3), and
    # its delimiter lines carry that blank: compat32 leaves the line break in, policy.default not.
    boundary = _FOLD_RE.sub("", boundary)
    try:
        raw = boundary.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return None
    return None if b"\r" in raw or b"\n" in raw else raw
