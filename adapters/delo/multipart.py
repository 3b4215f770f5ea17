"""The multipart/mixed framing of OData v3 `$batch`, both directions, hand-written.

Дело-Web takes every write as `POST $batch`: a multipart/mixed body whose parts are
changesets (nested multipart/mixed) of `application/http` parts, each holding a raw HTTP
request; the answer mirrors it with raw HTTP responses. httpx, the adapter's client, does
not read multipart answers; the standard `email` package parses MIME but knows nothing of
an HTTP message inside a part, and with its default policy re-folds long header lines and
rewrites line ends on output; aiohttp's MultipartReader and MultipartWriter handle the
outer framing only, asynchronously over aiohttp's own streams. Either way the embedded
requests and responses would still be ours to write and parse, so the whole framing is
here, shared by the adapter and the simulator so both speak exactly the same bytes.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from adapters.errors import AdapterError

CRLF = b"\r\n"
_BOUNDARY_RE = re.compile(r'boundary\s*=\s*"?([^";]+)"?', re.IGNORECASE)
T = TypeVar("T")
_REASONS = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
    429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable",
}


class MultipartError(AdapterError, ValueError):
    """The body is not the multipart/mixed batch it claims to be (truncated, no boundary)."""


@dataclass(frozen=True, slots=True)
class EmbeddedRequest:
    """One operation inside a changeset: `POST DOC_RC`, `MERGE RESOLUTION(12)`."""

    method: str
    uri: str
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, method: str, uri: str, data: Mapping[str, Any] | None) -> EmbeddedRequest:
        body = b"" if data is None else json.dumps(data, ensure_ascii=False).encode("utf-8")
        return cls(method, uri, body, {"Content-Type": "application/json"})


@dataclass(frozen=True, slots=True)
class EmbeddedResponse:
    """The answer to one operation: status and (usually JSON) body."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The decoded JSON body, or None when there is none."""
        text = self.body.decode("utf-8").strip()
        return json.loads(text) if text else None


@dataclass(frozen=True, slots=True)
class BatchUnit(Generic[T]):
    """A top-level part of a batch: a changeset of several messages, or one lone message.

    OData v3 answers a failed changeset with a single lone response in its place, so a
    reader must tell the two apart.
    """

    changeset: bool
    messages: tuple[T, ...]


def boundary_of(content_type: str) -> str:
    match = _BOUNDARY_RE.search(content_type)
    if match is None:
        raise MultipartError("multipart content type without a boundary")
    return match.group(1).strip()


def new_boundary(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


# ---- encoding ---------------------------------------------------------------------------


def encode_requests(
    units: Sequence[BatchUnit[EmbeddedRequest]], boundary: str | None = None
) -> tuple[bytes, str]:
    """The body and Content-Type of a `$batch` request."""
    return _encode(units, boundary or new_boundary("batch"), "changeset", _request_bytes)


def encode_responses(
    units: Sequence[BatchUnit[EmbeddedResponse]], boundary: str | None = None
) -> tuple[bytes, str]:
    """The body and Content-Type of a `$batch` response."""
    return _encode(
        units, boundary or new_boundary("batchresponse"), "changesetresponse", _response_bytes
    )


def _encode(
    units: Sequence[BatchUnit[T]], boundary: str, inner_prefix: str,
    render: Callable[[T], bytes],
) -> tuple[bytes, str]:
    out: list[bytes] = []
    for unit in units:
        out.append(b"--" + boundary.encode() + CRLF)
        if unit.changeset:
            inner = new_boundary(inner_prefix)
            out.append(f"Content-Type: multipart/mixed; boundary={inner}".encode() + CRLF + CRLF)
            for message in unit.messages:
                out.append(b"--" + inner.encode() + CRLF)
                out.append(_http_part(render(message)))
            out.append(b"--" + inner.encode() + b"--" + CRLF)
        else:
            for message in unit.messages:
                out.append(_http_part(render(message)))
    out.append(b"--" + boundary.encode() + b"--" + CRLF)
    return b"".join(out), f"multipart/mixed; boundary={boundary}"


def _http_part(message: bytes) -> bytes:
    head = b"Content-Type: application/http" + CRLF + b"Content-Transfer-Encoding: binary"
    return head + CRLF + CRLF + message + CRLF


def _request_bytes(request: EmbeddedRequest) -> bytes:
    lines = [f"{request.method} {request.uri} HTTP/1.1"]
    headers = {"DataServiceVersion": "3.0", "MaxDataServiceVersion": "3.0", **request.headers}
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return "\r\n".join(lines).encode("utf-8") + CRLF + CRLF + request.body


def _response_bytes(response: EmbeddedResponse) -> bytes:
    reason = _REASONS.get(response.status, "Status")
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    headers = dict(response.headers)
    if response.body and "Content-Type" not in headers:
        headers["Content-Type"] = "application/json;odata=minimalmetadata;charset=utf-8"
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return "\r\n".join(lines).encode("utf-8") + CRLF + CRLF + response.body


# ---- decoding ---------------------------------------------------------------------------


def decode_requests(body: bytes, content_type: str) -> list[BatchUnit[EmbeddedRequest]]:
    return _decode(body, content_type, _parse_request)


def decode_responses(body: bytes, content_type: str) -> list[BatchUnit[EmbeddedResponse]]:
    return _decode(body, content_type, _parse_response)


def _decode(
    body: bytes, content_type: str, parse: Callable[[bytes], T]
) -> list[BatchUnit[T]]:
    units: list[BatchUnit[T]] = []
    for part in _split(body, boundary_of(content_type)):
        headers, payload = _split_head(part)
        part_type = headers.get("content-type", "")
        if part_type.lower().startswith("multipart/mixed"):
            messages = []
            for inner in _split(payload, boundary_of(part_type)):
                _, message = _split_head(inner)
                messages.append(parse(message))
            units.append(BatchUnit(True, tuple(messages)))
        else:
            units.append(BatchUnit(False, (parse(payload),)))
    return units


def _split(body: bytes, boundary: str) -> list[bytes]:
    """The parts between `--boundary` delimiters; a missing close delimiter is an error.

    Bare LF line ends are accepted too: some proxies and test tools rewrite them.
    """
    body = CRLF + body.replace(CRLF, b"\n").replace(b"\n", CRLF)
    chunks = body.split(CRLF + b"--" + boundary.encode())
    # chunks[0] is the preamble; the last one must open with "--" (the close delimiter).
    if len(chunks) < 2 or not chunks[-1].startswith(b"--"):
        raise MultipartError("multipart body is truncated (no closing boundary)")
    # Each part opens with the rest of its delimiter line.
    return [chunk.partition(CRLF)[2] for chunk in chunks[1:-1]]


def _split_head(block: bytes) -> tuple[dict[str, str], bytes]:
    """Header lines (names lower-cased) and what follows the blank line."""
    head, sep, rest = block.partition(CRLF + CRLF)
    if not sep:  # headers only, e.g. a 204 with no body
        head, rest = block, b""
    headers: dict[str, str] = {}
    for line in head.split(CRLF):
        name, colon, value = line.decode("utf-8").partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return headers, rest


def _first_line(message: bytes) -> tuple[str, dict[str, str], bytes]:
    start, _, rest = message.partition(CRLF)
    if rest.startswith(CRLF):  # no headers: the body follows the start line
        headers: dict[str, str] = {}
        body = rest[2:]
    else:
        headers, body = _split_head(rest)
    return start.decode("utf-8").strip(), headers, body.rstrip(CRLF)


def _parse_request(message: bytes) -> EmbeddedRequest:
    start, headers, body = _first_line(message)
    pieces = start.split(" ")
    if len(pieces) < 2:
        raise MultipartError("embedded request without a request line")
    return EmbeddedRequest(pieces[0].upper(), pieces[1], body, headers)


def _parse_response(message: bytes) -> EmbeddedResponse:
    start, headers, body = _first_line(message)
    pieces = start.split(" ")
    if len(pieces) < 2 or not pieces[1].isdigit():
        raise MultipartError("embedded response without a status line")
    return EmbeddedResponse(int(pieces[1]), body, headers)
