"""`sensormail` as a real process: SMTP in, SES out; SIGTERM as ECS sends it."""

from __future__ import annotations

import email
import email.policy
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import SAMPLES
from tests.helpers import attachments_of, put_incoming, sent_to, wait_for
from worker.aws.clients import Clients
from worker.config import Settings
from worker.local.emulator import Emulator
from worker.local.provision import LocalResources

pytestmark = pytest.mark.system
SENSORMAIL = [sys.executable, "-m", "worker"]


def run_local(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SENSORMAIL, "local", "--smtp-port", "0", "--once", *extra],
        env=env, capture_output=True, text=True, timeout=150,
    )


def test_local_on_the_embedded_emulator_sends_all_three_samples() -> None:
    """The README's demo: no AWS_ENDPOINT_URL, so `sensormail local` starts moto itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    done = run_local(env, "--backend", "moto", "--send-sample", "all")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert 'SENT      "Vibration alarm, pump 2"' in out
    assert "to ops@example.com, maintenance@example.org" in out
    assert 'SENT      "Camera snapshot"' in out and "to security@example.com" in out
    assert 'FALLBACK  "Daily report"' in out and "reason: no recipient block" in out
    assert out.count("downloaded, SHA-256 matches") == 4  # csv, two images, report.bin
    assert "DIFFERS" not in out and "failed" not in out


def test_local_smtp_to_ses_with_a_link_that_downloads_the_same_bytes(emulator: Emulator) -> None:
    """An email over SMTP through the stand-in; the sent email's link fetched and compared."""
    raw = (SAMPLES / "alarm-with-csv.eml").read_bytes()
    done = run_local(dict(os.environ), "--send", str(SAMPLES / "alarm-with-csv.eml"))
    assert done.returncode == 0, done.stderr
    [msg] = sent_to(emulator, subject="Vibration alarm, pump 2")[-1:]
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    [url] = re.findall(r"https?://\S+", text)
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == attachments_of(raw)["pump2-trend.csv"]
        assert "pump2-trend.csv" in response.headers["Content-Disposition"]


pytest_anyio = pytest.mark.anyio


@pytest_anyio
async def test_run_processes_then_exits_0_on_sigterm_within_the_drain_time(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator
) -> None:
    env = {
        **os.environ,
        **resources.worker_env(),
        "SENSORMAIL_SES_API": settings.ses_api,
        "SENSORMAIL_DRAIN_SECONDS": "5",
    }
    worker = subprocess.Popen([*SENSORMAIL, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        raw = (SAMPLES / "html-two-images.eml").read_bytes()
        ref = await put_incoming(aws, resources, raw)
        await wait_for(lambda: sent_to(emulator, ref.message_id), timeout=30)
        await anyio.sleep(0.5)  # mid long-poll: SIGTERM must cancel it, not wait 20 s
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=15)
        stopped_in = time.monotonic() - started
    finally:
        if worker.poll() is None:
            worker.kill()
        out, err = worker.communicate()
    assert code == 0, err
    assert stopped_in < 5 + 2
    lines = [line for line in out.splitlines() if '"email processed"' in line]
    assert len(lines) == 1 and '"outcome": "sent"' in lines[0] and '"attachments": 2' in lines[0]


@pytest_anyio
async def test_run_with_aws_region_alone(
    settings: Settings, aws: Clients, resources: LocalResources, emulator: Emulator
) -> None:
    """AWS_REGION without AWS_DEFAULT_REGION (botocore reads only the latter): the worker runs."""
    region = aws.s3.meta.region_name  # where the test's resources were created
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_DEFAULT_REGION", "AWS_REGION")}
    env.update(resources.worker_env(), AWS_REGION=region, AWS_CONFIG_FILE="/nonexistent/aws-config",
               SENSORMAIL_SES_API=settings.ses_api, SENSORMAIL_DRAIN_SECONDS="2")
    worker = subprocess.Popen([*SENSORMAIL, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ref = await put_incoming(aws, resources, (SAMPLES / "alarm-with-csv.eml").read_bytes())
        await wait_for(lambda: sent_to(emulator, ref.message_id) or worker.poll() is not None, timeout=30)
        assert worker.poll() is None, "the worker exited"
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=15)
    finally:
        if worker.poll() is None:
            worker.kill()
        out, err = worker.communicate()
    assert code == 0, err
    assert len(sent_to(emulator, ref.message_id)) == 1


def test_inspect_json_contract() -> None:
    import json

    done = subprocess.run(
        [*SENSORMAIL, "inspect", str(SAMPLES / "alarm-with-csv.eml"), "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert set(report) == {"from", "subject", "recipients", "fallback_reason", "attachments", "text"}
    assert report["recipients"] == ["ops@example.com", "maintenance@example.org"]
    assert report["fallback_reason"] is None
    [a] = report["attachments"]
    assert a["filename"] == "pump2-trend.csv" and a["content_type"] == "text/csv"
    import hashlib

    expected = attachments_of((SAMPLES / "alarm-with-csv.eml").read_bytes())["pump2-trend.csv"]
    assert a["size"] == len(expected) and a["sha256"] == hashlib.sha256(expected).hexdigest()
    parsed = email.message_from_bytes((SAMPLES / "alarm-with-csv.eml").read_bytes(), policy=email.policy.default)
    assert report["text"] == parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_run_with_a_missing_setting_exits_non_zero_naming_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORMAIL_")}
    done = subprocess.run([*SENSORMAIL, "run"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "sensormail: configuration error: SENSORMAIL_QUEUE_URL: required but not set"


def test_inspect_of_a_missing_file() -> None:
    done = subprocess.run([*SENSORMAIL, "inspect", "/nonexistent.eml"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no such file" in done.stderr


def test_health_follows_the_worker_health_file(tmp_path: Path) -> None:
    import time as _time

    health = tmp_path / "alive"
    env = {**os.environ, "SENSORMAIL_HEALTH_FILE": str(health)}
    check = [*SENSORMAIL, "health", "--max-age", "5"]
    assert subprocess.run(check, env=env, capture_output=True, timeout=30).returncode == 1  # no file yet
    health.touch()
    assert subprocess.run(check, env=env, capture_output=True, timeout=30).returncode == 0
    old = _time.time() - 60
    os.utime(health, (old, old))
    stale = subprocess.run(check, env=env, capture_output=True, text=True, timeout=30)
    assert stale.returncode == 1 and "60 s ago" in stale.stderr
