"""SNS and CloudWatch: the fallback and alarms topics reach someone (a confirmed subscription), the
alarms on the queues and the service exist, and which of them are in ALARM now.

Our alarms are those on the incoming queue or the DLQ (dimension QueueName), on the ECS service
(ServiceName), or in the worker's metric namespace; the alarms topic, when not given, is the SNS
topic their actions name.
"""

from __future__ import annotations

from typing import Any

from worker.ops.doctor.report import Check, brief, fail, ok, unknown
from worker.ops.doctor.target import Target

NAMESPACE = "Sensormail"
PENDING = ("PendingConfirmation", "pending confirmation")


def _metrics_of(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    if "MetricName" in alarm:
        return [{"Namespace": alarm.get("Namespace"), "Dimensions": alarm.get("Dimensions", [])}]
    return [m["MetricStat"]["Metric"] for m in alarm.get("Metrics", []) if "MetricStat" in m]


def is_ours(alarm: dict[str, Any], names: set[str]) -> bool:
    for metric in _metrics_of(alarm):
        if metric.get("Namespace") == NAMESPACE:
            return True
        if any(d.get("Value") in names for d in metric.get("Dimensions", [])):
            return True
    return False


async def our_alarms(cloudwatch: Any, target: Target, dlq_url: str | None) -> list[dict[str, Any]]:
    names = {target.queue_name} | ({dlq_url.rstrip("/").rsplit("/", 1)[-1]} if dlq_url else set())
    names |= {target.service} if target.service else set()
    alarms: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = await cloudwatch.describe_alarms(AlarmTypes=["MetricAlarm"], **({"NextToken": token} if token else {}))
        alarms += [a for a in page.get("MetricAlarms", []) if is_ours(a, names)]
        token = page.get("NextToken")
        if not token:
            return alarms


async def check_alarms(cloudwatch: Any, target: Target, dlq_url: str | None) -> Check:
    """Also fills target.alarms_topic_arn from the alarms' actions when it is not known."""
    title = "alarms"
    try:
        alarms = await our_alarms(cloudwatch, target, dlq_url)
    except Exception as error:
        return unknown(title, f"CloudWatch unreadable ({brief(error)})")
    topics = sorted({a for alarm in alarms for a in alarm.get("AlarmActions", []) if a.startswith("arn:aws:sns:")})
    if topics and not target.alarms_topic_arn:
        target.alarms_topic_arn = topics[0]
        target.note("alarms_topic_arn", topics[0], "the alarms' actions")
    if not alarms:
        if target.emulator:
            return unknown(title, f"none on the queue {target.queue_name} (`sensormail local` creates no alarms)")
        return fail(title, f"no alarm watches {target.queue_name}",
                    "deploy the pipeline stack (queue alarms) and the service stack (worker errors)")
    firing = [a for a in alarms if a.get("StateValue") == "ALARM"]
    silent = [a["AlarmName"] for a in alarms if not a.get("AlarmActions")]
    saw = f"{len(alarms)} found" + (f"; without an action: {', '.join(silent)}" if silent else "")
    if firing:
        shown = "; ".join(f"{a['AlarmName']} ({a.get('StateReason', '')[:160]})" for a in firing)
        return fail(title, f"{saw}; in ALARM: {shown}",
                    "act on the checks above that failed; an alarm returns to OK by itself once its metric does")
    return ok(title, f"{saw}, none in ALARM")


async def check_topic(sns: Any, kind: str, arn: str | None, target: Target) -> Check:
    title = f"{kind} topic"
    if not arn:
        why = ("not found: no alarm names a topic (--pipeline-stack names it)" if kind == "alarms"
               else "not configured (SENSORMAIL_FALLBACK_TOPIC_ARN)")
        return unknown(title, why, needed=kind == "fallback")
    subscriptions: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = await sns.list_subscriptions_by_topic(TopicArn=arn, **({"NextToken": token} if token else {}))
        subscriptions += page.get("Subscriptions", [])
        token = page.get("NextToken")
        if not token:
            break
    confirmed = [s for s in subscriptions if str(s.get("SubscriptionArn", "")).startswith("arn:")]
    pending = [s for s in subscriptions if s.get("SubscriptionArn") in PENDING]
    name = arn.rsplit(":", 1)[-1]
    if confirmed:
        shown = ", ".join(f"{s['Protocol']} {s['Endpoint'].rsplit(':', 1)[-1] if s['Protocol'] == 'sqs' else s['Endpoint']}"
                          for s in confirmed[:5])
        return ok(title, f"{name}: {len(confirmed)} confirmed ({shown})")
    subscribe = f"aws sns subscribe --topic-arn {arn} --protocol email --notification-endpoint you@example.com"
    what = "alarms reach nobody" if kind == "alarms" else "emails without recipients are lost to everyone"
    if pending:
        who = ", ".join(s["Endpoint"] for s in pending)
        return fail(title, f"{name}: no confirmed subscription, pending confirmation: {who}; {what}",
                    f"click the link in the email AWS sent to {who} (or resubscribe: {subscribe})")
    return fail(title, f"{name}: no subscription; {what}", f"{subscribe}, then click the link AWS sends")
