"""The worker's client configuration: retries and timeouts as chosen, the fixed User-Agent on the
wire, and the SDK's integrity checks and parameter validation left on. No AWS: requests stop in a
before-send hook."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import botocore
import pytest
from aiobotocore.session import get_session
from botocore.exceptions import ParamValidationError

from worker import __version__
from worker.aws.clients import USER_AGENT, _config
from worker.config import Settings

pytestmark = pytest.mark.anyio


class Stop(Exception):
    """Raised by the before-send hook: the request was built, signed and captured."""


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


async def sent_headers(service: str, operation: str, params: dict[str, Any], **extra: Any) -> dict[str, str]:
    captured: dict[str, str] = {}

    def capture(request: Any, **_: Any) -> None:
        captured.update({k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()})
        raise Stop

    session = get_session()
    config = _config(Settings(), **extra)
    async with session.create_client(service, endpoint_url="http://127.0.0.1:9", config=config) as client:
        client.meta.events.register(f"before-send.{service}.*", capture)
        with pytest.raises(Stop):
            await getattr(client, operation)(**params)
    return captured


def test_retries_timeouts_and_pool_as_chosen() -> None:
    config = _config(Settings())
    assert config.retries == {"max_attempts": 4, "mode": "standard"}
    assert (config.connect_timeout, config.read_timeout, config.max_pool_connections) == (10, 60, 10)
    assert _config(replace(Settings(), concurrency=16)).max_pool_connections == 32
    assert _config(Settings(), s3={"addressing_style": "path"}).s3 == {"addressing_style": "path"}


async def test_requests_carry_the_fixed_user_agent() -> None:
    """The worker's and the SDK's versions, and nothing rebuilt per request."""
    headers = await sent_headers("sqs", "send_message", {"QueueUrl": "http://127.0.0.1:9/q", "MessageBody": "x"})
    assert headers["User-Agent"] == f"{USER_AGENT} botocore/{botocore.__version__}"
    assert headers["User-Agent"].startswith(f"sensormail/{__version__} aiobotocore/")


async def test_s3_uploads_still_carry_a_checksum() -> None:
    """The default request checksum (CRC32) stays: S3 checks it before storing the object."""
    headers = await sent_headers(
        "s3", "put_object", {"Bucket": "b", "Key": "k", "Body": b"x" * 14_000},
        s3={"addressing_style": "path"}, signature_version="s3v4",
    )
    assert "x-amz-checksum-crc32" in {k.lower() for k in headers}


async def test_s3_downloads_still_ask_for_the_checksum() -> None:
    headers = await sent_headers("s3", "get_object", {"Bucket": "b", "Key": "k"}, s3={"addressing_style": "path"})
    assert {k.lower(): v for k, v in headers.items()}.get("x-amz-checksum-mode") == "ENABLED"


async def test_parameters_are_still_validated() -> None:
    with pytest.raises(ParamValidationError):
        await sent_headers("sqs", "send_message", {"QueueUrl": "http://127.0.0.1:9/q", "MessageBody": 1})


async def test_clients_take_the_region_from_aws_region_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore reads AWS_DEFAULT_REGION only; the worker's clients get AWS_REGION from Settings."""
    from worker.aws.clients import open_clients

    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")  # no profile region to fall back on
    env = {"SENSORMAIL_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123/in", "SENSORMAIL_ATTACHMENTS_BUCKET": "att",
           "SENSORMAIL_SENDER": "alerts@example.com", "SENSORMAIL_FALLBACK_TOPIC_ARN": "arn:aws:sns:eu-west-1:123:f",
           "SENSORMAIL_ALLOWED_RECIPIENT_DOMAINS": "example.com", "AWS_REGION": "eu-west-1"}
    async with open_clients(Settings.from_env(env)) as clients:
        regions = {clients.s3.meta.region_name, clients.sqs.meta.region_name, clients.sns.meta.region_name,
                   clients.ses.meta.region_name}
    assert regions == {"eu-west-1"}
