"""Choosing and reaching the emulator: LocalStack found behind any endpoint, queue URLs a container
can use, and `sensormail local` falling back (or saying what is missing) instead of a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from worker.aws.clients import endpoint_is_localstack
from worker.cli import _ses_api_for_endpoint
from worker.local import emulator as emulator_module
from worker.local.emulator import Emulator, docker_answers, start_emulator
from worker.local.provision import LocalResources, on_endpoint

SENSORMAIL = [sys.executable, "-m", "worker"]


def test_localstack_is_recognised_by_its_health_endpoint(emulator: Emulator) -> None:
    assert endpoint_is_localstack(emulator.url) is (emulator.kind == "localstack")


def test_behind_a_localstack_endpoint_the_worker_sends_with_ses_v1(emulator: Emulator) -> None:
    env = {"AWS_ENDPOINT_URL": emulator.url}
    expected = "v1" if emulator.kind == "localstack" else None
    assert _ses_api_for_endpoint(env).get("SENSORMAIL_SES_API") == expected
    # an explicit choice is kept
    assert _ses_api_for_endpoint({**env, "SENSORMAIL_SES_API": "v2"})["SENSORMAIL_SES_API"] == "v2"


def test_nothing_answering_is_not_localstack() -> None:
    assert not endpoint_is_localstack("http://127.0.0.1:9")


@pytest.mark.anyio
async def test_queue_urls_are_built_on_the_endpoint(emulator: Emulator, resources: LocalResources) -> None:
    for url in (resources.queue_url, resources.dlq_url, resources.fallback_inbox_url):
        assert url.startswith(emulator.url + "/"), url
        assert "localstack.cloud" not in url


@pytest.mark.parametrize(
    ("queue_url", "expected"),
    [
        ("http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/q", "http://172.17.0.1:32768/000000000000/q"),
        ("http://localhost:4566/queue/us-east-1/000000000000/q", "http://172.17.0.1:32768/000000000000/q"),
        ("http://127.0.0.1:5000/123456789012/q/", "http://172.17.0.1:32768/123456789012/q"),
    ],
)
def test_on_endpoint(queue_url: str, expected: str) -> None:
    assert on_endpoint(queue_url, "http://172.17.0.1:32768/") == expected


def test_auto_falls_back_to_moto_when_the_docker_extra_is_missing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "testcontainers.community.localstack", None)
    monkeypatch.setattr(emulator_module, "docker_answers", lambda env=None: True)  # as if an engine answered
    env: dict[str, str] = {}
    with start_emulator(env, "auto") as emu:
        assert emu.kind == "moto" and env["AWS_ENDPOINT_URL"] == emu.url
    assert "the docker extra is not installed: pip install 'sensormail[docker]'" in caplog.text
    assert "using the embedded moto emulator instead" in caplog.text


def _engine_or_skip() -> None:
    if not docker_answers():
        if os.environ.get("CI") == "true":
            pytest.fail("no Docker engine answers; under CI=true this test must run", pytrace=False)
        pytest.skip("needs a Docker engine")


def test_auto_falls_back_to_moto_when_the_localstack_image_cannot_be_had(caplog: pytest.LogCaptureFixture) -> None:
    _engine_or_skip()
    env = {"SENSORMAIL_LOCALSTACK_IMAGE": "localstack/localstack:0.0.0-no-such-tag"}
    with start_emulator(env, "auto") as emu:
        assert emu.kind == "moto"
    assert "LocalStack cannot start" in caplog.text


def _local(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    return subprocess.run([*SENSORMAIL, "local", "--smtp-port", "0", "--once", *args], env={**base, **env},
                          capture_output=True, text=True, timeout=120)


def test_local_says_which_extra_is_missing(tmp_path: Path) -> None:
    (tmp_path / "aiosmtpd.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'aiosmtpd'\", name='aiosmtpd')\n"
    )
    done = _local({"PYTHONPATH": str(tmp_path)}, "--backend", "moto")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "sensormail: local needs the local extra (aiosmtpd is missing): pip install 'sensormail[local]'"
    ]


def test_local_with_localstack_asked_for_and_no_image_says_so_in_one_line() -> None:
    _engine_or_skip()
    done = _local({"SENSORMAIL_LOCALSTACK_IMAGE": "localstack/localstack:0.0.0-no-such-tag"}, "--backend", "localstack")
    assert done.returncode == 2
    [line] = [x for x in done.stderr.splitlines() if x.startswith("sensormail:")]
    assert line.startswith("sensormail: local: LocalStack cannot start: ")
    assert "Traceback" not in done.stderr
