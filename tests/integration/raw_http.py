"""HTTP requests written byte by byte, for what a well-behaved client library refuses to send:
header values that are not UTF-8, bodies cut off by a client that hangs up."""

from __future__ import annotations

import asyncio
import json
from typing import Any


def request_bytes(method: str, path: str, headers: dict[str, bytes], body: bytes,
                  content_length: int | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: gateway", b"Connection: close"]
    lines += [name.encode() + b": " + value for name, value in headers.items()]
    lines.append(b"Content-Length: %d" % (len(body) if content_length is None else content_length))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def exchange(host: str, port: int, data: bytes) -> tuple[int, bytes]:
    """Sends `data`, reads until the server closes; the status and the body."""
    status, answer = await exchange_head(host, port, data)
    return status, answer.partition(b"\r\n\r\n")[2]


async def exchange_head(host: str, port: int, data: bytes) -> tuple[int, bytes]:
    """Sends `data`, reads until the server closes; the status and the whole answer."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    status = int(answer.split(b" ", 2)[1]) if answer else 0
    return status, answer


async def hang_up_mid_body(host: str, port: int, data: bytes) -> None:
    """Sends `data` (a request whose Content-Length promises more) and closes."""
    _reader, writer = await asyncio.open_connection(host, port)
    writer.write(data)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


def json_body(body: bytes) -> Any:
    return json.loads(body.decode("utf-8"))
