"""What recipients see cannot be faked by the device: our link block first and intact in the html
part, one line per name in both parts, no bidi tricks in names."""

from __future__ import annotations

import email
import email.policy
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from html.parser import HTMLParser
from urllib.parse import unquote

import anyio
import pytest

from tests.nasty_originals import NASTY_ORIGINALS
from worker.aws.links import content_disposition
from worker.config import Limits
from worker.mail.compose import compose_email
from worker.mail.reader import Attachment, DryRunStore, StoredFile, read_email

URL = "https://bucket.s3.amazonaws.com/attachments/abc/1-report.pdf?X-Amz-Signature=" + "0f" * 32


def attachment(name: str) -> Attachment:
    stored = StoredFile(key="attachments/abc/1-report.pdf", url=URL, expires_at=datetime(2026, 11, 27, tzinfo=UTC))
    return Attachment(n=1, filename=name, content_type="application/pdf", size=1234, sha256="ab" * 32, stored=stored)


def bodies(raw: bytes) -> tuple[str, str]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    plain, rich = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and rich is not None
    return plain.get_content().replace("\r\n", "\n"), rich.get_content().replace("\r\n", "\n")


def compose(html_body: str | None, name: str = "report.pdf", text: str = "Pump 2 alarm.") -> tuple[str, str]:
    return bodies(compose_email(sender="alerts@example.com", recipients=["ops@example.com"], subject="Alarm",
                                text=text, html_body=html_body, attachments=[attachment(name)], source_id="m1"))


class Tree(HTMLParser):
    """The elements open around each tag and piece of text, as html.parser reads the document."""

    VOID = {"br", "hr", "col", "img", "wbr", "meta", "link", "input", "base", "area", "source"}

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.events: list[tuple[str, str, list[tuple[str, dict[str, str]]]]] = []  # (kind, what, ancestors)
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = (tag, {k: v or "" for k, v in attrs})
        self.events.append(("start", tag, list(self.stack)))
        if tag not in self.VOID:
            self.stack.append(element)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1][0] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()
        self.events.append(("end", tag, list(self.stack)))

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.events.append(("text", data, list(self.stack)))

    def handle_comment(self, data: str) -> None:
        self.events.append(("comment", data, list(self.stack)))


def ids(ancestors: list[tuple[str, dict[str, str]]]) -> list[str]:
    return [attrs.get("id", tag) for tag, attrs in ancestors]


def assert_our_block_first_and_whole(html: str) -> None:
    tree = Tree(html)
    assert tree.stack == [], "the document is not balanced"
    content = [e for e in tree.events if e[0] in ("text", "comment") or e[1] in ("a", "img", "li")]
    # The first piece of content is our heading, inside our block, inside nothing of the original.
    assert content[0][0] == "text" and content[0][1].startswith("Attachments (1)")
    assert ids(content[0][2]) == ["html", "body", "sensormail-links", "h3"]
    ours = [e for e in content if "sensormail-links" in ids(e[2])]
    assert [e[1] for e in ours if e[0] == "start"] == ["li", "a"]
    link = next(e for e in ours if e[1] == "a")
    assert ids(link[2]) == ["html", "body", "sensormail-links", "ul", "li"]
    for kind, what, ancestors in content:  # everything else is the original's, inside its element
        if "sensormail-links" not in ids(ancestors) and "sensormail-separator" not in ids(ancestors):
            assert ids(ancestors)[:3] == ["html", "body", "sensormail-original"], (kind, what, ancestors)
            assert kind != "comment"
    # Our elements carry only our attributes: nothing hides them.
    for tag, attrs in [a for e in ours for a in e[2]]:
        assert set(attrs) <= {"id", "style", "href"} and "display" not in attrs.get("style", ""), (tag, attrs)


@pytest.mark.parametrize("name", NASTY_ORIGINALS)
def test_no_original_can_move_hide_or_precede_our_link_block(name: str) -> None:
    _, html = compose(NASTY_ORIGINALS[name])
    assert_our_block_first_and_whole(html)
    assert html.count(f'<a href="{URL}"') == 1 and "<!--" not in html


def test_the_dotted_capital_i_attack_no_longer_puts_the_links_inside_a_comment() -> None:
    _, html = compose(NASTY_ORIGINALS["dotted capital I before </BODY>"])
    assert_our_block_first_and_whole(html)
    assert "İ" * 40 in html  # the original's text is kept


def test_the_unclosed_hidden_div_cannot_hide_our_block() -> None:
    _, html = compose(NASTY_ORIGINALS["unclosed hidden div"])
    assert_our_block_first_and_whole(html)
    assert "display" not in html.split('id="sensormail-original"', 1)[1]


def test_without_an_html_original_the_text_follows_our_block() -> None:
    _, html = compose(None, text="<b>not markup</b> </body>")
    assert_our_block_first_and_whole(html)
    assert "&lt;b&gt;not markup&lt;/b&gt; &lt;/body&gt;" in html


def test_an_original_with_too_much_markup_is_shown_as_its_text() -> None:
    start = time.process_time()
    _, html = compose("<div>" * 200_000 + "Pump 2 <b>alarm</b>", text="Pump 2 alarm.")
    assert time.process_time() - start < 5  # nh3 took 164 s on this
    block = html.split('id="sensormail-links"', 1)[1].split("</div>", 1)[0]
    assert "too much markup" in block and "Attachments (1)" in block
    assert '<pre style="white-space:pre-wrap;margin:0">Pump 2 alarm.</pre>' in html and "<div>" not in html


def our_block(plain: str) -> list[str]:
    head, separator, _ = plain.partition("\n---------- Original message ----------\n")
    assert separator
    return head.rstrip("\n").split("\n")


def link_lines(plain: str) -> list[str]:
    """The lines of the link list, from its heading to the first blank line, wherever it is."""
    lines = plain.split("\n")
    start = lines.index("Attachments (1):")
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return lines[start:end]


async def _chunks(raw: bytes) -> AsyncIterator[bytes]:
    yield raw


def test_a_newline_in_an_rfc2231_filename_writes_no_link_lines() -> None:
    raw = (
        b"From: dev@example.com\r\nTo: in@example.com\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nPump 2 alarm.\r\n"
        b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename*=utf-8''report.pdf"
        b"%20%281.2%20KB%2C%20SHA-256%20" + b"cd" * 32 + b"%29%0A%20%20https%3A%2F%2Fevil.example%2Fx%0A%20%20link%20valid"
        b"%20until%202099-01-01%0A-%20invoice.pdf\r\n\r\nAAAA\r\n--b--\r\n"
    )
    read = anyio.run(read_email, _chunks(raw), DryRunStore(), Limits())
    (a,) = read.attachments
    assert "\n" in a.filename  # the reader keeps the name as sent; the display is what is made safe
    plain, html = compose(None, name=a.filename)
    block = link_lines(plain)
    assert len(block) == 4 and block[0] == "Attachments (1):"
    # The whole name on one line (cut in the middle past 120 characters), then the real size and hash.
    assert block[1].startswith("- report.pdf (1.2 KB, SHA-256 cdcd")
    assert block[1].endswith(f"2099-01-01 - invoice.pdf (1.2 KB, SHA-256 {'ab' * 32})")
    assert block[2:] == [f"  {URL}", "  link valid until 2026-11-27 00:00 UTC"]
    assert len(re.findall(r"^  https://", plain, re.M)) == 1
    assert html.count("<li>") == 1 and html.count("<a href=") == 1 and "\n  https://evil" not in html


def test_a_bidi_override_cannot_reverse_a_name_in_either_part() -> None:
    plain, html = compose("<p>Report attached.</p>", name="report\u202efdp.exe")
    for part in (plain, html):
        assert "\u202e" not in part and "reportfdp.exe" in part
    assert link_lines(plain)[1].startswith("- reportfdp.exe (1.2 KB")


def test_the_stored_object_keeps_the_exact_name_without_a_header_break() -> None:
    for name in ("report\u202efdp.exe", "a\r\nX-Injected: 1.pdf", "rapport d'été.pdf", "\x00\x85\u2028.csv"):
        value = content_disposition(name)
        assert value.isascii() and value.isprintable()  # no CR, LF or other control: one header line
        encoded = re.search(r"filename\*=UTF-8''([^;]*)", value)
        assert encoded is not None and unquote(encoded[1]) == name
        msg = email.message_from_string(f"Content-Disposition: {value}\n\n", policy=email.policy.default)
        assert msg.get_filename() == name and list(msg.keys()) == ["Content-Disposition"]


def test_a_note_of_ours_is_in_our_block_in_both_parts() -> None:
    raw = compose_email(sender="alerts@example.com", recipients=["ops@example.com"], subject="s", text="t",
                        html_body="<p>original</p>", attachments=[replace(attachment("a.csv"))], source_id="m",
                        note="The message body was too long to include in full.")
    plain, html = bodies(raw)
    assert our_block(plain)[0] == "The message body was too long to include in full."
    assert html.index("too long") < html.index('id="sensormail-original"') < html.index("original</p>")
