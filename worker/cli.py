"""`sensormail` subcommands; the only place that reads os.environ and configures logging."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio

from worker.config import DEFAULT_HEALTH_FILE, Settings
from worker.errors import ConfigError, MalformedEmail
from worker.mail.reader import DryRunStore, ReadEmail, read_email
from worker.telemetry import configure_logging

INSPECT_CHUNK = 1024 * 1024


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sensormail", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="the long-running worker (configured by SENSORMAIL_* variables)")

    inspect = sub.add_parser("inspect", help="dry run on a local .eml file: what the worker would do")
    inspect.add_argument("file", type=Path)
    inspect.add_argument("--json", action="store_true", help="print one JSON object")

    status = sub.add_parser("status", help="queue depth, in flight, oldest age and DLQ depth")
    status.add_argument("--json", action="store_true")
    redrive = sub.add_parser("redrive", help="move DLQ messages back to the incoming queue after a fix")
    redrive.add_argument("--count", type=int, default=None, help="at most this many (default: all)")

    health = sub.add_parser("health", help="container health check: exit 0 while the worker's event loop runs")
    health.add_argument("--max-age", type=float, default=60.0, help="seconds since the worker last touched its health file")

    revoke = sub.add_parser("revoke", help="make every link of one email stop working (files are kept)")
    revoke.add_argument("message_id", nargs="?", help="the SES message id (the incoming object's name)")
    revoke.add_argument("--key", help="revoke one attachment by its S3 key instead")

    creds = sub.add_parser("smtp-credentials", help="a device's SES SMTP settings (user name, password) from an IAM access key")
    creds.add_argument("--access-key-id", help="default: AWS_ACCESS_KEY_ID")
    creds.add_argument("--secret-access-key", help="default: AWS_SECRET_ACCESS_KEY")
    creds.add_argument("--secret-id", help="read the key from this Secrets Manager secret (as deploy/sending.yaml stores it)")
    creds.add_argument("--region", help="SES region the device sends through (default: AWS_REGION)")
    creds.add_argument("--intake", help="the intake address (default: SENSORMAIL_INTAKE_ADDRESS)")
    creds.add_argument("--json", action="store_true", help="print one JSON object")
    from worker.ops.doctor.command import add_arguments as doctor_arguments

    doctor_arguments(sub.add_parser("doctor", help="the troubleshooting guide, run against the live system: "
                                                   "each check ✓/✗/? with the fix"))
    sub.add_parser("pause", help="kill switch: stop all outgoing email now; incoming email waits in the queue")
    resume = sub.add_parser("resume", help="undo `pause`: SES sending enabled, the service scaled back")
    resume.add_argument("--min-tasks", type=int, help="autoscaling minimum (default: as before the pause)")
    resume.add_argument("--max-tasks", type=int, help="autoscaling maximum (default: as before the pause)")
    resume.add_argument("--desired", type=int, help="tasks to start now (default: as before the pause, at least 1)")

    local = sub.add_parser("local", help="the whole system on this machine, on an AWS emulator")
    local.add_argument("--smtp-port", type=int, default=2525, help="SMTP stand-in for SES inbound (0: any free port)")
    local.add_argument("--smtps-port", type=int, default=None,
                       help="its implicit-TLS port, like SES's 465 (default 2465; any free port with --smtp-port 0)")
    local.add_argument("--send-sample", nargs="?", const="alarm-with-csv", default=None, metavar="NAME|all",
                       help="send a bundled sample once ready (alarm-with-csv, html-two-images, "
                            "no-recipients, or all)")
    local.add_argument("--send", type=Path, action="append", default=[], metavar="FILE.eml",
                       help="send this email once ready (repeatable)")
    local.add_argument("--once", action="store_true",
                       help="exit after the emails sent with --send-sample/--send are handled")
    local.add_argument("--backend", choices=("auto", "moto", "localstack"), default="auto",
                       help="auto: AWS_ENDPOINT_URL if set, else LocalStack if Docker answers, else moto")
    local.add_argument("--worker-image", metavar="IMAGE",
                       help="run the worker as this container image (non-root, read-only, host network) "
                            "instead of in this process")
    local.add_argument("--web-port", type=int, default=None, metavar="PORT",
                       help="the outbox page on 127.0.0.1 (default 8025, skipped with a notice when taken; "
                            "0: no page)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code = _command(args)
        sys.stdout.flush()  # output that fit the buffer meets a closed pipe here, not at exit
        return code
    except BrokenPipeError:
        # The reader went away (`sensormail inspect X --json | head -c 100`): nothing more to say.
        # Exit as a tool killed by SIGPIPE would (128 + 13): the output is incomplete, so not 0,
        # and a shell with pipefail sees what it sees for `cat big | head`. stdout now points at
        # /dev/null so the interpreter's final flush does not fail again.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass  # stdout is not a file descriptor (tests); nothing is flushed to it at exit
        return 128 + signal.SIGPIPE


def _command(args: argparse.Namespace) -> int:
    env = os.environ
    configure_logging(env.get("SENSORMAIL_LOG_LEVEL", "INFO"), stream=sys.stderr if args.command in ("inspect", "local", "smtp-credentials", "pause", "resume", "doctor") else None)
    try:
        if args.command == "run":
            settings = Settings.from_env(_ses_api_for_endpoint(env))
            from worker.queue.consumer import serve

            anyio.run(serve, settings)
            return 0
        if args.command == "inspect":
            settings = Settings.from_env(env, require_aws=False)
            return anyio.run(_inspect, args.file, args.json, settings)
        if args.command == "health":
            return _health(env.get("SENSORMAIL_HEALTH_FILE") or DEFAULT_HEALTH_FILE, args.max_age)
        if args.command == "revoke":
            settings = Settings.from_env(env, require_aws=False)
            if not settings.attachments_bucket:
                raise ConfigError("SENSORMAIL_ATTACHMENTS_BUCKET: required but not set")
            return anyio.run(_revoke, args, settings)
        if args.command in ("status", "redrive"):
            settings = Settings.from_env(env, require_aws=False)
            if not settings.queue_url:
                raise ConfigError("SENSORMAIL_QUEUE_URL: required but not set")
            return anyio.run(_operate, args, settings)
        if args.command == "smtp-credentials":
            return anyio.run(_smtp_credentials, args, Settings.from_env(env, require_aws=False), dict(env))
        if args.command in ("pause", "resume"):
            return anyio.run(_kill_switch, args, Settings.from_env(_ses_api_for_endpoint(env), require_aws=False))
        if args.command == "doctor":
            return anyio.run(_doctor, args, Settings.from_env(_ses_api_for_endpoint(env), require_aws=False))
        if args.command == "local":
            return _local(args)
    except ConfigError as error:
        print(f"sensormail: configuration error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        if not _no_region(error):
            raise
        print("sensormail: configuration error: AWS_REGION: not set, and no region in the AWS config", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unknown command {args.command}")


LOCAL_EXTRA = {"moto", "aiosmtpd", "cryptography", "boto3", "flask", "werkzeug", "jinja2"}


def _local(args: argparse.Namespace) -> int:
    try:
        from worker.local.container import ContainerUnavailable
        from worker.local.emulator import EmulatorUnavailable
        from worker.local.run import run_local
        from worker.local.web import OutboxUnavailable
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] not in LOCAL_EXTRA:
            raise
        print(f"sensormail: local needs the local extra ({error.name} is missing): "
              "pip install 'sensormail[local]'", file=sys.stderr)
        return 2
    try:
        return anyio.run(run_local, args, os.environ)
    except (EmulatorUnavailable, ContainerUnavailable, OutboxUnavailable) as error:
        print(f"sensormail: local: {error}", file=sys.stderr)
        return 2


def _ses_api_for_endpoint(env: Mapping[str, str]) -> Mapping[str, str]:
    """LocalStack Community has no SESv2: behind an AWS_ENDPOINT_URL where LocalStack answers, SES v1
    unless SENSORMAIL_SES_API says otherwise. Real AWS (no endpoint) is never probed."""
    endpoint = env.get("AWS_ENDPOINT_URL")
    if not endpoint or env.get("SENSORMAIL_SES_API"):
        return env
    from worker.aws.clients import endpoint_is_localstack

    return {**env, "SENSORMAIL_SES_API": "v1"} if endpoint_is_localstack(endpoint) else env


def _no_region(error: Exception) -> bool:
    # botocore is imported only by the commands that talk to AWS (`inspect` never loads it).
    exceptions = sys.modules.get("botocore.exceptions")
    return exceptions is not None and isinstance(error, exceptions.NoRegionError)


async def file_chunks(path: Path, size: int = INSPECT_CHUNK) -> AsyncIterator[bytes]:
    """The file in chunks; the next one is read on a thread while the caller parses this one.
    (Waiting for it blocks the event loop, which in `inspect` has nothing else to run.)"""
    with open(path, "rb") as f, ThreadPoolExecutor(1, thread_name_prefix="read-ahead") as reader:
        ahead = reader.submit(f.read, size)
        while chunk := ahead.result():
            ahead = reader.submit(f.read, size)
            yield chunk


def inspect_report(email: ReadEmail, marker: str) -> dict[str, Any]:
    """The `inspect --json` object of DESIGN.md."""
    from worker.mail.recipients import choose_recipients

    found = choose_recipients(email.text, email.html, marker)
    return {
        "from": email.sender,
        "subject": email.subject,
        "recipients": list(found.block.recipients),
        "fallback_reason": found.fallback_reason,
        "attachments": [
            {"filename": a.filename, "content_type": a.content_type, "size": a.size, "sha256": a.sha256}
            for a in email.attachments
        ],
        "text": email.text,
    }


async def _inspect(path: Path, as_json: bool, settings: Settings) -> int:
    try:
        email = await read_email(file_chunks(path), DryRunStore(), settings.limits)
    except FileNotFoundError:
        print(f"sensormail: no such file: {path}", file=sys.stderr)
        return 2
    except IsADirectoryError:
        print(f"sensormail: inspect: {path} is a directory", file=sys.stderr)
        return 2
    except PermissionError:
        print(f"sensormail: inspect: {path}: permission denied", file=sys.stderr)
        return 2
    except OSError as error:  # whatever else opening or reading the file raises (EIO, ...)
        print(f"sensormail: inspect: {path}: {error.strerror or error}", file=sys.stderr)
        return 2
    except MalformedEmail as error:
        print(f"sensormail: malformed email: {error}", file=sys.stderr)
        return 1
    report = inspect_report(email, settings.recipient_marker)
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
        return 0
    print(f"From:        {report['from']}")
    print(f"Subject:     {report['subject']}")
    if report["fallback_reason"]:
        print(f"Outcome:     fallback topic ({report['fallback_reason']})")
    else:
        print(f"Outcome:     send to {', '.join(report['recipients'])}")
    for a in report["attachments"]:
        print(f"Attachment:  {a['filename']} ({a['content_type']}, {a['size']} bytes, sha256 {a['sha256']})")
    return 0


async def _operate(args: argparse.Namespace, settings: Settings) -> int:
    from aiobotocore.session import get_session

    from worker.ops.status import queue_status, redrive

    session = get_session()
    async with session.create_client("sqs", region_name=settings.region) as sqs:
        if args.command == "redrive":
            try:
                moved = await redrive(settings, sqs, args.count)
            except ValueError as error:
                print(f"sensormail: {error}", file=sys.stderr)
                return 2
            print(f"moved {moved} message(s) from the DLQ back to the incoming queue")
            return 0
        async with session.create_client("cloudwatch", region_name=settings.region) as cloudwatch:
            status = await queue_status(settings, sqs, cloudwatch)
    if args.json:
        print(json.dumps(asdict(status)))
    else:
        print("\n".join(status.lines()))
    return 0



async def _revoke(args: argparse.Namespace, settings: Settings) -> int:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    from worker.ops.revoke import revoke

    style = {"addressing_style": "path"} if settings.endpoint_url else {}
    async with get_session().create_client("s3", region_name=settings.region, config=AioConfig(s3=style)) as s3:
        try:
            moved = await revoke(s3, settings.attachments_bucket, settings.attachments_prefix,
                                 message_id=args.message_id, key=args.key)
        except ValueError as error:
            print(f"sensormail: {error}", file=sys.stderr)
            return 2
    for key in moved:
        print(f"revoked: kept as s3://{settings.attachments_bucket}/{key}")
    return 0


async def _smtp_credentials(args: argparse.Namespace, settings: Settings, env: dict[str, str]) -> int:
    from worker.ops.smtp_credentials import DeviceKey, device_settings, parse_device_secret

    if args.secret_id:
        from aiobotocore.session import get_session

        async with get_session().create_client("secretsmanager", region_name=settings.region) as secrets:
            value = await secrets.get_secret_value(SecretId=args.secret_id)
        try:
            key = parse_device_secret(str(value.get("SecretString", "")))
        except ValueError as error:
            print(f"sensormail: {args.secret_id}: {error}", file=sys.stderr)
            return 2
    else:
        key = DeviceKey(args.access_key_id or env.get("AWS_ACCESS_KEY_ID", ""),
                        args.secret_access_key or env.get("AWS_SECRET_ACCESS_KEY", ""))
    region = args.region or key.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not (key.access_key_id and key.secret_access_key):
        raise ConfigError("AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: give the device key (or --secret-id)")
    if not region:
        raise ConfigError("AWS_REGION: the SES region the device sends through (or --region)")
    device = device_settings(key.access_key_id, key.secret_access_key, region,
                             args.intake or key.intake or settings.intake_address)
    print(json.dumps(device.as_dict()) if args.json else "\n".join(device.lines()))
    return 0


async def _kill_switch(args: argparse.Namespace, settings: Settings) -> int:
    from contextlib import AsyncExitStack

    from aiobotocore.session import get_session

    from worker.ops import killswitch

    target = killswitch.Target(settings.configuration_set, settings.ses_api, settings.ecs_cluster, settings.ecs_service)
    if not target.configuration_set and not (target.cluster and target.service):
        raise ConfigError("SENSORMAIL_CONFIGURATION_SET: required (and SENSORMAIL_ECS_CLUSTER, SENSORMAIL_ECS_SERVICE)")
    session = get_session()
    async with AsyncExitStack() as stack:
        ses, ecs, scaling = [
            await stack.enter_async_context(session.create_client(name, region_name=settings.region))
            for name in ("sesv2" if settings.ses_api == "v2" else "ses", "ecs", "application-autoscaling")
        ]
        if args.command == "pause":
            report = await killswitch.pause(ses, ecs, scaling, target)
        else:
            report = await killswitch.resume(ses, ecs, scaling, target, min_tasks=args.min_tasks,
                                             max_tasks=args.max_tasks, desired=args.desired)
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


async def _doctor(args: argparse.Namespace, settings: Settings) -> int:
    from worker.ops.doctor.command import doctor

    text, code = await doctor(args, settings)
    print(text)
    return code


def _health(path: str, max_age_s: float) -> int:
    try:
        age = time.time() - os.path.getmtime(path)
    except OSError:
        print(f"unhealthy: {path} missing (SENSORMAIL_HEALTH_FILE)", file=sys.stderr)
        return 1
    if age > max_age_s:
        print(f"unhealthy: the worker last touched {path} {age:.0f} s ago", file=sys.stderr)
        return 1
    return 0
