"""One error shape for the whole API: {"error": {"code", "message", "fields"}}."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

# Seconds a client is told to wait when the database is busy or away: a lock or a
# timeout clears in seconds, and a sooner retry would only add to the queue.
RETRY_AFTER_S = 5


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}
        self.headers = headers or {}
        self.close = False  # the connection cannot serve another request after this one

    def response(self) -> web.Response:
        response = error_response(self.status, self.code, self.message, self.fields,
                                  self.headers)
        if self.close:
            response.force_close()
        return response


class ClientDisconnected(Exception):
    """The client hung up before its request was read: nobody is left to answer."""


def error_response(
    status: int, code: str, message: str, fields: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message, "fields": fields or {}}}
    return json_response(body, status=status, headers=headers)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """JSON in UTF-8 as it reads, not as \\u escapes: operators read these bodies too."""
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


def unavailable_response() -> web.Response:
    """503 for a database that is locked, timed out, read-only, full or unreachable.

    Says nothing about which: that is for the log and the admin, not the caller.
    """
    return error_response(
        503, "unavailable",
        "База данных временно недоступна, повторите позже "
        "/ the database is busy or unavailable; retry later",
        headers={"Retry-After": str(RETRY_AFTER_S)})
