"""The kill switch: `sensormail pause` stops all outgoing email at once, `sensormail resume` starts it.

Pause, in this order:
1. SES: sending disabled on the configuration set (SESv2 `PutConfigurationSetSendingOptions`,
   v1 `UpdateConfigurationSetSendingEnabled`). From this moment SES refuses every send through
   it, including those in flight; the worker treats that refusal as transient, so those emails
   go back to the queue.
2. ECS: the service's scalable target pinned to 0..0 (autoscaling cannot start a task) and the
   service's desired count set to 0. The capacity it had is kept in a tag on the service
   (`sensormail:paused`) so that resume can restore it.
Incoming email keeps arriving: SES inbound stores it and the queue holds it (up to the queue's
retention period) until resume.

Resume runs the steps backwards: SES sending enabled first (so the first task can send), then
the scalable target's old bounds and the desired count restored.

Each step runs even if an earlier one failed; the result lists what was done and what failed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from worker.errors import describe

logger = logging.getLogger(__name__)

PAUSED_TAG = "sensormail:paused"
_DIMENSION = "ecs:service:DesiredCount"


@dataclass(slots=True)
class Report:
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def lines(self) -> list[str]:
        return [f"ok      {line}" for line in self.done] + [f"FAILED  {line}" for line in self.failed]


@dataclass(frozen=True, slots=True)
class Target:
    """What the kill switch acts on; a part left as None is skipped (and reported)."""

    configuration_set: str | None
    ses_api: str = "v2"
    cluster: str | None = None
    service: str | None = None


async def set_sending(ses: Any, target: Target, enabled: bool, report: Report) -> None:
    word = "enabled" if enabled else "paused"
    if not target.configuration_set:
        report.failed.append("SES: no configuration set (SENSORMAIL_CONFIGURATION_SET): sending not " + word)
        return
    try:
        if target.ses_api == "v2":
            await ses.put_configuration_set_sending_options(
                ConfigurationSetName=target.configuration_set, SendingEnabled=enabled
            )
        else:
            await ses.update_configuration_set_sending_enabled(
                ConfigurationSetName=target.configuration_set, Enabled=enabled
            )
    except Exception as error:
        report.failed.append(f"SES: sending on configuration set {target.configuration_set} not {word}: {describe(error)}")
        return
    report.done.append(f"SES: sending on configuration set {target.configuration_set} {word}")


async def scale_to_zero(ecs: Any, autoscaling: Any, target: Target, report: Report) -> None:
    if not (target.cluster and target.service):
        report.done.append("ECS: no cluster and service (SENSORMAIL_ECS_CLUSTER, SENSORMAIL_ECS_SERVICE): not scaled")
        return
    resource_id = f"service/{target.cluster}/{target.service}"
    try:
        service = await _describe_service(ecs, target)
        scalable = await _scalable_target(autoscaling, resource_id)
        tags = await _tags(ecs, service["serviceArn"])
        if PAUSED_TAG not in tags:  # pausing twice must not forget the capacity before the first
            saved = {
                "desired": int(service.get("desiredCount", 0)),
                "min": scalable["MinCapacity"] if scalable else None,
                "max": scalable["MaxCapacity"] if scalable else None,
            }
            await ecs.tag_resource(resourceArn=service["serviceArn"], tags=[{"key": PAUSED_TAG, "value": json.dumps(saved)}])
        if scalable is not None:
            await autoscaling.register_scalable_target(
                ServiceNamespace="ecs", ResourceId=resource_id, ScalableDimension=_DIMENSION, MinCapacity=0, MaxCapacity=0
            )
            report.done.append(f"ECS: autoscaling of {resource_id} pinned to 0..0")
        await ecs.update_service(cluster=target.cluster, service=target.service, desiredCount=0)
    except Exception as error:
        report.failed.append(f"ECS: {resource_id} not scaled to zero: {describe(error)}")
        return
    report.done.append(f"ECS: {resource_id} desired count 0 (running tasks drain and stop; emails wait in the queue)")


async def restore(ecs: Any, autoscaling: Any, target: Target, report: Report, *, min_tasks: int | None = None,
                  max_tasks: int | None = None, desired: int | None = None) -> None:
    if not (target.cluster and target.service):
        report.done.append("ECS: no cluster and service (SENSORMAIL_ECS_CLUSTER, SENSORMAIL_ECS_SERVICE): not scaled")
        return
    resource_id = f"service/{target.cluster}/{target.service}"
    try:
        service = await _describe_service(ecs, target)
        tags = await _tags(ecs, service["serviceArn"])
        saved: dict[str, Any] = json.loads(tags[PAUSED_TAG]) if PAUSED_TAG in tags else {}
        low = min_tasks if min_tasks is not None else saved.get("min")
        high = max_tasks if max_tasks is not None else saved.get("max")
        scalable = await _scalable_target(autoscaling, resource_id)
        if scalable is not None:
            if low is None or high is None:
                report.failed.append(
                    f"ECS: {resource_id}: capacity before the pause unknown (no {PAUSED_TAG} tag); "
                    "give --min-tasks and --max-tasks"
                )
                return
            await autoscaling.register_scalable_target(
                ServiceNamespace="ecs", ResourceId=resource_id, ScalableDimension=_DIMENSION,
                MinCapacity=int(low), MaxCapacity=int(high),
            )
            report.done.append(f"ECS: autoscaling of {resource_id} back to {low}..{high}")
        count = desired if desired is not None else max(int(saved.get("desired", 0)), int(low or 0), 1)
        if high is not None:
            count = min(count, int(high))
        await ecs.update_service(cluster=target.cluster, service=target.service, desiredCount=count)
        if PAUSED_TAG in tags:
            await ecs.untag_resource(resourceArn=service["serviceArn"], tagKeys=[PAUSED_TAG])
    except Exception as error:
        report.failed.append(f"ECS: {resource_id} not restored: {describe(error)}")
        return
    report.done.append(f"ECS: {resource_id} desired count {count}")


async def pause(ses: Any, ecs: Any, autoscaling: Any, target: Target) -> Report:
    report = Report()
    await set_sending(ses, target, False, report)
    await scale_to_zero(ecs, autoscaling, target, report)
    logger.warning("kill switch: paused", extra={"done": report.done, "failed": report.failed})
    return report


async def resume(ses: Any, ecs: Any, autoscaling: Any, target: Target, *, min_tasks: int | None = None,
                 max_tasks: int | None = None, desired: int | None = None) -> Report:
    report = Report()
    await set_sending(ses, target, True, report)
    await restore(ecs, autoscaling, target, report, min_tasks=min_tasks, max_tasks=max_tasks, desired=desired)
    logger.warning("kill switch: resumed", extra={"done": report.done, "failed": report.failed})
    return report


async def _describe_service(ecs: Any, target: Target) -> dict[str, Any]:
    response = await ecs.describe_services(cluster=target.cluster, services=[target.service])
    services = [s for s in response.get("services", []) if s.get("status") != "INACTIVE"]
    if not services:
        raise LookupError(f"no ECS service {target.service} in cluster {target.cluster}")
    service: dict[str, Any] = services[0]
    return service


async def _scalable_target(autoscaling: Any, resource_id: str) -> dict[str, Any] | None:
    response = await autoscaling.describe_scalable_targets(
        ServiceNamespace="ecs", ResourceIds=[resource_id], ScalableDimension=_DIMENSION
    )
    targets = response.get("ScalableTargets", [])
    return dict(targets[0]) if targets else None


async def _tags(ecs: Any, arn: str) -> dict[str, str]:
    response = await ecs.list_tags_for_resource(resourceArn=arn)
    return {str(t["key"]): str(t["value"]) for t in response.get("tags", [])}
