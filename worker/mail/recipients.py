"""The recipient block: find it, validate the addresses in it, remove it from the body.

Devices write recipients between markers: ``:Email_Rxers_Code:a@x.com, b@y.com:Email_Rxers_Code:``
Markers pair up in order (first opens, second closes...); a last unpaired one is not a block. They
are matched literally, case-sensitively, with `str.find`: linear in the body's length. Addresses go
through `email_validator` (no DNS) and are kept `.normalized`; each distinct token is validated once
per process (LRU cache), as the same devices send the same lists.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from html import unescape
from itertools import accumulate
from sys import intern
from typing import NamedTuple

from email_validator import EmailNotValidError, validate_email

MAX_RECIPIENTS_PER_SEND = 50  # SES: at most 50 recipients per message

_MAX_TOKEN = 300  # an address is at most 254 characters, plus brackets and "mailto:"
_SHOWN = 200  # a rejected token is quoted in the log up to this many characters
_SEPARATORS = re.compile(r"(?:[,;\s]|<br\s*/?>)+", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_OPENERS = "<[(\"'"
_CLOSERS = ">])\"'"
# Reading html as text: tags, comments, scripts and styles removed, entities unescaped; block tags
# and <br> become line breaks, so they separate addresses.
_ENTITY = re.compile(r"&(?:#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")  # as unescape
_MARKUP = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)[^>]*>|<!--|<[/!?][^>]*>|" + _ENTITY.pattern)
_RAW_TEXT = {  # where a script or style element ends; an unclosed one runs to the end
    name: re.compile(rf"</{name}[^>]*(?:>|\Z)|\Z", re.IGNORECASE) for name in ("script", "style")
}
_unescape = lru_cache(maxsize=1024)(unescape)
_VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
_BLOCK = frozenset(  # tags that end a line when html is read as text
    "br p div li ul ol dl dt dd tr td th table thead tbody tfoot caption h1 h2 h3 h4 h5 h6 hr pre"
    " blockquote section article header footer nav aside main address figure figcaption form"
    " fieldset center title".split()
)


@dataclass(frozen=True, slots=True)
class RecipientBlock:
    """Valid recipients, tokens rejected (for the log), and whether a complete block exists."""

    recipients: tuple[str, ...]
    rejected: tuple[str, ...]
    found: bool


def find_recipients(text: str, marker: str) -> RecipientBlock:
    """Read every complete block in a plain-text body; the union of their addresses, in order."""
    spans = _block_spans(text, marker)
    recipients: dict[str, str] = {}  # case-insensitive key -> normalised address, first seen wins
    rejected: dict[str, None] = {}
    for start, end in spans:
        inner = text[start + len(marker) : end - len(marker)]
        for token in filter(None, _SEPARATORS.split(inner)):
            address = _address(token) if len(token) <= _MAX_TOKEN else None  # long: not cached
            if address is not None:
                recipients.setdefault(address.lower(), address)
            else:  # quoted as found, cut short: a 1 MiB token does not belong in a log line
                rejected.setdefault(token[:_SHOWN] + ("..." if len(token) > _SHOWN else ""), None)
    return RecipientBlock(tuple(recipients.values()), tuple(rejected), bool(spans))


def find_recipients_in_html(html: str, marker: str) -> RecipientBlock:
    """The same on an html body read as text: tags removed, <br> and block tags separate."""
    return find_recipients(_parse_html(html).text, marker)


def html_to_text(html: str) -> str:
    """Html read as text: tags removed, <br> and block tags end lines, entities unescaped."""
    return _parse_html(html).text


def remove_blocks(text: str, marker: str) -> str:
    """The body recipients see: every complete block, markers included, removed, until none is left.

    A removal can join the text around a block into a new one (`:Email_` + block + `Rxers_Code:x@y`
    + marker), so removal repeats until no complete block remains."""
    for _ in range(_MAX_REMOVAL_PASSES):
        spans = _block_spans(text, marker)
        if not spans:
            return text
        text = _cut(text, [(start, end, "") for start, end in spans])
    return _cut(text, [(start, end, "") for start, end in _last_resort(text, marker)])


def remove_blocks_html(html: str, marker: str) -> str:
    """`remove_blocks` on html source, blocks found in the html read as text, until none is left.

    Each block is cut from its opening marker to the end of its closing marker in the source. When
    the cut would leave tags unbalanced (the block spans `</p><p>`, say), its tags are kept and only
    its text is dropped, so the html stays as well-formed as it was.
    """
    for _ in range(_MAX_REMOVAL_PASSES):
        parsed = _parse_html(html)
        spans = _block_spans(parsed.text, marker)
        if not spans:
            return html
        html = _cut_html(html, parsed, spans)
    parsed = _parse_html(html)
    return _cut_html(html, parsed, _last_resort(parsed.text, marker))


# Removal passes before the last resort: an ordinary body needs one, a crafted one one per level of
# nesting; a body nested thousands of levels deep would cost a pass (linear in the body) per level.
_MAX_REMOVAL_PASSES = 8


def _last_resort(text: str, marker: str) -> list[tuple[int, int]]:
    """After _MAX_REMOVAL_PASSES, one span from the first block's opening marker to the end of the
    last marker: what joins across that single cut can hold at most one marker, never a block."""
    spans = _block_spans(text, marker)
    return [(spans[0][0], text.rfind(marker) + len(marker))] if spans else []


def _cut_html(html: str, parsed: _HtmlText, spans: list[tuple[int, int]]) -> str:
    """Cut text spans (offsets in `parsed.text`) out of the html source they were read from."""
    text, starts, bounds, kinds = parsed
    cuts: list[tuple[int, int, str]] = []
    for start, end in spans:
        first = bisect_right(starts, start) - 1  # the piece holding the opening marker
        last = bisect_right(starts, end - 1) - 1  # the piece holding the closing one
        src_start, src_end = bounds[2 * first], bounds[2 * last + 1]
        src_start += start - starts[first] if kinds[first] == "" else 0  # literal text maps 1:1
        src_end = bounds[2 * last] + end - starts[last] if kinds[last] == "" else src_end
        tags = [i for i in range(first, last + 1) if kinds[i] not in ("", "&")]
        kept = "".join(html[bounds[2 * i] : bounds[2 * i + 1]] for i in tags)
        cuts.append((src_start, src_end, "" if _balanced(kinds[i] for i in tags) else kept))
    return _cut(html, cuts)


def batches(
    recipients: Sequence[str], size: int = MAX_RECIPIENTS_PER_SEND
) -> list[tuple[str, ...]]:
    """Split recipients into consecutive groups of at most `size` (one SES send each)."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, not {size}")
    return [tuple(recipients[i : i + size]) for i in range(0, len(recipients), size)]


def _block_spans(text: str, marker: str) -> list[tuple[int, int]]:
    """(start of opening marker, end of closing marker) of every complete block, in order."""
    if not marker:
        raise ValueError("the recipient marker must not be empty")
    spans: list[tuple[int, int]] = []
    opening = text.find(marker)
    while opening >= 0 and (closing := text.find(marker, opening + len(marker))) >= 0:
        spans.append((opening, closing + len(marker)))
        opening = text.find(marker, closing + len(marker))
    return spans


@lru_cache(maxsize=8192)
def _address(token: str) -> str | None:
    """The normalised address a token stands for, or None. Cached: each token validated once."""
    if _CONTROL.search(token):  # CR, LF and friends: header injection, never an address
        return None
    candidate = ""
    while candidate != token:  # <a@x.com>, [a@x.com], "a@x.com", <mailto:a@x.com> ...
        candidate, token = token, token.lstrip(_OPENERS).rstrip(_CLOSERS)
        token = token[7:] if token[:7].lower() == "mailto:" else token
    return _validated(token) if "@" in token else None


@lru_cache(maxsize=8192)
def _validated(address: str) -> str | None:
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        return None


def _cut(text: str, cuts: list[tuple[int, int, str]]) -> str:
    """Replace each (start, end) span by its replacement, then tidy the whitespace around it.

    The text is kept as pieces with a hole (None) where each span was, so no character has to be
    reserved as a marker: any text, whatever characters it holds, can be cut."""
    if not cuts:
        return text
    pieces: list[str | None] = []
    pos = 0
    for start, end, new in cuts:
        pieces += (text[pos:start], None, new)
        pos = end
    pieces.append(text[pos:])
    return _tidy(pieces)


def _tidy(pieces: list[str | None]) -> str:
    """Join the pieces, removing the holes: drop lines left empty, never join two words, keep
    other whitespace. Only the lines that hold a hole are looked at; the rest are copied whole."""
    out: list[str] = []
    line: list[str | None] = []  # the line being assembled, holes included
    for piece in pieces:
        if piece is None:
            line.append(None)
            continue
        first_break = piece.find("\n")
        if first_break < 0:
            line.append(piece)
            continue
        line.append(piece[:first_break])
        _close_line(line, out)
        last_break = piece.rfind("\n")
        if last_break > first_break:  # whole lines no hole touches: copied as they are
            out.append(piece[first_break + 1 : last_break])
        line = [piece[last_break + 1 :]]
    _close_line(line, out)
    return "\n".join(out)


def _close_line(line: list[str | None], out: list[str]) -> None:
    """Append one assembled line to `out`, its holes removed; a line of only holes and blanks is dropped."""
    if None not in line:
        out.append("".join(p for p in line if p is not None))
        return
    parts = [""]
    for piece in line:
        if piece is None:
            parts.append("")
        else:
            parts[-1] += piece
    cr = ""
    if parts[-1].endswith("\r"):
        cr, parts[-1] = "\r", parts[-1][:-1]
    if not "".join(parts).strip():
        return  # the line held only blocks: drop it with its line break
    joined = parts[0]
    for part in filter(None, parts[1:]):
        if not joined or joined[-1] in " \t":
            part = part.lstrip(" \t")
        elif joined[-1].isalnum() and part[0].isalnum():
            joined += " "
        joined += part
    if not parts[-1].strip():
        joined = joined.rstrip(" \t")
    out.append(joined + cr)


class _HtmlText(NamedTuple):
    """Html read as text, in pieces: piece i starts at text offset `starts[i]`, comes from source
    `bounds[2i]:bounds[2i+1]`, and is of kind `kinds[i]`: "" literal text, "&" an entity, "+name" /
    "-name" a start / end tag, "=" other markup. Arrays: 40 bytes a piece, not 200 as tuples."""

    text: str
    starts: array[int]
    bounds: array[int]
    kinds: list[str]


# The same html is read for recipients, then for the blocks' removal, then as text: each reading
# after the first is this cache's (~0.2 s a MiB saved each time). Two entries: the body as it came
# and as it is after a removal; the results are only read, never changed.
@lru_cache(maxsize=2)
def _parse_html(html: str) -> _HtmlText:
    parts: list[str] = []
    bounds, kinds = array("q"), []
    pos, size = 0, len(html)
    # Past the last ">" no tag can close: only entities are looked for there. So each regex
    # attempt at a "<" succeeds or fails at once, and the scan stays linear.
    markup, end = _MARKUP, html.rfind(">") + 1
    while pos < size:
        match = markup.search(html, pos, end)
        if match is None:
            if markup is _ENTITY:
                break
            markup, end = _ENTITY, size
            continue
        start, stop = match.span()
        if start > pos:
            parts.append(html[pos:start])
            bounds.extend((pos, start))
            kinds.append("")
        kind, piece = "=", ""  # other markup: doctype, processing instruction, nameless end tag
        if html[start] == "&":
            kind, piece = "&", _unescape(match.group())
        elif (name := match.group(2)) is not None:
            name = name.lower()
            piece = "\n" if name in _BLOCK else ""
            if match.group(1):
                kind = intern("-" + name)
            elif name in _RAW_TEXT:  # raw text up to its end tag: not part of the text
                close = _RAW_TEXT[name].search(html, stop)
                stop = size if close is None else close.end()
            elif name not in _VOID and html[stop - 2] != "/":
                kind = intern("+" + name)
        elif html.startswith("<!--", start):
            close_at = html.find("-->", start + 4)
            stop = size if close_at < 0 else close_at + 3
        parts.append(piece)
        bounds.extend((start, stop))
        kinds.append(kind)
        pos = stop
    if pos < size:
        parts.append(html[pos:])
        bounds.extend((pos, size))
        kinds.append("")
    starts = array("q", accumulate(map(len, parts), initial=0))
    return _HtmlText("".join(parts), starts[:-1], bounds, kinds)


def _balanced(kinds: Iterable[str]) -> bool:
    """Whether the tags close everything they open, in order (so cutting them out is safe)."""
    stack: list[str] = []
    for kind in kinds:
        if kind[0] == "+":
            stack.append(kind[1:])
        elif kind[0] == "-" and (not stack or stack.pop() != kind[1:]):
            return False
    return not stack


@dataclass(frozen=True, slots=True)
class Recipients:
    block: RecipientBlock
    fallback_reason: str | None


def choose_recipients(text: str | None, html: str | None, marker: str) -> Recipients:
    """The recipient block from the text body, else from the html body read as text."""
    block = find_recipients(text, marker) if text is not None else None
    if (block is None or not block.found) and html is not None:
        block = find_recipients_in_html(html, marker)
    if block is None:
        return Recipients(RecipientBlock((), (), False), "no text or html body")
    if not block.found:
        return Recipients(block, "no recipient block")
    if not block.recipients:
        return Recipients(block, "recipient block has no valid address")
    return Recipients(block, None)
