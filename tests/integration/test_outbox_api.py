"""The outbox page's JSON API (`sensormail local --web-port`), on each AWS backend: one email of
each outcome (sent, fallback, quarantined, DLQ, duplicate) appears with the right fields, its
parts can be read, and revoking kills its links."""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from tests.conftest import SAMPLES
from tests.local_process import LocalRun, local_env, malformed_email, quarantined_email
from worker.local.emulator import Emulator
from worker.local.provision import INCOMING_PREFIX, on_endpoint

SUBJECTS = {
    "sent": "Vibration alarm, pump 2",
    "html": "Camera snapshot",
    "fallback": "Daily report",
    "quarantined": "Totally a pump alarm",
    "dlq": "Nested too deep",
}


@dataclass
class Outbox:
    run: LocalRun
    by_subject: dict[str, dict[str, Any]]  # subject -> summary


def _settled(run: LocalRun, count: int, timeout: float = 90) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = run.get("/api/v1/messages")["messages"]
        read_back = all(m["emails_sent"] > 0 for m in listed if m["outcome"] == "sent") and all(
            m["notice_published"] for m in listed if m["outcome"] in ("fallback", "quarantined"))
        if len(listed) >= count and all(m["outcome"] != "received" for m in listed) and read_back:
            return list(listed)
        time.sleep(0.3)
    raise AssertionError(f"not settled in time: {run.get('/api/v1/messages')}\n{run.log()}")


def _duplicate_event(bucket: str, key: str, etag: str, size: int) -> str:
    """The S3 event SQS would deliver a second time (S3 can emit two for one object)."""
    return json.dumps({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": size, "eTag": etag}},
    }]})


@pytest.fixture(scope="module")
def outbox(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outbox]:
    folder = tmp_path_factory.mktemp("outbox")
    env = local_env(SENSORMAIL_ALLOWED_SENDERS="devices.example.com")
    sends = [SAMPLES / "alarm-with-csv.eml", SAMPLES / "html-two-images.eml", SAMPLES / "no-recipients.eml",
             quarantined_email(folder / "quarantined.eml"), malformed_email(folder / "nested.eml")]
    run = LocalRun(env, *(arg for path in sends for arg in ("--send", str(path))))
    try:
        listed = _settled(run, len(sends))
        first = next(m for m in listed if m["subject"] == SUBJECTS["sent"])
        detail = run.get(f"/api/v1/message/{first['id']}")
        sqs = boto3.client("sqs")
        queue = on_endpoint(sqs.get_queue_url(QueueName="sensormail-incoming")["QueueUrl"], env["AWS_ENDPOINT_URL"])
        bucket = detail["raw_email"].removeprefix("s3://").split("/", 1)[0]
        head = boto3.client("s3").head_object(Bucket=bucket, Key=INCOMING_PREFIX + first["id"])
        event = _duplicate_event(bucket, INCOMING_PREFIX + first["id"], head["ETag"].strip('"'), head["ContentLength"])
        sqs.send_message(QueueUrl=queue, MessageBody=event)
        listed = _settled(run, len(sends) + 1)
        yield Outbox(run, {m["subject"]: m for m in listed if m["outcome"] != "duplicate"}
                     | {"duplicate": next(m for m in listed if m["outcome"] == "duplicate")})
    finally:
        code = run.stop()
        assert code == 0, run.log()


def _attachment_bytes(raw: bytes) -> dict[str, bytes]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return {str(p.get_filename()): p.get_payload(decode=True) for p in msg.walk() if p.get_filename()}  # type: ignore[misc]


def test_sent_email_has_its_recipients_links_and_timings(outbox: Outbox) -> None:
    m = outbox.by_subject[SUBJECTS["sent"]]
    assert (m["outcome"], m["recipients"], m["attachments"]) == ("sent", 2, 1)
    assert "station7@devices.example.com" in m["sender"]
    d = outbox.run.get(f"/api/v1/message/{m['id']}")
    assert d["recipients"] == ["ops@example.com", "maintenance@example.org"]
    assert d["dropped"] == []
    [sent] = d["sent"]
    assert sent["to"] == ["ops@example.com", "maintenance@example.org"] and sent["subject"] == SUBJECTS["sent"]
    assert ":Email_Rxers_Code:" not in sent["text"] and "pump2-trend.csv" in sent["text"]
    original = _attachment_bytes((SAMPLES / "alarm-with-csv.eml").read_bytes())["pump2-trend.csv"]
    [a] = d["attachments"]
    assert (a["filename"], a["content_type"], a["size"]) == ("pump2-trend.csv", "text/csv", len(original))
    assert a["sha256"] == hashlib.sha256(original).hexdigest() and a["url"].startswith("http")
    assert [t["step"] for t in d["timings"]] == ["claim", "read_and_store", "recipients", "send"]
    assert all(t["seconds"] >= 0 for t in d["timings"]) and d["end_to_end_s"] > 0
    assert d["notice"] is None and d["dlq"] is None
    [link] = outbox.run.get(f"/api/v1/message/{m['id']}/links")
    assert (link["state"], link["size"]) == ("alive", len(original))


def test_received_email_raw_and_headers(outbox: Outbox) -> None:
    m = outbox.by_subject[SUBJECTS["sent"]]
    raw = outbox.run.get(f"/api/v1/message/{m['id']}/raw")
    assert raw.startswith(b"Return-Path: <station7@devices.example.com>\r\n")
    sample = (SAMPLES / "alarm-with-csv.eml").read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert raw.endswith(sample)
    names = [name for name, _ in outbox.run.get(f"/api/v1/message/{m['id']}/headers")]
    assert names[:3] == ["Return-Path", "Received", "X-SES-Spam-Verdict"] and "Subject" in names


def test_html_email_is_served_for_a_sandboxed_frame(outbox: Outbox) -> None:
    m = outbox.by_subject[SUBJECTS["html"]]
    assert (m["outcome"], m["recipients"], m["attachments"]) == ("sent", 1, 2)
    [sent] = outbox.run.get(f"/api/v1/message/{m['id']}")["sent"]
    assert sent["html"] is True
    import urllib.request
    with urllib.request.urlopen(outbox.run.base + sent["html_url"], timeout=30) as response:  # noqa: S310
        csp = response.headers["Content-Security-Policy"]
        html = response.read().decode()
    assert "sandbox" in csp and "default-src 'none'" in csp and "script-src" not in csp
    assert "gate3-0829.jpg" in html
    source = outbox.run.get(f"/api/v1/message/{m['id']}/sent/0/raw").decode()
    assert "X-Sensormail-Source: " + m["id"] in source


def test_fallback_email_shows_the_notice_as_published(outbox: Outbox) -> None:
    m = outbox.by_subject[SUBJECTS["fallback"]]
    assert (m["outcome"], m["reason"], m["recipients"], m["attachments"]) == ("fallback", "no recipient block", 0, 1)
    d = outbox.run.get(f"/api/v1/message/{m['id']}")
    assert d["sent"] == []
    notice = d["notice"]
    assert (notice["reason"], notice["message_id"], notice["subject"]) == ("no recipient block", m["id"], "Daily report")
    assert notice["attachments"][0]["url"] == d["attachments"][0]["url"]
    assert outbox.run.get(f"/api/v1/message/{m['id']}/notice") == notice


def test_quarantined_email_has_nothing_stored(outbox: Outbox) -> None:
    m = outbox.by_subject[SUBJECTS["quarantined"]]
    assert m["outcome"] == "quarantined" and m["reason"].startswith("sender not allowed")
    assert "intruder@elsewhere.example" in m["sender"]
    d = outbox.run.get(f"/api/v1/message/{m['id']}")
    assert [a["url"] for a in d["attachments"]] == [None] and d["sent"] == []
    assert d["notice"]["reason"] == m["reason"]
    assert [s["state"] for s in outbox.run.get(f"/api/v1/message/{m['id']}/links")] == ["not stored"]


def test_dlq_email_has_its_reason(outbox: Outbox) -> None:
    m = outbox.by_subject[SUBJECTS["dlq"]]
    assert m["outcome"] == "dlq" and "max_depth" in m["reason"]
    d = outbox.run.get(f"/api/v1/message/{m['id']}")
    assert d["dlq"]["reason"] == m["reason"] and m["id"] in d["dlq"]["body"]
    assert d["sent"] == [] and d["notice"] is None and d["received_at"] is not None


def test_duplicate_event_is_listed_against_its_email(outbox: Outbox) -> None:
    dup, original = outbox.by_subject["duplicate"], outbox.by_subject[SUBJECTS["sent"]]
    assert dup["duplicate_of"] == original["id"] and dup["reason"] == "already sent"
    assert dup["subject"] == SUBJECTS["sent"] and dup["id"] != original["id"]
    listed = outbox.run.get("/api/v1/messages")["messages"]
    assert listed[0]["id"] == dup["id"], "newest first"
    d = outbox.run.get(f"/api/v1/message/{dup['id']}")
    assert [t["step"] for t in d["timings"]] == ["claim"] and d["sent"] == []


def test_filter_by_outcome_and_search(outbox: Outbox) -> None:
    by_outcome = {o: [m["subject"] for m in outbox.run.get(f"/api/v1/messages?outcome={o}")["messages"]]
                  for o in ("sent", "fallback", "quarantined", "dlq", "duplicate")}
    assert by_outcome == {"sent": [SUBJECTS["html"], SUBJECTS["sent"]], "fallback": [SUBJECTS["fallback"]],
                          "quarantined": [SUBJECTS["quarantined"]], "dlq": [SUBJECTS["dlq"]],
                          "duplicate": [SUBJECTS["sent"]]}
    assert [m["subject"] for m in outbox.run.get("/api/v1/messages?query=CAMERA")["messages"]] == [SUBJECTS["html"]]
    assert {m["subject"] for m in outbox.run.get("/api/v1/messages?query=intruder")["messages"]} == {SUBJECTS["quarantined"]}


def test_revoke_kills_the_links_and_refuses_foreign_requests(outbox: Outbox) -> None:
    m = outbox.by_subject[SUBJECTS["fallback"]]
    path = f"/api/v1/message/{m['id']}/revoke"
    status, _ = outbox.run.post(path)  # what another site's page could send
    assert status == 403
    status, _ = outbox.run.post(path, **{"X-Sensormail-Outbox": "1", "Host": "rebound.example:8025"})
    assert status == 403
    assert [s["state"] for s in outbox.run.get(f"/api/v1/message/{m['id']}/links")] == ["alive"]
    status, body = outbox.run.post(path, **{"X-Sensormail-Outbox": "1"})
    assert status == 200 and [re.sub("/[0-9a-f]{32}/", "/<token>/", k) for k in body["revoked"]] == [
        f"revoked/{m['id']}/<token>/1-report.bin"]
    assert [s["state"] for s in body["links"]] == ["revoked"]
    assert [s["state"] for s in outbox.run.get(f"/api/v1/message/{m['id']}/links")] == ["revoked"]
    assert outbox.run.get(f"/api/v1/message/{m['id']}")["revoked_at"] is not None
