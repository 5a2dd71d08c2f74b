from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worker.aws.signing import EXPIRY_MARGIN_S, LinkSigner, parse_signer_secret
from worker.errors import ConfigError

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def test_long_term_keys_keep_the_configured_expiry() -> None:
    signer = LinkSigner(None, "b", 7 * 24 * 3600, lambda: None)
    assert signer.effective_expiry_s(NOW) == 7 * 24 * 3600


def test_temporary_credentials_cap_the_expiry_to_what_they_have_left() -> None:
    """Task-role credentials expiring in 6 hours cannot sign a 7-day link."""
    signer = LinkSigner(None, "b", 7 * 24 * 3600, lambda: NOW + timedelta(hours=6))
    assert signer.effective_expiry_s(NOW) == 6 * 3600 - EXPIRY_MARGIN_S


def test_a_short_configured_expiry_is_kept() -> None:
    signer = LinkSigner(None, "b", 3600, lambda: NOW + timedelta(hours=6))
    assert signer.effective_expiry_s(NOW) == 3600


def test_signer_secret_is_validated() -> None:
    assert parse_signer_secret('{"access_key_id": "AKIA", "secret_access_key": "s"}') == ("AKIA", "s")
    with pytest.raises(ConfigError, match="SENSORMAIL_SIGNER_SECRET_ARN"):
        parse_signer_secret("not json")
