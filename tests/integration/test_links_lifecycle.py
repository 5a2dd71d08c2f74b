"""Links that live as promised and die when revoked, against the emulator."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import anyio
import pytest

from tests.helpers import attachments_of, put_incoming
from worker.aws.clients import Clients, open_clients
from worker.aws.signing import EXPIRY_MARGIN_S, LinkSigner
from worker.config import Settings
from worker.local.emulator import Emulator
from worker.local.provision import LocalResources
from worker.aws.revocation import REVOKED_PREFIX
from worker.ops.revoke import revoke
from worker.pipeline import Pipeline

pytestmark = pytest.mark.anyio


async def fetch(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.read()


async def test_a_revoked_link_that_downloaded_before_fails_after_and_the_file_is_kept(
    settings: Settings, aws: Clients, resources: LocalResources, sample: Any
) -> None:
    raw = sample("html-two-images.eml")
    ref = await put_incoming(aws, resources, raw)
    outcome = await Pipeline(settings, aws).process(ref)
    urls = [a.stored.url for a in outcome.attachments]
    for url in urls:
        assert url is not None and (await fetch(url))[0] == 200

    moved = await revoke(aws.s3, settings.attachments_bucket, settings.attachments_prefix, message_id=ref.message_id)

    token = (outcome.attachments[0].stored.key or "").split("/")[2]
    assert sorted(moved) == [f"{REVOKED_PREFIX}{ref.message_id}/{token}/1-gate3-0829.jpg",
                             f"{REVOKED_PREFIX}{ref.message_id}/{token}/2-gate3-0830.jpg"]
    for url in urls:
        # AWS: 403 AccessDenied (the signer may not list the bucket); the emulators: 404 NoSuchKey.
        assert url is not None and (await fetch(url))[0] in (403, 404)
    kept = await aws.s3.get_object(Bucket=settings.attachments_bucket, Key=moved[0])
    assert await kept["Body"].read() == attachments_of(raw)["gate3-0829.jpg"]
    with pytest.raises(ValueError, match="no attachments"):
        await revoke(aws.s3, settings.attachments_bucket, settings.attachments_prefix, message_id=ref.message_id)


async def test_revoke_one_key_and_refuse_keys_outside_the_prefix(
    settings: Settings, aws: Clients, resources: LocalResources, sample: Any
) -> None:
    outcome = await Pipeline(settings, aws).process(await put_incoming(aws, resources, sample("html-two-images.eml")))
    first, second = outcome.attachments
    assert first.stored.key and second.stored.url and first.stored.url
    await revoke(aws.s3, settings.attachments_bucket, settings.attachments_prefix, key=first.stored.key)
    assert (await fetch(first.stored.url))[0] in (403, 404) and (await fetch(second.stored.url))[0] == 200
    with pytest.raises(ValueError, match="not an attachment key"):
        await revoke(aws.s3, settings.attachments_bucket, settings.attachments_prefix, key="state/x.json")


async def test_links_signed_with_expiring_credentials_promise_only_what_they_can_keep(
    settings: Settings, aws: Clients, resources: LocalResources, sample: Any
) -> None:
    dies = datetime.now(UTC) + timedelta(hours=2)
    week = replace(settings, link_expiry_s=7 * 24 * 3600)
    signer = LinkSigner(aws.s3, settings.attachments_bucket, week.link_expiry_s, lambda: dies)
    outcome = await Pipeline(week, replace(aws, signer=signer)).process(
        await put_incoming(aws, resources, sample("alarm-with-csv.eml"))
    )
    [a] = outcome.attachments
    assert a.stored.url and a.stored.expires_at
    expires_in = int(parse_qs(urlsplit(a.stored.url).query)["X-Amz-Expires"][0])
    assert 2 * 3600 - EXPIRY_MARGIN_S - 5 <= expires_in <= 2 * 3600 - EXPIRY_MARGIN_S
    assert a.stored.expires_at <= dies  # the email never promises past the credentials' death


async def test_a_dedicated_signer_from_secrets_manager_signs_the_links(
    settings: Settings, resources: LocalResources, sample: Any
) -> None:
    from aiobotocore.session import get_session

    name = f"signer-{resources.queue_arn.rsplit(':', 1)[-1]}"
    async with get_session().create_client("iam") as iam, get_session().create_client("secretsmanager") as sm:
        # As deploy/service.yaml does: a user of its own, its access key in a secret.
        await iam.create_user(UserName=name)
        key = (await iam.create_access_key(UserName=name))["AccessKey"]
        secret = await sm.create_secret(
            Name=name,
            SecretString=json.dumps({"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}),
        )
    dedicated = replace(settings, signer_secret_arn=secret["ARN"], link_expiry_s=7 * 24 * 3600)
    async with open_clients(dedicated) as aws:
        outcome = await Pipeline(dedicated, aws).process(await put_incoming(aws, resources, sample("alarm-with-csv.eml")))
    [a] = outcome.attachments
    query = parse_qs(urlsplit(a.stored.url or "").query)
    assert query["X-Amz-Credential"][0].startswith(key["AccessKeyId"] + "/")
    assert query["X-Amz-Expires"] == [str(7 * 24 * 3600)]
    assert (await fetch(a.stored.url or ""))[0] == 200



async def test_tampered_and_expired_links_are_refused(
    settings: Settings, resources: LocalResources, sample: Any, emulator: Emulator
) -> None:
    """LocalStack runs with S3_SKIP_SIGNATURE_VALIDATION=0, so S3 really checks the signature."""
    if emulator.kind != "localstack":
        pytest.skip("moto does not check pre-signed URL signatures")
    short = replace(settings, link_expiry_s=2)
    async with open_clients(short) as aws:
        outcome = await Pipeline(short, aws).process(await put_incoming(aws, resources, sample("alarm-with-csv.eml")))
    [url] = [a.stored.url for a in outcome.attachments]
    assert url is not None and (await fetch(url))[0] == 200
    parts = urlsplit(url)
    signature = parse_qs(parts.query)["X-Amz-Signature"][0]
    forged = url.replace(signature, ("0" if signature[0] != "0" else "1") + signature[1:])
    other_key = url.replace(parts.path, parts.path.replace("pump2-trend", "pump3-trend"))
    assert (await fetch(forged))[0] == 403
    assert (await fetch(other_key))[0] == 403
    await anyio.sleep(3)
    assert (await fetch(url))[0] == 403
