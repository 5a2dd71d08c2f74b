"""Revoked emails: where their files go, and whether an email was revoked.

`sensormail revoke` moves an email's objects from `attachments/<message-id>/...` to
`revoked/<message-id>/...`. Those objects are also the revocation record: while any object of an
email is under `revoked/`, the pipeline neither stores nor sends that email again (a redrive, a
redelivered event). The pipeline's lifecycle keeps `revoked/` (RevokedRetentionDays, 90) longer
than the raw email it could be reprocessed from (RetentionDays, 14).

The check is a ListObjectsV2 with MaxKeys=1. A GetObject or HeadObject on a marker key would not
do: without s3:ListBucket, S3 answers 403 for a missing key, the same as for a forbidden one, so
"not revoked" could not be told from "not allowed to know". The task role may list `revoked/`
only (an `s3:prefix` condition).
"""

from __future__ import annotations

from typing import Any

from worker.aws.links import safe_name

REVOKED_PREFIX = "revoked/"


def revoked_prefix(message_id: str) -> str:
    return f"{REVOKED_PREFIX}{safe_name(message_id)}/"


def revoked_key(key: str, attachments_prefix: str) -> str:
    """Where revoke keeps the object at `key` (an attachment key)."""
    if not key.startswith(attachments_prefix):
        raise ValueError(f"{key!r} is not an attachment key (expected {attachments_prefix}...)")
    return REVOKED_PREFIX + key[len(attachments_prefix):]


async def is_revoked(s3: Any, bucket: str, message_id: str) -> bool:
    """Whether any link of this email was revoked (a file of it is kept under `revoked/`)."""
    listed = await s3.list_objects_v2(Bucket=bucket, Prefix=revoked_prefix(message_id), MaxKeys=1)
    return bool(listed.get("Contents"))
