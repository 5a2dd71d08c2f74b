"""Attachments in S3: safe keys, streamed (multipart) uploads, and pre-signed download links.

Keys are `attachments/<ses-message-id>/<n>-<sanitised filename>`; the original name travels in
`Content-Disposition` (RFC 6266) so the download is saved under it, and as an attachment, so an
html or svg file never renders in the bucket's origin.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from worker.reader import AttachmentWriter, StoredFile

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME_CHARS = 100


def safe_name(filename: str) -> str:
    """A key-safe form of a filename: no path, no control characters, ASCII, at most 100 chars."""
    base = re.split(r"[/\\]", filename)[-1]
    ascii_name = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii")
    name = _UNSAFE.sub("_", ascii_name).strip("._-") or "attachment"
    if len(name) > MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            name = stem[: MAX_NAME_CHARS - len(ext) - 1] + "." + ext
        else:
            name = name[:MAX_NAME_CHARS]
    return name


def attachment_key(prefix: str, message_id: str, n: int, filename: str) -> str:
    return f"{prefix}{safe_name(message_id)}/{n}-{safe_name(filename)}"


def content_disposition(filename: str) -> str:
    """RFC 6266 `attachment` with an ASCII fallback and the exact name as RFC 5987 `filename*`."""
    clean = "".join(c if c.isprintable() else "_" for c in filename) or "attachment"
    fallback = "".join(c if c.isascii() and c not in '"\\' else "_" for c in clean)
    # filename* first: RFC 6266 readers prefer it anyway, and first-match parsers (Python's
    # email package among them) then get the exact name too.
    return f"attachment; filename*=UTF-8''{quote(clean, safe='')}; filename=\"{fallback}\""


class S3AttachmentStore:
    """Streams each attachment into the attachments bucket and signs a GET link for it."""

    def __init__(
        self, s3: Any, bucket: str, prefix: str, message_id: str, expiry_s: int, part_size: int
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix
        self.message_id = message_id
        self.expiry_s = expiry_s
        self.part_size = part_size

    async def open(self, n: int, filename: str, content_type: str) -> AttachmentWriter:
        key = attachment_key(self.prefix, self.message_id, n, filename)
        return _S3Writer(self, key, filename, content_type)

    async def sign(self, key: str) -> StoredFile:
        url = await self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.expiry_s
        )
        expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=self.expiry_s)
        return StoredFile(key=key, url=str(url), expires_at=expires)


class _S3Writer:
    """One object: a single PutObject when it fits in one part, else a multipart upload."""

    def __init__(self, store: S3AttachmentStore, key: str, filename: str, content_type: str) -> None:
        self.store = store
        self.key = key
        self.object_args = {
            "Bucket": store.bucket,
            "Key": key,
            "ContentType": content_type or "application/octet-stream",
            "ContentDisposition": content_disposition(filename),
        }
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []

    async def write(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= self.store.part_size:
            await self._upload_part(self.store.part_size)

    async def _upload_part(self, size: int) -> None:
        s3 = self.store.s3
        if self.upload_id is None:
            created = await s3.create_multipart_upload(**self.object_args)
            self.upload_id = str(created["UploadId"])
        body = bytes(self.buffer[:size])
        del self.buffer[:size]
        number = len(self.parts) + 1
        done = await s3.upload_part(
            Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=body
        )
        self.parts.append({"PartNumber": number, "ETag": done["ETag"]})

    async def finish(self) -> StoredFile:
        s3 = self.store.s3
        if self.upload_id is None:
            await s3.put_object(Body=bytes(self.buffer), **self.object_args)
        else:
            if self.buffer:
                await self._upload_part(len(self.buffer))
            await s3.complete_multipart_upload(
                Bucket=self.store.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )
        self.buffer = bytearray()
        return await self.store.sign(self.key)

    async def abort(self) -> None:
        if self.upload_id is not None:
            await self.store.s3.abort_multipart_upload(
                Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id
            )
            self.upload_id = None
