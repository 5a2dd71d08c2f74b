"""The pipeline against the emulator over HTTP, through the worker's own aiobotocore clients."""

from __future__ import annotations

import re
from email.message import EmailMessage
from typing import Any

import aiohttp
import pytest

from tests.helpers import attachments_of, fallback_notices, html_of, put_incoming, sent_to, text_of, wait_for
from worker.aws import Clients
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
    assert attachment.stored.key == f"attachments/{ref.message_id}/1-pump2-trend.csv"
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
    outcome = await Pipeline(settings, aws).process(ref)

    assert outcome.kind == "sent" and len(outcome.ses_message_ids) == 3
    sends = sent_to(emulator, ref.message_id)
    assert [len(m["To"].addresses) for m in sends] == [50, 50, 20]
    assert sorted(a.addr_spec for m in sends for a in m["To"].addresses) == sorted(people)


async def test_large_attachment_streams_through_a_multipart_upload(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator
) -> None:
    from dataclasses import replace

    blob = bytes(range(256)) * (12 * 4096 + 17)  # ~12.6 MB: three 5 MiB parts
    msg = EmailMessage()
    msg["From"] = "device@example.com"
    msg["Subject"] = "Big file"
    msg.set_content("Big.\n:Email_Rxers_Code:ops@example.com:Email_Rxers_Code:\n")
    msg.add_attachment(blob, maintype="application", subtype="octet-stream", filename="big.bin")
    small_parts = replace(settings, part_size_bytes=5 * 1024 * 1024, read_chunk_bytes=256 * 1024)

    outcome = await Pipeline(small_parts, aws).process(await put_incoming(aws, resources, bytes(msg)))

    [a] = outcome.attachments
    assert a.size == len(blob)
    assert a.stored.url is not None and await download(a.stored.url) == blob
    head = await aws.s3.head_object(Bucket=settings.attachments_bucket, Key=a.stored.key)
    assert "-3" in head["ETag"]  # a multipart ETag ends with the part count
