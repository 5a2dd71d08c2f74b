"""The AWS backend for every test that needs one, chosen once per session:

1. `AWS_ENDPOINT_URL` when set (an emulator you run yourself);
2. LocalStack through testcontainers when a Docker engine answers
   (`SENSORMAIL_TEST_BACKEND=moto` forces moto even then);
3. moto's server in-process on 127.0.0.1, over real HTTP.

Each test gets its own randomly named buckets, queues and topics.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from worker.aws.clients import Clients, open_clients
from worker.config import Settings
from worker.local.emulator import Emulator, start_emulator
from worker.local.provision import LocalResources, provision

SAMPLES = Path(__file__).resolve().parent.parent / "worker" / "local" / "samples"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    prefer = os.environ.get("SENSORMAIL_TEST_BACKEND", "auto")
    with start_emulator(os.environ, prefer) as emu:
        yield emu


@pytest.fixture
async def resources(emulator: Emulator) -> LocalResources:
    return await provision(prefix=f"t{secrets.token_hex(4)}", sender="alerts@sensormail.test")


@pytest.fixture
def settings(emulator: Emulator, resources: LocalResources) -> Settings:
    base = Settings.from_env({**os.environ, **resources.worker_env()})
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
