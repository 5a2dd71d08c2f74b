"""Hostile emails: what reading each costs, per MB, beside a normal email of the same size.

    .venv/bin/python bench/hostile.py [--quick] [--size MB] [--repeat N] [--only NAME]... [--root CHECKOUT]

The cases are the generators of tests/hostile_emails.py (RFC 2231 continuations, encoded words,
parameters, folded headers, header blocks, long and bare-CR/LF lines, boundary-like lines,
nesting, empty parts, tiny attachments), each about --size MB (10 by default; --quick: 2), and a
normal email of that size (a text body and one base64 attachment) as the yardstick. Each case runs
in its own process (the worker from --root, so an older checkout can be compared) through the
worker's read path: read_email over 1 MiB chunks into a DryRunStore, with the sender screening
the worker applies to the top-level headers, then the recipient lookup. Reported:

- CPU s: the process's CPU (all threads: the SHA-256 helper too) from the first chunk to the result;
- ms/MB and the ratio to the normal email's ms/MB (target: at most 5x);
- worst chunk CPU: the most CPU one 1 MiB chunk cost (all threads; the reader parses chunks of
  64 KiB and more on a worker thread, so this is not time the event loop is held);
- loop held: the longest a 1 ms sleep on the event loop overslept while the email was read (wall
  time, so a busy machine adds to it); the worker's target is ~50 ms;
- outcome: read, or the MalformedEmail reason when a cap refused the email.

A case that runs longer than --timeout seconds (300) is reported as such.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.append(str(HERE.parent))  # tests.hostile_emails; --root's worker, inserted first, still wins
import _common as c  # noqa: E402

from tests.hostile_emails import CASES, normal  # noqa: E402

CHUNK = 1 << 20
NORMAL = "normal: text body + one base64 attachment"


def run_one(name: str, size: int) -> dict[str, object]:
    """In the child: generate the case, read it as the worker does, report the figures."""
    import anyio

    from worker.config import Limits
    from worker.errors import MalformedEmail
    from worker.mail.policy import screen
    from worker.mail.reader import DryRunStore, read_email
    from worker.mail.recipients import choose_recipients

    raw = normal(size) if name == NORMAL else CASES[name](size)
    per_chunk: list[float] = []
    lag = [0.0]
    opened: list[float] = []

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(raw), CHUNK):
            opened.append(time.process_time())
            yield raw[i : i + CHUNK]  # the reader parses it before asking for the next one
            per_chunk.append(time.process_time() - opened.pop())

    async def chunks_of(data: bytes) -> AsyncIterator[bytes]:
        for i in range(0, len(data), CHUNK):
            yield data[i : i + CHUNK]

    async def ticker() -> None:
        while True:  # how late a 1 ms sleep wakes up: the longest the event loop was held
            started = time.perf_counter()
            await anyio.sleep(0.001)
            lag[0] = max(lag[0], time.perf_counter() - started - 0.001)

    def screened(headers: object) -> str | None:
        return screen(headers, allowed_senders=(), spam_action="quarantine",  # type: ignore[arg-type]
                      own_addresses=("sensormail@example.com",))

    async def go() -> str:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(ticker)
            try:
                email = await read_email(chunks(), DryRunStore(), Limits(), screened)
            except MalformedEmail as error:
                return f"refused: {error}"
            finally:
                if opened:  # refused inside a chunk: it counts too
                    per_chunk.append(time.process_time() - opened.pop())
                tasks.cancel_scope.cancel()
        choose_recipients(email.text, email.html, ":Email_Rxers_Code:")
        return f"read, {len(email.attachments)} attachments"

    warm = normal(200_000)  # first-time costs (lazy imports, the hash thread) are no email's

    async def warm_up() -> None:
        await read_email(chunks_of(warm), DryRunStore(), Limits(), screened)

    anyio.run(warm_up)
    started = time.process_time()
    outcome = anyio.run(go)
    cpu = time.process_time() - started
    return {"bytes": len(raw), "cpu_s": cpu, "worst_chunk_s": max(per_chunk), "loop_lag_s": lag[0], "outcome": outcome}


def measure(name: str, size: int, root: Path, repeat: int, timeout: float, wait: bool) -> dict[str, object] | None:
    """The median of `repeat` runs of one case, each in a fresh process; None when it timed out."""
    env = c.env_with_path()
    env["PYTHONPATH"] = f"{root}:{HERE.parent}"
    runs = []
    for _ in range(repeat):
        if wait:
            c.wait_quiet()
        try:
            done = subprocess.run([c.python(), __file__, "--child", name, "--size-bytes", str(size)], env=env,
                                  capture_output=True, timeout=timeout, cwd=root, check=True)
        except subprocess.TimeoutExpired:
            return None
        runs.append(json.loads(done.stdout))
    runs.sort(key=lambda r: r["cpu_s"])
    median = runs[len(runs) // 2]
    median["worst_chunk_s"] = statistics.median(r["worst_chunk_s"] for r in runs)
    median["loop_lag_s"] = statistics.median(r["loop_lag_s"] for r in runs)
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 MB emails, one run each")
    parser.add_argument("--size", type=float, help="MB per email (default 10; --quick: 2)")
    parser.add_argument("--repeat", type=int, help="runs per case, median shown (default 3; --quick: 1)")
    parser.add_argument("--only", action="append", default=[], help="cases whose name contains this (repeatable)")
    parser.add_argument("--root", type=Path, default=c.ROOT, help="the checkout whose worker runs")
    parser.add_argument("--timeout", type=float, default=300, help="seconds before a case is given up")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine before each run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--size-bytes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.size_bytes)))
        return
    size = int((args.size or (2 if args.quick else 10)) * c.MB)
    repeat = args.repeat or (1 if args.quick else 3)
    root = args.root.resolve()
    names = [n for n in CASES if not args.only or any(o.lower() in n.lower() for o in args.only)]

    print("\n".join(c.machine()))
    print(f"worker from {root}; emails of {size / c.MB:g} MB; {repeat} run(s) per case, median shown\n", flush=True)
    base = measure(NORMAL, size, root, repeat, args.timeout, not args.no_wait)
    assert base is not None, "the normal email timed out"
    base_ms = 1000 * float(base["cpu_s"]) / (int(base["bytes"]) / c.MB)  # type: ignore[arg-type]
    rows = []
    for name in [NORMAL, *names]:
        got = base if name == NORMAL else measure(name, size, root, repeat, args.timeout, not args.no_wait)
        if got is None:
            rows.append([name, "", f"> {args.timeout:g}", "", "", "", "", "timed out"])
            print(f"  {name}: timed out after {args.timeout:g} s", flush=True)
            continue
        mb = int(got["bytes"]) / c.MB  # type: ignore[arg-type]
        ms = 1000 * float(got["cpu_s"]) / mb  # type: ignore[arg-type]
        rows.append([name, f"{mb:.1f}", f"{float(got['cpu_s']):.3f}", f"{ms:.2f}",  # type: ignore[arg-type]
                     f"{ms / base_ms:.1f}x", f"{1000 * float(got['worst_chunk_s']):.1f}",  # type: ignore[arg-type]
                     f"{1000 * float(got['loop_lag_s']):.1f}",  # type: ignore[arg-type]
                     str(got["outcome"])[:70]])
        print(f"  {name}: {float(got['cpu_s']):.3f} s CPU", flush=True)  # type: ignore[arg-type]
    print()
    print(c.table(["case", "MB", "CPU s", "CPU ms/MB", "vs normal", "worst chunk CPU ms", "loop held ms", "outcome"],
                  rows))


if __name__ == "__main__":
    main()
