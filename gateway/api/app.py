"""The aiohttp application: routes, and the middlewares every request passes through."""

from __future__ import annotations

import asyncio
import time
import uuid

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.api import admin, answers, callbacks, calls, casework, deliveries, health, reports
from gateway.api.auth import TOKENS_KEY, TokenBook
from gateway.api.bodies import read_body
from gateway.api.context import SERVICES_KEY, ApiServices
from gateway.api.errors import ApiError, ClientDisconnected, error_response, unavailable_response
from gateway.storage.database import unavailable_reason

log = structlog.get_logger(__name__)

# nginx's code for "the client closed the request": in the request log, not on the wire.
CLIENT_CLOSED = 499
MAX_REQUEST_ID = 64


def _request_id(given: str | None) -> str:
    """The caller's X-Request-Id when it is printable ASCII, else one of our own: it goes
    into every log line and back in a response header."""
    if given and given.isascii() and given.isprintable():
        return given[:MAX_REQUEST_ID]
    return uuid.uuid4().hex


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Binds a request id to every log line of the request; logs one line per request."""
    request_id = _request_id(request.headers.get("X-Request-Id"))
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await _as_api_errors(request, handler)
        status = response.status
        response.headers["X-Request-Id"] = request_id
        return response
    except asyncio.CancelledError:
        if _client_gone(request):  # the server cancels a handler whose client hung up
            log.info("http.client_disconnected")
            status = CLIENT_CLOSED
        raise
    finally:
        # The route pattern, not the path: paths may carry ids but never query strings.
        route = request.match_info.route.resource
        log.info(
            "http.request",
            method=request.method,
            route=route.canonical if route is not None else "unmatched",
            status=status,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        structlog.contextvars.clear_contextvars()


async def _as_api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        if not await _body_arrived(request):
            return _body_timed_out()
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except ClientDisconnected:
        # Nobody will read the answer; the request log says 499, and no error is logged.
        log.info("http.client_disconnected")
        return web.Response(status=CLIENT_CLOSED)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SERVICES_KEY].max_body_bytes
        return error_response(413, "too_large",
                              f"Тело запроса больше {limit // 1024} КиБ / body over {limit} bytes")
    except web.HTTPException as exc:
        if exc.status >= 400:
            code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
            return error_response(exc.status, code, exc.reason)
        raise
    except Exception as exc:
        reason = unavailable_reason(exc)
        if reason is not None:
            # The database's state, not a bug: the client may retry; no traceback.
            log.warning("http.database_unavailable", reason=reason,
                        error_type=type(exc).__name__)
            return unavailable_response()
        log.error("http.unhandled", error_type=type(exc).__name__, exc_info=True)
        return error_response(500, "internal",
                              "Внутренняя ошибка; сообщите администратору номер запроса "
                              "/ internal error; give the admin the X-Request-Id")


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _body_arrived(request: web.Request) -> bool:
    """Reads the body within the body timeout; False when the client stalled.

    aiohttp waits for a body as long as the client keeps the connection open, and a
    handler awaiting `request.json()` waits with it. Read here under a bound, the body is
    kept by the request for the handler. Multipart bodies are left to stream.
    """
    if not request.body_exists or request.content_type.startswith("multipart/"):
        return True
    try:
        async with asyncio.timeout(request.app[SERVICES_KEY].body_timeout_s):
            await read_body(request)
    except TimeoutError:
        return False
    return True


def _body_timed_out() -> web.Response:
    response = error_response(408, "request_timeout",
                              "Тело запроса не получено вовремя / the request body did not "
                              "arrive in time")
    response.force_close()  # the rest of the body may still come: drop the connection
    return response


def build_app(services: ApiServices, hashed_tokens: dict[str, str]) -> web.Application:
    app = web.Application(
        client_max_size=services.max_body_bytes,
        middlewares=[request_context],
    )
    app[SERVICES_KEY] = services
    app[TOKENS_KEY] = TokenBook(hashed_tokens)
    health.install_probe(app, services)
    app.add_routes(health.routes)
    app.add_routes(calls.routes)
    app.add_routes(deliveries.routes)
    app.add_routes(answers.routes)
    app.add_routes(callbacks.routes)
    app.add_routes(casework.routes)
    app.add_routes(admin.routes)
    app.add_routes(reports.routes)
    return app
