"""Shared by the benchmarks: email generators, measured subprocesses, machine facts, tables.

Nothing here is a test. Generators write big emails to disk in chunks (base64 lines, CRLF line
ends as SES stores them), so generating a 500 MB email needs a few MiB, not the email's size.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `worker` from this checkout unless installed or given by --root
    sys.path.append(str(ROOT))
MB = 1_000_000  # throughput and email sizes are in decimal MB
MiB = 1024 * 1024
MARKER = ":Email_Rxers_Code:"
BOUNDARY = "=_sensormail_bench_boundary_7f3k"
_LINE = 57  # raw bytes per 76-character base64 line


def python() -> str:
    """The interpreter running the benchmark: it has the worker's dependencies."""
    return sys.executable


def env_with_path(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a subprocess that imports `worker` from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


@contextmanager
def workdir(prefix: str = "sensormail-bench-") -> Iterator[Path]:
    """A temporary directory for generated emails, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Email generators


def _headers(subject: str, multipart: bool = True) -> bytes:
    lines = [
        "Return-Path: <station7@devices.example.com>",
        "Received: from mail.devices.example.com by inbound-smtp.us-east-1.amazonaws.com",
        "X-SES-Spam-Verdict: PASS",
        "X-SES-Virus-Verdict: PASS",
        "From: Pump Station 7 <station7@devices.example.com>",
        "To: intake-7f3k@mail.example.com",
        f"Subject: {subject}",
        "Date: Mon, 23 Nov 2026 08:29:00 +0000",
        "Message-ID: <bench-0001@devices.example.com>",
        "MIME-Version: 1.0",
    ]
    if multipart:
        lines.append(f'Content-Type: multipart/mixed; boundary="{BOUNDARY}"')
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _text_part(body: str) -> bytes:
    return (
        f"--{BOUNDARY}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 7bit\r\n\r\n"
        f"{body}\r\n"
    ).encode()


def _attachment_head(filename: str, content_type: str) -> bytes:
    return (
        f"--{BOUNDARY}\r\n"
        f'Content-Type: {content_type}; name="{filename}"\r\n'
        f'Content-Disposition: attachment; filename="{filename}"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode()


def _write_base64(out: BinaryIO, size: int, seed: int) -> str:
    """Write `size` pseudo-random bytes base64-encoded in 76-character CRLF lines; their SHA-256.

    Blocks of random data are derived from a seed (SHAKE-256), so a case is the same on every run
    and the generator stays fast without holding the attachment."""
    block = _LINE * 16384  # ~0.9 MiB raw per block, whole lines
    sha = hashlib.sha256()
    counter = 0
    written = 0
    while written < size:
        n = min(block, size - written)
        raw = hashlib.shake_256(f"{seed}:{counter}".encode()).digest(n)
        counter += 1
        sha.update(raw)
        encoded = base64.encodebytes(raw).replace(b"\n", b"\r\n")
        out.write(encoded)
        written += n
    return sha.hexdigest()


@dataclass(frozen=True, slots=True)
class BigEmail:
    path: Path
    size: int  # bytes on disk
    attachments: tuple[tuple[str, int, str], ...]  # (filename, decoded size, sha256)


def write_big_email(path: Path, attachment_sizes: Sequence[int], recipients: str = "ops@example.com") -> BigEmail:
    """A multipart/mixed email: a short text body with a recipient block, then one base64
    attachment per size (decoded bytes), written in ~1 MiB steps."""
    made = []
    with open(path, "wb") as f:
        f.write(_headers(f"Bench: {len(attachment_sizes)} attachment(s)"))
        f.write(b"This is a multi-part message in MIME format.\r\n\r\n")
        f.write(_text_part(f"Scheduled upload from pump station 7.\r\n{MARKER}{recipients}{MARKER}\r\n"))
        for i, size in enumerate(attachment_sizes, 1):
            name = f"capture-{i}.bin"
            f.write(_attachment_head(name, "application/octet-stream"))
            digest = _write_base64(f, size, seed=i)
            made.append((name, size, digest))
        f.write(f"--{BOUNDARY}--\r\n".encode())
    return BigEmail(path, path.stat().st_size, tuple(made))


def decoded_for(total_mb: float) -> int:
    """Decoded bytes whose base64 form (76 chars + CRLF per 57 bytes) is about `total_mb` MB."""
    return int(total_mb * MB * _LINE / 78)


_CSV_ROW = "2026-11-23T08:{m:02d}:{s:02d}Z,pump-2,{v:.3f},{t:.1f},OK\n"


def small_email(n: int, target: int = 20_000, recipients: int = 3) -> bytes:
    """A typical sensor email of about `target` bytes: a text body with a recipient block and a
    CSV attachment (base64), the kind a monitoring device sends many of."""
    rcpts = ", ".join(f"ops{(n + i) % 97}@example.com" for i in range(recipients))
    body = (
        f"Vibration alarm on pump 2 (reading {n}).\r\n"
        "Peak velocity 11.2 mm/s exceeded the 7.1 mm/s limit at 08:29 UTC.\r\n"
        "The trend for the last hour is attached.\r\n\r\n"
        f"{MARKER}{rcpts}{MARKER}\r\n"
    )
    head = _headers(f"Vibration alarm, pump 2 #{n}") + b"This is a multi-part message in MIME format.\r\n\r\n"
    head += _text_part(body) + _attachment_head(f"pump2-trend-{n}.csv", "text/csv")
    tail = f"--{BOUNDARY}--\r\n".encode()
    room = max(0, target - len(head) - len(tail))
    raw_size = room * 57 // 78
    rows = []
    size = i = 0
    while size < raw_size:
        row = _CSV_ROW.format(m=(i // 60) % 60, s=i % 60, v=7 + (i * 37 % 500) / 100, t=40 + (i % 13) / 10)
        rows.append(row)
        size += len(row)
        i += 1
    csv = "".join(rows).encode()[:raw_size]
    return head + base64.encodebytes(csv).replace(b"\n", b"\r\n") + tail


# ---------------------------------------------------------------------------------------------
# Measuring a subprocess


@dataclass(frozen=True, slots=True)
class Run:
    wall_s: float
    cpu_s: float  # user + system CPU of the child
    peak_rss: int  # bytes, the child's ru_maxrss
    returncode: int
    stdout: bytes
    stderr: bytes


def run_measured(
    cmd: Sequence[str], env: dict[str, str] | None = None, timeout: float = 900, cwd: Path | None = None
) -> Run:
    """Run one command as a child and report its own wall time, CPU and peak RSS.

    Each command runs in its own process, started by the small launcher bench/_rusage.py, whose
    os.wait4 gives that one child's rusage: peaks of different cases never mix, and the child's
    peak does not inherit this (larger) process's RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "rusage.json"
        launcher = [python(), "-I", "-S", str(Path(__file__).resolve().parent / "_rusage.py"), str(report)]
        done = subprocess.run([*launcher, *cmd], env=env or env_with_path(), capture_output=True, timeout=timeout,
                              cwd=cwd)
        usage = json.loads(report.read_text())
    return Run(
        wall_s=usage["wall_s"],
        cpu_s=usage["cpu_s"],
        peak_rss=usage["maxrss_kib"] * 1024,  # Linux reports KiB
        returncode=usage["returncode"],
        stdout=done.stdout,
        stderr=done.stderr,
    )


def _busy_jiffies() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def wait_quiet(max_busy: float = 0.1, timeout: float = 120.0) -> float:
    """Wait until the machine is nearly idle (other people's test runs share it): at most
    `max_busy` of one core busy over a second. Returns the busy share last seen (cores)."""
    deadline = time.monotonic() + timeout
    cores = os.cpu_count() or 1
    while True:
        b0, t0 = _busy_jiffies()
        time.sleep(1.0)
        b1, t1 = _busy_jiffies()
        busy = cores * (b1 - b0) / max(1, t1 - t0)
        if busy <= max_busy or time.monotonic() > deadline:
            return busy


# ---------------------------------------------------------------------------------------------
# Reporting


def machine() -> list[str]:
    """What the figures ran on: CPU, cores, memory, Python and the base64 decoder."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) // 1024 // 1024} GiB"
    except OSError:
        pass
    try:
        import pybase64

        simd = f"pybase64 {pybase64.__version__} ({pybase64._pybase64._get_simd_name(pybase64._pybase64._get_simd_path())})"
    except Exception:
        simd = "pybase64 not available (binascii fallback)"
    return [
        f"CPU: {model}, {os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}), memory {mem}",
        f"Python {platform.python_version()} ({platform.python_implementation()}), {platform.system()} {platform.release()}",
        f"base64: {simd}",
        "load average at start: " + " ".join(f"{x:.2f}" for x in os.getloadavg()),
    ]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table, columns padded so it also reads well in a terminal."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
    return "\n".join(lines)


def mib(n: int | float) -> str:
    return f"{n / MiB:.0f} MiB" if n >= 10 * MiB else f"{n / MiB:.1f} MiB"
