"""The worker's reading of one email file, timed without interpreter start-up; not part of the worker.

    python bench/_parse_only.py FILE.eml [--binascii]

What `sensormail inspect` does (read_email over the file in 1 MiB chunks, no store), timed from
after the imports. --binascii hides pybase64 so the parser uses its standard-library fallback.
Prints one JSON line: seconds, attachments.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

if "--binascii" in sys.argv:
    sys.modules["pybase64"] = None  # type: ignore[assignment]  # import fails: binascii fallback

import anyio

from worker.cli import file_chunks
from worker.config import Limits
from worker.mail import decoders
from worker.mail.reader import DryRunStore, read_email


async def main(path: Path) -> None:
    started = time.perf_counter()
    email = await read_email(file_chunks(path), DryRunStore(), Limits())
    elapsed = time.perf_counter() - started
    print(json.dumps({
        "seconds": elapsed,
        "decoder": "binascii" if getattr(decoders, "_simd_b64decode", True) is None else "pybase64",
        "attachments": [[a.filename, a.size, a.sha256] for a in email.attachments],
    }))


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]))
