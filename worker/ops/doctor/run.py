"""`sensormail doctor`: find what to examine, run every check in order, return them.

Discovery first (stacks, the queue, the receipt rule, the incoming bucket, the DLQ, the alarms
topic); then the checks, grouped by area as the troubleshooting guide walks them. A check whose
API call fails becomes `?` with the error, never a traceback: the doctor must report on a broken
system, not break on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import dns.asyncresolver
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from worker.config import Settings
from worker.ops.doctor import alert_checks, dns_checks, ecs_checks, queue_checks, ses_identities, ses_rules
from worker.ops.doctor.report import Check, brief, fail, in_area, unknown
from worker.ops.doctor.send_test import SendTest, run_send_test
from worker.ops.doctor.target import (
    DoctorClients,
    Target,
    apply_pipeline_stack,
    apply_service_stack,
    bucket_notifying,
    queue_facts,
    stack_outputs,
)

SERVICES = ("s3", "sqs", "sns", "ses", "sesv2", "cloudwatch", "ecs", "cloudformation", "secretsmanager")


@dataclass(frozen=True, slots=True)
class Options:
    pipeline_stack: str | None = None
    service_stack: str | None = None
    resolver: dns.asyncresolver.Resolver | None = None  # None: DNS checks skipped
    send_test: SendTest | None = None


@asynccontextmanager
async def open_doctor_clients(settings: Settings) -> AsyncIterator[DoctorClients]:
    session = get_session()
    config = AioConfig(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=30,
                       s3={"addressing_style": "path" if settings.endpoint_url else "virtual"})
    async with AsyncExitStack() as stack:
        made = [await stack.enter_async_context(session.create_client(name, region_name=settings.region, config=config))
                for name in SERVICES]
        yield DoctorClients(*made)


async def guarded(title: str, make: Callable[[], Awaitable[Check]], *, needed: bool = True) -> Check:
    """The check, or `?` with the error when the API call behind it fails."""
    try:
        return await make()
    except Exception as error:
        return unknown(title, f"could not be read: {brief(error)}", needed=needed)


async def discover(clients: DoctorClients, target: Target, options: Options) -> tuple[list[Check], ses_rules.RuleLookup | None]:
    """Fill the target from stacks, SES and S3; problems found on the way are checks of their own."""
    problems: list[Check] = []
    for name, apply in ((options.pipeline_stack, "pipeline"), (options.service_stack, "service")):
        if not name:
            continue
        try:
            outputs, parameters = await stack_outputs(clients.cloudformation, name)
        except Exception as error:
            problems.append(fail(f"{apply} stack", f"{name} cannot be read ({brief(error)})",
                                 f"aws cloudformation describe-stacks --stack-name {name}"))
            continue
        if apply == "pipeline":
            apply_pipeline_stack(target, name, outputs)
        else:
            apply_service_stack(target, name, outputs, parameters)
    if target.queue_arn:  # the bucket first: "our rule" is then the one writing into it
        first = [target.incoming_bucket] if target.incoming_bucket else []
        found = await bucket_notifying(clients.s3, target.queue_arn, target.incoming_prefix, first)
        if found:
            target.incoming_bucket = found
            target.note("incoming_bucket", found, "its notification to the queue")
    lookup = None
    try:
        lookup = await ses_rules.locate_rule(clients.ses, target)
        rule_bucket = ses_rules.learn_from_rule(lookup, target)
    except Exception as error:
        problems.append(unknown(ses_rules.TITLE, f"could not be read: {brief(error)}", needed=True))
    else:
        if not target.incoming_bucket and rule_bucket:
            target.incoming_bucket = rule_bucket
            target.note("incoming_bucket", rule_bucket, "the receipt rule's S3 action")
    if target.intake and not target.mail_domain:
        target.mail_domain = target.intake.rsplit("@", 1)[-1].lower()
        target.note("mail_domain", target.mail_domain, "the intake address")
    return problems, lookup


async def run_doctor(clients: DoctorClients, target: Target, options: Options) -> list[Check]:
    checks: list[Check] = []
    try:
        attrs = await queue_facts(clients.sqs, target)
    except Exception as error:
        attrs = None
        queue_problem = fail("incoming queue", f"{target.queue_url} cannot be read ({brief(error)})",
                             "check SENSORMAIL_QUEUE_URL (the pipeline stack's QueueUrl output) and AWS_REGION")
    problems, lookup = await discover(clients, target, options)
    checks += in_area("Stacks", problems) if any(c.title.endswith("stack") for c in problems) else []
    problems = [c for c in problems if not c.title.endswith("stack")]

    ses: list[Check] = list(problems)
    if lookup is not None:
        ses.append(ses_rules.check_rule(lookup, target))
    ses.append(await guarded("mail domain identity", lambda: ses_identities.check_domain(clients.ses, target)))
    ses.append(await guarded("sender identity", lambda: ses_identities.check_sender(clients.ses, target)))
    ses.append(await ses_identities.check_account(clients.sesv2, clients.ses, target))
    ses.append(await ses_identities.check_suppression(clients.sesv2, target))
    ses.append(await guarded("custom MAIL FROM", lambda: ses_identities.check_mail_from(clients.ses, target), needed=False))
    checks += in_area("SES", ses)

    resolver = options.resolver
    if resolver is None or not target.mail_domain:
        dns = dns_checks.skipped(target)
    else:
        dns = [await guarded("MX", lambda: dns_checks.check_mx(resolver, target)),
               await guarded("DKIM records", lambda: dns_checks.check_dkim(resolver, clients.ses, target))]
    checks += in_area("DNS", dns)

    dlq_url = target.dlq_url
    if attrs is None:
        queues = [queue_problem]
    else:
        redrive, dlq_url = await queue_checks.check_redrive(clients.sqs, attrs, target)
        queues = [
            await guarded("bucket notification", lambda: queue_checks.check_notification(clients.s3, target)),
            await guarded("emails received", lambda: queue_checks.check_arrivals(clients.s3, target), needed=False),
            redrive,
            await guarded("backlog", lambda: queue_checks.check_backlog(clients.sqs, clients.cloudwatch, target)),
            await guarded("dead-letter queue", lambda: queue_checks.check_dlq(clients.sqs, dlq_url, target)),
        ]
    checks += in_area("S3 and SQS", queues)

    alerts = [await alert_checks.check_alarms(clients.cloudwatch, target, dlq_url)]
    for kind, arn in (("fallback", target.fallback_topic_arn), ("alarms", target.alarms_topic_arn)):
        alerts.insert(-1, await guarded(f"{kind} topic", lambda: alert_checks.check_topic(clients.sns, kind, arn, target)))
    checks += in_area("SNS and CloudWatch", alerts)

    ecs = await ecs_checks.check_ecs(clients.ecs, target)
    ecs.append(await ecs_checks.check_pause(clients.ecs, clients.ses, clients.sesv2, target))
    checks += in_area("ECS", ecs)

    if options.send_test is not None:
        test = options.send_test
        checks += in_area("End to end", [await guarded(
            "test email", lambda: run_send_test(clients, target, test, dlq_url))])
    return checks

