"""Whether an attachment link works now: alive, revoked, expired (or refused, unreachable).

Expiry is read from the pre-signed URL itself (SigV4 `X-Amz-Date` + `X-Amz-Expires`, SigV2
`Expires`), because moto serves expired links as if they were fresh; LocalStack with signature
checks on refuses them with 403, which reads as expired too. A live link is asked for its first
byte only (`Range: bytes=0-0`): the answer's headers give the type and the whole size without
downloading the file. `sensormail revoke` moves the object away, so a link whose object is gone
is a revoked one: the emulators, which enforce no IAM, say 404 NoSuchKey (AWS says 403
AccessDenied to a signer that may not list the bucket; this page only runs against emulators).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import parse_qs, urlsplit

import aiohttp

LinkState = Literal["alive", "revoked", "expired", "refused", "unreachable", "not stored"]
TIMEOUT_S = 10
_TOTAL = re.compile(r"/(\d+)$")


@dataclass(frozen=True, slots=True)
class LinkStatus:
    state: LinkState
    detail: str = ""
    content_type: str | None = None
    size: int | None = None

    def as_json(self) -> dict[str, object]:
        return {"state": self.state, "detail": self.detail, "content_type": self.content_type, "size": self.size}


def expiry_of(url: str) -> datetime | None:
    """When a pre-signed S3 URL stops working, from its query string (None: it does not say)."""
    query = {k.lower(): v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    try:
        if "x-amz-date" in query and "x-amz-expires" in query:
            signed = datetime.strptime(query["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            return signed + timedelta(seconds=int(query["x-amz-expires"]))
        if "expires" in query:
            return datetime.fromtimestamp(int(query["expires"]), UTC)
    except ValueError:
        return None
    return None


async def check_link(http: aiohttp.ClientSession, url: str | None, at: datetime | None = None) -> LinkStatus:
    if not url:
        return LinkStatus("not stored", "no link was made (quarantined, or a dry run)")
    expires = expiry_of(url)
    if expires is not None and expires <= (at or datetime.now(UTC)):
        return LinkStatus("expired", f"expired at {expires:%Y-%m-%d %H:%M:%S} UTC")
    try:
        async with http.get(url, headers={"Range": "bytes=0-0"},
                            timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as response:
            body = await response.content.read(4096)
            status = response.status
            content_type = response.headers.get("Content-Type")
            total = _TOTAL.search(response.headers.get("Content-Range", ""))
            length = response.headers.get("Content-Length")
    except (aiohttp.ClientError, TimeoutError) as error:
        return LinkStatus("unreachable", f"{type(error).__name__}: {error}"[:200])
    if status in (200, 206):
        size = int(total[1]) if total else (int(length) if status == 200 and length else None)
        until = f" until {expires:%Y-%m-%d %H:%M:%S} UTC" if expires else ""
        return LinkStatus("alive", f"HTTP {status}{until}", content_type, size)
    if status == 416:  # an empty object has no first byte, but it is there
        return LinkStatus("alive", "HTTP 416 (empty file)", content_type, 0)
    if status == 404 and b"NoSuchKey" in body:
        return LinkStatus("revoked", "the file is no longer at this key (HTTP 404 NoSuchKey)")
    if status == 403 and b"expired" in body.lower():
        return LinkStatus("expired", "refused as expired (HTTP 403)")
    code = re.search(rb"<Code>([^<]{1,60})</Code>", body)
    return LinkStatus("refused", f"HTTP {status}" + (f" {code[1].decode(errors='replace')}" if code else ""))
