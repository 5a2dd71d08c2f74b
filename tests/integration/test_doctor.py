"""`sensormail doctor` against the emulator: a healthy setup passes; breaking one thing at a time
(inactive rule set, a rule without TLS, unverified sender, missing notification, DLQ with messages,
unsubscribed topic, an alarm firing, the kill switch) gives that check's ✗ and its fix, and where
the fix is a command, carrying it out turns the ✗ into ✓.

What the emulators cannot answer (SESv2 GetAccount and the suppression list; ECS deployments and
stopped tasks) comes from thin wrappers around the real clients, as in test_sending_hygiene.py.
DNS goes through dnspython's real resolver to a stub server on 127.0.0.1 (tests/dns_stub.py).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from typing import Any

import anyio
import boto3
import dns.asyncresolver
import pytest

from tests.dns_stub import Records, dns_server
from tests.helpers import EcsService, create_ecs_service
from worker.aws.clients import Clients
from worker.cli import main
from worker.config import Settings
from worker.local.emulator import Emulator
from worker.local.provision import LocalResources
from worker.local.run import LOCAL_DEVICE_KEY
from worker.local.smtp import start_smtp
from worker.local.tls import make_certificate
from worker.ops.doctor.report import Check, Status, exit_code
from worker.ops.doctor.run import Options, open_doctor_clients, run_doctor
from worker.ops.doctor.send_test import SendTest
from worker.ops.doctor.target import DoctorClients, Target, from_settings
from worker.ops.smtp_credentials import device_settings
from worker.queue.consumer import serve

pytestmark = pytest.mark.anyio
REGION = "us-east-1"
NO_ACTIVE_RULE_SET = ("LocalStack Community 4.4 has no DescribeActiveReceiptRuleSet, ListReceiptRuleSets or "
                      "SetActiveReceiptRuleSet (\"not been implemented\"): the rule set cannot be activated or found there")


EVERYONE_VERIFIED = ("LocalStack answers GetIdentityVerificationAttributes with Success for any identity, even one "
                     "never requested: an unverified address cannot be made there")


def needs_active_rule_sets(emulator: Emulator) -> None:
    if emulator.kind == "localstack":
        pytest.skip(NO_ACTIVE_RULE_SET)


@dataclass
class Pipeline:
    """What the pipeline stack would add to `resources`: the domain, rule set, alarm, subscriptions."""

    intake: str
    domain: str
    rule_set: str
    dkim_tokens: list[str]
    alarms_inbox_arn: str

    def dns(self) -> Records:
        records: Records = {(self.domain, "MX"): [f"10 inbound-smtp.{REGION}.amazonaws.com."]}
        for token in self.dkim_tokens:
            records[(f"{token}._domainkey.{self.domain}", "CNAME")] = [f"{token}.dkim.amazonses.com."]
        return records


def rule(intake: str, bucket: str, **changes: Any) -> dict[str, Any]:
    return {"Name": "store-in-s3", "Enabled": True, "Recipients": [intake], "TlsPolicy": "Require", "ScanEnabled": True,
            "Actions": [{"S3Action": {"BucketName": bucket, "ObjectKeyPrefix": "incoming/"}}]} | changes


@pytest.fixture
def pipeline(resources: LocalResources, emulator: Emulator) -> Iterator[Pipeline]:
    tag = secrets.token_hex(4)
    domain = f"mail-{tag}.example.com"
    intake = f"intake-{tag}@{domain}"
    ses, sqs, sns = boto3.client("ses"), boto3.client("sqs"), boto3.client("sns")
    ses.verify_domain_identity(Domain=domain)
    tokens = ses.verify_domain_dkim(Domain=domain)["DkimTokens"]
    rule_set = f"rs-{tag}"
    ses.create_receipt_rule_set(RuleSetName=rule_set)
    ses.create_receipt_rule(RuleSetName=rule_set, Rule=rule(intake, resources.incoming_bucket))
    if emulator.kind != "localstack":  # see NO_ACTIVE_RULE_SET
        ses.set_active_receipt_rule_set(RuleSetName=rule_set)
    inbox = sqs.create_queue(QueueName=f"{tag}-alarms-inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=resources.alarms_topic_arn, Protocol="sqs", Endpoint=inbox_arn)
    boto3.client("cloudwatch").put_metric_alarm(
        AlarmName=f"{tag}-oldest", Namespace="AWS/SQS", MetricName="ApproximateAgeOfOldestMessage",
        Dimensions=[{"Name": "QueueName", "Value": resources.queue_url.rsplit("/", 1)[-1]}],
        Statistic="Maximum", Period=60, EvaluationPeriods=3, Threshold=180, ComparisonOperator="GreaterThanThreshold",
        AlarmActions=[resources.alarms_topic_arn])
    yield Pipeline(intake, domain, rule_set, tokens, inbox_arn)
    if emulator.kind != "localstack":
        ses.set_active_receipt_rule_set()  # the next test's set is the active one, as one region has one


@pytest.fixture
def target(settings: Settings, pipeline: Pipeline, emulator: Emulator, resources: LocalResources) -> Target:
    made = from_settings(replace(settings, intake_address=pipeline.intake), REGION)
    if emulator.kind == "localstack":  # no rule set or alarm to find them from: given, as stack outputs would
        made.incoming_bucket = resources.incoming_bucket
        made.alarms_topic_arn = resources.alarms_topic_arn
    return made


@pytest.fixture
async def clients(settings: Settings) -> AsyncIterator[DoctorClients]:
    async with open_doctor_clients(settings) as made:
        yield made


@pytest.fixture
def resolver(pipeline: Pipeline) -> Iterator[dns.asyncresolver.Resolver]:
    with dns_server(pipeline.dns()) as stub:
        yield stub


async def doctor(clients: Any, target: Target, resolver: dns.asyncresolver.Resolver | None = None,
                 **options: Any) -> dict[str, Check]:
    given = {"incoming_bucket": "given"} if target.incoming_bucket else {}
    checks = await run_doctor(clients, replace(target, found_by=given), Options(resolver=resolver, **options))
    titles = [c.title for c in checks]
    assert len(titles) == len(set(titles)), titles
    return {c.title: c for c in checks}


def statuses(checks: dict[str, Check]) -> dict[str, str]:
    return {title: c.status.mark for title, c in checks.items()}


async def test_a_healthy_setup_passes(clients: DoctorClients, target: Target, resolver: Any, pipeline: Pipeline,
                                      resources: LocalResources, emulator: Emulator) -> None:
    checks = await doctor(clients, target, resolver)

    shown = "\n".join(f"{c.status.mark} {c.title}: {c.saw}" for c in checks.values())
    if emulator.kind == "localstack":  # see NO_ACTIVE_RULE_SET: a needed check unanswered fails the run
        rule_check = checks.pop("receipt rule")
        assert rule_check.status is Status.UNKNOWN and rule_check.needed and "not been implemented" in rule_check.saw
        assert exit_code(checks.values()) == 0, shown
        checks["receipt rule"] = replace(rule_check, status=Status.OK, saw=f"active, {pipeline.rule_set}/store-in-s3: "
                                         f"recipient {pipeline.intake}, TLS Require, scanning on")
    assert exit_code(checks.values()) == 0, shown
    expected_ok = ["receipt rule", "mail domain identity", "sender identity", "MX", "DKIM records",
                   "bucket notification", "redrive policy and DLQ", "backlog", "dead-letter queue",
                   "fallback topic", "alarms topic"]
    assert {t: checks[t].status for t in expected_ok} == {t: Status.OK for t in expected_ok}
    assert f"active, {pipeline.rule_set}/store-in-s3: recipient {pipeline.intake}" in checks["receipt rule"].saw
    assert "TLS Require, scanning on" in checks["receipt rule"].saw
    assert checks["bucket notification"].saw.startswith(f"{resources.incoming_bucket}/incoming/ → ")
    assert checks["fallback topic"].saw.endswith("1 confirmed (sqs " + resources.fallback_inbox_url.rsplit("/", 1)[-1] + ")")
    # Not knowable on an emulator, or not configured here: `?` that do not fail the run.
    assert checks["SES account"].status is Status.UNKNOWN and "sandbox status unreadable" in checks["SES account"].saw
    assert checks["ECS service"].status is Status.UNKNOWN and not checks["ECS service"].needed
    assert checks["emails received"].saw.endswith("is empty: no email within the retention period, "
                                                  "and SES's setup write is gone or never happened")
    assert checks["alarms"].status is Status.OK and checks["alarms"].saw == "1 found, none in ALARM"


async def test_only_the_worker_settings_are_enough(clients: DoctorClients, settings: Settings, pipeline: Pipeline,
                                                   resources: LocalResources, emulator: Emulator) -> None:
    """No intake, no bucket: the bucket is found from its notification, then the rule and intake from SES."""
    needs_active_rule_sets(emulator)
    bare = from_settings(settings, REGION)
    checks = await run_doctor(clients, bare, Options())
    assert bare.incoming_bucket == resources.incoming_bucket
    assert bare.found_by["incoming_bucket"] == "its notification to the queue"
    assert bare.intake == pipeline.intake and bare.mail_domain == pipeline.domain
    assert bare.found_by["intake"] == f"receipt rule {pipeline.rule_set}/store-in-s3"
    dns = [c for c in checks if c.area == "DNS"]
    assert [c.status for c in dns] == [Status.UNKNOWN, Status.UNKNOWN]
    assert dns[0].saw == "skipped: the emulator's mail domain is not in public DNS (AWS_ENDPOINT_URL is set)"
    if emulator.kind == "moto":
        assert bare.alarms_topic_arn == resources.alarms_topic_arn  # from the alarm's action
    assert exit_code(checks) == 0


async def test_inactive_rule_set(clients: DoctorClients, target: Target, pipeline: Pipeline, emulator: Emulator) -> None:
    needs_active_rule_sets(emulator)
    boto3.client("ses").set_active_receipt_rule_set()  # none active: SES drops all inbound mail
    check = (await doctor(clients, target))["receipt rule"]
    assert check.status is Status.FAIL
    assert check.saw == f"rule set {pipeline.rule_set} holds our rule but is not active (active: none)"
    assert check.fix == f"aws ses set-active-receipt-rule-set --rule-set-name {pipeline.rule_set}"
    boto3.client("ses").set_active_receipt_rule_set(RuleSetName=pipeline.rule_set)  # the fix
    assert (await doctor(clients, target))["receipt rule"].status is Status.OK


async def test_a_rule_without_tls_and_scanning_gets_the_exact_update(
        clients: DoctorClients, target: Target, pipeline: Pipeline, resources: LocalResources, emulator: Emulator) -> None:
    needs_active_rule_sets(emulator)
    ses = boto3.client("ses")
    ses.update_receipt_rule(RuleSetName=pipeline.rule_set,
                            Rule=rule(pipeline.intake, resources.incoming_bucket, TlsPolicy="Optional", ScanEnabled=False))
    check = (await doctor(clients, target))["receipt rule"]
    assert check.status is Status.FAIL
    assert check.saw.endswith("TLS policy is Optional, not Require; spam and virus scanning is off")
    command = shlex.split(str(check.fix))
    assert command[:5] == ["aws", "ses", "update-receipt-rule", "--rule-set-name", pipeline.rule_set]
    ses.update_receipt_rule(RuleSetName=pipeline.rule_set, Rule=json.loads(command[-1]))  # the fix, as printed
    assert (await doctor(clients, target))["receipt rule"].status is Status.OK


async def test_unverified_sender(clients: DoctorClients, target: Target, emulator: Emulator) -> None:
    if emulator.kind == "localstack":
        pytest.skip(EVERYONE_VERIFIED)
    sender = f"alerts-{secrets.token_hex(3)}@unverified-{secrets.token_hex(3)}.example.net"
    checks = await doctor(clients, replace(target, sender=sender))
    check = checks["sender identity"]
    assert check.status is Status.FAIL
    assert "SES refuses sends from it (554 Email address is not verified)" in check.saw
    assert check.fix is not None and check.fix.startswith(f"aws sesv2 create-email-identity --email-identity {sender} ")
    assert exit_code(checks.values()) == 1


async def test_missing_notification(clients: DoctorClients, target: Target, resources: LocalResources,
                                    emulator: Emulator) -> None:
    s3 = boto3.client("s3")
    s3.put_bucket_notification_configuration(Bucket=resources.incoming_bucket, NotificationConfiguration={})
    checks = await doctor(clients, target)
    check = checks["bucket notification"]
    assert check.status is Status.FAIL
    how = "given" if emulator.kind == "localstack" else "the receipt rule's S3 action"
    assert check.saw.startswith(f"{resources.incoming_bucket} ({how}) sends no ObjectCreated")
    command = shlex.split(str(check.fix))
    assert command[:5] == ["aws", "s3api", "put-bucket-notification-configuration", "--bucket", resources.incoming_bucket]
    s3.put_bucket_notification_configuration(Bucket=resources.incoming_bucket,
                                             NotificationConfiguration=json.loads(command[-1]))
    assert (await doctor(clients, target))["bucket notification"].status is Status.OK


async def test_setup_notification_alone_means_no_email_arrived(clients: DoctorClients, target: Target,
                                                               resources: LocalResources) -> None:
    boto3.client("s3").put_object(Bucket=resources.incoming_bucket, Key="incoming/AMAZON_SES_SETUP_NOTIFICATION", Body=b"")
    check = (await doctor(clients, target))["emails received"]
    assert check.status is Status.UNKNOWN
    assert check.saw.startswith("SES can write, but no email has arrived: check MX and the rule set")


async def test_dlq_with_messages_is_read_without_consuming(clients: DoctorClients, target: Target,
                                                           resources: LocalResources) -> None:
    sqs = boto3.client("sqs")
    reasons = ["malformed email: header over 256 KiB", "malformed email: header over 256 KiB", "bad event: not JSON"]
    for reason in reasons:
        sqs.send_message(QueueUrl=resources.dlq_url, MessageBody="{}", MessageAttributes={
            "sensormail.reason": {"DataType": "String", "StringValue": reason}})
    sqs.send_message(QueueUrl=resources.dlq_url, MessageBody="{}")  # moved by the redrive policy: no reason

    check = (await doctor(clients, target))["dead-letter queue"]

    assert check.status is Status.FAIL
    name = resources.dlq_url.rsplit("/", 1)[-1]
    assert check.saw.startswith(f"4 in {name}; top reasons (of 4 read): 2 × malformed email: header over 256 KiB; ")
    assert "1 × bad event: not JSON" in check.saw and "1 × moved by the redrive policy" in check.saw
    assert check.fix is not None and check.fix.endswith(f"SENSORMAIL_DLQ_URL={resources.dlq_url} sensormail redrive")
    # Nothing consumed, and visible again at once (not after the peek's visibility timeout).
    got = sqs.receive_message(QueueUrl=resources.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    assert len(got) == 4


async def test_unsubscribed_fallback_topic(clients: DoctorClients, target: Target, resources: LocalResources) -> None:
    sns = boto3.client("sns")
    for sub in sns.list_subscriptions_by_topic(TopicArn=resources.fallback_topic_arn)["Subscriptions"]:
        sns.unsubscribe(SubscriptionArn=sub["SubscriptionArn"])
    checks = await doctor(clients, target)
    check = checks["fallback topic"]
    assert check.status is Status.FAIL
    assert check.saw.endswith("no subscription; emails without recipients are lost to everyone")
    assert check.fix == (f"aws sns subscribe --topic-arn {resources.fallback_topic_arn} --protocol email "
                         "--notification-endpoint you@example.com, then click the link AWS sends")
    assert exit_code(checks.values()) == 1


class PendingSns:
    """SNS with the alarms topic's email subscription not yet confirmed (emulators confirm at once)."""

    def __init__(self, real: Any, topic: str) -> None:
        self.real, self.topic = real, topic

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def list_subscriptions_by_topic(self, TopicArn: str, **kwargs: Any) -> Any:
        if TopicArn != self.topic:
            return await self.real.list_subscriptions_by_topic(TopicArn=TopicArn, **kwargs)
        return {"Subscriptions": [{"SubscriptionArn": "PendingConfirmation", "Protocol": "email",
                                   "Endpoint": "ops@example.com", "TopicArn": TopicArn}]}


async def test_alarms_topic_pending_confirmation(clients: DoctorClients, target: Target, resources: LocalResources) -> None:
    wrapped = replace(clients, sns=PendingSns(clients.sns, resources.alarms_topic_arn))
    check = (await doctor(wrapped, replace(target, alarms_topic_arn=resources.alarms_topic_arn)))["alarms topic"]
    assert check.status is Status.FAIL
    assert "pending confirmation: ops@example.com; alarms reach nobody" in check.saw
    assert check.fix is not None and check.fix.startswith("click the link in the email AWS sent to ops@example.com")


async def test_an_alarm_in_alarm(clients: DoctorClients, target: Target, emulator: Emulator) -> None:
    cloudwatch = boto3.client("cloudwatch")
    [alarm] = [a for a in cloudwatch.describe_alarms()["MetricAlarms"]
               if a["Dimensions"][0]["Value"] == target.queue_name]
    cloudwatch.set_alarm_state(AlarmName=alarm["AlarmName"], StateValue="ALARM", StateReason="Threshold Crossed: 412 s")
    check = (await doctor(clients, target))["alarms"]
    assert check.status is Status.FAIL
    assert check.saw == f"1 found; in ALARM: {alarm['AlarmName']} (Threshold Crossed: 412 s)"


class SesAccount:
    """SESv2 with GetAccount and the suppression list, which moto and LocalStack Community lack."""

    def __init__(self, real: Any, *, production: bool, suppressed: dict[str, str] | None = None) -> None:
        self.real, self.production, self.suppressed = real, production, suppressed or {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def get_account(self) -> Any:
        return {"ProductionAccessEnabled": self.production, "SendingEnabled": True, "EnforcementStatus": "HEALTHY",
                "SendQuota": {"Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 12.0}}

    async def list_suppressed_destinations(self, **kwargs: Any) -> Any:
        return {"SuppressedDestinationSummaries": [{"EmailAddress": a, "Reason": r} for a, r in self.suppressed.items()]}


async def test_sandbox_names_the_recipients_to_verify(clients: DoctorClients, target: Target, emulator: Emulator) -> None:
    if emulator.kind == "localstack":
        pytest.skip(EVERYONE_VERIFIED)
    boto3.client("ses").verify_email_identity(EmailAddress="ops@example.com")
    wrapped = replace(clients, sesv2=SesAccount(clients.sesv2, production=False))
    check = (await doctor(wrapped, replace(target, recipients=("ops@example.com", "field@example.org"))))["SES account"]
    assert check.status is Status.FAIL
    assert check.saw == ("in the sandbox: SES sends only to verified addresses; not verified: field@example.org; "
                         "quota 12 of 200 sent in 24 h, 1/s")
    assert check.fix is not None and check.fix.startswith("aws sesv2 create-email-identity --email-identity field@example.org")
    production = replace(clients, sesv2=SesAccount(clients.sesv2, production=True))
    check = (await doctor(production, replace(target, recipients=("field@example.org",))))["SES account"]
    assert (check.status, check.saw) == (Status.OK, "production access; quota 12 of 200 sent in 24 h, 1/s")


async def test_suppressed_recipients(clients: DoctorClients, target: Target) -> None:
    wrapped = replace(clients, sesv2=SesAccount(clients.sesv2, production=True,
                                                suppressed={"gone@example.com": "BOUNCE", "x@other.org": "COMPLAINT"}))
    check = (await doctor(wrapped, replace(target, recipients=("gone@example.com",))))["suppression list"]
    assert check.status is Status.FAIL
    assert check.saw == "suppressed, SES will not send to: gone@example.com (BOUNCE)"
    assert check.fix is not None and check.fix.startswith("aws sesv2 delete-suppressed-destination --email-address gone@example.com")
    scoped = replace(target, allowed_recipient_domains=("example.org",))
    check = (await doctor(replace(clients, sesv2=SesAccount(clients.sesv2, production=True)), scoped))["suppression list"]
    assert (check.status, check.saw) == (Status.OK, "no suppressed address in example.org (0 in the list)")


@pytest.mark.parametrize(("records", "status", "saw"), [
    ({}, Status.FAIL, "does not exist (NXDOMAIN): mail to the intake never reaches SES"),
    ({"MX": ["10 mx.other-provider.example."]}, Status.FAIL, "senders try mx.other-provider.example first"),
    ({"MX": [f"10 inbound-smtp.{REGION}.amazonaws.com.", "20 backup.example."]}, Status.OK,
     f"MX 10 inbound-smtp.{REGION}.amazonaws.com, 20 backup.example"),
])
async def test_mx(clients: DoctorClients, target: Target, pipeline: Pipeline, records: dict[str, list[str]],
                  status: Status, saw: str) -> None:
    zone = {k: v for k, v in pipeline.dns().items() if k[1] != "MX"}
    if records:
        zone[(pipeline.domain, "MX")] = records["MX"]
    with dns_server(zone) as stub:
        check = (await doctor(clients, target, stub))["MX"]
    assert check.status is status and saw in check.saw
    if status is Status.FAIL:
        assert check.fix == (f"publish `{pipeline.domain} MX 10 inbound-smtp.{REGION}.amazonaws.com` at the "
                             "domain's DNS provider (the pipeline stack's MxRecord output)")


async def test_a_missing_dkim_record(clients: DoctorClients, target: Target, pipeline: Pipeline) -> None:
    zone = pipeline.dns()
    missing = f"{pipeline.dkim_tokens[1]}._domainkey.{pipeline.domain}"
    del zone[(missing, "CNAME")]
    with dns_server(zone) as stub:
        check = (await doctor(clients, target, stub))["DKIM records"]
    assert check.status is Status.FAIL
    assert check.saw == f"1 of 3 wrong: {missing} → {missing} does not exist (NXDOMAIN)"
    assert check.fix == f"publish `{missing} CNAME {pipeline.dkim_tokens[1]}.dkim.amazonses.com` (pipeline outputs DkimRecord1..3)"


@pytest.fixture
def service(emulator: Emulator) -> EcsService:
    if emulator.kind == "localstack":
        pytest.skip("LocalStack Community has no ECS")
    return create_ecs_service()


class EcsDetails:
    """moto's ECS with what it does not simulate: running tasks, the rollout state, stopped tasks."""

    def __init__(self, real: Any, *, running: int, rollout: str, stopped: list[dict[str, Any]]) -> None:
        self.real, self.running, self.rollout, self.stopped = real, running, rollout, stopped

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def describe_services(self, **kwargs: Any) -> Any:
        response = await self.real.describe_services(**kwargs)
        for s in response["services"]:
            s["runningCount"] = self.running
            s["deployments"] = [{"status": "PRIMARY", "rolloutState": self.rollout,
                                 "rolloutStateReason": "ECS deployment circuit breaker: tasks failed to start."
                                 if self.rollout == "FAILED" else ""}]
        return response

    async def list_tasks(self, **kwargs: Any) -> Any:
        return {"taskArns": [f"arn:aws:ecs:{REGION}:123456789012:task/x/{i}" for i in range(len(self.stopped))]}

    async def describe_tasks(self, **kwargs: Any) -> Any:
        return {"tasks": self.stopped}


CRASHED = {"stopCode": "EssentialContainerExited", "stoppedReason": "Essential container in task exited",
           "containers": [{"name": "worker", "exitCode": 2}]}
SCALED_IN = {"stopCode": "ServiceSchedulerInitiated", "stoppedReason": "Scaling activity initiated by deployment",
             "containers": [{"name": "worker", "exitCode": 0}]}


async def test_ecs_service_and_stopped_tasks(clients: DoctorClients, target: Target, service: EcsService) -> None:
    on_service = replace(target, cluster=service.cluster, service=service.name, log_group="/sensormail/worker")
    healthy = replace(clients, ecs=EcsDetails(clients.ecs, running=2, rollout="COMPLETED", stopped=[SCALED_IN]))
    checks = await doctor(healthy, on_service)
    assert (checks["ECS service"].status, checks["ECS service"].saw) == (
        Status.OK, "2 running of 2 desired; last deployment COMPLETED")
    assert checks["stopped tasks"].status is Status.OK and "all routine" in checks["stopped tasks"].saw
    assert (checks["kill switch"].status, checks["kill switch"].saw) == (Status.OK, "service not paused")

    failing = replace(clients, ecs=EcsDetails(clients.ecs, running=0, rollout="FAILED", stopped=[CRASHED, CRASHED, SCALED_IN]))
    checks = await doctor(failing, on_service)
    assert checks["ECS service"].status is Status.FAIL
    assert checks["ECS service"].saw.startswith("0 running of 2 desired; last deployment FAILED (ECS deployment circuit")
    assert checks["stopped tasks"].status is Status.FAIL
    assert checks["stopped tasks"].saw == "2 of 3 failed: 2 × Essential container in task exited (exit 2)"
    assert checks["stopped tasks"].fix == "read aws logs tail /sensormail/worker --since 1h"


async def test_paused_by_the_kill_switch(clients: DoctorClients, target: Target, service: EcsService) -> None:
    from worker.ops import killswitch

    async with open_doctor_clients(Settings(endpoint_url=os.environ["AWS_ENDPOINT_URL"], region=REGION)) as c:
        from aiobotocore.session import get_session

        async with get_session().create_client("application-autoscaling") as scaling:
            report = await killswitch.pause(c.sesv2, c.ecs, scaling,
                                            killswitch.Target(None, "v2", service.cluster, service.name))
    assert report.done  # the ECS half (no configuration set here)
    check = (await doctor(clients, replace(target, cluster=service.cluster, service=service.name)))["kill switch"]
    assert check.status is Status.FAIL
    assert check.saw.startswith("service scaled to zero by `sensormail pause` (before: 2 desired")
    assert check.fix is not None and check.fix.startswith("sensormail resume")


async def test_the_command(settings: Settings, pipeline: Pipeline, resources: LocalResources, emulator: Emulator,
                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    needs_active_rule_sets(emulator)
    for name, value in resources.worker_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SENSORMAIL_INTAKE_ADDRESS", pipeline.intake)
    monkeypatch.setenv("SENSORMAIL_SENDER", f"nobody@unverified-{secrets.token_hex(3)}.example.net")

    code = await anyio.to_thread.run_sync(lambda: main(["doctor", "--json"]))

    document = json.loads(capsys.readouterr().out)
    assert code == 1 and document["exit_code"] == 1 and document["ok"] is False
    by_title = {c["title"]: c for c in document["checks"]}
    assert by_title["sender identity"]["status"] == "fail" and by_title["sender identity"]["fix"]
    assert by_title["receipt rule"]["status"] == "ok" and by_title["receipt rule"]["area"] == "SES"
    assert by_title["MX"]["status"] == "unknown" and "skipped" in by_title["MX"]["saw"]
    assert document["found"]["incoming_bucket"] == resources.incoming_bucket

    monkeypatch.setenv("SENSORMAIL_SENDER", resources.sender)
    code = await anyio.to_thread.run_sync(lambda: main(["doctor"]))
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"  ✓ receipt rule: active, {pipeline.rule_set}/store-in-s3" in out
    assert "  ? MX: skipped: the emulator's mail domain is not in public DNS" in out
    assert out.rstrip().splitlines()[-1].startswith("healthy: ")


@pytest.mark.parametrize(("recipient", "status", "saw"), [
    ("ops@example.com", Status.OK, "forwarded to ops@example.com in"),
    ("not-an-address", Status.FAIL, "then fallback instead of sent"),
])
async def test_send_test_follows_an_email_to_its_outcome(
        clients: DoctorClients, target: Target, settings: Settings, aws: Clients, resources: LocalResources,
        pipeline: Pipeline, tmp_path: Any, recipient: str, status: Status, saw: str) -> None:
    """Through the SMTP stand-in (STARTTLS, AUTH with the device key from Secrets Manager), the
    receipt rule's S3 write, the queue and a running worker, as a device's email goes."""
    secret = boto3.client("secretsmanager").create_secret(
        Name=f"device-{secrets.token_hex(4)}",
        SecretString=json.dumps({"access_key_id": LOCAL_DEVICE_KEY[0], "secret_access_key": LOCAL_DEVICE_KEY[1],
                                 "region": REGION, "intake": pipeline.intake}))["ARN"]
    device = device_settings(*LOCAL_DEVICE_KEY, REGION)
    certificate = make_certificate(tmp_path)
    smtp = await start_smtp(aws.s3, resources.incoming_bucket, pipeline.intake, 0, tls=certificate.server_context(),
                            credentials=(device.username, device.password))
    test = SendTest(recipient, secret, "sensormail-doctor@devices.example.com", 60.0, "127.0.0.1", smtp.port,
                    certificate.client_context())
    stop = anyio.Event()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: serve(settings, clients=aws, stop=stop))
            checks = await doctor(clients, target, send_test=test)
            stop.set()
    finally:
        await smtp.close()
    check = checks["test email"]
    assert check.area == "End to end"
    assert check.status is status and saw in check.saw, check.saw
    assert check.saw.split("stored as ")[1].startswith("incoming/")


async def test_send_test_reports_a_refused_login(clients: DoctorClients, target: Target, aws: Clients,
                                                 resources: LocalResources, pipeline: Pipeline, tmp_path: Any) -> None:
    secret = boto3.client("secretsmanager").create_secret(
        Name=f"device-{secrets.token_hex(4)}",
        SecretString=json.dumps({"access_key_id": "AKIAWRONGKEY", "secret_access_key": "wrong"}))["ARN"]
    certificate = make_certificate(tmp_path)
    device = device_settings(*LOCAL_DEVICE_KEY, REGION)
    smtp = await start_smtp(aws.s3, resources.incoming_bucket, pipeline.intake, 0, tls=certificate.server_context(),
                            credentials=(device.username, device.password))
    port = smtp.port
    try:
        test = SendTest("ops@example.com", secret, "d@devices.example.com", 5.0, "127.0.0.1", port,
                        certificate.client_context())
        check = (await doctor(clients, target, send_test=test))["test email"]
    finally:
        await smtp.close()
    assert check.status is Status.FAIL
    assert check.saw.startswith(f"127.0.0.1:{port} refused it: (535, b'Authentication Credentials Invalid')")
