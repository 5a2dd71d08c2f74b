"""The worker end to end: emails through `sensormail run` against the embedded emulator.

    .venv/bin/python bench/worker_e2e.py [--quick] [--only sdk|small|large|memory|mixed] [--transport keepalive|tls]

The emulator (moto's server) runs in this process; the worker is `sensormail run` in its own
process, configured by `provision()`'s environment as in production. Each case provisions fresh
buckets and queues, stores its emails under `incoming/` (the bucket notification queues one event
each), then starts the worker and measures from its "worker started" line until every email has
its "email processed" line:

- emails per second over that window;
- worker CPU per email: the worker process's own utime+stime (/proc/<pid>/stat) over the window,
  so the emulator's cost is not in it (the emulator's and this harness's CPU is shown apart);
- the worker's peak RSS (VmHWM) and its RSS when idle after start-up.

Tables: the SDK's CPU per call (the floor under the worker's); small emails at several
concurrency settings; one large email streamed from S3 into a multipart upload at several part
sizes and parts in flight; several large emails at once (memory at concurrency N); a mix of small
and large emails. --worker-python runs the worker on another interpreter (e.g. the image's 3.12).
--transport puts bench/_keepalive_proxy.py between the worker and moto: moto closes every
connection, AWS does not, so `keepalive` (HTTP) and `tls` (HTTPS, a self-signed certificate the
worker trusts through AWS_CA_BUNDLE) show the worker's CPU with pooled connections.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

from worker.local.emulator import start_emulator  # noqa: E402
from worker.local.provision import INCOMING_PREFIX, LocalResources, emulator_clients, provision  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
WORKER_PYTHON: list[str] = []  # --worker-python: run the worker on another interpreter
WORKER_ENDPOINT: dict[str, str] = {}  # --transport: the worker reaches the emulator through a proxy
PROFILE: list[str] = []  # --profile FILE: the worker runs under cProfile (each run overwrites FILE)


def proc_cpu_s(pid: int) -> float:
    """utime + stime of one process, in seconds (its threads included, its children not)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kib(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


class RequestCounter(logging.Handler):
    """Counts the requests moto's server answers (werkzeug logs one line for each)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


REQUESTS = RequestCounter()


def self_cpu_s() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


@dataclass
class WorkerRun:
    """One `sensormail run` process and what its JSON log lines said."""

    proc: subprocess.Popen[bytes]
    started: threading.Event = field(default_factory=threading.Event)
    outcomes: Counter[str] = field(default_factory=Counter)
    done_keys: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            message = line.get("message")
            if message == "worker started":
                self.started.set()
            elif message == "email processed":
                with self.lock:
                    outcome = str(line.get("outcome"))
                    self.outcomes[outcome] += 1
                    if outcome in ("sent", "fallback", "duplicate"):
                        self.done_keys.add(str(line.get("s3_key")))
                    elif line.get("error"):
                        self.errors.append(str(line["error"]))
                    self.changed.notify_all()
            elif line.get("level") in ("ERROR", "CRITICAL"):
                with self.lock:
                    self.errors.append(str(line.get("message")) + " " + str(line.get("error", "")))

    def wait_done(self, keys: set[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.lock:
            while not keys <= self.done_keys:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return False
                self.changed.wait(min(left, 0.5))
        return True


@dataclass(frozen=True)
class Result:
    emails: int
    wall_s: float
    worker_cpu_s: float
    harness_cpu_s: float  # this process: the emulator's server threads, uploads excluded
    requests: int  # AWS API requests the emulator answered during the window (all the worker's)
    idle_rss: int
    peak_rss: int
    outcomes: dict[str, int]
    errors: list[str]

    @property
    def per_second(self) -> float:
        return self.emails / self.wall_s

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.worker_cpu_s / self.emails


async def store_emails(resources: LocalResources, emails: list[bytes]) -> set[str]:
    """Put each email where the SES receipt rule would; wait until every event is queued."""
    keys = [f"{INCOMING_PREFIX}bench{secrets.token_hex(12)}" for _ in emails]
    async with emulator_clients() as cl:
        limit = anyio.CapacityLimiter(8)

        async def put(key: str, raw: bytes) -> None:
            async with limit:
                await cl["s3"].put_object(Bucket=resources.incoming_bucket, Key=key, Body=raw)

        async with anyio.create_task_group() as tg:
            for key, raw in zip(keys, emails):
                tg.start_soon(put, key, raw)
        with anyio.fail_after(120):
            while True:
                attrs = await cl["sqs"].get_queue_attributes(
                    QueueUrl=resources.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
                )
                if int(attrs["Attributes"]["ApproximateNumberOfMessages"]) >= len(emails):
                    break
                await anyio.sleep(0.1)
    return set(keys)


def run_case(
    emails: list[bytes],
    concurrency: int,
    *,
    part_size: int | None = None,
    parts_in_flight: int | None = None,
    read_chunk: int | None = None,
    timeout: float = 900,
) -> Result:
    c.wait_quiet()
    resources = anyio.run(provision, f"b{secrets.token_hex(4)}", "alerts@sensormail.test")
    keys = anyio.run(store_emails, resources, emails)
    env = c.env_with_path(resources.worker_env())
    env.update(WORKER_ENDPOINT)
    env.update(
        SENSORMAIL_CONCURRENCY=str(concurrency),
        SENSORMAIL_WAIT_SECONDS="1",
        SENSORMAIL_LOG_LEVEL="INFO",
        SENSORMAIL_EMAIL_TIMEOUT_SECONDS="1800",
    )
    if part_size:
        env["SENSORMAIL_PART_SIZE_BYTES"] = str(part_size)
    if read_chunk:
        env["SENSORMAIL_READ_CHUNK_BYTES"] = str(read_chunk)
    if parts_in_flight is not None:
        env["SENSORMAIL_PARTS_IN_FLIGHT"] = str(parts_in_flight)
    cmd = [*(WORKER_PYTHON or [c.python()]), *PROFILE, "-m", "worker", "run"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    worker = WorkerRun(proc)
    try:
        if not worker.started.wait(60):
            raise RuntimeError("the worker did not start")
        t0, cpu0, harness0, req0 = time.perf_counter(), proc_cpu_s(proc.pid), self_cpu_s(), REQUESTS.count
        idle_rss = proc_status_kib(proc.pid, "VmRSS") * 1024
        ok = worker.wait_done(keys, timeout)
        t1, cpu1, harness1, req1 = time.perf_counter(), proc_cpu_s(proc.pid), self_cpu_s(), REQUESTS.count
        peak = proc_status_kib(proc.pid, "VmHWM") * 1024
        if not ok:
            worker.errors.append(f"timed out: {len(worker.done_keys & keys)}/{len(keys)} done")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return Result(
        emails=len(emails),
        wall_s=t1 - t0,
        worker_cpu_s=cpu1 - cpu0,
        harness_cpu_s=harness1 - harness0,
        requests=req1 - req0,
        idle_rss=idle_rss,
        peak_rss=peak,
        outcomes=dict(worker.outcomes),
        errors=worker.errors[:3],
    )


def outcome_text(r: Result) -> str:
    text = ", ".join(f"{k} {v}" for k, v in sorted(r.outcomes.items()))
    return text + (f" (errors: {'; '.join(r.errors)})" if r.errors else "")


def small_table(n: int, concurrencies: list[int]) -> None:
    emails = [c.small_email(i) for i in range(n)]
    rows = []
    for conc in concurrencies:
        r = run_case(emails, conc)
        rows.append([
            conc, r.emails, f"{r.wall_s:.1f}", f"{r.per_second:.1f}", f"{r.cpu_ms:.2f}",
            f"{1000 * r.harness_cpu_s / r.emails:.1f}", f"{r.requests / r.emails:.1f}",
            c.mib(r.idle_rss), c.mib(r.peak_rss), outcome_text(r),
        ])
        print(f"  concurrency {conc}: {r.per_second:.1f}/s, {r.cpu_ms:.2f} ms CPU/email", flush=True)
    print(f"\nSmall emails (~{len(emails[0]) // 1000} KB, one CSV attachment, 3 recipients), {n} per run:\n")
    print(c.table(
        ["concurrency", "emails", "wall s", "emails/s", "worker CPU ms/email", "emulator CPU ms/email",
         "API calls/email", "worker idle RSS", "worker peak RSS", "outcomes"],
        rows,
    ))


def large_table(
    tmp: Path, size_mb: int, part_sizes: list[int], in_flight: list[int], repeat: int, concurrency: int = 1
) -> None:
    path = tmp / f"large-{size_mb}.eml"
    made = c.write_big_email(path, [c.decoded_for(size_mb)])
    raw = path.read_bytes()
    rows = []
    for part in part_sizes:
        for k in in_flight:
            runs = sorted((run_case([raw], concurrency, part_size=part * c.MiB, parts_in_flight=k)
                           for _ in range(repeat)), key=lambda r: r.wall_s)
            r = runs[len(runs) // 2]  # the median run by wall time
            peak = max(x.peak_rss for x in runs)
            idle = min(x.idle_rss for x in runs)
            mbps = made.size / c.MB / r.wall_s
            rows.append([
                f"{part} MiB", k or "0 (sequential)", f"{r.wall_s:.2f}",
                f"{runs[0].wall_s:.2f}-{runs[-1].wall_s:.2f}", f"{mbps:.0f}", f"{r.worker_cpu_s:.2f}",
                f"{r.harness_cpu_s:.2f}", c.mib(idle), c.mib(peak), c.mib(peak - idle), outcome_text(r),
            ])
            print(f"  part {part} MiB x {k} in flight: {r.wall_s:.2f} s, peak {c.mib(peak)}", flush=True)
    del raw
    print(f"\nOne {made.size / c.MB:.0f} MB email (one {made.attachments[0][1] / c.MB:.0f} MB attachment, base64) "
          f"streamed from S3 into a multipart upload, concurrency {concurrency}; median of {repeat} run(s) "
          "(peak: the largest of them):\n")
    print(c.table(
        ["part size", "parts in flight", "wall s", "wall s range", "MB/s", "worker CPU s", "emulator CPU s",
         "worker idle RSS", "worker peak RSS", "peak - idle", "outcomes"],
        rows,
    ))


def memory_table(tmp: Path, size_mb: int, counts: list[int], part: int, in_flight: list[int]) -> None:
    """N large emails at once (concurrency N): the worker's peak RSS against the formula."""
    path = tmp / f"large-{size_mb}.eml"
    if not path.exists():  # the large-email table may have written it already
        c.write_big_email(path, [c.decoded_for(size_mb)])
    made = path.stat().st_size
    raw = path.read_bytes()
    rows = []
    for k in in_flight:
        for n in counts:
            r = run_case([raw] * n, n, part_size=part * c.MiB, parts_in_flight=k)
            per_email = (r.peak_rss - r.idle_rss) / n
            rows.append([n, k or "0 (sequential)", f"{r.wall_s:.2f}", f"{n * made / c.MB / r.wall_s:.0f}",
                         c.mib(r.idle_rss), c.mib(r.peak_rss), c.mib(per_email), outcome_text(r)])
            print(f"  {n} x {size_mb} MB, {k} in flight: peak {c.mib(r.peak_rss)}", flush=True)
    del raw
    print(f"\n{counts} emails of {made / c.MB:.0f} MB at once (concurrency = emails), part size {part} MiB:\n")
    print(c.table(["emails at once", "parts in flight", "wall s", "MB/s", "worker idle RSS", "worker peak RSS",
                   "(peak - idle) / email", "outcomes"], rows))


def sdk_table(n: int) -> None:
    """What one AWS call costs a client process: the floor under the worker's CPU per email."""
    run = subprocess.run(
        [c.python(), str(Path(__file__).resolve().parent / "_sdk_floor.py"), str(n)],
        env=c.env_with_path(WORKER_ENDPOINT), capture_output=True, check=True,
    )
    rows = []
    for line in run.stdout.decode().splitlines():
        d = json.loads(line)
        rows.append([d["operation"], f"{d['cpu_ms_per_call']:.2f}", f"{d['wall_ms_per_call']:.2f}",
                     f"{d['new_connections_per_call']:.1f}"])
    print(f"\nOne aiobotocore call, {n} in a row from one process (its own CPU; the emulator's excluded):\n")
    print(c.table(["operation", "client CPU ms/call", "wall ms/call", "new connections/call"], rows))


def mixed_table(tmp: Path, n_small: int, large_mb: int, n_large: int, concurrencies: list[int]) -> None:
    paths = []
    for i in range(n_large):
        path = tmp / f"mixed-{i}.eml"
        c.write_big_email(path, [c.decoded_for(large_mb / 2), c.decoded_for(large_mb / 4), c.decoded_for(large_mb / 4)])
        paths.append(path)
    emails = [c.small_email(i) for i in range(n_small)] + [p.read_bytes() for p in paths]
    rows = []
    for conc in concurrencies:
        r = run_case(emails, conc)
        rows.append([
            conc, f"{n_small} + {n_large}", f"{r.wall_s:.1f}", f"{r.per_second:.1f}",
            f"{r.worker_cpu_s:.2f}", c.mib(r.idle_rss), c.mib(r.peak_rss), outcome_text(r),
        ])
        print(f"  concurrency {conc}: {r.wall_s:.1f} s, peak {c.mib(r.peak_rss)}", flush=True)
    print(f"\nMixed: {n_small} small emails and {n_large} emails of {large_mb} MB (3 attachments each):\n")
    print(c.table(
        ["concurrency", "emails", "wall s", "emails/s", "worker CPU s", "worker idle RSS", "worker peak RSS",
         "outcomes"],
        rows,
    ))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller counts and sizes, for a smoke run")
    parser.add_argument("--only", choices=("sdk", "small", "large", "memory", "mixed"), action="append")
    parser.add_argument("--transport", choices=("moto", "keepalive", "tls"), default="moto",
                        help="how the worker reaches the emulator: directly (a new connection per call, "
                             "as moto closes each), or through bench/_keepalive_proxy.py with pooled "
                             "connections, over HTTP or TLS (as against AWS)")
    parser.add_argument("--profile", metavar="FILE", help="run the worker under cProfile, writing FILE "
                        "(read it with pstats; with one case, e.g. --only small --concurrency 4)")
    parser.add_argument("--worker-python", help="the interpreter that runs the worker (default: this one)")
    parser.add_argument("--small", type=int, help="small emails per run")
    parser.add_argument("--large-mb", type=int, help="size of the large email")
    parser.add_argument("--concurrency", type=int, action="append", help="concurrency values (repeatable)")
    parser.add_argument("--part-mib", type=int, action="append", help="part sizes in MiB (repeatable)")
    parser.add_argument("--in-flight", type=int, action="append", help="parts in flight (repeatable)")
    parser.add_argument("--repeat", type=int, help="runs per large-email setting (median reported)")
    args = parser.parse_args()
    only = set(args.only or ["sdk", "small", "large", "memory", "mixed"])
    if args.profile:
        PROFILE[:] = ["-m", "cProfile", "-o", str(Path(args.profile).resolve())]
    if args.worker_python:
        WORKER_PYTHON[:] = [args.worker_python]
    n_small = args.small or (100 if args.quick else 500)
    large_mb = args.large_mb or (40 if args.quick else 200)
    concurrencies = args.concurrency or ([1, 4] if args.quick else [1, 2, 4, 8, 16, 32])
    part_sizes = args.part_mib or ([8] if args.quick else [5, 8, 16, 32])
    in_flight = args.in_flight or ([0, 2] if args.quick else [0, 1, 2, 4])
    repeat = args.repeat or (1 if args.quick else 3)

    werkzeug = logging.getLogger("werkzeug")  # one line per request: counted, not printed
    werkzeug.setLevel(logging.INFO)
    werkzeug.propagate = False
    werkzeug.handlers[:] = [REQUESTS]
    print("\n".join(c.machine()))
    with start_emulator(os.environ, "moto") as emulator, c.workdir() as tmp, ExitStack() as stack:
        print(f"emulator: {emulator.kind} at {emulator.url} (in this process)", flush=True)
        if args.transport != "moto":
            from _sdk_floor import _transports

            proxied = stack.enter_context(_transports(dict(os.environ), [args.transport]))[args.transport]
            WORKER_ENDPOINT.update({k: proxied[k] for k in ("AWS_ENDPOINT_URL", "AWS_CA_BUNDLE")})
        print(f"worker's endpoint: {args.transport} ({WORKER_ENDPOINT.get('AWS_ENDPOINT_URL', emulator.url)})",
              flush=True)
        version = subprocess.run([*(WORKER_PYTHON or [c.python()]), "-c", "import sys; print(sys.version.split()[0])"],
                                 capture_output=True, text=True).stdout.strip()
        print(f"worker: Python {version} ({(WORKER_PYTHON or [c.python()])[0]})", flush=True)
        if "sdk" in only:
            sdk_table(100 if args.quick else 300)
        if "small" in only:
            small_table(n_small, concurrencies)
        if "large" in only:
            large_table(tmp, large_mb, part_sizes, in_flight, repeat)
        if "memory" in only:
            memory_table(tmp, large_mb, [1, 2] if args.quick else [1, 2, 4], 8, [0, 1] if args.quick else [0, 1, 2])
        if "mixed" in only:
            mixed_table(tmp, n_small // 5, large_mb // 5, 3, [1, 4] if args.quick else [1, 2, 4, 8])


if __name__ == "__main__":
    main()
