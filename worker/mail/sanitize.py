"""What a device wrote, made safe to show: its html through an allowlist, file names on one visible line; no I/O.

`sanitize_html` passes the original html through nh3 (ammonia, html5ever's parser) with a small
allowlist: text formatting, lists, tables and http/https/mailto links (`rel="noopener noreferrer"`).
Scripts, style elements, forms, frames, objects, meta/base/link and every event handler go; a style
attribute keeps only text and box properties that load nothing and cannot move an element out of
its place (no `position`, `display`, `margin`, `transform`, nor any CSS function but colours).
Every image becomes a short visible note, as mail clients show a blocked image: a remote one would
tell the sender who read the email and when, `cid:` ones point at parts the rebuilt email does not
carry (they are among its attachments), and `data:` ones are pictures the device drew, which could
show a fake link list. The output is well-formed and balanced, so it cannot close an element
written around it.

`display_name` is a file name as recipients see it: one line, no control or format characters that
could break the line, reorder it (U+202E makes `report\u202efdp.exe` read `report.exe.pdf`) or hide
part of it, and the end (the extension) always shown.
"""

from __future__ import annotations

import re
import unicodedata
from html import escape
from html.parser import HTMLParser

import nh3

_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "center", "cite", "code", "col", "colgroup", "dd", "del",
    "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li",
    "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "sup", "table",
    "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul", "var",
}  # fmt: skip
# Removed with their content: code and text that a mail client never shows.
_DROP_WITH_CONTENT = {"script", "style", "title", "textarea", "select", "noscript", "template"}
_CELL = {"align", "valign", "width", "height", "colspan", "rowspan", "bgcolor", "nowrap"}
_ATTRIBUTES = {
    # No id, class or name (they could clash with ours), no dir (bidi), no background (a URL).
    "*": {"style", "title", "lang", "align"},
    "a": {"href"},
    "img": {"src", "alt"},
    "table": {"width", "border", "cellpadding", "cellspacing", "bgcolor"},
    "td": _CELL,
    "th": _CELL,
    "tr": {"valign", "bgcolor"},
    "col": {"span", "width"},
    "colgroup": {"span", "width"},
    "ol": {"start", "type"},
    "ul": {"type"},
    "font": {"color", "face", "size"},
    "hr": {"width", "size"},
}
# None of these takes a URL; none can take an element out of the flow or over another.
_STYLE_PROPERTIES = {
    "color", "background-color", "font", "font-family", "font-size", "font-style", "font-weight",
    "font-variant", "line-height", "letter-spacing", "word-spacing", "text-align", "text-decoration",
    "text-transform", "white-space", "word-break", "overflow-wrap", "border", "border-top", "border-right",
    "border-bottom", "border-left", "border-color", "border-style", "border-width", "border-collapse",
    "border-spacing", "padding", "padding-top", "padding-right", "padding-bottom", "padding-left", "width",
    "max-width", "min-width", "height", "list-style-type",
}  # fmt: skip
URL_SCHEMES = {"http", "https", "mailto"}
_CSS_FUNCTION = re.compile(r"([a-z0-9_-]*)\s*\(", re.I)
_COLOUR_FUNCTIONS = {"rgb", "rgba", "hsl", "hsla"}
MAX_ALT_CHARS = 100


def _safe_style(style: str) -> str | None:
    """The declarations of a style attribute with no CSS function but colours and no escape.

    nh3 filters the properties afterwards (`_STYLE_PROPERTIES`); this drops values such as
    `width:expression(...)`, `attr()`, `var()` or escapes that could spell one.
    """
    kept = [
        declaration
        for declaration in style.split(";")
        if "\\" not in declaration
        and "/*" not in declaration
        and all(name.lower() in _COLOUR_FUNCTIONS for name in _CSS_FUNCTION.findall(declaration))
    ]
    return ";".join(kept) or None


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    # nh3 has already checked URL schemes (javascript: and relative URLs never get here).
    if attribute == "style":
        return _safe_style(value)
    return value


_CLEANER = nh3.Cleaner(
    tags=_TAGS,
    clean_content_tags=_DROP_WITH_CONTENT,
    attributes=_ATTRIBUTES,
    attribute_filter=_attribute_filter,
    strip_comments=True,
    link_rel="noopener noreferrer",
    url_schemes=URL_SCHEMES,
    url_relative="deny",  # an email has no base URL to resolve them against
    filter_style_properties=_STYLE_PROPERTIES,
)


class _Images(HTMLParser):
    """Where each `<img>` of nh3's output is, as (start, end, attributes)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[int, int, dict[str, str | None]]] = []
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", html)]
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            line, column = self.getpos()
            start = self._line_starts[line - 1] + column
            self.found.append((start, start + len(self.get_starttag_text() or ""), dict(attrs)))

    handle_startendtag = handle_starttag


def _image_note(attrs: dict[str, str | None]) -> str:
    alt = visible_line(attrs.get("alt") or "", MAX_ALT_CHARS)
    kind = "remote image" if attrs.get("src") else "image"  # only http(s) sources survive nh3
    return escape(f"[{kind} removed: {alt}]" if alt else f"[{kind} removed]", quote=False)


# html5ever's work grows faster than its input in places: each tag's scope check walks the open
# elements (200,000 unclosed <div>, 1 MB, took 164 s of CPU), formatting elements are rebuilt in
# every new block, each attribute is checked against the tag's others. Every tag starts with "<",
# so counting them bounds the tags it can see whatever it makes of the rest; the size bounds the
# attributes of one tag. At these limits the worst inputs found take under 50 ms
# (bench/sanitize_html.py); real html bodies have a few hundred tags.
MAX_HTML_CHARS = 64 * 1024
MAX_HTML_TAGS = 2000


def sanitize_html(original: str) -> str | None:
    """The original html, safe to put inside an element of our own document (see the module doc);
    None when it has more markup than can be sanitised in bounded time (show its text instead)."""
    if len(original) > MAX_HTML_CHARS or original.count("<") > MAX_HTML_TAGS:
        return None
    cleaned = _CLEANER.clean(original)
    if "<img" not in cleaned:
        return cleaned
    pieces: list[str] = []
    at = 0
    for start, end, attrs in _Images(cleaned).found:
        pieces += [cleaned[at:start], _image_note(attrs)]
        at = end
    pieces.append(cleaned[at:])
    return "".join(pieces)


# Letters that draw nothing (Hangul fillers, the combining grapheme joiner, Khmer inherent vowels):
# removed like format characters.
_INVISIBLE = {"\u034f", "\u115f", "\u1160", "\u17b4", "\u17b5", "\u3164", "\uffa0"}
# Unicode's "Other" categories: controls, format characters, surrogates, private use, unassigned.
_REMOVED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
MAX_COMBINING = 3  # marks on one letter: enough for any script, not for a stack drawn over other lines
MAX_DISPLAY_CHARS = 120


def visible_line(value: str, limit: int) -> str:
    """`value` on one line of at most `limit` characters that shows what it says.

    Line breaks, tabs and every space (Zs, U+2800) become one space, runs of spaces one; other
    controls, format characters (bidi overrides, isolates and marks, zero-width characters, the
    BOM, tag characters), private-use and unassigned code points, line and paragraph separators
    and invisible letters are removed;
    combining marks are kept up to `MAX_COMBINING` in a row. A longer result keeps its start and
    its end around an ellipsis, so padding cannot push an extension out of sight.
    """
    out: list[str] = []
    marks = 0
    for char in unicodedata.normalize("NFC", value):
        category = unicodedata.category(char)
        if char.isspace() or category == "Zs" or char == "\u2800":
            char = " "
        elif category in _REMOVED_CATEGORIES or char in _INVISIBLE:
            continue
        marks = marks + 1 if category in ("Mn", "Me") else 0
        if marks > MAX_COMBINING or (char == " " and out and out[-1] == " "):
            continue
        out.append(char)
    line = "".join(out).strip()
    if len(line) > limit:
        tail = limit // 3
        line = line[: limit - tail - 1].rstrip() + "…" + line[-tail:].lstrip()
    return line


def display_name(filename: str) -> str:
    """A file name as recipients see it; the stored object keeps the exact name (Content-Disposition)."""
    return visible_line(filename, MAX_DISPLAY_CHARS) or "attachment"
