"""aiobotocore clients for every service the worker uses, opened together on one AsyncExitStack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

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


def _config(settings: Settings, **extra: Any) -> AioConfig:
    return AioConfig(
        retries=_RETRIES,
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=max(10, settings.concurrency * 2),
        **extra,
    )


@asynccontextmanager
async def open_clients(settings: Settings) -> AsyncIterator[Clients]:
    """Clients for S3, SQS, SNS and SES; `AWS_ENDPOINT_URL` is honoured by botocore itself."""
    session = get_session()
    # Pre-signed URLs against an emulator need path-style addressing: virtual hosts like
    # bucket.127.0.0.1 do not resolve.
    s3_style = {"addressing_style": "path"} if settings.endpoint_url else {"addressing_style": "virtual"}
    async with AsyncExitStack() as stack:
        s3 = await stack.enter_async_context(
            session.create_client(
                "s3", config=_config(settings, s3=s3_style, signature_version="s3v4")
            )
        )
        # The long poll holds the connection for wait_time_s: the read timeout must exceed it.
        sqs = await stack.enter_async_context(
            session.create_client(
                "sqs", config=_config(settings).merge(AioConfig(read_timeout=settings.wait_time_s + 20))
            )
        )
        sns = await stack.enter_async_context(session.create_client("sns", config=_config(settings)))
        ses_service = "sesv2" if settings.ses_api == "v2" else "ses"
        ses = await stack.enter_async_context(session.create_client(ses_service, config=_config(settings)))
        yield Clients(s3=s3, sqs=sqs, sns=sns, ses=ses)
