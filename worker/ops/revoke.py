"""`sensormail revoke`: every link of one email stops working at once; the files are kept.

Links point at `attachments/<message-id>/<n>-<name>`. Revoking moves each object to
`revoked/<message-id>/<n>-<name>` (copy, then delete): a pre-signed URL for the old key now gets
404 whatever its signature or expiry, and an operator can still fetch the files from `revoked/`
for an investigation. The signer's IAM policy only allows `attachments/*`, so no link can be
signed for a revoked file.
"""

from __future__ import annotations

from typing import Any

from worker.aws.links import safe_name

REVOKED_PREFIX = "revoked/"


async def revoke(s3: Any, bucket: str, attachments_prefix: str, *, message_id: str | None = None, key: str | None = None) -> list[str]:
    """Move one email's attachments (or one key) out of reach of their links; returns the new keys."""
    if (message_id is None) == (key is None):
        raise ValueError("revoke takes a message id or a key")
    if key is not None:
        if not key.startswith(attachments_prefix):
            raise ValueError(f"{key!r} is not an attachment key (expected {attachments_prefix}...)")
        keys = [key]
    else:
        prefix = f"{attachments_prefix}{safe_name(message_id or '')}/"
        keys = []
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        if not keys:
            raise ValueError(f"no attachments stored under {prefix}")
    moved = []
    for old in keys:
        new = REVOKED_PREFIX + old[len(attachments_prefix):]
        # Objects here are at most SES's 40 MB, far below CopyObject's 5 GB limit.
        await s3.copy_object(Bucket=bucket, Key=new, CopySource={"Bucket": bucket, "Key": old}, MetadataDirective="COPY")
        await s3.delete_object(Bucket=bucket, Key=old)
        moved.append(new)
    return moved
