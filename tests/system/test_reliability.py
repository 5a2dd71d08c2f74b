"""`sensormail run` as real processes under SIGKILL, SIGTERM and an emulator outage.

The figures these tests produce (emails, kills, duplicates, lost) are printed with `-s`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from email.message import EmailMessage

import anyio
import pytest

from tests.helpers import put_incoming, queue_depth, queue_empty, sent_to, wait_for
from worker.aws.clients import Clients
from worker.config import Settings
from worker.local.emulator import Emulator
from worker.local.provision import LocalResources

pytestmark = [pytest.mark.system, pytest.mark.anyio]
SENSORMAIL = [sys.executable, "-m", "worker", "run"]


def worker_env(resources: LocalResources, settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        **resources.worker_env(),
        "SENSORMAIL_SES_API": settings.ses_api,
        "SENSORMAIL_WAIT_SECONDS": "1",
        "SENSORMAIL_VISIBILITY_SECONDS": "10",
        "SENSORMAIL_LEASE_SECONDS": "15",
        "SENSORMAIL_DRAIN_SECONDS": "5",
        "SENSORMAIL_CONCURRENCY": "8",
        **extra,
    }


def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(SENSORMAIL, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(worker: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> int:
    if worker.poll() is None:
        worker.send_signal(sig)
    return worker.wait(timeout=timeout)


def small_email(n: int, with_recipients: bool) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"device{n}@devices.example.com"
    msg["Subject"] = f"Reading {n}"
    block = f":Email_Rxers_Code:ops{n}@example.com:Email_Rxers_Code:" if with_recipients else "no list"
    msg.set_content(f"Reading {n} is 42.\n{block}\n")
    msg.add_attachment(os.urandom(2000), maintype="application", subtype="octet-stream", filename=f"r{n}.bin")
    return bytes(msg)


async def fallback_ids(aws: Clients, resources: LocalResources) -> list[str]:
    seen: list[str] = []
    while True:
        r = await aws.sqs.receive_message(QueueUrl=resources.fallback_inbox_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        if not r.get("Messages"):
            return seen
        for m in r["Messages"]:
            seen.append(json.loads(m["Body"])["message_id"])
            await aws.sqs.delete_message(QueueUrl=resources.fallback_inbox_url, ReceiptHandle=m["ReceiptHandle"])


@pytest.mark.timeout(300)
async def test_sigkill_at_random_points_loses_nothing_and_duplicates_at_most_one_per_kill(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator
) -> None:
    rng = random.Random(int(os.environ.get("SENSORMAIL_CHAOS_SEED", "7")))
    # LocalStack's SES reports the sandbox's quota, 1 send a second, and the worker keeps to it:
    # 100 emails would take 90 s there to show what 40 show.
    emails, kills = (40 if emulator.kind == "localstack" else 100), 4
    with_recipients = {n: n % 10 != 0 for n in range(emails)}
    refs = [await put_incoming(aws, resources, small_email(n, with_recipients[n])) for n in range(emails)]
    for ref in rng.sample(refs, 20):  # S3 may notify twice for one object
        again = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                              "s3": {"bucket": {"name": ref.bucket}, "object": {"key": ref.key, "eTag": ref.etag}}}]}
        await aws.sqs.send_message(QueueUrl=settings.queue_url, MessageBody=json.dumps(again))
    env = worker_env(resources, settings)

    for _ in range(kills):
        worker = start(env)
        await anyio.sleep(rng.uniform(0.5, 2.5))
        stop(worker, signal.SIGKILL)
    worker = start(env)
    try:
        await wait_for(lambda: queue_empty(aws, settings.queue_url), timeout=240, interval=1)
    finally:
        assert stop(worker) == 0

    sends = {ref.message_id: len(sent_to(emulator, ref.message_id)) for n, ref in enumerate(refs) if with_recipients[n]}
    notices = await fallback_ids(aws, resources)
    fallbacks = {ref.message_id: notices.count(ref.message_id) for n, ref in enumerate(refs) if not with_recipients[n]}
    counts = {**sends, **fallbacks}
    lost = [k for k, v in counts.items() if v == 0]
    duplicates = sum(v - 1 for v in counts.values() if v > 1)
    print(f"\nchaos: emails={emails} kills={kills} duplicated_events=20 lost={len(lost)} duplicate_sends={duplicates}")
    assert lost == []
    assert duplicates <= kills
    assert await queue_depth(aws, resources.dlq_url) == 0


async def test_sigterm_during_a_large_email_exits_0_within_the_drain_time_and_loses_nothing(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator
) -> None:
    msg = EmailMessage()
    msg["From"] = "camera@devices.example.com"
    msg["Subject"] = "Large"
    msg.set_content(":Email_Rxers_Code:ops@example.com:Email_Rxers_Code:")
    msg.add_attachment(os.urandom(30_000_000), maintype="video", subtype="mp4", filename="clip.mp4")
    ref = await put_incoming(aws, resources, bytes(msg))
    env = worker_env(resources, settings, SENSORMAIL_DRAIN_SECONDS="3", SENSORMAIL_PART_SIZE_BYTES=str(5 * 1024 * 1024))
    worker = start(env)
    try:
        # wait until the worker holds the message, then stop it mid-work
        await wait_for(lambda: _in_flight(aws, settings.queue_url), timeout=20, interval=0.05)
        await anyio.sleep(0.3)
        began = time.monotonic()
        code = stop(worker, signal.SIGTERM)
        took = time.monotonic() - began
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    print(f"\nsigterm: exit={code} stopped_in={took:.2f}s (drain 3 s)")
    assert code == 0 and took < 3 + 2
    # finished (sent) or handed back (visible again at once): never lost
    if not sent_to(emulator, ref.message_id):
        worker = start(worker_env(resources, settings))
        try:
            await wait_for(lambda: sent_to(emulator, ref.message_id), timeout=90, interval=0.5)
        finally:
            stop(worker)
    assert len(sent_to(emulator, ref.message_id)) == 1


async def _in_flight(aws: Clients, url: str) -> bool:
    a = await aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    return int(a["Attributes"]["ApproximateNumberOfMessagesNotVisible"]) > 0


async def test_an_emulator_outage_leaves_the_worker_alive_and_it_resumes(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator
) -> None:
    """A second moto server on its own port serves the worker; it is stopped for the outage and
    started again on the same port (moto keeps its state in this process)."""
    if emulator.kind != "moto":
        pytest.skip("needs the in-process moto emulator to stop and restart it")
    from moto.server import ThreadedMotoServer

    outage_s = float(os.environ.get("SENSORMAIL_TEST_OUTAGE_SECONDS", "20"))
    side = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    side.start()
    port = side.get_host_and_port()[1]
    url = f"http://127.0.0.1:{port}"
    env = worker_env(resources, settings, AWS_ENDPOINT_URL=url)
    env["SENSORMAIL_QUEUE_URL"] = settings.queue_url.replace(emulator.url, url)
    env["SENSORMAIL_DLQ_URL"] = (settings.dlq_url or "").replace(emulator.url, url)
    worker = start(env)
    try:
        before = [await put_incoming(aws, resources, small_email(n, True)) for n in range(5)]
        await wait_for(lambda: all(sent_to(emulator, r.message_id) for r in before), timeout=30)
        side.stop()
        during = [await put_incoming(aws, resources, small_email(n, True)) for n in range(5, 10)]
        await anyio.sleep(outage_s)
        assert worker.poll() is None, "the worker died during the outage"
        side = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        side.start()
        await wait_for(lambda: all(sent_to(emulator, r.message_id) for r in during), timeout=60)
        print(f"\noutage: {outage_s:.0f} s survived; 5 emails sent before, 5 queued during it and sent after")
    finally:
        code = stop(worker)
        side.stop()
    assert code == 0
    assert all(len(sent_to(emulator, r.message_id)) == 1 for r in before + during)
