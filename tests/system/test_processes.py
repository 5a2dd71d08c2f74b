"""`sensormail` as a real process: SMTP in, SES out; SIGTERM as ECS sends it."""

from __future__ import annotations

import email
import email.policy
import os
import re
import shutil
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
    # No SENSORMAIL_SES_API: the worker finds LocalStack behind AWS_ENDPOINT_URL and uses SES v1 there.
    env = {
        **{k: v for k, v in os.environ.items() if k != "SENSORMAIL_SES_API"},
        **resources.worker_env(),
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


def test_inspect_of_an_unreadable_file(tmp_path: Path) -> None:
    """Mode 000. Root reads anything through CAP_DAC_OVERRIDE, so as root the process runs with
    that capability (and CAP_DAC_READ_SEARCH) dropped from its bounding set: a real EACCES."""
    secret = tmp_path / "secret.eml"
    secret.write_bytes((SAMPLES / "alarm-with-csv.eml").read_bytes())
    secret.chmod(0)
    command = [*SENSORMAIL, "inspect", str(secret)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and no setpriv to drop CAP_DAC_OVERRIDE")
        command = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"sensormail: inspect: {secret}: permission denied\n")


def big_report_email(tmp_path: Path) -> Path:
    path = tmp_path / "long.eml"
    path.write_bytes(b"From: a@example.com\r\nSubject: long\r\n\r\n" + b"line of text\r\n" * 200_000)
    return path


def test_inspect_into_a_pipe_closed_early_exits_quietly(tmp_path: Path) -> None:
    """`sensormail inspect X --json | head -c 100`: 2.6 MB of JSON, the reader leaves after 100 bytes."""
    reader = subprocess.Popen([*SENSORMAIL, "inspect", str(big_report_email(tmp_path)), "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert reader.stdout is not None and reader.stderr is not None
    head = reader.stdout.read(100)
    reader.stdout.close()
    with reader.stderr:
        err = reader.stderr.read().decode()
    code = reader.wait(timeout=60)
    assert head.startswith(b'{"from": "a@example.com"')
    assert (code, err) == (141, "")  # 128 + SIGPIPE, as a tool the signal killed; no traceback


def test_inspect_into_a_pipe_already_closed_exits_quietly() -> None:
    """Short output that fits stdout's buffer meets the closed pipe only when it is flushed."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([*SENSORMAIL, "inspect", str(SAMPLES / "alarm-with-csv.eml")],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")
