"""Serving the API: the one place that listens, with limits on slow and surplus clients.

300 connections that sent half a request head stayed open for good, and under a
256-descriptor limit they took every descriptor: nothing else was served, and asyncio
logged "socket.accept() out of system resource" 93 000 times a minute (issue 12). So:

- a request head must arrive within `http.header_timeout_s` of the connection opening;
  a later head on a kept-alive connection within `http.keepalive_timeout_s` of the last
  response (aiohttp's keep-alive timer closes a connection whose head is still
  incomplete then). aiohttp has no timeout for the first head of a connection beyond
  that same keep-alive timer, so `_Guarded` below keeps one of its own;
- a request body must arrive within `http.body_timeout_s` (the API's middleware);
- beyond `http.max_connections` open connections a new one is answered 503 and closed
  at once, before it costs more than a moment of a descriptor;
- accept errors are logged once per `http.accept_error_log_interval_s` with a count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from aiohttp import web


class ListenerLimits(Protocol):
    """What the server needs of the HTTP settings (config's HttpSettings has it)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def header_timeout_s(self) -> float: ...
    @property
    def body_timeout_s(self) -> float: ...
    @property
    def keepalive_timeout_s(self) -> float: ...
    @property
    def max_connections(self) -> int: ...
    @property
    def accept_error_log_interval_s(self) -> float: ...


class MetricsListener(Protocol):
    """Where a scraper may read /metrics without a token (config's MetricsSettings)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int | None: ...

log = structlog.get_logger(__name__)

# After answering a request whose body it did not read (408, 413), aiohttp reads and drops
# the rest for this long so the client sees the answer; its default of 10 s would let a
# stalled client hold the connection that much longer.
LINGERING_S = 2.0

# The listen queue; asyncio also accepts up to this many connections in one go.
BACKLOG = 128

_HEAD_END = b"\r\n\r\n"
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
         b"Content-Length: 0\r\n\r\n")
_HEAD_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                 b"Content-Length: 0\r\n\r\n")


def connection_cap(configured: int) -> int:
    """`configured`, or for 0 a share of the process's open-file limit (at most 1024).

    asyncio accepts up to BACKLOG connections at once before any of them reaches the
    guard, so those are kept free, and of the rest half: the other half is for the
    database, the log and the adapters.
    """
    if configured:
        return configured
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(8, min(1024, (soft - BACKLOG) // 2))


class ConnectionGuard:
    """Counts open connections and hands each to aiohttp through `_Guarded`."""

    def __init__(self, *, max_connections: int, header_timeout_s: float) -> None:
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.open = 0
        self.refused = 0
        self.head_timeouts = 0

    def factory(self, server: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guarded(self, server)


class _Guarded(asyncio.Protocol):
    """Stands between a connection's transport and aiohttp's request handler: refuses a
    connection over the cap, and closes one whose first request head is overdue."""

    def __init__(self, guard: ConnectionGuard, server: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._server = server
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        guard = self._guard
        if guard.open >= guard.max_connections:
            guard.refused += 1
            transport.write(_BUSY)
            transport.close()
            return
        guard.open += 1
        self._transport = transport
        self._head_timer = asyncio.get_running_loop().call_later(
            guard.header_timeout_s, self._head_overdue)
        self._inner = self._server()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if self._head_timer is not None:
            # Only the first head: later ones are bounded by aiohttp's keep-alive timer.
            seen = self._tail + data
            if _HEAD_END in seen:
                self._head_timer.cancel()
                self._head_timer = None
                self._tail = b""
            else:
                self._tail = seen[-(len(_HEAD_END) - 1):]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is None:
            return
        self._guard.open -= 1
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        inner, self._inner = self._inner, None
        inner.connection_lost(exc)

    def _head_overdue(self) -> None:
        self._head_timer = None
        self._guard.head_timeouts += 1
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(_HEAD_TIMEOUT)
            self._transport.close()


class _GuardedSite(web.BaseSite):
    """A TCP site whose connections pass through a `ConnectionGuard`."""

    __slots__ = ("_guard", "_host", "_port")

    def __init__(self, runner: web.BaseRunner, host: str, port: int,
                 guard: ConnectionGuard) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._guard = guard

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard.factory(server), self._host, self._port, backlog=BACKLOG)


class AcceptErrorFilter(logging.Filter):
    """Lets one "socket.accept() out of system resource" line through per interval, as
    one line (no traceback) counting those suppressed since the last one.

    asyncio logs one with a traceback at every failed accept while descriptors are out:
    the flood hid everything else and filled the disk.
    """

    MESSAGE = "socket.accept() out of system resource"

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._last: float | None = None
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(self.MESSAGE):
            return True
        now = self._clock()
        if self._last is not None and now - self._last < self.interval_s:
            self._suppressed += 1
            return False
        error = record.exc_info[1] if record.exc_info else None
        cause = f" ({type(error).__name__}: {error})" if error is not None else ""
        record.msg = (f"{self.MESSAGE}{cause}; {self._suppressed} more suppressed in the "
                      f"last {self.interval_s:g} s")
        record.args = None
        record.exc_info = None
        record.exc_text = None
        self._last = now
        self._suppressed = 0
        return True


def install_accept_error_filter(interval_s: float) -> AcceptErrorFilter:
    """On the `asyncio` logger, replacing one installed before (one per process)."""
    logger = logging.getLogger("asyncio")
    for old in [f for f in logger.filters if isinstance(f, AcceptErrorFilter)]:
        logger.removeFilter(old)
    installed = AcceptErrorFilter(interval_s)
    logger.addFilter(installed)
    return installed


@dataclass
class Served:
    """The listeners `serve` started; `close()` stops them, finishing requests in flight."""

    runners: list[web.AppRunner] = field(default_factory=list)
    guards: list[ConnectionGuard] = field(default_factory=list)
    addresses: list[Any] = field(default_factory=list)

    async def close(self) -> None:
        for runner in reversed(self.runners):
            with contextlib.suppress(Exception):
                await runner.cleanup()
        self.runners.clear()


async def serve(
    app: web.Application,
    http: ListenerLimits,
    metrics: MetricsListener | None = None,
    metrics_app: web.Application | None = None,
) -> Served:
    """Starts the API on http.host:http.port, and `metrics_app` on metrics.host:port if
    both are given; every listener with the same limits."""
    install_accept_error_filter(http.accept_error_log_interval_s)
    served = Served()
    listeners = [(app, http.host, http.port)]
    if metrics is not None and metrics.port is not None and metrics_app is not None:
        listeners.append((metrics_app, metrics.host, metrics.port))
    try:
        for one, host, port in listeners:
            runner = web.AppRunner(one, access_log=None, handle_signals=False,
                                   keepalive_timeout=http.keepalive_timeout_s,
                                   lingering_time=LINGERING_S)
            await runner.setup()
            served.runners.append(runner)
            guard = ConnectionGuard(max_connections=connection_cap(http.max_connections),
                                    header_timeout_s=http.header_timeout_s)
            await _GuardedSite(runner, host, port, guard).start()
            served.guards.append(guard)
            served.addresses.extend(runner.addresses)
    except BaseException:
        await served.close()
        raise
    log.info("http.limits", max_connections=served.guards[0].max_connections,
             header_timeout_s=http.header_timeout_s, body_timeout_s=http.body_timeout_s,
             keepalive_timeout_s=http.keepalive_timeout_s)
    return served
