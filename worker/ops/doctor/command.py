"""The `sensormail doctor` command: arguments and settings in, the report's text and exit code out.

Only `argparse` at the top: the parser is built for every command (`inspect` too), and the checks
import aiobotocore and dnspython, which take a third of a second.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from worker.config import Settings
from worker.errors import ConfigError

if TYPE_CHECKING:
    from worker.ops.doctor.send_test import SendTest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pipeline-stack", metavar="NAME", help="read queue, buckets, topics, domain from its outputs")
    parser.add_argument("--service-stack", metavar="NAME", help="read the ECS service, sender, configuration set from it")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--recipient", action="append", default=[], metavar="ADDRESS",
                        help="an address forwarded emails go to: checked against the sandbox and suppression list")
    parser.add_argument("--send-test", metavar="ADDRESS", help="send a test email into the intake, forwarded to ADDRESS")
    parser.add_argument("--smtp-secret", metavar="ARN", help="the device key for --send-test (deploy/sending.yaml's secret)")
    parser.add_argument("--test-from", metavar="ADDRESS", help="From of the test email (one of DeviceFromAddresses)")
    parser.add_argument("--smtp-endpoint", metavar="HOST:PORT", help="STARTTLS endpoint (default: SES SMTP, port 587)")
    parser.add_argument("--smtp-cafile", metavar="PEM", help="trust this certificate (sensormail local's stand-in)")
    parser.add_argument("--wait", type=float, default=180.0, metavar="SECONDS", help="how long --send-test waits")


def _send_test(args: argparse.Namespace, settings: Settings) -> SendTest | None:
    import ssl

    from worker.ops.doctor.send_test import SendTest

    if not args.send_test:
        return None
    if not args.smtp_secret:
        raise ConfigError("--smtp-secret: required with --send-test (the device key's Secrets Manager secret)")
    domains = [s.rsplit("@", 1)[-1] for s in settings.allowed_senders]
    test_from = args.test_from or (f"sensormail-doctor@{domains[0]}" if domains else None)
    if not test_from:
        raise ConfigError("--test-from: required with --send-test when SENSORMAIL_ALLOWED_SENDERS names no domain")
    host, port = None, 587
    if args.smtp_endpoint:
        host, _, raw_port = args.smtp_endpoint.rpartition(":")
        if not host or not raw_port.isdigit():
            raise ConfigError(f"--smtp-endpoint: expected HOST:PORT, got {args.smtp_endpoint!r}")
        port = int(raw_port)
    tls = ssl.create_default_context(cafile=args.smtp_cafile) if args.smtp_cafile else None
    return SendTest(args.send_test, args.smtp_secret, test_from, args.wait, host, port, tls)


async def doctor(args: argparse.Namespace, settings: Settings) -> tuple[str, int]:
    from worker.ops.doctor import report
    from worker.ops.doctor.dns_checks import system_resolver
    from worker.ops.doctor.run import Options, open_doctor_clients, run_doctor
    from worker.ops.doctor.target import apply_pipeline_stack, from_settings, stack_outputs

    if not settings.queue_url and not args.pipeline_stack:
        raise ConfigError("SENSORMAIL_QUEUE_URL: required (or --pipeline-stack NAME)")
    test = _send_test(args, settings)
    recipients = tuple(dict.fromkeys([*args.recipient, *([args.send_test] if args.send_test else [])]))
    devices = (test.test_from.rsplit("@", 1)[-1],) if test else ()
    target = from_settings(settings, settings.region or "", recipients=recipients, device_domains=devices)
    resolver = None if settings.endpoint_url else system_resolver()
    async with open_doctor_clients(settings) as clients:
        target.region = target.region or str(clients.sqs.meta.region_name)
        if not target.queue_url and args.pipeline_stack:
            apply_pipeline_stack(target, args.pipeline_stack, (await stack_outputs(clients.cloudformation, args.pipeline_stack))[0])
            if not target.queue_url:
                raise ConfigError(f"--pipeline-stack {args.pipeline_stack}: no QueueUrl output")
        checks = await run_doctor(clients, target, Options(args.pipeline_stack, args.service_stack, resolver, test))
    if args.json:
        return report.as_json(checks, target.as_dict()), report.exit_code(checks)
    found = ", ".join(f"{k} from {v}" for k, v in target.found_by.items() if v != "settings")
    head = [f"sensormail doctor: queue {target.queue_name} in {target.region}" + (f" ({found})" if found else "")]
    return "\n".join(head + [""] + report.lines(checks) + ["", report.summary(checks)]), report.exit_code(checks)
