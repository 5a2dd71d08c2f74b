"""aiobotocore clients for every service the worker uses, opened together on one AsyncExitStack."""

from __future__ import annotations

import json
import platform
import urllib.request
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiobotocore
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from worker import __version__
from worker.aws.signing import LinkSigner, credentials_expiry_of, describe_expiry, parse_signer_secret
from worker.config import Settings

# Botocore's standard retry mode already backs off on throttling and 5xx for each call; what it
# cannot fix is left to SQS redelivery.
_RETRIES = {"max_attempts": 4, "mode": "standard"}


@dataclass(frozen=True, slots=True)
class Clients:
    s3: Any
    sqs: Any
    sns: Any
    ses: Any  # "sesv2" or "ses" (v1), per Settings.ses_api
    signer: LinkSigner | None = None  # signs attachment links; None: s3 with the configured expiry


# Who is calling, for CloudTrail and AWS support (aiobotocore appends "botocore/<version>").
USER_AGENT = f"sensormail/{__version__} aiobotocore/{aiobotocore.__version__} lang/python#{platform.python_version()}"


def _config(settings: Settings, **extra: Any) -> AioConfig:
    return AioConfig(
        retries=dict(_RETRIES),  # botocore rewrites this dict in place when it builds a client
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=max(10, settings.concurrency * 2),
        # A fixed User-Agent: botocore's default is rebuilt twice per request (~0.08 ms CPU a call).
        user_agent=USER_AGENT,
        **extra,
    )


@asynccontextmanager
async def open_clients(settings: Settings) -> AsyncIterator[Clients]:
    """Clients for S3, SQS, SNS and SES in `settings.region`; `AWS_ENDPOINT_URL` is honoured by botocore itself."""
    session = get_session()
    # Pre-signed URLs against an emulator need path-style addressing: virtual hosts like
    # bucket.127.0.0.1 do not resolve.
    s3_style = {"addressing_style": "path"} if settings.endpoint_url else {"addressing_style": "virtual"}
    async with AsyncExitStack() as stack:
        s3 = await stack.enter_async_context(
            session.create_client(
                "s3", region_name=settings.region, config=_config(settings, s3=s3_style, signature_version="s3v4")
            )
        )
        # The long poll holds the connection for wait_time_s: the read timeout must exceed it.
        sqs = await stack.enter_async_context(
            session.create_client(
                "sqs", region_name=settings.region, config=_config(settings).merge(AioConfig(read_timeout=settings.wait_time_s + 20))
            )
        )
        sns = await stack.enter_async_context(session.create_client("sns", region_name=settings.region, config=_config(settings)))
        ses_service = "sesv2" if settings.ses_api == "v2" else "ses"
        ses = await stack.enter_async_context(session.create_client(ses_service, region_name=settings.region, config=_config(settings)))
        signer = await _link_signer(settings, session, stack, s3, s3_style)
        yield Clients(s3=s3, sqs=sqs, sns=sns, ses=ses, signer=signer)


async def _link_signer(settings: Settings, session: Any, stack: AsyncExitStack, s3: Any, s3_style: dict[str, str]) -> LinkSigner:
    """The dedicated signer's key from Secrets Manager, else our own (possibly temporary) credentials."""
    if settings.signer_secret_arn:
        async with session.create_client("secretsmanager", region_name=settings.region, config=_config(settings)) as secrets:
            value = await secrets.get_secret_value(SecretId=settings.signer_secret_arn)
        key_id, secret = parse_signer_secret(str(value.get("SecretString", "")))
        signing_s3 = await stack.enter_async_context(
            session.create_client(
                "s3",
                region_name=settings.region,
                aws_access_key_id=key_id,
                aws_secret_access_key=secret,
                config=_config(settings, s3=s3_style, signature_version="s3v4"),
            )
        )
        signer = LinkSigner(signing_s3, settings.attachments_bucket, settings.link_expiry_s, lambda: None)
    else:
        credentials = await session.get_credentials()
        signer = LinkSigner(s3, settings.attachments_bucket, settings.link_expiry_s, credentials_expiry_of(credentials))
    describe_expiry(signer)
    return signer


def endpoint_is_localstack(url: str) -> bool:
    """True when LocalStack answers at `url` (its health endpoint); anything else is not."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/_localstack/health", timeout=3) as response:  # noqa: S310
            return isinstance(json.loads(response.read()).get("services"), dict)
    except Exception:  # not LocalStack, or not answering: the caller treats it as a plain endpoint
        return False
