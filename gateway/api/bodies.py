"""Reading request bodies the way the contract says: 413 over the limit, 422 when not JSON.

A body that cannot be decoded (a broken Content-Encoding) or that nests deeper than the
parser goes is "not JSON" too; a client that hangs up mid-body is no server error.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.api.context import SERVICES_KEY
from gateway.api.errors import ApiError, ClientDisconnected
from gateway.api.wire import field_errors

Model = TypeVar("Model", bound=BaseModel)


async def read_body(request: web.Request) -> bytes:
    """The raw body: 413 over the limit, 422 when it cannot be decoded, and a client that
    hung up is `ClientDisconnected`. The request keeps it, so reading again is free."""
    limit = request.app[SERVICES_KEY].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    try:
        return await request.read()
    except web.RequestPayloadError:
        # Undecodable: nothing more is read from it, and the connection closes after the answer.
        request.content.feed_eof()
        error = _not_json("cannot be decoded as its Content-Encoding says")
        error.close = True
        raise error from None
    except ConnectionResetError:
        raise ClientDisconnected() from None


async def read_json(request: web.Request) -> Any:
    """The body as JSON, with 413 and 422 the way the contract says."""
    raw = await read_body(request)
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _not_json(type(exc).__name__) from None
    except RecursionError:
        raise _not_json("nested too deeply") from None


def _not_json(why: str) -> ApiError:
    return ApiError(422, "malformed_json",
                    "Тело запроса не является JSON в UTF-8 / the body is not UTF-8 JSON",
                    {"body": why})


async def read_json_object(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(422, "validation", "Ожидается объект JSON / a JSON object is expected",
                       {"body": "must be an object"})
    return body


NO_SUCH_CALL = "Обращение не найдено / no such call"


def uuid_or_404(value: str, not_found: str = NO_SUCH_CALL) -> str:
    """`value` when it is a UUID; else 404 with `not_found` (our ids are UUIDs, so no lookup
    is needed to know there is no such thing)."""
    try:
        uuid.UUID(value)
    except ValueError:
        raise ApiError(404, "not_found", not_found) from None
    return value


def path_id(request: web.Request, not_found: str = NO_SUCH_CALL, key: str = "id") -> str:
    return uuid_or_404(request.match_info[key], not_found)


def appeal_id_of(request: web.Request) -> str:
    return path_id(request)


BAD_QUERY = "Неверные параметры запроса / bad query parameters"


def validated(model: type[Model], data: Any, message: str) -> Model:
    """`data` as `model`, or 422 with one message per field for the person who sent it."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, "validation", message, field_errors(exc)) from None
