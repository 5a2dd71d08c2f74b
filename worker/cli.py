"""`sensormail` subcommands; the only place that reads os.environ and configures logging."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
from botocore.exceptions import NoRegionError

from worker.config import Settings
from worker.errors import ConfigError, MalformedEmail
from worker.reader import DryRunStore, ReadEmail, read_email
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

    revoke = sub.add_parser("revoke", help="make every link of one email stop working (files are kept)")
    revoke.add_argument("message_id", nargs="?", help="the SES message id (the incoming object's name)")
    revoke.add_argument("--key", help="revoke one attachment by its S3 key instead")

    local = sub.add_parser("local", help="the whole system on this machine, on an AWS emulator")
    local.add_argument("--smtp-port", type=int, default=2525, help="SMTP stand-in for SES inbound (0: any free port)")
    local.add_argument("--send-sample", nargs="?", const="alarm-with-csv", default=None, metavar="NAME|all",
                       help="send a bundled sample once ready (alarm-with-csv, html-two-images, "
                            "no-recipients, or all)")
    local.add_argument("--send", type=Path, action="append", default=[], metavar="FILE.eml",
                       help="send this email once ready (repeatable)")
    local.add_argument("--once", action="store_true",
                       help="exit after the emails sent with --send-sample/--send are handled")
    local.add_argument("--backend", choices=("auto", "moto", "localstack"), default="auto",
                       help="auto: AWS_ENDPOINT_URL if set, else LocalStack if Docker answers, else moto")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = os.environ
    configure_logging(env.get("SENSORMAIL_LOG_LEVEL", "INFO"), stream=sys.stderr if args.command in ("inspect", "local") else None)
    try:
        if args.command == "run":
            settings = Settings.from_env(env)
            from worker.consumer import serve

            anyio.run(serve, settings)
            return 0
        if args.command == "inspect":
            settings = Settings.from_env(env, require_aws=False)
            return anyio.run(_inspect, args.file, args.json, settings)
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
        if args.command == "local":
            from worker.local.run import run_local

            return anyio.run(run_local, args, env)
    except ConfigError as error:
        print(f"sensormail: configuration error: {error}", file=sys.stderr)
        return 2
    except NoRegionError:
        print("sensormail: configuration error: AWS_REGION: not set, and no region in the AWS config", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unknown command {args.command}")


async def file_chunks(path: Path, size: int = INSPECT_CHUNK) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as f:
        while chunk := await f.read(size):
            yield chunk


def inspect_report(email: ReadEmail, marker: str) -> dict[str, Any]:
    """The `inspect --json` object of DESIGN.md."""
    from worker.pipeline import choose_recipients

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

    from worker.ops import queue_status, redrive

    session = get_session()
    async with session.create_client("sqs") as sqs:
        if args.command == "redrive":
            try:
                moved = await redrive(settings, sqs, args.count)
            except ValueError as error:
                print(f"sensormail: {error}", file=sys.stderr)
                return 2
            print(f"moved {moved} message(s) from the DLQ back to the incoming queue")
            return 0
        async with session.create_client("cloudwatch") as cloudwatch:
            status = await queue_status(settings, sqs, cloudwatch)
    if args.json:
        print(json.dumps(asdict(status)))
    else:
        print("\n".join(status.lines()))
    return 0



async def _revoke(args: argparse.Namespace, settings: Settings) -> int:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    from worker.revoke import revoke

    style = {"addressing_style": "path"} if settings.endpoint_url else {}
    async with get_session().create_client("s3", config=AioConfig(s3=style)) as s3:
        try:
            moved = await revoke(s3, settings.attachments_bucket, settings.attachments_prefix,
                                 message_id=args.message_id, key=args.key)
        except ValueError as error:
            print(f"sensormail: {error}", file=sys.stderr)
            return 2
    for key in moved:
        print(f"revoked: kept as s3://{settings.attachments_bucket}/{key}")
    return 0
