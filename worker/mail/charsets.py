"""Charset names as mail clients read them: Python's codec names first, then the WHATWG labels.

Python knows most MIME charset names; mail clients (Thunderbird, MimeKit) also know the WHATWG
Encoding Standard's labels (`x-mac-cyrillic`, `windows-874`, `x-sjis`, `x-user-defined`, ...),
which the `webencodings` package maps to Python codecs. Python's reading wins where both know a
name, so what the standard library decodes stays as it was (WHATWG reads `iso-8859-1` as
windows-1252, for one). No I/O.
"""

from __future__ import annotations

import codecs
from functools import lru_cache


@lru_cache(maxsize=256)
def codec_for(charset: str | None) -> codecs.CodecInfo | None:
    """The text codec for a charset name, or None when neither Python nor WHATWG knows it."""
    if not charset:
        return None
    name = charset.strip().strip('"').strip()
    try:
        info = codecs.lookup(name)
        # Only text encodings: "zlib" or "hex" name a bytes codec, not a charset.
        return info if info._is_text_encoding else None
    except (LookupError, ValueError):  # unknown, or not a name at all ("utf-8\x00")
        pass
    import webencodings  # only for names Python does not know: inspect's start-up stays as it was

    try:
        encoding = webencodings.lookup(name)
    except Exception:  # a label it cannot even normalise: unknown
        return None
    # WHATWG's "replacement" turns a whole text into one U+FFFD: an unknown charset reads better.
    if encoding is None or encoding.name == "replacement":
        return None
    info = encoding.codec_info
    return info if isinstance(info, codecs.CodecInfo) else None


def decode_bytes(data: bytes, charset: str | None) -> str:
    """`data` in its charset; an unknown charset reads as UTF-8; bad bytes never fail."""
    info = codec_for(charset)
    if info is not None:
        try:
            return info.decode(data, "replace")[0]
        except Exception:  # a codec that fails even with "replace" (some CJK stateful ones)
            pass
    return data.decode("utf-8", "replace")
