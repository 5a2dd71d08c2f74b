from __future__ import annotations

import email
import email.policy

import pytest

from worker.aws.links import attachment_key, content_disposition, safe_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pump2-trend.csv", "pump2-trend.csv"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Windows\\system32\\evil.dll", "evil.dll"),
        ("rapport d'été.pdf", "rapport_d_ete.pdf"),
        ("a\r\nb.txt", "a_b.txt"),
        ("..", "attachment"),
        ("", "attachment"),
        ("日本語.txt", "txt"),
    ],
)
def test_safe_name(name: str, expected: str) -> None:
    assert safe_name(name) == expected


def test_long_names_keep_their_extension() -> None:
    name = safe_name("x" * 500 + ".jpeg")
    assert len(name) == 100 and name.endswith(".jpeg")


def test_key_cannot_escape_its_prefix() -> None:
    key = attachment_key("attachments/", "../other", 3, "../../x/../../y.txt")
    assert key == "attachments/other/3-y.txt"


def test_content_disposition_keeps_the_exact_name() -> None:
    value = content_disposition('rapport "final" d\'été.pdf')
    msg = email.message_from_string(f"Content-Disposition: {value}\n\n", policy=email.policy.default)
    assert msg.get_filename() == 'rapport "final" d\'été.pdf'
    assert value.endswith('; filename="rapport _final_ d\'_t_.pdf"')
    assert "\r" not in content_disposition("a\r\nb") and "\n" not in content_disposition("a\r\nb")
