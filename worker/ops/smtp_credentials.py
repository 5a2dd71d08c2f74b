"""SES SMTP credentials from an IAM access key: pure, no I/O.

SES SMTP takes the IAM access key id as the user name and, as the password, a SigV4-style key
derived from the secret access key for one region (AWS's documented algorithm, "Obtaining Amazon
SES SMTP credentials"): HMAC-SHA256 chained over a fixed date, the region, "ses", "aws4_request"
and "SendRawEmail", prefixed with the version byte 0x04 and base64-encoded. The same key gives a
different password in every region, and the password only works against SES SMTP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

# Fixed inputs of the derivation: AWS publishes them as constants, they never change.
_DATE = "11111111"
_SERVICE = "ses"
_TERMINAL = "aws4_request"
_MESSAGE = "SendRawEmail"
_VERSION = b"\x04"

# SES SMTP ports: STARTTLS on 587 (also 25 and 2587), TLS wrapper (implicit TLS) on 465 (also 2465).
STARTTLS_PORT = 587
TLS_PORT = 465


def _sign(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def smtp_password(secret_access_key: str, region: str) -> str:
    """The SES SMTP password for `secret_access_key` in `region` (e.g. "eu-west-1")."""
    if not secret_access_key:
        raise ValueError("empty secret access key")
    if not region:
        raise ValueError("empty region")
    signature = _sign(("AWS4" + secret_access_key).encode("utf-8"), _DATE)
    for part in (region, _SERVICE, _TERMINAL, _MESSAGE):
        signature = _sign(signature, part)
    return base64.b64encode(_VERSION + signature).decode("ascii")


def smtp_host(region: str) -> str:
    """The SES SMTP endpoint of a region."""
    return f"email-smtp.{region}.amazonaws.com"


@dataclass(frozen=True, slots=True)
class DeviceSettings:
    """What a device needs to send to the intake through SES SMTP."""

    host: str
    starttls_port: int
    tls_port: int
    username: str
    password: str
    intake: str | None

    def lines(self) -> list[str]:
        return [
            f"SMTP host:       {self.host}",
            f"port (STARTTLS): {self.starttls_port}",
            f"port (TLS):      {self.tls_port}",
            f"username:        {self.username}",
            f"password:        {self.password}",
            f"send to:         {self.intake or '(set --intake or SENSORMAIL_INTAKE_ADDRESS)'}",
            "authentication:  LOGIN or PLAIN, only after TLS is up",
        ]

    def as_dict(self) -> dict[str, object]:
        return {
            "host": self.host,
            "starttls_port": self.starttls_port,
            "tls_port": self.tls_port,
            "username": self.username,
            "password": self.password,
            "intake": self.intake,
        }


def device_settings(
    access_key_id: str,
    secret_access_key: str,
    region: str,
    intake: str | None = None,
    *,
    host: str | None = None,
    starttls_port: int = STARTTLS_PORT,
    tls_port: int = TLS_PORT,
) -> DeviceSettings:
    """Device settings for one IAM access key; `host` and ports default to SES's own."""
    if not access_key_id:
        raise ValueError("empty access key id")
    return DeviceSettings(
        host=host or smtp_host(region),
        starttls_port=starttls_port,
        tls_port=tls_port,
        username=access_key_id,
        password=smtp_password(secret_access_key, region),
        intake=intake,
    )


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """A device user's IAM access key as deploy/sending.yaml stores it in Secrets Manager."""

    access_key_id: str
    secret_access_key: str
    region: str | None = None
    intake: str | None = None


def parse_device_secret(text: str) -> DeviceKey:
    """{"access_key_id", "secret_access_key", optional "region" and "intake"} -> DeviceKey."""
    try:
        data = json.loads(text)
        key = DeviceKey(str(data["access_key_id"]), str(data["secret_access_key"]),
                        data.get("region") or None, data.get("intake") or None)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ValueError("the secret must be JSON with access_key_id and secret_access_key") from None
    return key
