"""Small emails: parse + recipient extraction + compose, emails per second on one core.

    .venv/bin/python bench/small_emails.py [--quick] [--count N] [--root CHECKOUT]

1,000 sensor emails of about 20 KB (a text body with a recipient block and a base64 CSV
attachment), each one through what the worker does between S3 and SES, in this process pinned to
one core (sched_setaffinity):

1. parse: read_email over the raw bytes (the streaming parser, header decoding, the hash of the
   attachment; the store keeps nothing);
2. recipients: choose_recipients + visible_bodies (find, validate, remove the block);
3. compose: compose_email with a pre-signed URL of realistic length for each attachment.

The best of three passes is reported, per stage and in total. The "before" row composes the way
compose_email did until it wrote the bytes itself (EmailMessage(policy=SMTP), tests/compose_oracle.py), after
checking that the standard library reads the same headers and bodies from both.
--root runs another checkout's worker (an older commit unpacked with `git archive`).
"""

from __future__ import annotations

import argparse
import dataclasses
import email
import email.policy
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 emails")
    parser.add_argument("--count", type=int, help="emails per pass (default 1000)")
    parser.add_argument("--root", type=Path, help="the checkout whose worker runs (default: this one)")
    return parser.parse_args()


ARGS = parse_args()
sys.path.insert(0, str(HERE))
sys.path.append(str(HERE.parent))  # tests.compose_oracle; --root's worker, inserted first, still wins
if ARGS.root is not None:
    sys.path.insert(0, str(ARGS.root.resolve()))

import _common as c  # noqa: E402
import anyio  # noqa: E402

from tests.compose_oracle import compose_with_email_message  # noqa: E402
from worker.config import Limits  # noqa: E402
from worker.mail.compose import compose_email  # noqa: E402
from worker.mail.reader import Attachment, DryRunStore, ReadEmail, StoredFile, read_email  # noqa: E402
from worker.pipeline import visible_bodies  # noqa: E402

try:
    from worker.mail.recipients import choose_recipients  # noqa: E402
except ImportError:  # a checkout from before 83867e4 (--root)
    from worker.pipeline import choose_recipients  # type: ignore[attr-defined,no-redef]  # noqa: E402

URL = ("https://sensormail-attachments.s3.us-east-1.amazonaws.com/attachments/0100019a2b3c4d5e-6f7a8b9c/"
       "1-pump2-trend.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLEEXAMPLE%2F20261124"
       "%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261124T082900Z&X-Amz-Expires=259200"
       "&X-Amz-SignedHeaders=host&X-Amz-Signature=" + "0f" * 32)


async def _one_chunk(raw: bytes) -> Any:
    yield raw


def with_links(read: ReadEmail) -> ReadEmail:
    expires = datetime.now(UTC) + timedelta(days=3)
    read.attachments = [dataclasses.replace(a, stored=StoredFile(key="k", url=URL, expires_at=expires))
                        for a in read.attachments]
    return read


async def one_pass(emails: list[bytes], composer: Any) -> tuple[float, float, float]:
    limits = Limits()
    parse = rcpt = comp = 0.0
    for i, raw in enumerate(emails):
        t0 = time.perf_counter()
        read = await read_email(_one_chunk(raw), DryRunStore(), limits)
        t1 = time.perf_counter()
        found = choose_recipients(read.text, read.html, c.MARKER)
        text, html = visible_bodies(read, c.MARKER)
        t2 = time.perf_counter()
        with_links(read)
        t3 = time.perf_counter()
        composer(sender="alerts@sensormail.example.com", recipients=found.block.recipients, subject=read.subject,
                 text=text, html_body=html, attachments=read.attachments, source_id=f"m{i}")
        t4 = time.perf_counter()
        parse, rcpt, comp = parse + t1 - t0, rcpt + t2 - t1, comp + t4 - t3
        assert found.block.recipients and found.fallback_reason is None
    return parse, rcpt, comp


def same_reading(a: bytes, b: bytes) -> None:
    """The standard library reads the same headers and bodies from both composed emails."""
    ma = email.message_from_bytes(a, policy=email.policy.default)
    mb = email.message_from_bytes(b, policy=email.policy.default)
    for name in ("From", "To", "Subject", "Auto-Submitted", "X-Sensormail-Source", "Content-Type"):
        if name == "Content-Type":
            assert ma.get_content_type() == mb.get_content_type(), name
        else:
            assert str(ma[name]) == str(mb[name]), (name, ma[name], mb[name])
    for kind in ("plain", "html"):
        pa, pb = ma.get_body((kind,)), mb.get_body((kind,))
        assert pa is not None and pb is not None
        assert pa.get_content() == pb.get_content(), kind


def main() -> None:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    count = ARGS.count or (200 if ARGS.quick else 1000)
    emails = [c.small_email(i) for i in range(count)]
    size = sum(map(len, emails)) / len(emails)
    print("\n".join(c.machine()))
    print(f"{count} emails of {size / 1000:.1f} KB on average; this process pinned to one core\n", flush=True)

    kwargs: dict[str, Any] = dict(sender="Sensormail <a@example.com>", recipients=("b@example.com", "c@example.org"),
                                  subject="Vibration alarm, pump 2 — überschritten", text="line\n" * 3 + "x" * 2000,
                                  html_body=None, attachments=[], source_id="m1")
    same_reading(compose_email(**kwargs), compose_with_email_message(**kwargs))

    rows = []
    for label, composer in (("compose_email (worker/mail/compose.py)", compose_email),
                            ("before: EmailMessage(policy=SMTP)", compose_with_email_message)):
        c.wait_quiet()
        best = min((anyio.run(one_pass, emails, composer) for _ in range(3)), key=sum)
        parse, rcpt, comp = (1000 * x / count for x in best)
        total = parse + rcpt + comp
        rows.append([label, f"{parse:.3f}", f"{rcpt:.3f}", f"{comp:.3f}", f"{total:.3f}", f"{1000 / total:.0f}",
                     f"{1000 / parse:.0f}"])
    print(c.table(["compose", "parse ms", "recipients ms", "compose ms", "total ms/email", "emails/s (all three)",
                   "emails/s (parse only)"], rows))


if __name__ == "__main__":
    main()
