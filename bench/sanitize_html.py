"""The html sanitiser (worker/mail/sanitize.py): CPU time on normal and hostile html.

    .venv/bin/python bench/sanitize_html.py [--quick]

Each input is filled up to the sanitiser's limits (MAX_HTML_CHARS, MAX_HTML_TAGS: what can reach
nh3; more is shown as text) and run through sanitize_html in this process pinned to one core; CPU
time (`time.process_time`), the best of five runs, and its ratio to the real-world row (the html
bodies of tests/data/realworld/). The hostile rows are what makes html5ever work hardest; the last
row is the 1 MB input that took 164 s before the limits.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import os
import sys
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common as c  # noqa: E402

from worker.mail.sanitize import MAX_HTML_CHARS, MAX_HTML_TAGS, sanitize_html  # noqa: E402


def realworld_html() -> str:
    """Every html body of the real-world corpus, concatenated."""
    bodies = []
    for path in sorted((c.ROOT / "tests" / "data" / "realworld").rglob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        body = msg.get_body(("html",))
        if body is not None:
            try:
                bodies.append(str(body.get_content()))
            except (LookupError, ValueError):
                continue
    return "\n".join(bodies)


def fill(piece: str) -> str:
    """As many pieces as fit within both limits."""
    n = min(MAX_HTML_CHARS // max(len(piece), 1), MAX_HTML_TAGS // max(piece.count("<"), 1))
    return piece * max(n, 1)


def cut(html: str) -> str:
    html = html[:MAX_HTML_CHARS]
    return "<".join(html.split("<")[: MAX_HTML_TAGS + 1])


DISTINCT = " ".join(f"a{i}" for i in range(MAX_HTML_CHARS // 4))
INPUTS: dict[str, Callable[[], str]] = {
    "real-world html bodies (tests/data/realworld)": lambda: cut(realworld_html()),
    "a report table with inline styles": lambda: fill(
        '<tr><td style="color:#333;padding:2px 4px;font-family:Arial">pump 2</td><td align="right">12.5 mm/s</td>'
        '<td><a href="https://plant.example/p/2">trend</a></td></tr>'),
    "remote images": lambda: fill('<img src="https://t.example/p.gif" alt="x">'),
    "<div> nested, never closed": lambda: fill("<div>"),
    "formatting elements rebuilt in each <p>": lambda: "".join(f"<b title={i}>" for i in range(MAX_HTML_TAGS // 2))
    + "<p>x" * (MAX_HTML_TAGS // 2),
    "<b><i> misnested (adoption agency)": lambda: fill("<b><i>x</b></i>"),
    "one tag with distinct attributes": lambda: ("<b " + DISTINCT)[: MAX_HTML_CHARS - 1] + ">",
    "one long style attribute": lambda: '<p style="' + ("color:red;width:expression(1);" * 3000)[: MAX_HTML_CHARS - 20] + '">',
    "comments and CDATA": lambda: fill("<!-- x --><![CDATA[y]]>"),
    "script and style elements": lambda: fill("<script>alert(1)</script><style>p{}</style>t"),
    "entities": lambda: fill("&amp;&#x41;&nbsp;&lt;&unknown;"),
    "1 MB: 200,000 <div> (over the limits: shown as text)": lambda: "<div>" * 200_000,
}


def measure(html: str, runs: int) -> tuple[float, int]:
    best = float("inf")
    out: str | None = None
    for _ in range(runs):
        start = time.process_time()
        out = sanitize_html(html)
        best = min(best, time.process_time() - start)
    return best, len(out) if out is not None else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one run each")
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    runs = 1 if args.quick else 5
    print("\n".join(c.machine()))
    print(f"sanitize_html, limits {MAX_HTML_CHARS} characters and {MAX_HTML_TAGS} '<'; CPU time, best of {runs}\n",
          flush=True)
    rows = []
    normal = 0.0
    for label, make in INPUTS.items():
        html = make()
        c.wait_quiet()
        seconds, out = measure(html, runs)
        normal = normal or seconds
        rows.append([label, f"{len(html) / 1000:.0f}", html.count("<"), f"{1000 * seconds:.1f}",
                     f"{seconds / normal:.1f}x", "text" if out < 0 else f"{out / 1000:.0f}"])
    print(c.table(["input", "KB", "'<'", "CPU ms", "vs real-world", "output KB"], rows))


if __name__ == "__main__":
    main()
