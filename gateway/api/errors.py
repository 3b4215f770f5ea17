"""One error shape for the whole API: {"error": {"code", "message", "fields"}}."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


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
