"""The standard library's whole-message parse of one email file; not part of the worker.

    python bench/_stdlib_parse.py FILE.eml

`email.message_from_bytes` on the file's bytes, then every leaf part's payload decoded and hashed,
as `sensormail inspect` hashes each attachment. Prints one JSON line: each leaf's content type,
decoded size and SHA-256.
"""

from __future__ import annotations

import email
import hashlib
import json
import sys
from email.message import Message


def main(path: str) -> None:
    with open(path, "rb") as f:
        raw = f.read()
    msg = email.message_from_bytes(raw)
    del raw
    parts = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        assert isinstance(part, Message)
        data = part.get_payload(decode=True)
        assert isinstance(data, bytes)
        parts.append({"content_type": part.get_content_type(), "filename": part.get_filename(),
                      "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    print(json.dumps({"parts": parts}))


if __name__ == "__main__":
    main(sys.argv[1])
