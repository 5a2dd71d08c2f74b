"""worker.mail.headers and worker.mail.charsets: header values and charsets as mail clients read them."""

from __future__ import annotations

import email
import email.policy
from email.header import Header
from email.message import Message
from email.policy import compat32

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.mail.charsets import codec_for, decode_bytes
from worker.mail.headers import boundary_of, decode_header_value


def compat32_subject(raw: bytes) -> str | Header:
    """What the parser hands over: compat32's value (a Header when the line holds 8-bit bytes)."""
    value = email.message_from_bytes(raw, policy=compat32)["subject"]
    assert isinstance(value, (str, Header))
    return value


def modern_subject(raw: bytes) -> str:
    return str(email.message_from_bytes(raw, policy=email.policy.default)["subject"])


# -- class 2: raw 8-bit bytes inside an encoded word (Eudora) ------------------------------------


def test_eight_bit_byte_inside_an_encoded_word_is_read_in_its_charset() -> None:
    raw = b"Subject: =?iso-8859-1?Q?Fr\xf6sche_im_Tank?=\r\n\r\n"
    value = compat32_subject(raw)
    assert not isinstance(value, str)  # compat32 hands over a Header: the case that went wrong
    assert decode_header_value(value) == "Frösche im Tank" == modern_subject(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"=?windows-1252?Q?\x80 5?=", "€ 5"),  # 8-bit byte and a literal blank inside the word
        (b"=?koi8-r?Q?\xf4\xc5\xd3\xd4?=", "Тест"),
        (b"=?iso-8859-1?Q?caf\xe9?= and caf\xc3\xa9", "café and café"),  # outside a word: UTF-8
        (b"=?utf-8?Q?\xc3\xa4_=C3=B6?=", "ä ö"),  # raw and encoded bytes in one word
        (b"=?iso-8859-15?B?pA==?= \xe2\x82\xac", "€ €"),
    ],
)
def test_eight_bit_variations(raw: bytes, expected: str) -> None:
    assert decode_header_value(compat32_subject(b"Subject: " + raw + b"\n\n")) == expected


# -- class 3: blanks between adjacent encoded words ------------------------------------------------


def test_blank_between_words_of_different_charsets_is_dropped() -> None:
    raw = b"Subject: =?ISO-8859-1?Q?Tank_level_?=\r\n =?US-ASCII?Q?low?=\r\n\r\n"
    assert decode_header_value(compat32_subject(raw)) == "Tank level low" == modern_subject(raw)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=?utf-8?q?a?= =?iso-8859-1?q?b?=", "ab"),
        ("=?utf-8?q?a?=\t\t=?utf-8?q?b?=", "ab"),
        ("=?utf-8?q?a?=\r\n\t=?utf-8?q?b?= c", "ab c"),
        ("=?utf-8?q?a?= x =?iso-8859-1?q?b?=", "a x b"),  # text between: kept
        ("x =?utf-8?q?a?=  y", "x a  y"),  # blanks next to text are text
        ("=?utf-8?b?4oI=?= =?utf-8?b?rA==?=", "€"),  # one character split across two words
        ("=?utf-8?q?a?= =?utf-8?b?Q?= =?utf-8?q?c?=", "a =?utf-8?b?Q?= c"),  # a broken word stays
    ],
)
def test_adjacent_word_variations(value: str, expected: str) -> None:
    assert decode_header_value(value) == expected


# -- class 4: RFC 2231 §5 language in an encoded word --------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=?iso-8859-2*sl?Q?Doma=BEe?=", "Domaže"),
        ("=?UTF-8*de-CH?B?R3LDvGV6aQ==?=", "Grüezi"),
        ("=?us-ascii*en?q?plain?= =?iso-8859-1*fr?q?caf=E9?=", "plaincafé"),
    ],
)
def test_language_after_the_charset_is_ignored(value: str, expected: str) -> None:
    assert decode_header_value(value) == expected
    assert modern_subject(f"Subject: {value}\n\n".encode()) == expected


# -- class 6: charset names mail clients know ----------------------------------------------------


@pytest.mark.parametrize(
    ("label", "data", "expected"),
    [
        ("x-mac-cyrillic", "Привет".encode("mac-cyrillic"), "Привет"),
        ("windows-874", "สวัสดี".encode("cp874"), "สวัสดี"),
        ("x-sjis", "テスト".encode("shift_jis"), "テスト"),
        ("ks_c_5601-1987", "한글".encode("euc-kr"), "한글"),
        ("x-user-defined", b"a\x80", "a\uf780"),
        ("x-mac-roman", "café".encode("mac-roman"), "café"),
        ("x-gbk", "中文".encode("gbk"), "中文"),
        ("unicode-1-1-utf-8", "naïve".encode(), "naïve"),
        (' "X-MAC-CYRILLIC" ', "П".encode("mac-cyrillic"), "П"),
    ],
)
def test_whatwg_labels(label: str, data: bytes, expected: str) -> None:
    assert codec_for(label) is not None
    assert decode_bytes(data, label) == expected
    word = "".join(f"={b:02X}" for b in data)
    assert decode_header_value(f"=?{label.strip().strip(chr(34))}?Q?{word}?=") == expected


@pytest.mark.parametrize(
    ("label", "data", "expected"),
    [
        ("iso-8859-1", b"\x80", "\x80"),  # Python's reading wins: WHATWG would say windows-1252 "€"
        ("x-unknown", "grüße".encode(), "grüße"),  # unknown: UTF-8, as before
        ("hex", b"\xff", "\ufffd"),  # a bytes codec is no charset
        ("utf-8\x00", b"ok", "ok"),
        ("iso-2022-kr", b"\x1b$)C\x0e!!\x0f", "\u3000"),  # Python's codec, not WHATWG's "replacement"
        ("csiso2022kr", b"ok", "ok"),
        (None, "ça".encode(), "ça"),
    ],
)
def test_charsets_python_knows_or_none_knows(label: str | None, data: bytes, expected: str) -> None:
    assert decode_bytes(data, label) == expected


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.sampled_from(["x-mac-cyrillic", "windows-874", "x-sjis", "x-user-defined", "utf-8", "nope"]))
def test_decoding_never_raises(data: bytes, label: str) -> None:
    assert isinstance(decode_bytes(data, label), str)
    assert isinstance(decode_header_value(data.decode("ascii", "surrogateescape")), str)


# -- class 1: a boundary folded inside its quotes ------------------------------------------------


@pytest.mark.parametrize(
    ("header", "boundary"),
    [
        ('multipart/mixed;\r\n\tboundary="----=_NextPart_000_0012\r\n _01C0A1B2.C3D4E5F6"', b"----=_NextPart_000_0012 _01C0A1B2.C3D4E5F6"),
        ('multipart/mixed; boundary="a\n\tb"', b"a\tb"),
        ('multipart/mixed; boundary="a\r\n  b\r\n c"', b"a  b c"),
        ('multipart/mixed; boundary="plain"', b"plain"),
    ],
)
def test_folded_boundary_keeps_the_blank_after_the_fold(header: str, boundary: bytes) -> None:
    msg = Message()
    msg["Content-Type"] = header
    assert boundary_of(msg) == boundary
    modern = email.message_from_bytes(f"Content-Type: {header}\n\n".encode(), policy=email.policy.default)
    assert modern.get_boundary() == boundary.decode()


def test_a_boundary_with_a_line_break_that_is_no_fold_is_none() -> None:
    msg = Message()
    msg["Content-Type"] = 'multipart/mixed; boundary="a\r\nb"'
    assert boundary_of(msg) is None


def test_a_value_folded_right_after_the_colon_has_no_leading_blank() -> None:
    raw = b"Subject:\r\n =?UTF-8?B?0JfQvtC70L7RgtC+?=\r\n\r\n"
    assert decode_header_value(compat32_subject(raw)) == "Золото"
    assert modern_subject(raw) == " Золото"  # policy.default keeps the fold's blank


def test_thousands_of_unclosed_encoded_words_cost_linear_time() -> None:
    """`=?utf-8?q?` openings never closed: a lazy match up to `?=` rescanned the rest of the header
    from each one (30,000 in a 330 KB Subject: ~36 s for a 2 MB email of them). Ratio of two sizes
    in one run, CPU time: linear is ~10x for 10x the words, quadratic ~100x."""
    import time

    def cpu(n: int) -> float:
        value = "=?utf-8?q?a " * n
        started = time.process_time()
        for _ in range(5):
            assert decode_header_value(value) == value
        return time.process_time() - started

    small, large = cpu(2_000), cpu(20_000)
    assert large < 30 * max(small, 1e-3)
    assert decode_header_value("=?utf-8?q?a =?utf-8?q?caf=C3=A9?=") == "=?utf-8?q?a café"
    assert decode_header_value("=?iso-8859-15?B?pA==?=") == "€"  # "==?=" still ends a word
