"""The pipeline against the emulator over HTTP, through the worker's own aiobotocore clients."""

from __future__ import annotations

import re
from dataclasses import replace
from email.message import EmailMessage
from typing import Any

import aiohttp
import anyio
import pytest
from botocore.exceptions import ClientError

from tests.helpers import attachments_of, fallback_notices, html_of, put_incoming, sent_to, text_of, wait_for
from worker.aws.clients import Clients
from worker.config import Settings
from worker.local.emulator import Emulator
from worker.local.provision import LocalResources
from worker.pipeline import Pipeline

pytestmark = pytest.mark.anyio
URL = re.compile(r"https?://\S+")


async def download(url: str) -> bytes:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.read()


async def test_sample_with_csv_is_sent_with_a_working_link(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, sample: Any
) -> None:
    raw = sample("alarm-with-csv.eml")
    ref = await put_incoming(aws, resources, raw)

    outcome = await Pipeline(settings, aws).process(ref)

    assert outcome.kind == "sent"
    assert outcome.recipients == ("ops@example.com", "maintenance@example.org")
    [msg] = sent_to(emulator, ref.message_id)
    assert msg["From"] == settings.sender
    assert {a.addr_spec for a in msg["To"].addresses} == {"ops@example.com", "maintenance@example.org"}
    assert msg.get_content_type() == "multipart/alternative"
    text = text_of(msg)
    assert "Vibration on pump 2 exceeded" in text
    assert ":Email_Rxers_Code:" not in text and ":Email_Rxers_Code:" not in html_of(msg)
    [attachment] = outcome.attachments
    assert attachment.filename == "pump2-trend.csv"
    assert re.fullmatch(rf"attachments/{ref.message_id}/[0-9a-f]{{32}}/1-pump2-trend\.csv", attachment.stored.key or "")
    assert attachment.stored.url is not None and attachment.stored.url in text
    expected = attachments_of(raw)["pump2-trend.csv"]
    assert await download(attachment.stored.url) == expected
    head = await aws.s3.head_object(Bucket=settings.attachments_bucket, Key=attachment.stored.key)
    assert head["ContentType"] == "text/csv"
    assert head["ContentDisposition"].endswith('; filename="pump2-trend.csv"')


async def test_html_email_keeps_html_and_links_both_images(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, sample: Any
) -> None:
    raw = sample("html-two-images.eml")
    ref = await put_incoming(aws, resources, raw)
    outcome = await Pipeline(settings, aws).process(ref)

    assert outcome.kind == "sent" and outcome.recipients == ("security@example.com",)
    [msg] = sent_to(emulator, ref.message_id)
    html = html_of(msg)
    assert "<b>gate 3</b>" in html and "Email_Rxers_Code" not in html
    originals = attachments_of(raw)
    assert [a.filename for a in outcome.attachments] == ["gate3-0829.jpg", "gate3-0830.jpg"]
    for a in outcome.attachments:
        assert a.stored.url is not None and a.stored.url.replace("&", "&amp;") in html
        assert await download(a.stored.url) == originals[a.filename]


async def test_no_recipients_goes_to_the_fallback_topic_with_links(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, sample: Any
) -> None:
    raw = sample("no-recipients.eml")
    ref = await put_incoming(aws, resources, raw)

    outcome = await Pipeline(settings, aws).process(ref)

    assert outcome.kind == "fallback" and outcome.reason == "no recipient block"
    assert sent_to(emulator, ref.message_id) == []
    [notice] = await wait_for(lambda: fallback_notices(aws, resources))
    assert notice["reason"] == "no recipient block"
    assert notice["subject"] == "Daily report"
    assert notice["from"] == "Pump Station 7 <station7@devices.example.com>"
    assert notice["raw_email"] == f"s3://{resources.incoming_bucket}/{ref.key}"
    assert notice["excerpt"].startswith("Daily report, all values nominal.")
    [entry] = notice["attachments"]
    assert entry["filename"] == "report.bin" and entry["size"] == 20000
    assert await download(entry["url"]) == attachments_of(raw)["report.bin"]


async def test_more_than_50_recipients_are_sent_in_batches(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator
) -> None:
    people = [f"user{i}@example.com" for i in range(120)]
    msg = EmailMessage()
    msg["From"] = "device@example.com"
    msg["Subject"] = "Many recipients"
    msg.set_content("Alert.\n:Email_Rxers_Code:" + ",".join(people) + ":Email_Rxers_Code:\n")
    ref = await put_incoming(aws, resources, bytes(msg))
    # More than the default SENSORMAIL_MAX_RECIPIENTS (50): raised, as an operator would.
    outcome = await Pipeline(replace(settings, max_recipients=1000), aws).process(ref)

    assert outcome.kind == "sent" and len(outcome.ses_message_ids) == 3
    sends = sent_to(emulator, ref.message_id)
    assert [len(m["To"].addresses) for m in sends] == [50, 50, 20]
    assert sorted(a.addr_spec for m in sends for a in m["To"].addresses) == sorted(people)


def big_email(blob: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = "device@example.com"
    msg["Subject"] = "Big file"
    msg.set_content("Big.\n:Email_Rxers_Code:ops@example.com:Email_Rxers_Code:\n")
    msg.add_attachment(blob, maintype="application", subtype="octet-stream", filename="big.bin")
    return bytes(msg)


BLOB = bytes(range(256)) * (12 * 4096 + 17)  # ~12.6 MB: three 5 MiB parts


class CountingS3:
    """The worker's own S3 client, with each UploadPart counted (and failed on request)."""

    def __init__(self, s3: Any, fail_part: int | None = None) -> None:
        self._s3 = s3
        self.fail_part = fail_part
        self.uploading = 0
        self.most_at_once = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    async def upload_part(self, **kwargs: Any) -> Any:
        if kwargs["PartNumber"] == self.fail_part:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "UploadPart")
        self.uploading += 1
        self.most_at_once = max(self.most_at_once, self.uploading)
        try:
            await anyio.sleep(0.05)  # long enough for the reading to go on meanwhile, if it may
            return await self._s3.upload_part(**kwargs)
        finally:
            self.uploading -= 1


@pytest.mark.parametrize("in_flight", [0, 1, 2, 4])
async def test_large_attachment_streams_through_a_multipart_upload(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator, in_flight: int
) -> None:
    s3 = CountingS3(aws.s3)
    small_parts = replace(settings, part_size_bytes=5 * 1024 * 1024, read_chunk_bytes=256 * 1024, parts_in_flight=in_flight)

    outcome = await Pipeline(small_parts, replace(aws, s3=s3)).process(await put_incoming(aws, resources, big_email(BLOB)))

    [a] = outcome.attachments
    assert a.size == len(BLOB)
    assert a.stored.url is not None and await download(a.stored.url) == BLOB
    head = await aws.s3.head_object(Bucket=settings.attachments_bucket, Key=a.stored.key)
    assert "-3" in head["ETag"]  # a multipart ETag ends with the part count
    # Parts overlap the reading (and each other) up to the setting; three parts in all.
    assert s3.most_at_once == max(1, min(in_flight, 3))


@pytest.mark.parametrize("fail_part", [1, 2, 3])
async def test_a_failed_part_fails_the_email_with_its_own_error_and_leaves_no_upload(
    settings: Settings, aws: Clients, resources: LocalResources, fail_part: int
) -> None:
    s3 = CountingS3(aws.s3, fail_part=fail_part)
    small_parts = replace(settings, part_size_bytes=5 * 1024 * 1024, read_chunk_bytes=256 * 1024, parts_in_flight=2)
    ref = await put_incoming(aws, resources, big_email(BLOB))

    with pytest.raises(ClientError) as raised:  # not an ExceptionGroup: the consumer classifies it as is
        await Pipeline(small_parts, replace(aws, s3=s3)).process(ref)

    assert raised.value.response["Error"]["Code"] == "SlowDown"
    assert s3.uploading == 0
    listed = await aws.s3.list_multipart_uploads(Bucket=settings.attachments_bucket)
    assert listed.get("Uploads", []) == []
