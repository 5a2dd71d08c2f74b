"""Attachments in S3: safe keys, streamed (multipart) uploads, and pre-signed download links.

Keys are `attachments/<ses-message-id>/<token>/<n>-<sanitised filename>`, the token 128 random bits
drawn anew each time an email is processed: a reprocessed email (a redrive, a redelivered event)
never writes to the keys of an earlier attempt, so links that were revoked stay dead (revoke moves
the objects away, and nothing can put them back at the old keys). The original name travels in
`Content-Disposition` (RFC 6266) so the download is saved under it, and as an attachment, so an
html or svg file never renders in the bucket's origin.

Uploads: an attachment that fits in one part is one PutObject; a larger one is a multipart upload.
Inside `async with store:` up to `parts_in_flight` parts of an attachment upload while the email
goes on being read (a task group, each part holding a slot); outside it, or with 0 in flight, each
part uploads before the reading resumes. Memory for one email: the part being filled plus the
parts in flight, `(parts_in_flight + 1) * part_size` (and on Python before 3.12.9 aiohttp copies
each part once more as it sends it); docs/performance.md has the measurements that chose the
defaults (8 MiB, 2 in flight).
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections import deque
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any
from urllib.parse import quote

import anyio
from anyio.abc import TaskGroup

from worker.aws.signing import LinkSigner
from worker.mail.reader import AttachmentWriter, StoredFile

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME_CHARS = 100
TOKEN_BYTES = 16  # 128 bits: the part of a key nobody can guess or reproduce


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


def new_token() -> str:
    """The random component of one processing attempt's keys (32 hex digits)."""
    return secrets.token_hex(TOKEN_BYTES)


def message_prefix(prefix: str, message_id: str) -> str:
    """Where every attempt of one email stores its attachments: what revoke lists."""
    return f"{prefix}{safe_name(message_id)}/"


def attachment_key(prefix: str, message_id: str, token: str, n: int, filename: str) -> str:
    return f"{message_prefix(prefix, message_id)}{safe_name(token)}/{n}-{safe_name(filename)}"


def content_disposition(filename: str) -> str:
    """RFC 6266 `attachment` with an ASCII fallback and the exact name as RFC 5987 `filename*`.

    The exact name, controls and bidi characters included, is percent-encoded (nothing but
    unreserved ASCII is left as it is), so it cannot end the header or start another; browsers
    clean a name for their file system when they save it. The quoted fallback is printable ASCII.
    """
    name = filename or "attachment"
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
    # filename* first: RFC 6266 readers prefer it anyway, and first-match parsers (Python's
    # email package among them) then get the exact name too.
    return f"attachment; filename*=UTF-8''{quote(name, safe='')}; filename=\"{fallback}\""


class S3AttachmentStore:
    """Streams each attachment into the attachments bucket and signs a GET link for it.

    Use it as `async with store:` around the reading of one email to let part uploads overlap the
    reading; on the way out, uploads still running are cancelled when the email failed."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        prefix: str,
        message_id: str,
        expiry_s: int,
        part_size: int,
        parts_in_flight: int,
        signer: LinkSigner | None = None,
        token: str | None = None,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix
        self.message_id = message_id
        self.token = token or new_token()  # one per attempt: a retry never rewrites earlier keys
        self.expiry_s = expiry_s
        self.part_size = part_size
        self.parts_in_flight = parts_in_flight
        self._uploads: TaskGroup | None = None
        self.signer = signer  # knows the signing credentials' real lifetime (worker/aws/signing.py)

    async def __aenter__(self) -> S3AttachmentStore:
        if self.parts_in_flight > 0:
            group = anyio.create_task_group()
            await group.__aenter__()
            self._uploads = group
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        group, self._uploads = self._uploads, None
        if group is None:
            return
        if exc is not None:  # the email failed: its writer aborted; stop what still uploads
            group.cancel_scope.cancel()
        # The email's own exception is not handed to the task group, which would wrap it in an
        # ExceptionGroup: it propagates unchanged, so the consumer classifies it as it is.
        await group.__aexit__(None, None, None)

    async def open(self, n: int, filename: str, content_type: str) -> AttachmentWriter:
        key = attachment_key(self.prefix, self.message_id, self.token, n, filename)
        return _S3Writer(self, key, filename, content_type)

    async def sign(self, key: str) -> StoredFile:
        if self.signer is not None:
            return await self.signer.sign(key)
        url = await self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.expiry_s
        )
        expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=self.expiry_s)
        return StoredFile(key=key, url=str(url), expires_at=expires)


class _S3Writer:
    """One object: a single PutObject when it fits in one part, else a multipart upload.

    Written data is kept as the pieces it came in and joined once per part (one copy). A part
    uploads in the store's task group when there is one, holding one of `parts_in_flight` slots,
    so `write` waits only when every slot is taken; a failed part's error is raised by the next
    `write` or `finish`, and `abort` cancels the parts still uploading before it aborts."""

    def __init__(self, store: S3AttachmentStore, key: str, filename: str, content_type: str) -> None:
        self.store = store
        self.key = key
        self.object_args = {
            "Bucket": store.bucket,
            "Key": key,
            "ContentType": content_type or "application/octet-stream",
            "ContentDisposition": content_disposition(filename),
        }
        self.pieces: deque[bytes | memoryview] = deque()
        self.buffered = 0  # bytes in pieces
        self.upload_id: str | None = None
        self.etags: dict[int, str] = {}  # part number -> ETag
        self.next_part = 1
        self.slots = anyio.Semaphore(max(1, store.parts_in_flight))
        self.running: set[anyio.CancelScope] = set()
        self.error: Exception | None = None

    async def write(self, data: bytes) -> None:
        self._raise_failed()
        if data:
            self.pieces.append(data)
            self.buffered += len(data)
        while self.buffered >= self.store.part_size:
            await self._send(self._take(self.store.part_size))

    def _take(self, size: int) -> bytes:
        """The first `size` buffered bytes as one object."""
        out: list[bytes | memoryview] = []
        need = size
        while need:
            piece = self.pieces.popleft()
            if len(piece) > need:
                view = memoryview(piece)
                self.pieces.appendleft(view[need:])
                piece = view[:need]
            out.append(piece)
            need -= len(piece)
        self.buffered -= size
        return b"".join(out)

    async def _send(self, body: bytes) -> None:
        s3 = self.store.s3
        if self.upload_id is None:
            created = await s3.create_multipart_upload(**self.object_args)
            self.upload_id = str(created["UploadId"])
        number, self.next_part = self.next_part, self.next_part + 1
        group = self.store._uploads
        if group is None:
            await self._upload_part(number, body)
            return
        await self.slots.acquire()
        if self.error is not None:
            self.slots.release()
            self._raise_failed()
        group.start_soon(self._part_task, number, body)

    async def _part_task(self, number: int, body: bytes) -> None:
        try:
            with anyio.CancelScope() as scope:  # abort() cancels it; an outer cancellation passes
                self.running.add(scope)
                await self._upload_part(number, body)
        except Exception as error:  # raised in the reading task, where the email's error belongs
            self.error = self.error or error
        finally:
            self.running.discard(scope)
            self.slots.release()

    async def _upload_part(self, number: int, body: bytes) -> None:
        done = await self.store.s3.upload_part(
            Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=body
        )
        self.etags[number] = done["ETag"]

    async def _settle(self) -> None:
        """Wait until no part of this object is uploading."""
        if self.store._uploads is None and not self.running:
            return
        slots = max(1, self.store.parts_in_flight)
        for _ in range(slots):
            await self.slots.acquire()
        for _ in range(slots):
            self.slots.release()

    def _raise_failed(self) -> None:
        if self.error is not None:
            raise self.error

    async def finish(self) -> StoredFile:
        s3 = self.store.s3
        if self.upload_id is None:
            await s3.put_object(Body=self._take(self.buffered), **self.object_args)
        else:
            if self.buffered:
                await self._send(self._take(self.buffered))
            await self._settle()
            self._raise_failed()
            await s3.complete_multipart_upload(
                Bucket=self.store.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": self.etags[n]} for n in sorted(self.etags)]},
            )
        return await self.store.sign(self.key)

    async def abort(self) -> None:
        for scope in list(self.running):
            scope.cancel()
        await self._settle()
        self.pieces.clear()
        self.buffered = 0
        if self.upload_id is not None:
            await self.store.s3.abort_multipart_upload(
                Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id
            )
            self.upload_id = None
