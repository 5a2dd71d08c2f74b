"""A keep-alive (optionally TLS) front for moto's server, run by bench/_sdk_floor.py; not part of the worker.

    python bench/_keepalive_proxy.py UPSTREAM_URL [CERT_PEM KEY_PEM [close]]

Prints its own URL on the first line, then serves until killed. moto's werkzeug server answers
every request with `Connection: close`, so a client opens a TCP connection per call; AWS keeps
connections open (and speaks TLS). This proxy keeps the client's connection open, optionally
terminates TLS, and opens a fresh connection to moto for each request, so the client process
pays what it would against AWS: one handshake per pooled connection. Its own CPU is in its
own process, not the measured one. HTTP/1.1 only: Content-Length or chunked request bodies
(S3's aws-chunked uploads), `Expect: 100-continue` answered here. With `close` it passes moto's
`Connection: close` on, so that the client pays a TLS handshake per call.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from urllib.parse import urlsplit


def _headers(lines: list[bytes]) -> dict[bytes, bytes]:
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[bytes, bytes]) -> bytes:
    if b"content-length" in headers:
        return await reader.readexactly(int(headers[b"content-length"]))
    if headers.get(b"transfer-encoding", b"").lower() != b"chunked":
        return b""
    parts = []  # forwarded as they came, framing included
    while True:
        size_line = await reader.readuntil(b"\r\n")
        parts.append(size_line)
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            while True:  # trailers, up to the empty line
                line = await reader.readuntil(b"\r\n")
                parts.append(line)
                if line == b"\r\n":
                    return b"".join(parts)
        parts.append(await reader.readexactly(size + 2))


async def _serve(
    host: str, port: int, close: bool, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head[:-4].split(b"\r\n")
            headers = _headers(lines)
            if headers.get(b"expect", b"").lower() == b"100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                lines = [line for line in lines if not line.lower().startswith(b"expect:")]
            body = await _read_body(reader, headers)
            up_reader, up_writer = await asyncio.open_connection(host, port)
            up_writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
            await up_writer.drain()
            # moto closes after each response, but some 10 ms after it: read by length, not to EOF.
            response_head = await up_reader.readuntil(b"\r\n\r\n")
            response_lines = response_head[:-4].split(b"\r\n")
            response_headers = _headers(response_lines)
            if b"content-length" in response_headers or b"transfer-encoding" in response_headers:
                response_body = await _read_body(up_reader, response_headers)
            elif lines[0].startswith(b"HEAD ") or response_lines[0].split(b" ")[1] in (b"204", b"304"):
                response_body = b""
            else:
                response_body = await up_reader.read()
            up_writer.close()
            kept = [line for line in response_lines if close or not line.lower().startswith(b"connection:")]
            writer.write(b"\r\n".join(kept) + b"\r\n\r\n" + response_body)
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def main(upstream: str, cert: str | None, key: str | None, close: bool) -> None:
    parts = urlsplit(upstream)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    context = None
    if cert and key:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
    server = await asyncio.start_server(
        lambda r, w: _serve(host, port, close, r, w), "127.0.0.1", 0, ssl=context, limit=1 << 24
    )
    own_port = server.sockets[0].getsockname()[1]
    print(f"{'https' if context else 'http'}://127.0.0.1:{own_port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    cert, key = sys.argv[2:4] if len(sys.argv) >= 4 else (None, None)
    asyncio.run(main(sys.argv[1], cert, key, sys.argv[4:5] == ["close"]))
