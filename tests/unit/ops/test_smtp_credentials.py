"""SES SMTP credentials: AWS's SigV4-derived password, checked against published vectors."""

from __future__ import annotations

import json

import pytest

from worker.cli import main
from worker.ops.smtp_credentials import device_settings, parse_device_secret, smtp_host, smtp_password

# Vectors from two independent implementations that authenticate against SES:
# terraform-provider-aws (internal/service/iam/access_key_test.go,
# TestSESSMTPPasswordFromSecretKeySigV4) and Perl's Signer::AWSv4::SES (t/05_ses.t).
VECTORS = [
    ("eu-central-1", "some+secret+key", "BMXhUYlu5Z3gSXVQORxlVa7XPaz91aGWdfHxvkOZdWZ2"),
    ("eu-central-1", "another+secret+key", "BBbphbrQmrKMx42d1N6+C7VINYEBGI5v9VsZeTxwskfh"),
    ("us-west-1", "some+secret+key", "BH+jbMzper5WwlwUar9E1ySBqHa9whi0GPo+sJ0mVYJj"),
    ("us-west-1", "another+secret+key", "BKVmjjMDFk/qqw8EROW99bjCS65PF8WKvK5bSr4Y6EqF"),
    ("eu-west-1", "SECRET_KEY", "BIhFZ/Ylx0jPVY7JeKUnHT4rO9jfB1VuZu4qglc/3gj9"),
    ("us-east-1", "SECRET_KEY", "BEhllZN9mAOanokSKCZhFUnAZr05oZGH3Yga8SI+ujh+"),
]
EXAMPLE_KEY_ID = "AKIAIOSFODNN7EXAMPLE"  # AWS's documentation example key
EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(("region", "secret", "expected"), VECTORS)
def test_password_matches_published_vectors(region: str, secret: str, expected: str) -> None:
    assert smtp_password(secret, region) == expected


def test_password_is_per_region_and_versioned() -> None:
    east, west = smtp_password(EXAMPLE_SECRET, "us-east-1"), smtp_password(EXAMPLE_SECRET, "eu-west-1")
    assert east != west
    # 0x04 (SigV4) + 32-byte HMAC, base64: 44 characters starting with "B".
    assert len(east) == 44 and east.startswith("B")


def test_empty_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        smtp_password("", "us-east-1")
    with pytest.raises(ValueError):
        smtp_password(EXAMPLE_SECRET, "")


def test_device_settings() -> None:
    device = device_settings(EXAMPLE_KEY_ID, "SECRET_KEY", "eu-west-1", "intake-7f3k@sensors.example.com")
    assert device.host == smtp_host("eu-west-1") == "email-smtp.eu-west-1.amazonaws.com"
    assert (device.starttls_port, device.tls_port) == (587, 465)
    assert device.username == EXAMPLE_KEY_ID
    assert device.password == "BIhFZ/Ylx0jPVY7JeKUnHT4rO9jfB1VuZu4qglc/3gj9"
    text = "\n".join(device.lines())
    assert "587" in text and "465" in text and "intake-7f3k@sensors.example.com" in text


def test_device_secret_format() -> None:
    key = parse_device_secret(json.dumps(
        {"access_key_id": "AKIA1", "secret_access_key": "s", "region": "eu-west-1", "intake": "i@x.com"}
    ))
    assert (key.access_key_id, key.secret_access_key, key.region, key.intake) == ("AKIA1", "s", "eu-west-1", "i@x.com")
    for bad in ("", "[]", "{}", '{"access_key_id": "a"}'):
        with pytest.raises(ValueError, match="access_key_id and secret_access_key"):
            parse_device_secret(bad)


def test_cli_prints_device_settings_from_flags(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENSORMAIL_INTAKE_ADDRESS", "intake-7f3k@sensors.example.com")
    code = main(["smtp-credentials", "--access-key-id", EXAMPLE_KEY_ID, "--secret-access-key", "SECRET_KEY",
                 "--region", "us-east-1", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {
        "host": "email-smtp.us-east-1.amazonaws.com",
        "starttls_port": 587,
        "tls_port": 465,
        "username": EXAMPLE_KEY_ID,
        "password": "BEhllZN9mAOanokSKCZhFUnAZr05oZGH3Yga8SI+ujh+",
        "intake": "intake-7f3k@sensors.example.com",
    }


def test_cli_reads_the_key_from_the_environment(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", EXAMPLE_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SECRET_KEY")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert main(["smtp-credentials", "--intake", "i@sensors.example.com"]) == 0
    out = capsys.readouterr().out
    assert "email-smtp.eu-west-1.amazonaws.com" in out
    assert "BIhFZ/Ylx0jPVY7JeKUnHT4rO9jfB1VuZu4qglc/3gj9" in out and "i@sensors.example.com" in out


def test_cli_without_a_key_names_the_variables(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    assert main(["smtp-credentials", "--region", "eu-west-1"]) == 2
    assert "AWS_ACCESS_KEY_ID" in capsys.readouterr().err
