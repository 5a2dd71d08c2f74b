"""`sensormail local`: emulator, resources, SMTP stand-in and worker in one process.

It prints where to send mail and one readable block per email the worker handled: who it went
to (or why it went to the fallback topic), and each attachment's link, fetched once to show it
downloads the same bytes. The outbox page (`web.py`, http://127.0.0.1:8025 unless `--web-port`
says otherwise, 0: off) shows each email's whole journey, live.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import re
import smtplib
import ssl
import sys
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import AsyncExitStack
from importlib import resources as package_files
from pathlib import Path

import aiohttp
import anyio

from worker.aws.clients import Clients, open_clients
from worker.config import Settings
from worker.local.container import start_worker, stop_worker
from worker.local.emulator import start_emulator
from worker.local.journal import Journal
from worker.local.observe import Handled, Observer
from worker.local.outbox import capture_sends, open_outbox
from worker.local.provision import INCOMING_PREFIX, provision
from worker.local.smtp import start_smtp
from worker.local.tls import make_certificate
from worker.mail.compose import human_size
from worker.ops.smtp_credentials import DeviceSettings, device_settings
from worker.pipeline import Outcome
from worker.queue.consumer import serve

DEFAULT_INTAKE = "intake-7f3k@mail.example.com"
SAMPLES = ("alarm-with-csv.eml", "html-two-images.eml", "no-recipients.eml")
ONCE_TIMEOUT_S = 120
# A made-up device key (never valid on AWS): the stand-in's SMTP user name and password are derived
# from it exactly as `sensormail smtp-credentials` derives a real device's.
LOCAL_DEVICE_KEY = ("AKIASENSORMAILLOCAL1", "sensormailLocalDeviceKeyNotASecret000000")


def sample_paths(which: str) -> list[Path]:
    folder = package_files.files("worker.local") / "samples"
    names = SAMPLES if which == "all" else (which if which.endswith(".eml") else which + ".eml",)
    return [Path(str(folder / name)) for name in names]


def _out(line: str = "") -> None:
    print(line, flush=True)


async def _check_link(http: aiohttp.ClientSession, url: str, sha256: str) -> str:
    try:
        async with http.get(url) as response:
            if response.status != 200:
                return f"download failed: HTTP {response.status}"
            digest = hashlib.sha256()
            async for chunk in response.content.iter_chunked(1 << 20):
                digest.update(chunk)
    except aiohttp.ClientError as error:
        return f"download failed: {error}"
    return "downloaded, SHA-256 matches" if digest.hexdigest() == sha256 else "downloaded, SHA-256 DIFFERS"


async def _show(outcome: Outcome, http: aiohttp.ClientSession) -> None:
    """One block per email, printed at once so concurrent emails never interleave."""
    checks = [
        await _check_link(http, a.stored.url, a.sha256) if a.stored.url else "not stored"
        for a in outcome.attachments
    ]
    if outcome.kind == "duplicate":
        _out(f"DUPLICATE event for {outcome.ref.key}: {outcome.reason}, nothing sent again\n")
        return
    if outcome.kind == "sent":
        lines = [f'SENT      "{outcome.subject}" from {outcome.sender}', f"          to {', '.join(outcome.recipients)}"]
    else:
        lines = [
            f'FALLBACK  "{outcome.subject}" from {outcome.sender}',
            f"          reason: {outcome.reason}; notice published to the fallback topic",
        ]
    if outcome.rejected:
        lines.append(f"          dropped invalid recipients: {', '.join(outcome.rejected)}")
    if outcome.skipped:
        lines.append(f"          skipped (SES suppression list): {', '.join(outcome.skipped)}")
    for a, check in zip(outcome.attachments, checks):
        lines.append(f"          {a.filename} ({human_size(a.size)}, {a.content_type}) [{check}]")
        lines.append(f"            {a.stored.url}")
    _out("\n".join(lines) + "\n")


def settings_region(env: MutableMapping[str, str]) -> str:
    """The region SMTP credentials are derived for (the emulator's, us-east-1 by default)."""
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"


def send_over_smtp(port: int, intake: str, path: Path, device: DeviceSettings, tls: ssl.SSLContext) -> None:
    """As a device does it: STARTTLS, AUTH, then the email."""
    # SMTP lines end in CRLF; .eml files on disk often use LF (smtplib fixes str, not bytes).
    data = re.sub(rb"\r?\n", b"\r\n", path.read_bytes())
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.starttls(context=tls)
        smtp.login(device.username, device.password)
        smtp.sendmail("station7@devices.example.com", [intake], data)


async def run_local(args: argparse.Namespace, env: MutableMapping[str, str]) -> int:
    to_send: list[Path] = list(args.send)
    if args.send_sample:
        to_send[:0] = sample_paths(args.send_sample)
    for path in to_send:
        if not path.is_file():
            print(f"sensormail: no such file: {path}", file=sys.stderr)
            return 2
    intake = env.get("SENSORMAIL_LOCAL_INTAKE", DEFAULT_INTAKE)
    journal = Journal("container" if args.worker_image else "here") if args.web_port != 0 else None

    with start_emulator(os.environ if env is os.environ else env, args.backend) as emulator:
        resources = await provision()
        overrides = dict(resources.worker_env())
        overrides["SENSORMAIL_INTAKE_ADDRESS"] = intake  # never a recipient: a loop
        if not emulator.has_sesv2:
            overrides["SENSORMAIL_SES_API"] = "v1"
        settings = Settings.from_env({**env, **overrides})
        async with open_clients(settings) as aws, aiohttp.ClientSession() as http, AsyncExitStack() as stack:
            # SES writes this object when the receipt rule is created; the worker must skip it.
            await aws.s3.put_object(
                Bucket=resources.incoming_bucket, Key=INCOMING_PREFIX + "AMAZON_SES_SETUP_NOTIFICATION", Body=b""
            )
            # Like SES SMTP: a certificate (self-signed, made now), STARTTLS, AUTH with device credentials.
            cert_dir = tempfile.TemporaryDirectory(prefix="sensormail-smtp-")
            cert = make_certificate(Path(cert_dir.name))
            tls_port = args.smtps_port if args.smtps_port is not None else (0 if args.smtp_port == 0 else 2465)
            region = settings_region(env)
            device = device_settings(*LOCAL_DEVICE_KEY, region, intake, host="127.0.0.1")
            smtp = await start_smtp(aws.s3, resources.incoming_bucket, intake, args.smtp_port,
                                    tls=cert.server_context(), credentials=(device.username, device.password),
                                    tls_port=tls_port, on_stored=journal.received if journal else None)
            outbox = None
            if journal is not None:
                feed = None
                if not args.worker_image:
                    capture_sends(aws.ses, journal)
                    feed = Observer(emulator, aws.sqs, resources, read_sent=False)
                outbox = await stack.enter_async_context(
                    open_outbox(args.web_port, journal, aws.s3, settings, emulator.kind, feed))
            _out(f"sensormail local: AWS emulator ({emulator.kind}) at {emulator.url}")
            _out(f"  send mail to {intake} through the SES SMTP stand-in on 127.0.0.1:")
            _out(f"    port {smtp.port} (STARTTLS), port {smtp.tls_port} (TLS)")
            _out(f"    user name {device.username}")
            _out(f"    password  {device.password}")
            _out(f"    certificate (self-signed, trust it with --cafile / -CAfile): {cert.cert_path}")
            _out(f"    try: openssl s_client -starttls smtp -crlf -connect 127.0.0.1:{smtp.port} -CAfile {cert.cert_path}")
            if outbox is not None:
                _out(f"  outbox page (this machine only): {outbox}")
            container_env = {**overrides, **_aws_env(env)}
            _out("  the worker image against this emulator (it joins the host's network):")
            _out("    docker run --rm --network host --read-only --tmpfs /tmp \\")
            for name, value in container_env.items():
                _out(f"      -e {name}={value} \\")
            _out("      sensormail")
            _out()

            async def send_all() -> int:
                """Sends each email as a device would; returns how many were refused."""
                refused = 0
                for path in to_send:
                    _out(f"sending {path.name} over SMTP ...")
                    try:
                        await anyio.to_thread.run_sync(send_over_smtp, smtp.port, intake, path, device,
                                                       cert.client_context())
                    except (smtplib.SMTPException, OSError) as error:
                        print(f"sensormail: {path.name} was refused: {error}", file=sys.stderr)
                        refused += 1
                return refused

            if args.worker_image:
                observer = Observer(emulator, aws.sqs, resources)
                failed = await _with_worker_container(args, container_env, settings, observer, http, send_all,
                                                      len(to_send), journal)
            else:
                failed = await _with_worker_here(args, settings, aws, http, send_all, len(to_send), journal)
            await smtp.close()
            cert_dir.cleanup()
    return 1 if failed else 0


def _aws_env(env: MutableMapping[str, str]) -> dict[str, str]:
    """The SDK's variables a worker elsewhere needs for this emulator (fake credentials only)."""
    names = ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    return {name: os.environ.get(name) or env[name] for name in names if os.environ.get(name) or env.get(name)}


async def _with_worker_here(args: argparse.Namespace, settings: Settings, aws: Clients, http: aiohttp.ClientSession,
                            send_all: Callable[[], Awaitable[int]], expected: int, journal: Journal | None) -> bool:
    """The worker in this process; each outcome shown as it is settled. True when something failed."""
    done = anyio.Event()
    handled: list[Outcome] = []

    async def on_outcome(outcome: Outcome) -> None:
        handled.append(outcome)
        if journal is not None:
            journal.outcome(outcome)
        await _show(outcome, http)
        if args.once and len(handled) >= expected:
            done.set()

    failed = False
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(settings, on_outcome, clients=aws, stop=done))
        refused = await send_all()
        failed, expected = refused > 0, expected - refused
        if args.once:
            with anyio.move_on_after(ONCE_TIMEOUT_S) as waited:
                while len(handled) < expected:
                    await anyio.sleep(0.1)
            if waited.cancelled_caught:
                failed = True
                print(f"sensormail: only {len(handled)} of {expected} emails handled in time", file=sys.stderr)
            done.set()
    return failed


async def _with_worker_container(args: argparse.Namespace, container_env: dict[str, str], settings: Settings,
                                 observer: Observer, http: aiohttp.ClientSession,
                                 send_all: Callable[[], Awaitable[int]], expected: int, journal: Journal | None) -> bool:
    """The worker image as a container; what it did read back from the emulator. True when something failed."""
    container = await anyio.to_thread.run_sync(start_worker, args.worker_image, container_env)
    _out(f"worker container {container.short_id} started from {args.worker_image}")
    handled = 0
    try:
        refused = await send_all()
        failed, expected = refused > 0, expected - refused
        with anyio.move_on_after(ONCE_TIMEOUT_S if args.once else math.inf) as waited:
            while not args.once or handled < expected:
                for item in await observer.poll():
                    if journal is not None:
                        journal.observed(item)
                    handled += 1
                    await _show_seen(item, http)
                await anyio.sleep(0.3)
        if waited.cancelled_caught:
            failed = True
            print(f"sensormail: only {handled} of {expected} emails handled in time", file=sys.stderr)
    finally:
        with anyio.CancelScope(shield=True):  # Ctrl-C too stops the container, as ECS would
            stopped = await anyio.to_thread.run_sync(stop_worker, container, settings.drain_timeout_s + 5)
        _out(f"worker container stopped (SIGTERM): exit {stopped.exit_code} in {stopped.seconds:.1f} s")
    if stopped.exit_code != 0:
        print(f"sensormail: the worker container exited {stopped.exit_code}; its log:\n{stopped.logs}", file=sys.stderr)
    return failed or stopped.exit_code != 0


async def _show_seen(item: Handled, http: aiohttp.ClientSession) -> None:
    checks = [await _check_link(http, link.url, link.sha256) if link.url else "not stored" for link in item.links]
    if item.kind == "sent":
        lines = [f'SENT      "{item.subject}"', f"          to {', '.join(item.recipients)}"]
    elif item.kind == "fallback":
        lines = [f'FALLBACK  "{item.subject}"', f"          reason: {item.reason}; notice published to the fallback topic"]
    else:
        lines = [f"DLQ       reason: {item.reason}"]
    for link, check in zip(item.links, checks):
        lines.append(f"          {link.filename} [{check}]")
        lines.append(f"            {link.url}")
    _out("\n".join(lines) + "\n")
