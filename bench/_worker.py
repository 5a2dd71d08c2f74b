"""`sensormail run` with the upload settings a benchmark sweeps; not part of the worker.

    python bench/_worker.py [--parts-in-flight K]

K = 0 (or no option): the pipeline as it is, each part uploaded before reading resumes.
K >= 1: the pipeline's reading of an email runs inside `async with store:` (the change proposed
in docs/performance.md), so up to K parts of an attachment upload while the email is read on.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from worker import links, pipeline
from worker.cli import main


def overlap_uploads(parts_in_flight: int) -> None:
    links.PARTS_IN_FLIGHT = parts_in_flight
    read_email = getattr(pipeline, "read_email")

    async def read_inside_store(chunks: Any, store: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(store, links.S3AttachmentStore):
            async with store:
                return await read_email(chunks, store, *args, **kwargs)
        return await read_email(chunks, store, *args, **kwargs)

    setattr(pipeline, "read_email", read_inside_store)  # what process() calls


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts-in-flight", type=int, default=0)
    args = parser.parse_args()
    if args.parts_in_flight > 0:
        overlap_uploads(args.parts_in_flight)
    sys.exit(main(["run"]))
