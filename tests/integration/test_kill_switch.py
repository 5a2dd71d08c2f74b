"""The kill switch against the emulator: ECS and Application Auto Scaling are moto's, over HTTP.

moto has no SESv2 PutConfigurationSetSendingOptions (it answers 404), so the SES half is checked
with a recording client, and the command line's report of a failed SES step is checked on moto.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import boto3
import pytest
from aiobotocore.session import get_session

from tests.helpers import EcsService, create_ecs_service
from worker.cli import main
from worker.local.emulator import Emulator
from worker.ops import killswitch

pytestmark = pytest.mark.anyio


class RecordingSes:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    async def put_configuration_set_sending_options(self, ConfigurationSetName: str, SendingEnabled: bool) -> dict[str, Any]:
        self.calls.append((ConfigurationSetName, SendingEnabled))
        return {}


@pytest.fixture
def service(emulator: Emulator) -> EcsService:
    if emulator.kind == "localstack":
        pytest.skip("LocalStack Community has no ECS or Application Auto Scaling")
    service = create_ecs_service()
    boto3.client("application-autoscaling").register_scalable_target(
        ServiceNamespace="ecs", ResourceId=service.resource_id,
        ScalableDimension="ecs:service:DesiredCount", MinCapacity=1, MaxCapacity=6,
    )
    return service


@pytest.fixture
async def clients(emulator: Emulator) -> AsyncIterator[tuple[Any, Any]]:
    session = get_session()
    async with session.create_client("ecs") as ecs, session.create_client("application-autoscaling") as scaling:
        yield ecs, scaling


def capacity(service: EcsService) -> tuple[int, int, int]:
    [target] = boto3.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="ecs", ResourceIds=[service.resource_id]
    )["ScalableTargets"]
    [described] = boto3.client("ecs").describe_services(cluster=service.cluster, services=[service.name])["services"]
    return target["MinCapacity"], target["MaxCapacity"], described["desiredCount"]


def tags(service: EcsService) -> dict[str, str]:
    ecs = boto3.client("ecs")
    [described] = ecs.describe_services(cluster=service.cluster, services=[service.name])["services"]
    return {t["key"]: t["value"] for t in ecs.list_tags_for_resource(resourceArn=described["serviceArn"])["tags"]}


async def test_pause_stops_sending_and_scales_to_zero_resume_restores(service: EcsService, clients: tuple[Any, Any]) -> None:
    ecs, scaling = clients
    ses = RecordingSes()
    target = killswitch.Target("sensormail", "v2", service.cluster, service.name)

    paused = await killswitch.pause(ses, ecs, scaling, target)

    assert paused.ok, paused.lines()
    assert ses.calls == [("sensormail", False)]
    assert capacity(service) == (0, 0, 0)
    assert json.loads(tags(service)[killswitch.PAUSED_TAG]) == {"desired": 2, "min": 1, "max": 6}

    again = await killswitch.pause(ses, ecs, scaling, target)  # pausing twice keeps the first capacity
    assert again.ok and json.loads(tags(service)[killswitch.PAUSED_TAG])["max"] == 6

    resumed = await killswitch.resume(ses, ecs, scaling, target)

    assert resumed.ok, resumed.lines()
    assert ses.calls[-1] == ("sensormail", True)
    assert capacity(service) == (1, 6, 2)
    assert killswitch.PAUSED_TAG not in tags(service)


async def test_resume_without_a_saved_capacity_asks_for_one(service: EcsService, clients: tuple[Any, Any]) -> None:
    ecs, scaling = clients
    target = killswitch.Target("sensormail", "v2", service.cluster, service.name)
    report = await killswitch.resume(RecordingSes(), ecs, scaling, target)
    assert not report.ok and "--min-tasks" in report.lines()[-1]
    report = await killswitch.resume(RecordingSes(), ecs, scaling, target, min_tasks=0, max_tasks=3)
    assert report.ok and capacity(service) == (0, 3, 1)


async def test_a_failed_step_does_not_stop_the_others(service: EcsService, clients: tuple[Any, Any]) -> None:
    """moto's SESv2 has no PutConfigurationSetSendingOptions: pause still scales to zero and
    reports the SES step as failed."""
    ecs, scaling = clients
    target = killswitch.Target("sensormail", "v2", service.cluster, service.name)
    async with get_session().create_client("sesv2") as ses:
        report = await killswitch.pause(ses, ecs, scaling, target)
    assert not report.ok
    assert report.failed[0].startswith("SES: sending on configuration set sensormail not paused")
    assert capacity(service) == (0, 0, 0)


async def test_the_commands(service: EcsService, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SENSORMAIL_CONFIGURATION_SET", "sensormail")
    monkeypatch.setenv("SENSORMAIL_ECS_CLUSTER", service.cluster)
    monkeypatch.setenv("SENSORMAIL_ECS_SERVICE", service.name)
    code = await anyio.to_thread.run_sync(lambda: main(["pause"]))
    out = capsys.readouterr().out
    assert code == 1  # the SES step, unsupported by moto
    assert f"ok      ECS: {service.resource_id} desired count 0" in out
    assert capacity(service) == (0, 0, 0)
    code = await anyio.to_thread.run_sync(lambda: main(["resume"]))
    assert f"ok      ECS: {service.resource_id} desired count 2" in capsys.readouterr().out
    assert capacity(service) == (1, 6, 2)


async def test_pause_needs_something_to_pause(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("SENSORMAIL_CONFIGURATION_SET", "SENSORMAIL_ECS_CLUSTER", "SENSORMAIL_ECS_SERVICE"):
        monkeypatch.delenv(name, raising=False)
    assert await anyio.to_thread.run_sync(lambda: main(["pause"])) == 2
    assert "SENSORMAIL_CONFIGURATION_SET" in capsys.readouterr().err
