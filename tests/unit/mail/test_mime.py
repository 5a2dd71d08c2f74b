"""worker.mail.mime: the streaming parser, with the standard library as the oracle."""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import hashlib
import random
import tracemalloc
from collections.abc import Iterator, Sequence
from email.errors import InvalidBase64LengthDefect
from email.message import EmailMessage, Message
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from worker.errors import MalformedEmail
from worker.mail.headers import decode_header_value
from worker.mail.mime import (
    Event,
    MessageHeaders,
    MimeParser,
    PartData,
    PartEnd,
    PartHeader,
    PartStart,
    parse,
)

SAMPLES = sorted((Path(__file__).parents[3] / "worker" / "local" / "samples").glob("*.eml"))
Leaf = tuple[PartHeader, bytes]


# -- helpers -------------------------------------------------------------------------------------


def chunked(raw: bytes, sizes: Sequence[int]) -> Iterator[bytes]:
    i = k = 0
    while i < len(raw):
        size = sizes[k % len(sizes)]
        yield raw[i : i + size]
        i, k = i + size, k + 1


def collect(events: Sequence[Event]) -> tuple[Message, list[Leaf]]:
    """The root headers and each leaf with its data, checking the event order on the way."""
    assert events and isinstance(events[0], MessageHeaders)
    leaves: list[Leaf] = []
    current: PartHeader | None = None
    data = bytearray()
    for event in events[1:]:
        assert not isinstance(event, MessageHeaders)
        if isinstance(event, PartStart):
            assert current is None
            assert event.part.index == len(leaves)
            current, data = event.part, bytearray()
        elif isinstance(event, PartData):
            assert current is not None and event.data
            data += event.data
        else:
            assert current is not None and event.part is current
            leaves.append((current, bytes(data)))
            current = None
    assert current is None
    return events[0].headers, leaves


def ours(raw: bytes, sizes: Sequence[int] = (1 << 20,), **limits: int) -> tuple[Message, list[Leaf]]:
    return collect(list(parse(chunked(raw, sizes), **limits)))


def stdlib_leaves(msg: Message, path: tuple[int, ...] = ()) -> list[tuple[tuple[int, ...], Message]]:
    """Non-multipart parts in walk() order; message/* parts are leaves, not descended into."""
    if msg.is_multipart() and msg.get_content_maintype() != "message":
        found = []
        for i, sub in enumerate(msg.get_payload()):
            found += stdlib_leaves(sub, (*path, i))
        return found
    return [(path, msg)]


def modern_filenames(raw: bytes, shape: list[tuple[tuple[int, ...], str]]) -> list[str | None] | None:
    """policy.default's get_filename() for each leaf; None when that parse has another shape
    (it unfolds headers first, which can change a boundary)."""
    modern = stdlib_leaves(email.message_from_bytes(raw, policy=email.policy.default))
    if [(path, m.get_content_type()) for path, m in modern] != shape:
        return None
    return [m.get_filename() for _, m in modern]


def assert_like_stdlib(raw: bytes, sizes: Sequence[int] = (1 << 20,)) -> list[Leaf]:
    headers, got = ours(raw, sizes)
    std = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert headers.items() == std.items()
    expected = stdlib_leaves(std)
    shape = [(path, m.get_content_type()) for path, m in expected]
    assert [(p.path, p.content_type) for p, _ in got] == shape
    filenames = modern_filenames(raw, shape)
    for i, ((part, data), (_, m)) in enumerate(zip(got, expected, strict=True)):
        assert part.charset == m.get_content_charset()
        assert part.disposition == m.get_content_disposition()
        assert filenames is None or part.filename == filenames[i]
        assert part.headers.items() == m.items()
        if m.get_content_maintype() == "message" and m.is_multipart():
            inner = m.get_payload(0)
            assert isinstance(inner, Message)
            assert email.message_from_bytes(data, policy=email.policy.compat32)["subject"] == inner["subject"]
            inner_leaves = assert_like_stdlib(data)
            assert [p.content_type for p, _ in inner_leaves] == [x.get_content_type() for _, x in stdlib_leaves(inner)]
        else:
            decoded = m.get_payload(decode=True) or b""
            if not any(isinstance(d, InvalidBase64LengthDefect) for d in m.defects):  # see mime.py
                assert data == decoded
    return got


def only(leaves: list[Leaf]) -> Leaf:
    assert len(leaves) == 1
    return leaves[0]


def crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


# -- property: generated messages ----------------------------------------------------------------

text_st = st.text(st.characters(codec="utf-8"), max_size=400) | st.sampled_from(
    ["", "plain ascii\n", "--not a boundary\n", "x" * 2000, "日本語のテキスト\n", "café\r\nnaïve\n", "From here\n"]
)
name_st = st.text(st.characters(codec="utf-8", exclude_categories=["Cc"]), min_size=1, max_size=60) | st.sampled_from(
    ["report.csv", "../../etc/passwd", "résumé.pdf", "a" * 200, "報告書.xlsx", "x y.txt"]
)


@st.composite
def text_part(draw: st.DrawFn) -> EmailMessage:
    part = EmailMessage()
    text = draw(text_st)
    subtype = draw(st.sampled_from(["plain", "html"]))
    charset = draw(st.sampled_from(["utf-8", "latin-1", "iso-2022-jp", "windows-1252"]))
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        charset = "utf-8"
    cte = draw(st.sampled_from([None, "7bit", "8bit", "quoted-printable", "base64"]))
    try:
        part.set_content(text, subtype=subtype, charset=charset, cte=cte)
    except (ValueError, UnicodeError):
        part = EmailMessage()
        part.set_content(text, subtype=subtype, charset=charset)
    return part


@st.composite
def binary_part(draw: st.DrawFn) -> EmailMessage:
    part = EmailMessage()
    data = draw(st.binary(max_size=3000) | st.sampled_from([b"", b"\r\n", b"=41=\n", b"-- \n--x"]))
    cte = draw(st.sampled_from(["base64", "base64", "quoted-printable", "7bit", "8bit"]))
    if cte == "7bit" and not data.isascii():
        cte = "base64"
    filename = draw(st.none() | name_st)
    disposition = draw(st.sampled_from(["attachment", "inline"]))
    maintype, subtype = draw(st.sampled_from([("application", "octet-stream"), ("image", "png"), ("text", "csv")]))
    if maintype == "text":
        part.set_content(data, maintype, subtype, cte=cte, disposition=disposition, filename=filename)
    else:
        part.set_content(data, maintype, subtype, cte=cte, disposition=disposition, filename=filename)
    return part


def multipart(children: list[EmailMessage], subtype: str, preamble: str | None, epilogue: str | None) -> EmailMessage:
    node = EmailMessage()
    node["Content-Type"] = f"multipart/{subtype}"
    for child in children:
        node.attach(child)
    node.preamble, node.epilogue = preamble, epilogue
    return node


def tree(depth: int) -> st.SearchStrategy[EmailMessage]:
    leaf = text_part() | binary_part()
    if depth == 0:
        return leaf
    return leaf | st.builds(
        multipart,
        st.lists(tree(depth - 1), min_size=1, max_size=4),
        st.sampled_from(["mixed", "alternative", "related"]),
        st.none() | st.sampled_from(["This is a multi-part message.", "--fake\n", ""]),
        st.none() | st.sampled_from(["", "epilogue\n", "--x--"]),
    )


@st.composite
def emails(draw: st.DrawFn) -> EmailMessage:
    body = draw(tree(3))
    if draw(st.booleans()):  # an attached email, itself with parts
        attached = EmailMessage()
        attached["Subject"] = "forwarded"
        attached.set_content(draw(text_st))
        wrapper = EmailMessage()
        wrapper.set_content(attached)
        body = multipart([body, wrapper], "mixed", None, None)
    body["From"] = "Sensor <sensor@example.com>"
    body["Subject"] = draw(st.sampled_from(["Alarm", "Ärger mit der Pumpe", ""]))
    return body


chunk_sizes = st.lists(st.integers(1, 16) | st.integers(1, 65536), min_size=1, max_size=4)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(emails(), chunk_sizes)
def test_generated_emails_match_stdlib(msg: EmailMessage, sizes: list[int]) -> None:
    raw = bytes(msg)
    assert_like_stdlib(raw, sizes)
    assert_like_stdlib(crlf(raw), sizes)


@settings(max_examples=200, deadline=None)
@given(st.text("AQwz09+/=\n\r -!", max_size=200), chunk_sizes)
def test_base64_slices_decode_like_stdlib(body: str, sizes: list[int]) -> None:
    assert_like_stdlib(b"Content-Transfer-Encoding: base64\n\n" + body.encode(), sizes)


@settings(max_examples=200, deadline=None)
@given(st.text("=A0f\n\r \tz", max_size=200), chunk_sizes)
def test_quoted_printable_slices_decode_like_stdlib(body: str, sizes: list[int]) -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Transfer-Encoding: quoted-printable\n\n"
    assert_like_stdlib(raw + body.encode() + b"\n--b--\n", sizes)


SOUP = [
    "Content-Type: multipart/mixed; boundary=A", "Content-Type: multipart/alternative; boundary=B",
    "Content-Type: multipart/digest; boundary=C", "Content-Type: message/rfc822", "Content-Type: text/plain",
    "Content-Type: multipart/mixed", "Content-Transfer-Encoding: base64", "Content-Transfer-Encoding: quoted-printable",
    "Content-Disposition: attachment; filename=x", " continued", "\tfolded", "From x", "Subject: s", "", "", "",
    "--A", "--A--", "--A  ", "--A-- \t", "--Ax", "--A-", "--A--x", "--B", "--B--", "--C", "--C--",
    "body", "QUJD", "QQ==", "QQ", "=41=", "x=", "-", "--", "==", "=\t", "not a header line",
]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(SOUP), st.sampled_from(["\n", "\r\n"])), max_size=40), chunk_sizes)
def test_line_soup_matches_stdlib(lines: list[tuple[str, str]], sizes: list[int]) -> None:
    """Random lines from a MIME-ish vocabulary: nesting, repeated and unclosed delimiters, bad base64."""
    text = " ".join(line for line, _ in lines)
    # A deliberate divergence (module docstring): a message/* part is a leaf whose transfer
    # encoding we remove, while the stdlib parses an encoded one as a message.
    assume(not ("Transfer-Encoding" in text and ("message/rfc822" in text or "multipart/digest" in text)))
    assert_like_stdlib("".join(line + eol for line, eol in lines).encode(), sizes)


# -- edge cases ----------------------------------------------------------------------------------

NESTED = b"""From: a@example.com
Subject: nested
Content-Type: multipart/mixed; boundary="outer"

preamble text
--outer
Content-Type: multipart/alternative; boundary="middle"

--middle
Content-Type: text/plain

plain body
--middle
Content-Type: multipart/related; boundary="inner"

--inner
Content-Type: text/html

<p>html</p>
--inner
Content-Type: image/png
Content-Transfer-Encoding: base64
Content-Disposition: inline; filename="dot.png"

iVBORw0KGgo=
--inner--
--middle--
--outer
Content-Type: application/pdf; name="doc.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--outer--
epilogue text
"""


def test_nesting_three_deep() -> None:
    leaves = assert_like_stdlib(NESTED, [7])
    assert [(p.path, p.content_type) for p, _ in leaves] == [
        ((0, 0), "text/plain"),
        ((0, 1, 0), "text/html"),
        ((0, 1, 1), "image/png"),
        ((1,), "application/pdf"),
    ]
    assert leaves[0][1] == b"plain body"
    assert leaves[2][0].filename == "dot.png" and leaves[3][0].filename == "doc.pdf"


def test_lf_only_and_crlf() -> None:
    assert b"\r" not in NESTED
    lf = assert_like_stdlib(NESTED)
    crlf_leaves = assert_like_stdlib(crlf(NESTED), [1])
    assert crlf_leaves[0][1] == b"plain body" and crlf_leaves[1][1] == b"<p>html</p>"
    assert [d for _, d in lf][2:] == [d for _, d in crlf_leaves][2:]


def test_mixed_line_endings() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\n--b\nA: 1\r\n\r\nline1\r\nline2\n\r\n--b--\r\n"
    assert only(assert_like_stdlib(raw, [3]))[1] == b"line1\r\nline2\n"


def test_preamble_and_epilogue_are_discarded() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b\n\nignore me\n--b\n\nbody\n--b--\nand me\n--b\nnot a part\n"
    assert only(assert_like_stdlib(raw, [1]))[1] == b"body"


def test_line_starting_with_boundary_is_content() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\n--bx\n--b--x\n--b extra\nend\n--b--\n"
    assert only(assert_like_stdlib(raw, [2]))[1] == b"--bx\n--b--x\n--b extra\nend"


def test_boundary_with_trailing_whitespace() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b\n\n--b \t\n\none\n--b  \ntwo\n--b-- \t\nepilogue\n"
    assert [d for _, d in assert_like_stdlib(raw, [1])] == [b"one", b"two"]


def test_outer_boundary_ends_an_unclosed_inner_multipart() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=outer\n\n--outer\n"
        b"Content-Type: multipart/alternative; boundary=inner\n\n--inner\n\ninner one\n"
        b"--outer\nContent-Type: text/csv\n\na,b\n--outer--\n"
    )
    leaves = assert_like_stdlib(raw, [5])
    assert [(p.path, d) for p, d in leaves] == [((0, 0), b"inner one"), ((1,), b"a,b")]


def test_missing_closing_boundary_at_eof() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\nContent-Type: text/html\n\n<p>two</p>\n"
    leaves = assert_like_stdlib(raw, [4])
    assert [d for _, d in leaves] == [b"one", b"<p>two</p>"]


def test_multipart_without_any_delimiter_is_a_leaf_like_stdlib() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b\n\njust text\n"
    part, data = only(assert_like_stdlib(raw, [1]))
    assert part.content_type == "multipart/mixed" and data == b"just text\n"
    no_boundary = b"Content-Type: multipart/mixed\n\n--b\nbody\n"
    assert only(assert_like_stdlib(no_boundary))[1] == b"--b\nbody\n"


def test_multipart_without_delimiter_in_its_first_mib() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b\n\n" + b"no delimiter here\n" * 70_000
    with pytest.raises(MalformedEmail, match="no delimiter line"):
        ours(raw, [65536])
    assert len(ours(raw + b"--b\n\nfinally\n--b--\n", [65536])[1]) == 1


def test_folded_headers() -> None:
    raw = (
        b"Subject: a very\n long subject\nContent-Type: multipart/mixed;\n\tboundary=\"b\"\n\n--b\n"
        b"Content-Type: text/plain;\n charset=\"iso-8859-1\"\nContent-Disposition: attachment;\n"
        b" filename=\"a long\n name.txt\"\n\ncaf\xe9\n--b--\n"
    )
    headers, leaves = ours(raw, [3])
    assert decode_header_value(headers["subject"]) == "a very long subject"
    part, data = only(assert_like_stdlib(raw, [3]))
    assert part.charset == "iso-8859-1" and data == b"caf\xe9"
    assert part.filename == "a long name.txt"


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_quoted_printable_soft_break_split_at_every_offset(ending: bytes) -> None:
    body = b"Send to :Email_Rxers_Code:ops@exa=" + ending + b"mple.com=2C a=3Db@x.org:Email_Rxers_Code:" + ending
    raw = b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Transfer-Encoding: quoted-printable\n\n"
    raw += body + b"--b--\n"
    expected = b"Send to :Email_Rxers_Code:ops@example.com, a=b@x.org:Email_Rxers_Code:"
    for cut in range(1, len(raw)):
        for tail in (1 << 20, 1):
            parts = [raw[:cut], *chunked(raw[cut:], [tail])]
            _, leaves = collect(list(parse(parts)))
            assert only(leaves)[1] == expected, cut


def test_base64_text_body() -> None:
    text = "Gruß aus der Pumpstation\n" * 20
    msg = EmailMessage()
    msg.set_content(text, cte="base64")
    part, data = only(assert_like_stdlib(bytes(msg), [5]))
    assert part.transfer_encoding == "base64" and data.decode() == text


def test_html_only_body() -> None:
    msg = EmailMessage()
    msg.set_content("<p>hi</p>", subtype="html")
    part, data = only(assert_like_stdlib(bytes(msg)))
    assert part.path == () and part.content_type == "text/html" and data == b"<p>hi</p>\n"


@pytest.mark.parametrize("charset", ["windows-1252", "iso-8859-1"])
def test_non_utf8_charsets(charset: str) -> None:
    msg = EmailMessage()
    msg.set_content("Température: 21 °C ± 0,5", charset=charset, cte="8bit")
    part, data = only(assert_like_stdlib(bytes(msg)))
    assert part.charset == charset and data.decode(charset) == "Température: 21 °C ± 0,5\n"


def attachment_email(*filenames: str | None) -> bytes:
    msg = EmailMessage()
    msg.set_content("body")
    for i, name in enumerate(filenames):
        msg.add_attachment(bytes([i]) * 10, maintype="application", subtype="octet-stream", filename=name)
    return bytes(msg)


def test_missing_and_duplicate_filenames() -> None:
    leaves = assert_like_stdlib(attachment_email(None, "a.csv", "a.csv"))
    assert [p.filename for p, _ in leaves] == [None, None, "a.csv", "a.csv"]
    assert [p.disposition for p, _ in leaves] == [None, "attachment", "attachment", "attachment"]


def test_hostile_filenames_are_returned_as_is() -> None:
    long_name = "x" * 5000 + ".bin"
    leaves = assert_like_stdlib(attachment_email("../../etc/passwd", long_name))
    assert [p.filename for p, _ in leaves[1:]] == ["../../etc/passwd", long_name]
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\n"
        b"Content-Disposition: attachment; filename=\"=?utf-8?q?evil=0D=0ABcc=3A_x=2Etxt?=\"\n\nx\n--b--\n"
    )
    assert only(assert_like_stdlib(raw))[0].filename == "evil\r\nBcc: x.txt"


def test_encoded_filenames() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\n"
        b"Content-Disposition: attachment; filename=\"=?utf-8?b?csOpc3Vtw6kucGRm?=\"\n\n1\n"
        b"--b\nContent-Disposition: attachment; filename*=utf-8''%E5%A0%B1%E5%91%8A.csv\n\n2\n"
        b"--b\nContent-Type: image/png; name=\"=?iso-8859-1?q?b=E4r.png?=\"\n\n3\n"
        b"--b\nContent-Disposition: attachment;\n filename*0*=utf-8''caf%C3%A9;\n filename*1*=%20menu.txt\n\n4\n"
        b"--b\nContent-Disposition: attachment; filename=\"caf\xc3\xa9.txt\"\n\n5\n--b--\n"
    )
    leaves = assert_like_stdlib(raw, [2])
    assert [p.filename for p, _ in leaves] == ["résumé.pdf", "報告.csv", "bär.png", "café menu.txt", "café.txt"]


def test_message_rfc822_attachment_is_one_leaf() -> None:
    inner = EmailMessage()
    inner["Subject"] = "original alarm"
    inner.set_content("inner text")
    inner.add_attachment(b"\x00" * 100, maintype="application", subtype="octet-stream", filename="in.bin")
    outer = EmailMessage()
    outer["Subject"] = "Fwd"
    outer.set_content("see attached")
    outer.add_attachment(inner)
    leaves = assert_like_stdlib(bytes(outer), [9])
    assert [p.content_type for p, _ in leaves] == ["text/plain", "message/rfc822"]
    forwarded = email.message_from_bytes(leaves[1][1], policy=email.policy.default)
    assert forwarded["subject"] == "original alarm"
    assert [p.filename for p, _ in ours(leaves[1][1])[1]] == [None, "in.bin"]


def test_multipart_digest_defaults_to_message_rfc822() -> None:
    raw = (
        b"Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n\nfirst\n"
        b"--d\nContent-Type: text/plain\n\nnot a message\n--d--\n"
    )
    leaves = assert_like_stdlib(raw, [3])
    assert [p.content_type for p, _ in leaves] == ["message/rfc822", "text/plain"]
    assert leaves[0][1] == b"Subject: one\n\nfirst"


def test_header_block_over_the_limit() -> None:
    raw = b"Subject: " + b"x" * 5000 + b"\n\nbody"
    with pytest.raises(MalformedEmail, match="max_header_bytes=4096"):
        ours(raw, max_header_bytes=4096)
    with pytest.raises(MalformedEmail, match="max_header_bytes=4096"):  # never completes a line
        MimeParser(max_header_bytes=4096).feed(b"Subject: " + b"x" * 5000)
    assert ours(raw, max_header_bytes=8192)[1][0][1] == b"body"


def test_nesting_over_max_depth() -> None:
    raw = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) for i in range(40))
    with pytest.raises(MalformedEmail, match="max_depth=32"):
        ours(raw + b"\nleaf\n")
    leaves = ours(raw + b"\nleaf\n", max_depth=40)[1]
    assert only(leaves)[0].path == (0,) * 40


def test_too_many_parts() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b\n\n" + b"--b\n\nx\n" * 11 + b"--b--\n"
    with pytest.raises(MalformedEmail, match="max_parts=10"):
        ours(raw, max_parts=10)
    assert len(ours(raw, max_parts=11)[1]) == 11


def test_empty_input() -> None:
    headers, leaves = ours(b"")
    assert len(headers) == 0
    part, data = only(leaves)
    assert (part.content_type, part.path, data) == ("text/plain", (), b"")
    assert_like_stdlib(b"")


def test_input_that_is_only_headers() -> None:
    raw = b"From: a@example.com\nSubject: nothing else"
    headers, leaves = ours(raw, [1])
    assert headers["subject"] == "nothing else"
    assert only(assert_like_stdlib(raw, [1]))[1] == b""


def test_unix_from_lines_like_stdlib() -> None:
    assert_like_stdlib(b"From sender Mon Jan 1\nSubject: s\n\nbody\n")
    assert_like_stdlib(b"Subject: s\nFrom x\n\nbody\n", [1])


def test_long_line_streams_before_it_ends() -> None:
    parser = MimeParser()
    head = b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\n"
    assert [type(e) for e in parser.feed(head)] == [MessageHeaders, PartStart]
    got = 0
    for _ in range(20):
        got += sum(len(e.data) for e in parser.feed(b"y" * 100_000) if isinstance(e, PartData))
    assert got == 2_000_000
    events = parser.feed(b"\n--b--\n") + parser.close()
    assert [type(e) for e in events] == [PartEnd]


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2000), chunk_sizes)
def test_garbage_bytes(raw: bytes, sizes: list[int]) -> None:
    try:
        ours(raw, sizes)
    except MalformedEmail:
        pass


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(SAMPLES), st.integers(0, 2**32), chunk_sizes)
def test_mutated_samples(sample: Path, seed: int, sizes: list[int]) -> None:
    rng = random.Random(seed)
    raw = bytearray(sample.read_bytes()[: rng.randrange(1, 6000)])
    for _ in range(rng.randrange(1, 30)):
        raw[rng.randrange(len(raw))] = rng.choice(b"-\r\n\t :=;\"\x00\xff")
    try:
        ours(bytes(raw), sizes)
    except MalformedEmail:
        pass


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_samples_match_stdlib(sample: Path) -> None:
    raw = sample.read_bytes()
    for sizes in ([1 << 20], [4096], [1, 7, 1000]):
        assert_like_stdlib(raw, sizes)
    assert_like_stdlib(crlf(raw), [65536])


def test_raw_8bit_headers_read_as_utf8() -> None:
    raw = "Subject: Grüße aus =?utf-8?q?M=C3=BCnchen?=\nContent-Disposition: attachment; filename=\"Bericht ä.txt\"\n\nx"
    headers, leaves = ours(raw.encode())
    assert decode_header_value(headers["subject"]) == "Grüße aus München"
    assert only(assert_like_stdlib(raw.encode()))[0].filename == "Bericht ä.txt"


def test_feed_after_close() -> None:
    parser = MimeParser()
    assert [type(e) for e in parser.feed(b"Subject: x\n\nbody")] == [MessageHeaders, PartStart, PartData]
    assert [type(e) for e in parser.close()] == [PartEnd]
    assert parser.close() == []
    with pytest.raises(ValueError):
        parser.feed(b"more")


def test_decode_header_value_never_raises() -> None:
    assert decode_header_value(None) == ""
    assert decode_header_value("=?utf-8?q?Gr=C3=BC=C3=9Fe?= aus\r\n Berlin") == "Grüße aus Berlin"
    assert decode_header_value("=?x-unknown?q?abc?=") == "abc"
    assert decode_header_value("=?utf-8?b?Q?=") == "=?utf-8?b?Q?="
    assert isinstance(decode_header_value("=?utf-8?q?=FF=FE?= caf\udcc3\udca9"), str)


# -- bounded memory ------------------------------------------------------------------------------


def test_memory_stays_bounded_on_a_50_mb_attachment() -> None:
    rng = random.Random(7)
    digest = hashlib.sha256()
    line_bytes, lines_per_chunk, chunks = 57, 13_000, 50  # ~1 MiB of base64 per chunk

    def source() -> Iterator[bytes]:
        yield (
            b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=\"==b==\"\r\n\r\n--==b==\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        )
        for _ in range(chunks):
            payload = rng.randbytes(line_bytes * lines_per_chunk)
            digest.update(payload)
            yield base64.encodebytes(payload).replace(b"\n", b"\r\n")
        yield b"--==b==--\r\n"

    got = hashlib.sha256()
    size = 0
    tracemalloc.start()
    try:
        for event in parse(source()):
            if isinstance(event, PartData):
                got.update(event.data)
                size += len(event.data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == line_bytes * lines_per_chunk * chunks
    assert got.hexdigest() == digest.hexdigest()
    assert peak < 8 * 1024 * 1024, peak



# -- real-world classes (issue 15): folded boundaries, encoded words, x-uuencode -------------------


def assert_like_modern_stdlib(raw: bytes, sizes: Sequence[int] = (1 << 20,)) -> list[Leaf]:
    """policy.default as the oracle, where it reads better than compat32 (a folded boundary)."""
    _, got = ours(raw, sizes)
    expected = stdlib_leaves(email.message_from_bytes(raw, policy=email.policy.default))
    assert [(p.path, p.content_type) for p, _ in got] == [(path, m.get_content_type()) for path, m in expected]
    for (part, data), (_, m) in zip(got, expected, strict=True):
        assert part.filename == m.get_filename()
        assert data == (m.get_payload(decode=True) or b"")
    return got


FOLDED = (
    b"From: Pump Station 7 <station7@devices.example.com>\r\nSubject: alarm\r\n"
    b"Content-Type: multipart/mixed;\r\n\tboundary=\"----=_NextPart_000_0012\r\n _01C0A1B2.C3D4E5F6\"\r\n\r\n"
    b"This is a multi-part message in MIME format.\r\n\r\n"
    b"------=_NextPart_000_0012 _01C0A1B2.C3D4E5F6\r\nContent-Type: text/plain\r\n\r\n"
    b"Pump 2 alarm.\r\n:Email_Rxers_Code:ops@example.com:Email_Rxers_Code:\r\n\r\n"
    b"------=_NextPart_000_0012 _01C0A1B2.C3D4E5F6\r\nContent-Type: text/csv; name=\"trend.csv\"\r\n"
    b"Content-Disposition: attachment; filename=\"trend.csv\"\r\n\r\nt,v\r\n1,2\r\n"
    b"------=_NextPart_000_0012 _01C0A1B2.C3D4E5F6--\r\n"
)


@pytest.mark.parametrize("sizes", [[1 << 20], [1], [7, 300]])
def test_boundary_folded_inside_its_quotes(sizes: list[int]) -> None:
    leaves = assert_like_modern_stdlib(FOLDED, sizes)
    assert [(p.content_type, p.filename) for p, _ in leaves] == [("text/plain", None), ("text/csv", "trend.csv")]
    assert leaves[0][1] == b"Pump 2 alarm.\r\n:Email_Rxers_Code:ops@example.com:Email_Rxers_Code:\r\n"
    # the line as written, break and all, is no delimiter: only the unfolded boundary is
    assert only(ours(FOLDED.replace(b"0012 _01", b"0012_01"))[1])[0].content_type == "multipart/mixed"


def test_folded_boundary_of_an_inner_multipart_with_tab() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=outer\n\n--outer\n"
        b"Content-Type: multipart/alternative;\n boundary=\"in\n\tner\"\n\n--in\tner\nContent-Type: text/plain\n\nplain\n"
        b"--in\tner\nContent-Type: text/html\n\n<p>html</p>\n--in\tner--\n--outer--\n"
    )
    leaves = assert_like_modern_stdlib(raw, [3])
    assert [(p.path, d) for p, d in leaves] == [((0, 0), b"plain"), ((0, 1), b"<p>html</p>")]


BCHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'()+_,-./:=?"


@st.composite
def folded_boundary_emails(draw: st.DrawFn) -> bytes:
    left = draw(st.text(BCHARS, min_size=1, max_size=30))
    right = draw(st.text(BCHARS, min_size=1, max_size=30))
    blank = draw(st.sampled_from([" ", "\t", "  ", " \t"]))
    eol = draw(st.sampled_from(["\r\n", "\n"]))
    boundary = f"{left}{blank}{right}".encode()
    head = f'Subject: folded\nContent-Type: multipart/mixed;{eol}\tboundary="{left}{eol}{blank}{right}"'.encode()
    children = draw(st.lists(text_part() | binary_part(), min_size=1, max_size=3))
    body = b"".join(b"--" + boundary + b"\n" + bytes(child) + b"\n" for child in children)
    raw = head + b"\n\n" + draw(st.sampled_from([b"", b"preamble\n"])) + body + b"--" + boundary + b"--\n"
    return crlf(raw) if eol == "\r\n" else raw


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(folded_boundary_emails(), chunk_sizes)
def test_generated_folded_boundaries_match_modern_stdlib(raw: bytes, sizes: list[int]) -> None:
    assume(email.message_from_bytes(raw, policy=email.policy.default).is_multipart())
    leaves = assert_like_modern_stdlib(raw, sizes)
    assert leaves and all(len(p.path) == 1 for p, _ in leaves)


@st.composite
def encoded_word_headers(draw: st.DrawFn) -> tuple[bytes, str]:
    """A header value of encoded words (8-bit bytes left raw inside some, languages after some
    charsets, adjacent words of different charsets) and plain text, with what it reads as."""
    charsets = ["iso-8859-1", "windows-1252", "utf-8", "koi8-r", "iso-8859-2", "us-ascii"]
    pieces: list[tuple[bool, bytes, str]] = []  # (is an encoded word, bytes, its text)
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.integers(0, 3)) == 0:
            word = draw(st.sampled_from(["Re:", "Tank", "pump-2", "(level)"]))
            pieces.append((False, word.encode(), word))
            continue
        charset = draw(st.sampled_from(charsets))
        alphabet = st.characters(codec=charset if charset != "us-ascii" else "ascii", exclude_categories=["Cc", "Cs"])
        text = draw(st.text(alphabet, min_size=1, max_size=12))
        data = text.encode(charset)
        label = charset + draw(st.sampled_from(["", "", "*en", "*sl-SI"]))
        if draw(st.booleans()):
            encoded = base64.b64encode(data)
            pieces.append((True, b"=?" + label.encode() + b"?B?" + encoded + b"?=", text))
            continue
        raw8 = draw(st.booleans())  # Eudora: 8-bit bytes as they are inside the word
        q = b"".join(
            bytes([c]) if (chr(c).isalnum() and c < 128) or (raw8 and c >= 128) else b"_" if c == 32 else b"=%02X" % c
            for c in data
        )
        pieces.append((True, b"=?" + label.encode() + b"?Q?" + q + b"?=", text))
    raw, expected = b"", ""
    for i, (encoded, data, text) in enumerate(pieces):
        if i:
            gap = draw(st.sampled_from([b" ", b"\r\n ", b"\n\t", b"  "]))
            raw += gap
            if not (encoded and pieces[i - 1][0]):  # blanks between two encoded words go (RFC 2047 §6.2)
                expected += gap.replace(b"\r", b"").replace(b"\n", b"").decode()
        raw, expected = raw + data, expected + text
    return raw, expected


@settings(max_examples=300, deadline=None)
@given(encoded_word_headers())
def test_generated_encoded_words_read_as_mail_clients_do(case: tuple[bytes, str]) -> None:
    value, expected = case
    raw = b"Subject: " + value + b"\r\n\r\n"
    headers, _ = ours(raw)
    assert decode_header_value(headers["subject"]) == expected
    if not any(c >= 0x80 for c in value):  # policy.default agrees wherever it reads the bytes
        assert str(email.message_from_bytes(raw, policy=email.policy.default)["subject"]) == expected


def uuencode(data: bytes, line: int = 45, name: bytes = b"trend.csv") -> bytes:
    lines = [binascii.b2a_uu(data[i : i + line]) for i in range(0, len(data), line)]
    return b"begin 644 " + name + b"\n" + b"".join(lines) + b"`\nend\n"


@pytest.mark.parametrize("cte", ["x-uuencode", "uuencode", "x-uue", "X-UUEncode "])
def test_x_uuencode_is_decoded(cte: str) -> None:
    data = bytes(range(256)) * 3
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nsee file\n--b\n"
        b"Content-Type: application/octet-stream; name=dump.bin\nContent-Transfer-Encoding: "
        + cte.encode() + b"\n\n" + uuencode(data, name=b"dump.bin") + b"--b--\n"
    )
    for sizes in ([1 << 20], [1], [5, 61]):
        _, leaves = ours(raw, sizes)
        assert leaves[1][1] == data
    if cte.strip().lower() == cte:  # the stdlib only reads the exact value
        assert_like_stdlib(raw, [3])


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"preamble text\nbegin 600 x\n#86)C\n`\nend\ntrailer\n", b"abc"),  # lines before begin skipped
        (b"begin 644 x\r\n#86)C\r\n \r\nend\r\n", b"abc"),  # CRLF; a blank zero-length line
        (b"begin 644 x\n#86)CXXXX\nend\n", b"abc"),  # a broken encoder's padding: cut to the length
        (b"begin 644 x\n#86)C\n", b"abc"),  # no end line
        (b"begin xyz x\nbegin 644 x\n#86)C\nend\n", b"abc"),  # a begin line without an octal mode
        (b"no uuencoded data here\n", b"no uuencoded data here\n"),  # no begin line: as it is
    ],
)
def test_x_uuencode_variations_like_stdlib(body: bytes, expected: bytes) -> None:
    raw = b"Content-Transfer-Encoding: x-uuencode\n\n" + body
    assert only(assert_like_stdlib(raw, [1]))[1] == expected


def test_x_uuencode_chosen_differences() -> None:
    # a blank line inside the data: skipped (the stdlib calls it truncated and gives the body undecoded)
    raw = b"Content-Transfer-Encoding: x-uuencode\n\nbegin 644 x\n#86)C\n\n#86)C\nend\n"
    assert only(ours(raw, [2])[1])[1] == b"abcabc"
    # no begin line within 64 KiB: passed through undecoded from there, not held to the end
    raw = b"Content-Transfer-Encoding: x-uuencode\n\n" + b"x" * 70_000 + b"\nbegin 644 x\n#86)C\nend\n"
    parser = MimeParser()
    events = parser.feed(raw[:66_000])
    assert sum(len(e.data) for e in events if isinstance(e, PartData)) == 66_000 - 39
    assert only(ours(raw, [4096])[1])[1] == raw[39:]


@settings(max_examples=150, deadline=None)
@given(
    st.binary(max_size=2000),
    st.integers(1, 45),
    st.sampled_from(["\n", "\r\n"]),
    st.sampled_from(["x-uuencode", "uuencode", "x-uue"]),
    st.sampled_from([b"", b"Here is the file:\n\n"]),
    chunk_sizes,
)
def test_generated_uuencode_matches_stdlib(
    data: bytes, line: int, eol: str, cte: str, preamble: bytes, sizes: list[int]
) -> None:
    body = (preamble + uuencode(data, line)).replace(b"\n", eol.encode())
    raw = b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Transfer-Encoding: " + cte.encode()
    raw += b"\n\n" + body + b"--b--\n"
    assert only(assert_like_stdlib(raw, sizes))[1] == data


def test_filenames_with_the_encoded_word_classes() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\n"
        b"Content-Disposition: attachment; filename=\"=?iso-8859-1?Q?Fr\xf6sche.txt?=\"\n\nx\n"
        b"--b\nContent-Type: text/plain; name=\"=?iso-8859-2*sl?Q?Doma=BEe.txt?=\"\n\ny\n"
        b"--b\nContent-Type: text/plain; name=\"=?ISO-8859-1?Q?a_?= =?US-ASCII?Q?b.txt?=\"\n\nz\n--b--\n"
    )
    leaves = assert_like_modern_stdlib(raw, [3])
    assert [p.filename for p, _ in leaves] == ["Frösche.txt", "Domaže.txt", "a b.txt"]
