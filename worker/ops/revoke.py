"""`sensormail revoke`: every link of one email stops working at once; the files are kept.

Links point at `attachments/<message-id>/<token>/<n>-<name>` (the token is random, drawn anew each
time the email is processed). Revoking moves every object under `attachments/<message-id>/` (all
attempts) to `revoked/<message-id>/<token>/<n>-<name>` (copy, then delete): a pre-signed URL for
the old key then gets 403 AccessDenied from S3 whatever its signature or expiry (the signer may not
list the bucket, so S3 does not say the key is missing; an emulator without IAM answers 404), and
an operator can still fetch the files from `revoked/` for an investigation. The signer's IAM
policy only allows `attachments/*`, so no link can be signed for a revoked file. The files under
`revoked/` also tell the pipeline not to store or send the email again
(worker/aws/revocation.py), and no reprocessing can write to the old keys: its token is new.
"""

from __future__ import annotations

from typing import Any

from worker.aws.links import message_prefix
from worker.aws.revocation import revoked_key


async def revoke(s3: Any, bucket: str, attachments_prefix: str, *, message_id: str | None = None, key: str | None = None) -> list[str]:
    """Move one email's attachments (or one key) out of reach of their links; returns the new keys."""
    if (message_id is None) == (key is None):
        raise ValueError("revoke takes a message id or a key")
    if key is not None:
        revoked_key(key, attachments_prefix)  # refuses keys outside the attachments
        keys = [key]
    else:
        prefix = message_prefix(attachments_prefix, message_id or "")
        keys = []
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        if not keys:
            raise ValueError(f"no attachments stored under {prefix}")
    moved = []
    for old in keys:
        new = revoked_key(old, attachments_prefix)
        # Objects here are at most SES's 40 MB, far below CopyObject's 5 GB limit.
        await s3.copy_object(Bucket=bucket, Key=new, CopySource={"Bucket": bucket, "Key": old}, MetadataDirective="COPY")
        await s3.delete_object(Bucket=bucket, Key=old)
        moved.append(new)
    return moved
