"""Parsing big emails: `sensormail inspect` against the standard library, side by side.

    .venv/bin/python bench/big_emails.py [--quick] [--repeat N] [--root CHECKOUT]

Generates the emails in a temporary directory (streamed to disk, removed afterwards): 40 MB with
eight attachments, and 40, 200 and 500 MB with one big attachment, all base64 in 76-character
CRLF lines. Each case runs, in its own process so that peaks never mix (os.wait4 gives each
child's own rusage):

- `python -m worker inspect FILE --json`: the whole command, interpreter start-up included;
- `python bench/_stdlib_parse.py FILE`: `email.message_from_bytes` + every part decoded and hashed.

Both must report the attachments the generator wrote (size and SHA-256). The worker's modules are
compiled to bytecode first, as an installed package's are (an editable checkout run with
PYTHONDONTWRITEBYTECODE=1 would otherwise compile them on every start: ~15 ms). Then the worker's parse
alone, timed inside the process after its imports, with pybase64 and with the binascii fallback,
and the start-up cost of the `inspect` command. --root runs another checkout's worker (e.g. an
older commit unpacked with `git archive`) for a before/after comparison.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

HERE = Path(__file__).resolve().parent


def cases(quick: bool) -> list[tuple[str, list[int]]]:
    if quick:
        return [
            ("10 MB, 3 attachments", [c.decoded_for(5), c.decoded_for(3), c.decoded_for(2)]),
            ("40 MB, 1 attachment", [c.decoded_for(40)]),
        ]
    several = [c.decoded_for(mb) for mb in (12, 8, 6, 5, 4, 2, 2, 1)]
    return [
        ("40 MB, 8 attachments", several),
        ("40 MB, 1 attachment", [c.decoded_for(40)]),
        ("200 MB, 1 attachment", [c.decoded_for(200)]),
        ("500 MB, 1 attachment", [c.decoded_for(500)]),
    ]


def median_run(cmd: list[str], env: dict[str, str], repeat: int, cwd: Path) -> tuple[c.Run, int]:
    """The median run by wall time, and the largest peak RSS of all runs."""
    runs = []
    for _ in range(repeat):
        c.wait_quiet()
        run = c.run_measured(cmd, env, cwd=cwd)  # `python -m worker` finds `worker` in cwd first
        if run.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {run.stderr.decode()[-2000:]}")
        runs.append(run)
    runs.sort(key=lambda r: r.wall_s)
    return runs[len(runs) // 2], max(r.peak_rss for r in runs)


def check(made: c.BigEmail, found: list[tuple[str, int, str]], who: str) -> None:
    want = [(name, size, sha) for name, size, sha in made.attachments]
    if found != want:
        raise AssertionError(f"{who} disagrees with the generator on {made.path.name}: {found} != {want}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 and 40 MB only, one run each")
    parser.add_argument("--repeat", type=int, help="runs per case and tool (median reported); default 3")
    parser.add_argument("--root", type=Path, default=c.ROOT, help="the checkout whose worker runs")
    args = parser.parse_args()
    repeat = args.repeat or (1 if args.quick else 3)
    env = c.env_with_path()
    root = args.root.resolve()
    env["PYTHONPATH"] = str(root)
    py = c.python()
    c.run_measured([py, "-m", "compileall", "-q", str(root / "worker")], env, cwd=root)

    print("\n".join(c.machine()))
    print(f"worker from {args.root.resolve()}; {repeat} run(s) per case and tool, median shown\n", flush=True)
    rows, parse_rows = [], []
    with c.workdir() as tmp:
        for name, sizes in cases(args.quick):
            path = tmp / (name.split(",")[0].replace(" ", "") + f"-{len(sizes)}.eml")
            made = c.write_big_email(path, sizes)
            mb = made.size / c.MB

            ours, ours_peak = median_run([py, "-m", "worker", "inspect", str(path), "--json"], env, repeat, root)
            report = json.loads(ours.stdout)
            check(made, [(a["filename"], a["size"], a["sha256"]) for a in report["attachments"]], "inspect")

            std, std_peak = median_run([py, str(HERE / "_stdlib_parse.py"), str(path)], env, repeat, root)
            parts = [p for p in json.loads(std.stdout)["parts"] if p["filename"]]
            check(made, [(p["filename"], p["size"], p["sha256"]) for p in parts], "the standard library")

            for tool, run, peak in (("sensormail inspect", ours, ours_peak), ("stdlib message_from_bytes", std, std_peak)):
                rows.append([
                    name, tool, f"{run.wall_s:.2f}", f"{mb / run.wall_s:.0f}", f"{run.cpu_s:.2f}", c.mib(peak),
                    f"{std.wall_s / run.wall_s:.1f}x" if run is ours else "1x",
                    f"{std_peak / peak:.0f}x less" if run is ours else "",
                ])

            for flag in ("", "--binascii"):
                c.wait_quiet()
                cmd = [py, str(HERE / "_parse_only.py"), str(path)] + ([flag] if flag else [])
                runs = [c.run_measured(cmd, env, cwd=root) for _ in range(repeat)]
                if any(r.returncode for r in runs):  # e.g. an older checkout without the fallback
                    parse_rows.append([name, flag.lstrip("-") or "pybase64", "n/a", "", "fails: "
                                       + runs[0].stderr.decode().strip().splitlines()[-1][:60]])
                    continue
                timed = [json.loads(r.stdout) for r in runs]
                seconds = statistics.median(t["seconds"] for t in timed)
                check(made, [tuple(a) for a in timed[0]["attachments"]], "the parser")
                parse_rows.append([name, timed[0]["decoder"], f"{seconds:.3f}", f"{mb / seconds:.0f}",
                                   f"{std.wall_s / seconds:.0f}x"])
            print(f"  {name}: inspect {ours.wall_s:.2f} s, stdlib {std.wall_s:.2f} s", flush=True)
            path.unlink()

    print("\nWhole processes (`inspect` includes interpreter start-up and imports):\n")
    print(c.table(["email", "tool", "wall s", "MB/s", "CPU s", "peak RSS", "speed vs stdlib", "memory vs stdlib"],
                  rows))
    print("\nThe worker's parse alone (read_email over 1 MiB reads, hashes included; imports excluded):\n")
    print(c.table(["email", "base64 decoder", "parse s", "MB/s", "speed vs stdlib process"], parse_rows))

    imports = "import worker.cli, worker.mail.reader, worker.mail.recipients"
    startup = [c.run_measured([py, "-c", imports], env, cwd=root) for _ in range(5)]
    bare = [c.run_measured([py, "-c", "pass"], env, cwd=root) for _ in range(5)]
    s = sorted(startup, key=lambda r: r.wall_s)[2]
    b = sorted(bare, key=lambda r: r.wall_s)[2]
    print("\nStart-up that `inspect` pays before reading a byte:\n")
    print(c.table(["process", "wall s", "peak RSS"], [
        ["python -c pass", f"{b.wall_s:.3f}", c.mib(b.peak_rss)],
        [f"python -c '{imports}' (what inspect imports)", f"{s.wall_s:.3f}",
         c.mib(s.peak_rss)],
    ]))


if __name__ == "__main__":
    main()
