"""Signing attachment links so they live as long as the email says they do.

A SigV4 pre-signed URL stops working when the credentials that signed it expire. ECS task-role
credentials last hours, so a "7 days" link signed with them dies within hours. Two cases:

- a dedicated signer (`SENSORMAIL_SIGNER_SECRET_ARN`): a Secrets Manager secret holding the
  long-term access key of an IAM user that may only read `attachments/*`; links signed with it
  live the configured expiry (S3 caps it at 7 days);
- otherwise the worker's own credentials sign, and each link's expiry is capped to what those
  credentials have left, so the expiry printed in the email is the real one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from worker.errors import ConfigError
from worker.mail.reader import StoredFile

logger = logging.getLogger(__name__)

# Leave a margin: a link must not be promised past the moment its credentials die.
EXPIRY_MARGIN_S = 300
MIN_LINK_S = 60

CredentialsExpiry = Callable[[], datetime | None]


def credentials_expiry_of(credentials: Any) -> CredentialsExpiry:
    """When (botocore) credentials expire; None for long-term keys."""

    def expiry() -> datetime | None:
        value = getattr(credentials, "_expiry_time", None)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        return None

    return expiry


class LinkSigner:
    def __init__(self, s3: Any, bucket: str, expiry_s: int, credentials_expiry: CredentialsExpiry) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.expiry_s = expiry_s
        self.credentials_expiry = credentials_expiry

    def effective_expiry_s(self, now: datetime | None = None) -> int:
        """The configured expiry, capped to the signing credentials' remaining lifetime."""
        dies = self.credentials_expiry()
        if dies is None:
            return self.expiry_s
        left = int((dies - (now or datetime.now(UTC))).total_seconds()) - EXPIRY_MARGIN_S
        return max(MIN_LINK_S, min(self.expiry_s, left))

    async def sign(self, key: str) -> StoredFile:
        now = datetime.now(UTC).replace(microsecond=0)
        expiry = self.effective_expiry_s(now)
        url = await self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expiry
        )
        return StoredFile(key=key, url=str(url), expires_at=now + timedelta(seconds=expiry))


def parse_signer_secret(secret: str) -> tuple[str, str]:
    """The signer's key from the secret's JSON: {"access_key_id": ..., "secret_access_key": ...}."""
    try:
        data = json.loads(secret)
        return str(data["access_key_id"]), str(data["secret_access_key"])
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            "SENSORMAIL_SIGNER_SECRET_ARN: the secret must be JSON with access_key_id and secret_access_key"
        ) from None


def describe_expiry(signer: LinkSigner) -> None:
    """One start-up line saying how long links will really live."""
    effective = signer.effective_expiry_s()
    if effective < signer.expiry_s:
        logger.warning(
            "links are signed with temporary credentials and live less than configured",
            extra={"configured_expiry_s": signer.expiry_s, "effective_expiry_s": effective,
                   "fix": "set SENSORMAIL_SIGNER_SECRET_ARN to a dedicated signer key"},
        )
