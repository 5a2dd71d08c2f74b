"""ECS and the kill switch: running and desired tasks, the last deployment, why tasks stopped
recently, and whether `sensormail pause` is in force (the service's `sensormail:paused` tag, or
sending disabled on the configuration set)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from worker.ops.doctor.report import Check, brief, fail, ok, unknown
from worker.ops.doctor.target import Target
from worker.ops.killswitch import PAUSED_TAG

STOPPED_SAMPLE = 20
# Stop codes that are the scheduler's or the user's own doing, not a failing worker.
ROUTINE = {"ServiceSchedulerInitiated", "UserInitiated", "SpotInterruption", "TerminationNotice"}


def no_service(title: str) -> Check:
    return unknown(title, "skipped: no ECS service named (SENSORMAIL_ECS_CLUSTER and SENSORMAIL_ECS_SERVICE, "
                          "or --service-stack)")


async def describe_service(ecs: Any, target: Target) -> dict[str, Any] | None:
    services = (await ecs.describe_services(cluster=target.cluster, services=[target.service])).get("services", [])
    live = [s for s in services if s.get("status") != "INACTIVE"]
    return dict(live[0]) if live else None


def judge_service(service: dict[str, Any] | None, target: Target) -> Check:
    title = "ECS service"
    if service is None:
        return fail(title, f"no service {target.service} in cluster {target.cluster}",
                    "deploy the service stack (docs/deploy.md, step 4)")
    running, desired = int(service.get("runningCount", 0)), int(service.get("desiredCount", 0))
    deployments = service.get("deployments", [])
    primary = next((d for d in deployments if d.get("status") == "PRIMARY"), deployments[0] if deployments else {})
    state = primary.get("rolloutState", "unknown")
    reason = primary.get("rolloutStateReason", "")
    saw = f"{running} running of {desired} desired; last deployment {state}" + (f" ({reason})" if reason else "")
    events = "aws ecs describe-services --cluster {c} --services {s} --query 'services[0].events[:5]'".format(
        c=target.cluster, s=target.service)
    if state == "FAILED":
        return fail(title, saw, f"read why: {events}; then deploy a working image tag (the circuit breaker rolled back)")
    if running < desired and state != "IN_PROGRESS":
        return fail(title, saw, f"tasks do not stay up: see the stopped tasks below and {events}")
    return ok(title, saw)


def judge_stopped(tasks: list[dict[str, Any]], target: Target) -> Check:
    title = "stopped tasks"
    if not tasks:
        return ok(title, "none recently", needed=False)
    failing: Counter[str] = Counter()
    routine: Counter[str] = Counter()
    for task in tasks:
        codes = [c.get("exitCode") for c in task.get("containers", []) if c.get("exitCode") is not None]
        reason = str(task.get("stoppedReason", "no reason given"))
        crashed = task.get("stopCode") == "TaskFailedToStart" or any(code not in (0,) for code in codes)
        if crashed or task.get("stopCode") not in ROUTINE | {"EssentialContainerExited"}:
            failing[reason + (f" (exit {', '.join(map(str, codes))})" if codes else "")] += 1
        else:
            routine[reason] += 1
    if failing:
        top = "; ".join(f"{n} × {r}" for r, n in failing.most_common(3))
        logs = f"aws logs tail {target.log_group} --since 1h" if target.log_group else "the worker's log group"
        return fail(title, f"{sum(failing.values())} of {len(tasks)} failed: {top}", f"read {logs}")
    top = "; ".join(f"{n} × {r}" for r, n in routine.most_common(2))
    return ok(title, f"{len(tasks)} stopped, all routine: {top}")


async def check_ecs(ecs: Any, target: Target) -> list[Check]:
    if not (target.cluster and target.service):
        return [no_service("ECS service")]
    try:
        service = await describe_service(ecs, target)
        stopped_arns = (await ecs.list_tasks(cluster=target.cluster, serviceName=target.service,
                                             desiredStatus="STOPPED", maxResults=STOPPED_SAMPLE)).get("taskArns", [])
        tasks = (await ecs.describe_tasks(cluster=target.cluster, tasks=stopped_arns)).get("tasks", []) if stopped_arns else []
    except Exception as error:
        return [unknown("ECS service", f"unreadable ({brief(error)})", needed=True)]
    return [judge_service(service, target), judge_stopped(tasks, target)]


async def sending_enabled(ses: Any, sesv2: Any, configuration_set: str) -> bool:
    """SESv2 GetConfigurationSet, else v1 DescribeConfigurationSet (LocalStack Community has no SESv2)."""
    try:
        response = await sesv2.get_configuration_set(ConfigurationSetName=configuration_set)
        return bool(response.get("SendingOptions", {}).get("SendingEnabled", True))
    except Exception:
        response = await ses.describe_configuration_set(ConfigurationSetName=configuration_set,
                                                        ConfigurationSetAttributeNames=["reputationOptions"])
        return bool(response.get("ReputationOptions", {}).get("SendingEnabled", True))


async def check_pause(ecs: Any, ses: Any, sesv2: Any, target: Target) -> Check:
    title = "kill switch"
    seen, paused = [], []
    if target.configuration_set:
        try:
            enabled = await sending_enabled(ses, sesv2, target.configuration_set)
        except Exception as error:
            return unknown(title, f"configuration set {target.configuration_set} unreadable ({brief(error)})", needed=True)
        seen.append(f"sending on {target.configuration_set} {'enabled' if enabled else 'PAUSED'}")
        if not enabled:
            paused.append("SES")
    if target.cluster and target.service:
        try:
            service = await describe_service(ecs, target)
            tags = {} if service is None else {t["key"]: t["value"] for t in
                                                (await ecs.list_tags_for_resource(resourceArn=service["serviceArn"])).get("tags", [])}
        except Exception as error:
            return unknown(title, f"ECS unreadable ({brief(error)})", needed=True)
        if PAUSED_TAG in tags:
            saved = json.loads(tags[PAUSED_TAG])
            seen.append(f"service scaled to zero by `sensormail pause` (before: {saved.get('desired')} desired, "
                        f"{saved.get('min')}..{saved.get('max')})")
            paused.append("ECS")
        else:
            seen.append("service not paused")
    if not seen:
        return unknown(title, "skipped: no configuration set and no ECS service named")
    if paused:
        return fail(title, "; ".join(seen) + ": no email goes out, incoming waits in the queue",
                    "sensormail resume (with SENSORMAIL_CONFIGURATION_SET, SENSORMAIL_ECS_CLUSTER, SENSORMAIL_ECS_SERVICE set)")
    return ok(title, "; ".join(seen))
