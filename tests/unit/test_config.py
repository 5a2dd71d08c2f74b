from __future__ import annotations

import pytest

from worker.config import DEFAULT_MARKER, Settings
from worker.errors import ConfigError

GOOD = {
    "SENSORMAIL_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123/in",
    "SENSORMAIL_ATTACHMENTS_BUCKET": "att",
    "SENSORMAIL_SENDER": "alerts@example.com",
    "SENSORMAIL_FALLBACK_TOPIC_ARN": "arn:aws:sns:eu-west-1:123:fallback",
    "SENSORMAIL_ALLOWED_RECIPIENT_DOMAINS": "example.com, Example.ORG",
}


def test_defaults() -> None:
    s = Settings.from_env(GOOD)
    assert s.recipient_marker == DEFAULT_MARKER
    assert s.ses_api == "v2" and s.dlq_url is None and s.concurrency == 4
    assert s.heartbeat_interval_s == s.visibility_timeout_s / 3


@pytest.mark.parametrize("missing", sorted(GOOD))
def test_missing_required_variable_is_named(missing: str) -> None:
    env = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(ConfigError, match=f"^{missing}: required"):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("name", "value", "expects"),
    [
        ("SENSORMAIL_LINK_EXPIRY_SECONDS", "700000", "from 1 to 604800"),
        ("SENSORMAIL_LINK_EXPIRY_SECONDS", "soon", "whole number"),
        ("SENSORMAIL_CONCURRENCY", "0", "from 1 to 256"),
        ("SENSORMAIL_SES_API", "v3", "one of v1, v2"),
        ("SENSORMAIL_RECIPIENT_MARKER", "a b", "no spaces"),
        ("SENSORMAIL_PART_SIZE_BYTES", "1024", "from 5242880"),
        ("SENSORMAIL_SENDER", "nobody", "email address"),
        ("SENSORMAIL_FALLBACK_TOPIC_ARN", "fallback", "topic ARN"),
        ("SENSORMAIL_MAX_RECIPIENTS", "1001", "from 1 to 1000"),
        ("SENSORMAIL_MAX_RECIPIENTS", "0", "from 1 to 1000"),
        ("SENSORMAIL_SENDER_RATE", "-1", "from 0 to 100000"),
        ("SENSORMAIL_ALLOWED_RECIPIENT_DOMAINS", "example.com, not a domain", "domains"),
        ("SENSORMAIL_INTAKE_ADDRESS", "intake", "email address"),
    ],
)
def test_invalid_values_are_named_with_what_is_expected(name: str, value: str, expects: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**GOOD, name: value})
    assert str(caught.value).startswith(name + ":") and expects in str(caught.value)


def test_inspect_needs_no_aws_settings() -> None:
    assert Settings.from_env({}, require_aws=False).queue_url == ""


@pytest.mark.parametrize(
    ("env", "region"),
    [
        ({"AWS_REGION": "eu-west-1"}, "eu-west-1"),
        ({"AWS_DEFAULT_REGION": "eu-central-1"}, "eu-central-1"),
        ({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-central-1"}, "eu-west-1"),  # as the AWS CLI v2
        ({"AWS_REGION": " ", "AWS_DEFAULT_REGION": "eu-central-1"}, "eu-central-1"),
        ({}, None),  # botocore's own resolution: the profile in ~/.aws/config
    ],
)
def test_region_from_aws_region_before_aws_default_region(env: dict[str, str], region: str | None) -> None:
    assert Settings.from_env({**GOOD, **env}).region == region


# --- closed by default (issue 13) ----------------------------------------------------------------

def test_the_worker_refuses_to_start_without_a_recipient_allowlist() -> None:
    env = {k: v for k, v in GOOD.items() if k != "SENSORMAIL_ALLOWED_RECIPIENT_DOMAINS"}
    with pytest.raises(ConfigError, match=r"^SENSORMAIL_ALLOWED_RECIPIENT_DOMAINS: required: .*\* allows any domain"):
        Settings.from_env(env)
    with pytest.raises(ConfigError, match="^SENSORMAIL_ALLOWED_RECIPIENT_DOMAINS"):
        Settings.from_env({**env, "SENSORMAIL_ALLOWED_RECIPIENT_DOMAINS": "  "})


def test_recipient_allowlist_values() -> None:
    assert Settings.from_env(GOOD).allowed_recipient_domains == ("example.com", "example.org")
    assert not Settings.from_env(GOOD).any_recipient
    star = Settings.from_env({**GOOD, "SENSORMAIL_ALLOWED_RECIPIENT_DOMAINS": "*"})
    assert star.allowed_recipient_domains == ("*",) and star.any_recipient
    assert Settings().allowed_recipient_domains == ()  # the object's own default: nobody


def test_against_an_emulator_too_an_unset_allowlist_stops_start_up() -> None:
    """No exception for emulators: `sensormail local` provisions its own list."""
    env = {k: v for k, v in GOOD.items() if k != "SENSORMAIL_ALLOWED_RECIPIENT_DOMAINS"}
    with pytest.raises(ConfigError, match="SENSORMAIL_ALLOWED_RECIPIENT_DOMAINS: required"):
        Settings.from_env({**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:4566"})
    assert Settings.from_env({}, require_aws=False).allowed_recipient_domains == ()


def test_caps_and_intake_defaults() -> None:
    s = Settings.from_env(GOOD)
    assert (s.max_recipients, s.sender_rate, s.intake_domains) == (50, 60, ())
    s = Settings.from_env({**GOOD, "SENSORMAIL_MAX_RECIPIENTS": "1000", "SENSORMAIL_SENDER_RATE": "0",
                           "SENSORMAIL_INTAKE_ADDRESS": "intake-7f3k@Sensors.example.com",
                           "SENSORMAIL_INTAKE_DOMAIN": "mail.example.net, sensors.example.com"})
    assert (s.max_recipients, s.sender_rate) == (1000, 0)
    assert s.intake_domains == ("mail.example.net", "sensors.example.com")
