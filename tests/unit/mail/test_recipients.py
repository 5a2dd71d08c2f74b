"""worker.mail.recipients: find, validate and remove the recipient block."""

from __future__ import annotations

import time
from html import escape

import pytest
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.mail.recipients import (
    MAX_RECIPIENTS_PER_SEND,
    RecipientBlock,
    batches,
    find_recipients,
    find_recipients_in_html,
    remove_blocks,
    remove_blocks_html,
)

M = ":Email_Rxers_Code:"
SAMPLE = (
    "Vibration on pump 2 exceeded 7.1 mm/s.\n"
    "Line2:Email_Rxers_Code:ops@example.com,maintenance@example.org:Email_Rxers_Code:\n"
    "Trend data attached.\n"
)


def block(*recipients: str, rejected: tuple[str, ...] = ()) -> RecipientBlock:
    return RecipientBlock(recipients, rejected, True)


def test_sample_format() -> None:
    assert find_recipients(SAMPLE, M) == block("ops@example.com", "maintenance@example.org")


def test_sample_format_removed() -> None:
    assert remove_blocks(SAMPLE, M) == (
        "Vibration on pump 2 exceeded 7.1 mm/s.\nLine2\nTrend data attached.\n"
    )


@pytest.mark.parametrize(
    "inner",
    [
        "a@x.com,b@y.com;c@z.com",
        "a@x.com, b@y.com ; c@z.com",
        "a@x.com\nb@y.com\r\nc@z.com",
        "\ta@x.com\u00a0b@y.com  \n\n c@z.com\t",
        "a@x.com<br>b@y.com<BR/>c@z.com",
        "a@x.com<br />b@y.com,<Br>c@z.com",
        ",,;a@x.com,, ,b@y.com;;c@z.com;",
    ],
)
def test_separators(inner: str) -> None:
    assert find_recipients(f"x{M}{inner}{M}y", M) == block("a@x.com", "b@y.com", "c@z.com")


@pytest.mark.parametrize(
    "token",
    ["<a@x.com>", "[a@x.com]", "(a@x.com)", '"a@x.com"', "'a@x.com'", "mailto:a@x.com",
     "MAILTO:a@x.com", "<mailto:a@x.com>", '"<a@x.com>"'],
)
def test_brackets_and_mailto(token: str) -> None:
    assert find_recipients(f"{M}{token}{M}", M) == block("a@x.com")


def test_invalid_tokens_rejected_and_reported() -> None:
    text = f"{M}ok@example.com, not-an-address, bad@, @x.com, a@localhost, a b@c, good@y.org{M}"
    found = find_recipients(text, M)
    assert found.recipients == ("ok@example.com", "good@y.org")
    assert found.rejected == ("not-an-address", "bad@", "@x.com", "a@localhost", "a", "b@c")
    assert found.found


def test_rejected_token_is_shortened_for_the_log() -> None:
    token = "x" * 5000 + "@x.com"
    found = find_recipients(f"{M}{token}{M}", M)
    assert found.rejected == ("x" * 200 + "...",)


def test_duplicates_removed_case_insensitively_in_first_seen_order() -> None:
    text = f"{M}b@y.com, A@X.COM, a@x.com, <b@y.com>, B@Y.com, c@z.com{M}"
    assert find_recipients(text, M) == block("b@y.com", "A@x.com", "c@z.com")


def test_addresses_are_normalised() -> None:
    assert find_recipients(f"{M}Ops@Example.COM{M}", M).recipients == ("Ops@example.com",)


def test_role_mailboxes_are_lowercased() -> None:
    """RFC 2142's role names (info, postmaster, abuse...) are case-insensitive; email_validator
    lowercases them, so INFO@ and info@ are one recipient."""
    text = f"{M}INFO@Example.com, info@example.com, Postmaster@x.com{M}"
    assert find_recipients(text, M).recipients == ("info@example.com", "postmaster@x.com")


def test_crlf_injection_yields_only_plain_addresses() -> None:
    text = f"{M}a@x.com\r\nBcc: evil@y.com{M}"
    found = find_recipients(text, M)
    # CR LF separates like any whitespace: no address can carry a header, "Bcc:" is not an address.
    assert found.rejected == ("Bcc:",)
    assert found.recipients == ("a@x.com", "evil@y.com")
    assert all("\r" not in r and "\n" not in r and ":" not in r for r in found.recipients)


@pytest.mark.parametrize("control", ["\x00", "\x08", "\x1b", "\x7f", "\x9b"])
def test_control_characters_rejected(control: str) -> None:
    found = find_recipients(f"{M}a@x.com{control}Bcc:evil@y.com, b@y.com{M}", M)
    assert found.recipients == ("b@y.com",)
    assert found.rejected == (f"a@x.com{control}Bcc:evil@y.com",)


def test_html_with_br_and_entities() -> None:
    html = (
        "<html><body><p>Alarm</p><p>:Email_Rxers_Code:<br>&lt;a@x.com&gt;<br/>"
        "b&#64;y.com&nbsp;c&#x40;z.com<BR>d@q.com:Email_Rxers_Code:</p></body></html>"
    )
    assert find_recipients_in_html(html, M) == block("a@x.com", "b@y.com", "c@z.com", "d@q.com")


def test_html_block_tags_separate_and_inline_tags_do_not() -> None:
    html = (
        "<div>:Email_<b>Rxers</b>_Code:</div><div>a@x.com</div><ul><li>b@y.com<li>c@z.com</ul>"
        "<table><tr><td>d@q.com</td><td>e@q.com</td></tr></table>:Email_Rxers_Code:"
    )
    found = find_recipients_in_html(html, M)
    assert found.recipients == ("a@x.com", "b@y.com", "c@z.com", "d@q.com", "e@q.com")


def test_html_comments_scripts_and_styles_are_not_text() -> None:
    html = (
        "<style>p{color:red}</style><script>var m = ':Email_Rxers_Code:';</script>"
        f"<!-- {M}hidden@x.com{M} --><p>{M}a@x.com{M}</p>"
    )
    assert find_recipients_in_html(html, M) == block("a@x.com")


def test_marker_with_regex_metacharacters() -> None:
    marker = "[.*+?](a|b)^$\\1"
    text = f"hello {marker}a@x.com{marker} {M}b@y.com{M}"
    assert find_recipients(text, marker) == block("a@x.com")
    assert remove_blocks(text, marker) == f"hello {M}b@y.com{M}"


def test_custom_marker() -> None:
    assert find_recipients("to: ##a@x.com## bye", "##") == block("a@x.com")
    assert find_recipients(SAMPLE, "##") == RecipientBlock((), (), False)


def test_marker_is_case_sensitive() -> None:
    assert not find_recipients(f":email_rxers_code:a@x.com{M}", M).found


def test_no_block() -> None:
    assert find_recipients("Daily report, all nominal.", M) == RecipientBlock((), (), False)
    assert remove_blocks("Daily report.\n", M) == "Daily report.\n"


def test_unmatched_marker_is_not_a_block() -> None:
    text = f"Report {M}a@x.com, b@y.com and more"
    assert find_recipients(text, M) == RecipientBlock((), (), False)
    assert remove_blocks(text, M) == text


def test_empty_block_is_found_with_no_recipients() -> None:
    assert find_recipients(f"x{M}{M}y", M) == RecipientBlock((), (), True)


def test_multiple_blocks_union_in_order_and_odd_marker_ignored() -> None:
    text = f"{M}a@x.com,b@y.com{M} middle {M}b@y.com,c@z.com{M} tail {M}d@q.com"
    assert find_recipients(text, M) == block("a@x.com", "b@y.com", "c@z.com")
    assert remove_blocks(text, M) == f"middle tail {M}d@q.com"


def test_empty_marker_is_an_error() -> None:
    with pytest.raises(ValueError, match="marker"):
        find_recipients("text", "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Hello {M}a@x.com{M} world", "Hello world"),
        (f"Hello{M}a@x.com{M}world", "Hello world"),
        (f"Hello{M}a@x.com{M}, world", "Hello, world"),
        (f"Hello {M}a@x.com{M}", "Hello"),
        (f"{M}a@x.com{M} world", "world"),
        (f"  {M}a@x.com{M} indented", "  indented"),
        (f"first\n{M}a@x.com{M}\nlast", "first\nlast"),
        (f"first\r\n  {M}a@x.com{M}  \r\nlast\r\n", "first\r\nlast\r\n"),
        (f"first\n{M}a@x.com,\nb@y.com{M}\nlast", "first\nlast"),
        (f"{M}a@x.com{M}", ""),
        (f"keep\n\n{M}a@x.com{M}\n\nparagraphs", "keep\n\n\nparagraphs"),
        (f"a  {M}x@x.com{M}  b\ttab", "a  b\ttab"),
    ],
)
def test_remove_blocks_leaves_surrounding_text_intact(text: str, expected: str) -> None:
    assert remove_blocks(text, M) == expected


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        (f"<p>Alarm</p><p>{M}<br>a@x.com{M}</p>", "<p>Alarm</p><p></p>"),
        (f"<p>Alarm {M}<b>a@x.com</b>{M} now</p>", "<p>Alarm now</p>"),
        # the block spans two paragraphs: keep their tags, drop the text
        (f"<p>Hi {M}a@x.com</p><p>b@y.com{M} bye</p>", "<p>Hi </p><p> bye</p>"),
        (f"<div>\n  <p>{M}a@x.com{M}</p>\n  <p>text</p>\n</div>",
         "<div>\n  <p></p>\n  <p>text</p>\n</div>"),
        (f"<div>\n{M}a@x.com{M}\n</div>", "<div>\n</div>"),
        (f"<p>x &amp; {M}&lt;a@x.com&gt;{M} &amp; y</p>", "<p>x &amp; &amp; y</p>"),
        ("<p>:Email_<i>Rxers</i>_Code:a@x.com:Email_Rxers_Code: end</p>", "<p> end</p>"),
        (f"<p>no block here {M} a@x.com</p>", f"<p>no block here {M} a@x.com</p>"),
        (f'<a title="{M}a@x.com{M}">link</a>', f'<a title="{M}a@x.com{M}">link</a>'),
    ],
)
def test_remove_blocks_html(html: str, expected: str) -> None:
    assert remove_blocks_html(html, M) == expected


def test_remove_blocks_html_on_the_sample_shape() -> None:
    html = (
        "<html><body>\n<p>Motion detected at <b>gate 3</b>.</p>"
        "<p>:Email_Rxers_Code:security@example.com:Email_Rxers_Code:</p>\n</body></html>\n"
    )
    assert find_recipients_in_html(html, M) == block("security@example.com")
    assert remove_blocks_html(html, M) == (
        "<html><body>\n<p>Motion detected at <b>gate 3</b>.</p><p></p>\n</body></html>\n"
    )


def test_html_text_is_not_mistaken_for_tags() -> None:
    html = f"<p>1 < 2 and 3 > 2</p><p>{M}a@x.com{M}</p><p>x <- y"
    assert find_recipients_in_html(html, M) == block("a@x.com")
    assert remove_blocks_html(html, M) == "<p>1 < 2 and 3 > 2</p><p></p><p>x <- y"


def test_batches() -> None:
    recipients = [f"user{i}@example.com" for i in range(120)]
    groups = batches(recipients)
    assert [len(g) for g in groups] == [50, 50, 20]
    assert [r for g in groups for r in g] == recipients
    assert MAX_RECIPIENTS_PER_SEND == 50
    assert batches([]) == []
    assert batches(["a@x.com"] * 3, size=2) == [("a@x.com", "a@x.com"), ("a@x.com",)]
    with pytest.raises(ValueError):
        batches(recipients, size=0)


# --- performance: linear scans, no backtracking -------------------------------------------


def timed(fn: object, *args: str) -> float:
    """CPU seconds (this process), not wall time: other processes' load does not count, and a
    quadratic algorithm still takes orders of magnitude more than the bounds allow."""
    assert callable(fn)
    start = time.process_time()
    fn(*args)
    return time.process_time() - start


def test_large_body_without_closing_marker_is_fast() -> None:
    body = "line of sensor output 0123456789 " * 64_000 + M + "a@x.com, " * 2000  # ~2 MiB
    # html at the density of a generated email: a tag or entity every 20 to 30 characters
    html = '<p><span class="x">reading 42.0</span> &amp; ok</p>\n' * 40_000
    html += M + "a@x.com<br>" * 2000
    assert len(body) > 2_000_000 and len(html) > 2_000_000
    assert timed(find_recipients, body, M) < 0.25
    assert timed(remove_blocks, body, M) < 0.25
    assert timed(find_recipients_in_html, html, M) < 1.0
    assert timed(remove_blocks_html, html, M) < 1.0


def test_ten_thousand_markers_is_fast() -> None:
    unit = f"reading 42.0 {M}ops{{}}@example.com, alerts@example.org{M} ok\n"
    body = "".join(unit.format(i % 500) for i in range(5000))  # 10,000 markers, 501 addresses
    body += "padding " * ((2 * 1024 * 1024 - len(body)) // 8)
    assert len(body) >= 2 * 1024 * 1024 - 8 and body.count(M) == 10_000
    html = "<p>" + body.replace("\n", "<br>\n")
    results: dict[str, object] = {}
    for fn, arg in ((find_recipients, body), (remove_blocks, body),
                    (find_recipients_in_html, html), (remove_blocks_html, html)):
        start = time.process_time()
        results[fn.__name__] = fn(arg, M)
        assert time.process_time() - start < 0.5, fn.__name__
    found = results["find_recipients"]
    assert isinstance(found, RecipientBlock) and len(found.recipients) == 501
    assert results["find_recipients_in_html"] == found
    assert M not in str(results["remove_blocks"]) and M not in str(results["remove_blocks_html"])
    assert str(results["remove_blocks"]).startswith("reading 42.0 ok\nreading 42.0 ok\n")


def test_pathological_html_is_fast() -> None:
    for html in ("<" * 2_000_000, "<a" * 1_000_000, "<!--" * 500_000, "&" * 2_000_000,
                 "&amp" * 500_000, "<style>" * 300_000, "<style>" + "</style" * 300_000,
                 f"<b{M}" * 100_000, f">{M}<" * 100_000):
        assert timed(find_recipients_in_html, html, M) < 1.0, html[:10]
        assert timed(remove_blocks_html, html, M) < 1.0, html[:10]


# --- property --------------------------------------------------------------------------------

_ATOM = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
                min_size=1, max_size=10)
_ADDRESS = st.builds(
    lambda local, host, tld: f"{local}@{host}.{tld}", _ATOM, _ATOM,
    st.sampled_from(["com", "org", "net", "io", "de"]),
)
_SEPARATOR = st.lists(
    st.sampled_from([",", ";", " ", "\n", "\r\n", "\t", "\u00a0", "<br>", "<BR/>", "<br />"]),
    min_size=1, max_size=3,
).map("".join)
_FILLER = st.text(st.characters(exclude_characters=":", exclude_categories=["Cs"]), max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    addresses=st.lists(_ADDRESS, min_size=1, max_size=20),
    separators=st.lists(_SEPARATOR, min_size=21, max_size=21),
    before=_FILLER,
    after=_FILLER,
)
def test_property_block_in_random_text(
    addresses: list[str], separators: list[str], before: str, after: str
) -> None:
    inner = separators[0] + "".join(a + s for a, s in zip(addresses, separators[1:]))
    text = before + M + inner + M + after
    expected: dict[str, str] = {}
    for address in addresses:
        local, domain = address.split("@")
        if local.lower() in CASE_INSENSITIVE_MAILBOX_NAMES:  # RFC 2142 role names: email_validator lowercases them
            local = local.lower()
        expected.setdefault(address.lower(), f"{local}@{domain.lower()}")
    found = find_recipients(text, M)
    assert found == RecipientBlock(tuple(expected.values()), (), True)
    assert M not in remove_blocks(text, M)


@settings(max_examples=200, deadline=None)
@given(
    addresses=st.lists(_ADDRESS, min_size=1, max_size=10),
    separators=st.lists(_SEPARATOR, min_size=11, max_size=11),
    before=_FILLER,
    after=_FILLER,
)
def test_property_html_reads_like_text(
    addresses: list[str], separators: list[str], before: str, after: str
) -> None:
    inner = separators[0] + "".join(a + s for a, s in zip(addresses, separators[1:]))
    text = before + M + inner + M + after
    html = f"<div><p>{escape(before)}</p><p>{escape(M + inner + M)}</p><p>{escape(after)}</p></div>"
    assert find_recipients_in_html(html, M) == find_recipients(text, M)
    removed = remove_blocks_html(html, M)
    assert not find_recipients_in_html(removed, M).found
    assert removed.startswith("<div><p>") and removed.endswith("</p></div>")


# --- the block cannot survive its removal (issue 13) ---------------------------------------------

NESTED = ":Email_" + M + "ops@example.com" + M + "Rxers_Code:x@attacker.example" + M


def test_a_block_formed_by_removing_a_block_is_removed_too() -> None:
    """`:Email_` + block + `Rxers_Code:x@y` + marker: one removal joins a new, valid block."""
    body = "Alarm on pump 2.\n" + NESTED + "\nCheck the trend."
    visible = remove_blocks(body, M)
    assert M not in visible and "attacker" not in visible
    assert visible == "Alarm on pump 2.\nCheck the trend."
    assert not find_recipients(visible, M).found


def test_nested_blocks_are_removed_in_html_too() -> None:
    html = "<p>Alarm on pump 2.</p><p>" + NESTED + "</p><p>Check the trend.</p>"
    visible = remove_blocks_html(html, M)
    assert not find_recipients_in_html(visible, M).found
    assert "attacker" not in visible and "Check the trend." in visible and "Alarm on pump 2." in visible


@pytest.mark.parametrize("depth", [1, 2, 5, 51, 2001])
def test_removal_is_a_fixed_point_however_deep_the_nesting(depth: int) -> None:
    """Each level needs one more pass; past a few passes the rest is cut at once, so even a body
    nested thousands of levels deep ends with no block, quickly."""
    body = M + "a@example.com" + M
    for n in range(depth):
        body = ":Email_" + body + f"Rxers_Code:x{n}@attacker.example" + M
    body = "before\n" + body + "\nafter"
    started = time.perf_counter()
    text, html = remove_blocks(body, M), remove_blocks_html("<p>" + body.replace("\n", "</p><p>") + "</p>", M)
    assert time.perf_counter() - started < 5
    assert not find_recipients(text, M).found and not find_recipients_in_html(html, M).found
    assert text.startswith("before") and text.endswith("after")
    assert "before" in html and "after" in html


@given(st.lists(st.sampled_from([":Email_", "Rxers_Code:", M, "a@b.co", " ", "\n", "x", "<p>", "</p>"]), max_size=40))
@settings(max_examples=300, deadline=None)
def test_property_no_block_survives_removal(pieces: list[str]) -> None:
    body = "".join(pieces)
    assert not find_recipients(remove_blocks(body, M), M).found
    assert not find_recipients_in_html(remove_blocks_html(body, M), M).found


PRIVATE_USE = "".join(chr(c) for c in range(0xE000, 0xF900))  # all 6,400 of the BMP's


@pytest.mark.parametrize("filler", [PRIVATE_USE, PRIVATE_USE[1:]])  # the 6,399 and all of them
def test_a_body_of_every_private_use_character_is_read_and_cut(filler: str) -> None:
    """The cut once reserved an absent private-use character as its marker and raised
    StopIteration (RuntimeError in a coroutine) when the body held all of them."""
    body = filler + "\n" + M + "ops@example.com" + M + "\n" + filler
    assert find_recipients(body, M).recipients == ("ops@example.com",)
    assert remove_blocks(body, M) == filler + "\n" + filler
    assert remove_blocks_html("<p>" + body + "</p>", M) == "<p>" + filler + "\n" + filler + "</p>"
