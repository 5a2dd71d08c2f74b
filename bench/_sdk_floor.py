"""CPU per AWS call made through aiobotocore, the way the worker makes them; not part of the worker.

    python bench/_sdk_floor.py N     (AWS_ENDPOINT_URL set; run by bench/worker_e2e.py)

Prints one JSON line per operation: this process's own CPU (user + system) per call, the wall
time per call, and how many calls opened a new connection (moto's server closes every one).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

connects = 0
_sock_connect: Any = asyncio.selector_events.BaseSelectorEventLoop.sock_connect


async def _counting_connect(self: Any, *args: Any) -> Any:
    global connects
    connects += 1
    return await _sock_connect(self, *args)


setattr(asyncio.selector_events.BaseSelectorEventLoop, "sock_connect", _counting_connect)


def cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


async def main(n: int) -> None:
    global connects
    session = get_session()
    s3_config = AioConfig(s3={"addressing_style": "path"}, signature_version="s3v4")
    async with session.create_client("s3", config=s3_config) as s3, session.create_client("sqs") as sqs:
        await s3.create_bucket(Bucket="sdk-floor")
        queue = (await sqs.create_queue(QueueName="sdk-floor"))["QueueUrl"]
        body = os.urandom(14_000)

        async def get(i: int) -> None:
            response = await s3.get_object(Bucket="sdk-floor", Key=f"k{i}")
            async with response["Body"] as stream:
                await stream.read()

        async def receive_delete(i: int) -> None:
            got = await sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1, WaitTimeSeconds=0)
            for m in got.get("Messages", []):
                await sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])

        cases: list[tuple[str, Callable[[int], Awaitable[Any]], int]] = [
            ("S3 PutObject (14 KB)", lambda i: s3.put_object(Bucket="sdk-floor", Key=f"k{i}", Body=body), 1),
            ("S3 GetObject + read (14 KB)", get, 1),
            ("S3 pre-signed URL (no request)", lambda i: s3.generate_presigned_url(
                "get_object", Params={"Bucket": "sdk-floor", "Key": f"k{i}"}, ExpiresIn=3600), 1),
            ("SQS SendMessage (1.5 KB)", lambda i: sqs.send_message(QueueUrl=queue, MessageBody="x" * 1500), 1),
            ("SQS ReceiveMessage + DeleteMessage", receive_delete, 2),
        ]
        for name, call, requests in cases:
            connects = 0
            c0, t0 = cpu(), time.perf_counter()
            for i in range(n):
                await call(i)
            c1, t1 = cpu(), time.perf_counter()
            print(json.dumps({
                "operation": name,
                "cpu_ms_per_call": 1000 * (c1 - c0) / n / requests,
                "wall_ms_per_call": 1000 * (t1 - t0) / n / requests,
                "new_connections_per_call": connects / n / requests,
            }), flush=True)


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 300)
