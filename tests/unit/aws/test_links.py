from __future__ import annotations

import email
import email.policy

import pytest

from worker.aws.links import S3AttachmentStore, attachment_key, content_disposition, message_prefix, safe_name


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
    key = attachment_key("attachments/", "../other", "../../t", 3, "../../x/../../y.txt")
    assert key == "attachments/other/t/3-y.txt"


def test_each_attempt_stores_under_a_random_token_below_the_message_prefix() -> None:
    """A reprocessed email never writes to an earlier attempt's keys (revoked links stay dead),
    and revoke by message id still finds every attempt under one prefix."""
    stores = [S3AttachmentStore(None, "b", "attachments/", "m1", 60, 8, 0) for _ in range(1000)]
    tokens = {store.token for store in stores}
    assert len(tokens) == 1000 and all(len(t) == 32 and int(t, 16) >= 0 for t in tokens)  # 128 bits
    key = attachment_key("attachments/", "m1", stores[0].token, 1, "a.csv")
    assert key == f"attachments/m1/{stores[0].token}/1-a.csv" and key.startswith(message_prefix("attachments/", "m1"))


def test_content_disposition_keeps_the_exact_name() -> None:
    value = content_disposition('rapport "final" d\'été.pdf')
    msg = email.message_from_string(f"Content-Disposition: {value}\n\n", policy=email.policy.default)
    assert msg.get_filename() == 'rapport "final" d\'été.pdf'
    assert value.endswith('; filename="rapport _final_ d\'_t_.pdf"')
    assert "\r" not in content_disposition("a\r\nb") and "\n" not in content_disposition("a\r\nb")
