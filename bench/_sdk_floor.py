"""CPU per AWS call made through aiobotocore, the way the worker makes them; not part of the worker.

    python bench/_sdk_floor.py N [--config NAME]... [--parts K]
        AWS_ENDPOINT_URL set (run so by bench/worker_e2e.py): one JSON line per operation and
        configuration: this process's own CPU (user + system) per call, the wall time per call,
        and how many calls opened a new connection. Several configurations take turns in blocks
        of calls, so that load from other processes weighs on all of them alike.

    python bench/_sdk_floor.py --sweep [--n N] [--repeat R] [--config NAME]... [--transport NAME]...
        Starts moto's server (unless AWS_ENDPOINT_URL is set) and, for the transports that need
        it, bench/_keepalive_proxy.py, each in its own process (their CPU is not counted); runs
        the line above once per transport, R times; prints operation x transport x configuration
        -> client CPU ms/call (median), wall ms/call, and what the body checksums cost alone.

    python bench/_sdk_floor.py --profile [--n N] [--transport NAME] [--config NAME]
        cProfile of N S3 PutObject calls (14 KB): CPU by stage of the call, top 15 by own time.

Transports: `moto` (HTTP, a new TCP connection per call: moto's werkzeug server sends
`Connection: close`), `keepalive` (HTTP through the keep-alive proxy: pooled connections, as
with AWS), `tls` (HTTPS through the proxy with a self-signed RSA-2048 certificate the client
verifies: what the worker pays against AWS, where S3 uploads go out aws-chunked with a CRC32
trailer and an unsigned payload instead of a SHA-256-signed one), `tls-close` (HTTPS, but the
proxy closes every connection as moto does: a TLS handshake per call, what a pool that cannot
keep its connections would cost).

Configurations are the worker's client configuration before any tuning (`baseline`: standard
retries, 4 attempts, 10 s connect, 60 s read timeouts) with one knob changed, all knobs, and
`worker` (whatever worker/aws/clients.py's `_config` returns now).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BASELINE: dict[str, Any] = {
    "retries": {"max_attempts": 4, "mode": "standard"},
    "connect_timeout": 10,
    "read_timeout": 60,
    "max_pool_connections": 10,
}
KNOBS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "no-param-validation": {"parameter_validation": False},
    "checksums-when-required": {
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
    },
    "response-checksum-when-required": {"response_checksum_validation": "when_required"},
    "tcp-keepalive": {"tcp_keepalive": True},
    "fixed-user-agent": {"user_agent": "sensormail"},  # the legacy UA path: no per-request rebuild
}
KNOBS["all"] = {
    k: v for name in ("no-param-validation", "checksums-when-required", "tcp-keepalive", "fixed-user-agent")
    for k, v in KNOBS[name].items()
}
CONFIGS = [*KNOBS, "worker"]
TRANSPORTS = ["moto", "keepalive", "tls", "tls-close"]
PART = 8 * 1024 * 1024

connects = 0


def cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def client_config(name: str, **extra: Any) -> Any:
    from aiobotocore.config import AioConfig

    if name == "worker":
        from worker.aws.clients import _config
        from worker.config import Settings

        return _config(Settings(), **extra)
    return AioConfig(**BASELINE, **KNOBS[name], **extra)


def _count_connects() -> None:
    sock_connect: Any = asyncio.selector_events.BaseSelectorEventLoop.sock_connect

    async def counting_connect(self: Any, *args: Any) -> Any:
        global connects
        connects += 1
        return await sock_connect(self, *args)

    setattr(asyncio.selector_events.BaseSelectorEventLoop, "sock_connect", counting_connect)


class Target:
    """One configuration's clients, bucket and queue, and the operations measured through them."""

    def __init__(self, config: str, s3: Any, sqs: Any, bucket: str, queue: str) -> None:
        self.config, self.s3, self.sqs, self.bucket, self.queue = config, s3, sqs, bucket, queue
        self.body = os.urandom(14_000)
        self.upload_id = ""
        self.big = b""

    async def put(self, i: int) -> None:
        await self.s3.put_object(Bucket=self.bucket, Key=f"k{i}", Body=self.body)

    async def get(self, i: int) -> None:
        response = await self.s3.get_object(Bucket=self.bucket, Key=f"k{i}")
        async with response["Body"] as stream:
            await stream.read()

    async def presign(self, i: int) -> None:
        await self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": f"k{i}"}, ExpiresIn=3600)

    async def send(self, i: int) -> None:
        await self.sqs.send_message(QueueUrl=self.queue, MessageBody="x" * 1500)

    async def receive_delete(self, i: int) -> None:
        got = await self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=1, WaitTimeSeconds=0)
        for m in got.get("Messages", []):
            await self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=m["ReceiptHandle"])

    async def upload_part(self, i: int) -> None:
        await self.s3.upload_part(Bucket=self.bucket, Key="big", UploadId=self.upload_id, PartNumber=i % 2 + 1,
                                  Body=self.big)


OPERATIONS: list[tuple[str, Callable[[Target], Callable[[int], Awaitable[Any]]], int]] = [
    ("S3 PutObject (14 KB)", lambda t: t.put, 1),
    ("S3 GetObject + read (14 KB)", lambda t: t.get, 1),
    ("S3 pre-signed URL (no request)", lambda t: t.presign, 1),
    ("SQS SendMessage (1.5 KB)", lambda t: t.send, 1),
    ("SQS ReceiveMessage + DeleteMessage", lambda t: t.receive_delete, 2),
    ("S3 UploadPart (8 MiB)", lambda t: t.upload_part, 1),
]


async def measure(n: int, configs: list[str], parts: int, profile: bool) -> None:
    """One process: JSON lines to stdout, one per operation and configuration. With several
    configurations the calls alternate between them in blocks, so that a neighbour's load on a
    shared machine weighs on all of them alike."""
    global connects
    from aiobotocore.session import get_session

    _count_connects()
    session = get_session()
    tag = f"{os.getpid()}-{time.monotonic_ns() % 10**9}"
    async with AsyncExitStack() as stack:
        targets = []
        for k, config in enumerate(configs):
            s3 = await stack.enter_async_context(session.create_client(
                "s3", config=client_config(config, s3={"addressing_style": "path"}, signature_version="s3v4")))
            sqs = await stack.enter_async_context(session.create_client("sqs", config=client_config(config)))
            bucket = f"sdk-floor-{tag}-{k}"
            await s3.create_bucket(Bucket=bucket)
            queue = (await sqs.create_queue(QueueName=f"sdk-floor-{tag}-{k}"))["QueueUrl"]
            target = Target(config, s3, sqs, bucket, queue)
            if parts:
                target.upload_id = (await s3.create_multipart_upload(Bucket=bucket, Key="big"))["UploadId"]
                target.big = os.urandom(PART)
            for i in range(5):  # warm: loaders, endpoint cache, connection pool
                await target.put(i)
                await target.send(i)
                await target.receive_delete(i)
            targets.append(target)

        if profile:
            import cProfile
            import pstats

            for target in targets:
                profiler = cProfile.Profile()
                profiler.enable()
                for i in range(n):
                    await target.put(i)
                profiler.disable()
                stats = pstats.Stats(profiler, stream=sys.stdout)
                print(f"\n{n} x S3 PutObject (14 KB), config {target.config}\n")
                print_stages(stats, n)
                print("\nTop 15 functions by own time:")
                stats.strip_dirs().sort_stats("tottime").print_stats(15)
            return

        for name, operation, requests in OPERATIONS:
            count = parts if name.startswith("S3 UploadPart") else n
            if not count:
                continue
            block = max(1, min(25, count // 4))
            totals = {t.config: [0.0, 0.0, 0] for t in targets}
            for start in range(0, count, block):
                for target in targets:
                    call = operation(target)
                    connects = 0
                    c0, t0 = cpu(), time.perf_counter()
                    for i in range(start, min(count, start + block)):
                        await call(i)
                    c1, t1 = cpu(), time.perf_counter()
                    total = totals[target.config]
                    total[0] += c1 - c0
                    total[1] += t1 - t0
                    total[2] += connects
            for config, (cpu_s, wall_s, opened) in totals.items():
                print(json.dumps({
                    "operation": name,
                    "config": config,
                    "cpu_ms_per_call": 1000 * cpu_s / count / requests,
                    "wall_ms_per_call": 1000 * wall_s / count / requests,
                    "new_connections_per_call": opened / count / requests,
                }), flush=True)
        for target in targets:
            if target.upload_id:
                await target.s3.abort_multipart_upload(Bucket=target.bucket, Key="big", UploadId=target.upload_id)


# Where a call's CPU goes, by cumulative time of the functions that do each stage (they nest:
# the HTTP send includes the new connection, the whole call includes all of them).
STAGES = [
    ("whole call (_make_api_call)", "aiobotocore/client.py", "_make_api_call"),
    ("  parameter validation", "botocore/validate.py", "validate"),
    ("  serialization (incl. validation)", "botocore/validate.py", "serialize_to_request"),
    ("  endpoint ruleset resolution", "aiobotocore/client.py", "_resolve_endpoint_ruleset"),
    ("  User-Agent string (built twice per call)", "botocore/useragent.py", "to_string"),
    ("  request checksum (resolve + apply)", "botocore/httpchecksum.py", "resolve_checksum_context"),
    ("", "aiobotocore/httpchecksum.py", "apply_request_checksum"),
    ("  SigV4 signing", "aiobotocore/signers.py", "sign"),
    ("  HTTP send (aiohttp)", "aiobotocore/httpsession.py", "send"),
    ("    of which a new connection", "aiohttp/connector.py", "_create_connection"),
    ("  response parsing", "aiobotocore/parsers.py", "parse"),
    ("  retry checks", "aiobotocore/endpoint.py", "_needs_retry"),
]


def print_stages(stats: Any, n: int) -> None:
    import _common as c

    entries: dict[tuple[str, str], float] = {}
    idle = total = 0.0
    for (filename, _line, function), (_cc, _nc, own, cumulative, _callers) in stats.stats.items():
        total += own
        if function == "<method 'poll' of 'select.epoll' objects>":
            idle += own
        key = ("/".join(Path(filename).parts[-2:]), function)
        entries[key] = max(entries.get(key, 0.0), cumulative)  # useragent.py: the outer to_string
    busy = total - idle
    rows = [["everything but waiting in epoll", f"{1000 * busy / n:.3f}", "100%"]]
    for label, filename, function in STAGES:
        spent = entries.get((filename, function), 0.0)
        if label:
            rows.append([label, f"{1000 * spent / n:.3f}", f"{100 * spent / busy:.0f}%"])
        else:  # continues the row above
            rows[-1][1] = f"{float(rows[-1][1]) + 1000 * spent / n:.3f}"
            rows[-1][2] = f"{float(rows[-1][1]) * n / 10 / busy:.0f}%"
    print(f"Stages (cumulative, under the profiler, which slows Python code ~2x; the shares are the point):\n")
    print(c.table(["stage", "ms/call (profiled)", "share"], rows), flush=True)


# ---------------------------------------------------------------------------------------------
# The sweep: servers in their own processes, one measured process per cell


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """An RSA-2048 certificate for 127.0.0.1 (AWS's endpoints present RSA-2048 certificates)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    return cert_path, key_path


@contextmanager
def _server(args: list[str], env: dict[str, str]) -> Iterator[str]:
    """A server process that prints its URL on its first line."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url:
            raise RuntimeError(f"{args} printed no URL")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


_MOTO = """
import logging, sys, time
logging.disable(logging.INFO)
from worker.local.emulator import _moto
with _moto() as url:
    print(url, flush=True)
    time.sleep(10**6)
"""


def _env() -> dict[str, str]:
    import _common as c

    env = c.env_with_path()
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        env.setdefault(name, value)
    return env


@contextmanager
def _transports(env: dict[str, str], transports: list[str]) -> Iterator[dict[str, dict[str, str]]]:
    """Each transport's environment for a measured process: its endpoint and the CA to trust."""
    import _common as c

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        moto_url = env.get("AWS_ENDPOINT_URL") or stack.enter_context(_server([c.python(), "-c", _MOTO], env))
        cert, key = _self_signed(Path(tmp))
        proxy = [c.python(), str(HERE / "_keepalive_proxy.py"), moto_url]
        urls = {"moto": moto_url}
        if "keepalive" in transports:
            urls["keepalive"] = stack.enter_context(_server(proxy, env))
        if "tls" in transports:
            urls["tls"] = stack.enter_context(_server([*proxy, str(cert), str(key)], env))
        if "tls-close" in transports:
            urls["tls-close"] = stack.enter_context(_server([*proxy, str(cert), str(key), "close"], env))
        yield {t: dict(env, AWS_ENDPOINT_URL=urls[t], AWS_CA_BUNDLE=str(cert)) for t in transports}


def sweep(n: int, repeat: int, configs: list[str], transports: list[str], parts: int) -> None:
    import _common as c

    env = _env()
    print("\n".join(c.machine()))
    results: dict[tuple[str, str, str], list[tuple[float, float, float]]] = {}
    operations: list[str] = []
    with _transports(env, transports) as envs:
        for r in range(repeat):
            for transport in transports:
                c.wait_quiet(timeout=20)
                run = subprocess.run(
                    [c.python(), __file__, str(n), "--parts", str(parts), *(f"--config={x}" for x in configs)],
                    env=envs[transport], capture_output=True, check=True, text=True,
                )
                for line in run.stdout.splitlines():
                    d = json.loads(line)
                    if d["operation"] not in operations:
                        operations.append(d["operation"])
                    results.setdefault((d["operation"], transport, d["config"]), []).append(
                        (d["cpu_ms_per_call"], d["wall_ms_per_call"], d["new_connections_per_call"]))
                print(f"  run {r + 1}/{repeat}: {transport}", file=sys.stderr, flush=True)
    print(f"\nOne aiobotocore call, {n} per configuration ({parts} for 8 MiB parts), the configurations "
          f"alternating in blocks within one process per transport; that process's own CPU (the emulator's "
          f"and the proxy's excluded); median of {repeat} runs.\n")
    rows = []
    for operation in operations:
        for transport in transports:
            base = results.get((operation, transport, configs[0]))
            for config in configs:
                got = results.get((operation, transport, config))
                if not got:
                    continue
                cpu_ms = statistics.median(x[0] for x in got)
                delta = ""
                if base and config != configs[0]:
                    delta = f"{cpu_ms - statistics.median(x[0] for x in base):+.3f}"
                rows.append([operation, transport, config, f"{cpu_ms:.3f}", delta,
                             f"{statistics.median(x[1] for x in got):.2f}",
                             f"{statistics.median(x[2] for x in got):.2f}"])
    print(c.table(["operation", "transport", "configuration", "client CPU ms/call",
                   f"vs {configs[0]}", "wall ms/call", "new connections/call"], rows))
    hashing_table()


def profile(n: int, configs: list[str], transport: str) -> None:
    import _common as c

    with _transports(_env(), [transport]) as envs:
        subprocess.run([c.python(), __file__, str(n), "--profile-here", *(f"--config={x}" for x in configs)],
                       env=envs[transport], check=True)


def hashing_table() -> None:
    """What the body checksums cost by themselves on this machine."""
    import hashlib
    import zlib

    import _common as c

    rows = []
    for label, size in (("14 KB", 14_000), ("8 MiB", PART)):
        data = os.urandom(size)
        loops = max(3, 20_000_000 // size)
        for name, fn in (
            ("CRC32 (zlib; botocore's default S3 request checksum)", lambda: zlib.crc32(data)),
            ("SHA-256 (SigV4 signed payload)", lambda: hashlib.sha256(data).digest()),
            ("MD5 (Content-MD5)", lambda: hashlib.md5(data).digest()),
        ):
            t0 = time.process_time()
            for _ in range(loops):
                fn()
            rows.append([label, name, f"{1000 * (time.process_time() - t0) / loops:.3f}"])
    print("\nBody checksums alone (CPU ms per body):\n")
    print(c.table(["body", "checksum", "CPU ms"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("calls", nargs="?", type=int, help="calls per operation and configuration, in this process")
    parser.add_argument("--config", action="append", choices=CONFIGS,
                        help="configuration(s); default: worker, or all of them in a sweep")
    parser.add_argument("--parts", type=int, default=0, help="also upload this many 8 MiB parts")
    parser.add_argument("--sweep", action="store_true", help="transport x configuration table")
    parser.add_argument("--profile", action="store_true", help="cProfile of N S3 PutObject calls")
    parser.add_argument("--profile-here", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=300, help="calls per operation in a sweep or profile")
    parser.add_argument("--repeat", type=int, default=3, help="runs per transport in a sweep (median)")
    parser.add_argument("--transport", action="append", choices=TRANSPORTS, help="default: all in a sweep")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    if args.sweep:
        sweep(args.n, args.repeat, args.config or CONFIGS, args.transport or TRANSPORTS,
              args.parts or max(3, args.n // 20))
    elif args.profile:
        profile(args.n, args.config or ["baseline"], (args.transport or ["moto"])[0])
    else:
        asyncio.run(measure(args.calls or 300, args.config or ["worker"], args.parts, args.profile_here))


if __name__ == "__main__":
    main()
