"""The AWS backends every test that needs one runs on, each started once per session:

- `moto`: moto's server in-process on 127.0.0.1, over real HTTP (no Docker);
- `localstack`: LocalStack through testcontainers, when a Docker engine answers. Without one those
  tests skip with the reason, except under `CI=true`, where no engine is an error.

Both by default, so each AWS-backed test runs twice (ids `[moto]` and `[localstack]`).
`SENSORMAIL_TEST_BACKEND=moto` (or `localstack`) runs one of them; `AWS_ENDPOINT_URL` set runs on
that endpoint only (`[external]`, or `[localstack]` when LocalStack answers there).
Each test gets its own randomly named buckets, queues and topics.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import boto3
import pytest
from hypothesis import settings as hypothesis_settings

from worker.aws.clients import Clients, open_clients
from worker.config import Settings
from worker.local.emulator import Emulator, docker_answers, start_emulator
from worker.local.provision import LocalResources, provision

# Hypothesis' default deadline (200 ms an example) measures wall time: a busy machine, not the
# code, would fail it. The per-test timeout still catches a hang.
hypothesis_settings.register_profile("sensormail", deadline=None)
hypothesis_settings.load_profile("sensormail")

SAMPLES = Path(__file__).resolve().parent.parent / "worker" / "local" / "samples"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def backends() -> list[str]:
    if os.environ.get("AWS_ENDPOINT_URL"):
        return ["external"]
    chosen = os.environ.get("SENSORMAIL_TEST_BACKEND", "both")
    if chosen not in ("both", "moto", "localstack"):
        raise pytest.UsageError(f"SENSORMAIL_TEST_BACKEND={chosen}: expected moto, localstack or both")
    return ["moto", "localstack"] if chosen == "both" else [chosen]


@pytest.fixture(scope="session", params=backends())
def emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    backend: str = request.param
    if backend == "localstack" and not docker_answers():
        reason = "LocalStack needs a Docker engine, and none answers (DOCKER_HOST or /var/run/docker.sock)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; under CI=true the LocalStack tests must run (see .ci/run)", pytrace=False)
        pytest.skip(reason)
    saved = os.environ.get("AWS_ENDPOINT_URL")
    try:
        with start_emulator(os.environ, "auto" if backend == "external" else backend) as emu:
            # boto3's default session loaded its service models when first used; the emulator may
            # have changed where they come from (AWS_DATA_PATH: CloudWatch on LocalStack).
            boto3.setup_default_session()
            yield emu
    finally:
        boto3.setup_default_session()
        if saved is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = saved


@pytest.fixture
async def resources(emulator: Emulator) -> LocalResources:
    return await provision(prefix=f"t{secrets.token_hex(4)}", sender="alerts@sensormail.test")


@pytest.fixture
def settings(emulator: Emulator, resources: LocalResources) -> Settings:
    # Tests send to many domains; the allowlist itself is tested where it is set.
    base = Settings.from_env({**os.environ, **resources.worker_env(), "SENSORMAIL_ALLOWED_RECIPIENT_DOMAINS": "*"})
    return replace(
        base,
        ses_api="v2" if emulator.has_sesv2 else "v1",
        wait_time_s=1,
        visibility_timeout_s=30,
        drain_timeout_s=5.0,
    )


@pytest.fixture
async def aws(settings: Settings) -> AsyncIterator[Clients]:
    async with open_clients(settings) as clients:
        yield clients


@pytest.fixture
def sample() -> "SampleReader":
    return SampleReader()


class SampleReader:
    def __call__(self, name: str) -> bytes:
        return (SAMPLES / name).read_bytes()
