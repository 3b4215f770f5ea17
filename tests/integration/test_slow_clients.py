"""Issue 12: clients that never finish a request are closed, surplus connections are
refused at once, and a flood of accept errors is one log line per interval.

The gateway is served exactly as `gateway run` serves it (`gateway.api.server.serve`).
No timing is asserted beyond "closed within a generous bound".
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from config.settings import HttpSettings, MetricsSettings, Settings
from gateway.api.server import AcceptErrorFilter, Served, serve
from gateway.bootstrap import bootstrap
from tests.conftest import API_TOKENS

GENEROUS_S = 30.0
PARTIAL_HEAD = b"POST /api/v1/calls HTTP/1.1\r\nHost: gateway\r\nContent-Type: applic"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Live:
    served: Served
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@contextlib.asynccontextmanager
async def live_gateway(database_url: str, **http: object) -> AsyncIterator[Live]:
    port = free_port()
    settings = Settings(database_url=database_url, api_tokens=API_TOKENS,
                        http={"port": port, **http})
    gateway = bootstrap(settings)
    served = await serve(gateway.app, settings.http)
    try:
        yield Live(served, "127.0.0.1", port)
    finally:
        await served.close()
        await gateway.close()


@dataclass
class Client:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter  # held: a collected writer closes its socket


async def open_partial(live: Live, head: bytes = PARTIAL_HEAD) -> Client:
    reader, writer = await asyncio.open_connection(live.host, live.port)
    writer.write(head)
    await writer.drain()
    return Client(reader, writer)


async def closed_by_server(client: Client) -> bytes:
    """Everything the server sent before it closed; fails if it never closes."""
    try:
        return await asyncio.wait_for(client.reader.read(), GENEROUS_S)
    except ConnectionResetError:
        # Closed with bytes of ours unread (a busy machine): closed all the same.
        return b""
    finally:
        client.writer.close()


async def eventually(condition: Callable[[], bool]) -> None:
    for _ in range(int(GENEROUS_S / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition did not come true")


async def test_connections_with_an_unfinished_head_are_closed_and_others_still_served(
    migrated_sqlite_url: str,
) -> None:
    async with live_gateway(migrated_sqlite_url, header_timeout_s=0.5) as live:
        stalled = [await open_partial(live) for _ in range(300)]

        async with httpx.AsyncClient(base_url=live.url, timeout=GENEROUS_S) as client:
            served_meanwhile = await client.get("/healthz")

        answers = await asyncio.gather(*(closed_by_server(c) for c in stalled))

        assert served_meanwhile.status_code == 200
        assert live.served.guards[0].head_timeouts == 300
        unexpected = [a[:40] for a in answers if a and not a.startswith(b"HTTP/1.1 408")]
        assert unexpected == []


async def test_a_head_dripping_a_byte_at_a_time_is_still_closed(
    migrated_sqlite_url: str,
) -> None:
    async with live_gateway(migrated_sqlite_url, header_timeout_s=0.5) as live:
        reader, writer = await asyncio.open_connection(live.host, live.port)

        async def drip() -> None:
            for byte in PARTIAL_HEAD * 100:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.05)

        dripping = asyncio.create_task(drip())
        try:
            answer = await closed_by_server(Client(reader, writer))
        finally:
            dripping.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await dripping

        assert answer.startswith(b"HTTP/1.1 408")


async def test_a_body_that_never_arrives_is_answered_408_and_closed(
    migrated_sqlite_url: str,
) -> None:
    async with live_gateway(migrated_sqlite_url, body_timeout_s=0.5) as live:
        client = await open_partial(
            live, b"POST /api/v1/calls HTTP/1.1\r\nHost: gateway\r\n"
                  b"Authorization: Bearer op\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n{\"journal_id\": ")

        answer = await closed_by_server(client)

        assert answer.startswith(b"HTTP/1.1 408")
        assert b"request_timeout" in answer


async def test_connections_beyond_the_cap_are_refused_at_once(
    migrated_sqlite_url: str,
) -> None:
    async with live_gateway(migrated_sqlite_url, max_connections=5,
                            header_timeout_s=GENEROUS_S * 10) as live:
        holders = []
        for _ in range(5):
            holders.append(await asyncio.open_connection(live.host, live.port))
            holders[-1][1].write(PARTIAL_HEAD)
        await eventually(lambda: live.served.guards[0].open == 5)

        surplus = await open_partial(live, b"GET /healthz HTTP/1.1\r\nHost: g\r\n\r\n")
        refused = await closed_by_server(surplus)

        for _, writer in holders:
            writer.close()
        await eventually(lambda: live.served.guards[0].open == 0)
        async with httpx.AsyncClient(base_url=live.url, timeout=GENEROUS_S) as client:
            after = await client.get("/healthz")

        assert refused.startswith(b"HTTP/1.1 503")
        assert b"Retry-After:" in refused
        assert after.status_code == 200


def test_the_default_cap_leaves_descriptors_for_everything_else() -> None:
    import resource

    from gateway.api.server import connection_cap

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)

    assert connection_cap(40) == 40
    assert 8 <= connection_cap(0) <= max(8, soft // 2)


@pytest.fixture
def accept_filter() -> Iterator[tuple[AcceptErrorFilter, list[float]]]:
    now = [1000.0]
    installed = AcceptErrorFilter(10.0, clock=lambda: now[0])
    logger = logging.getLogger("asyncio")
    before = logger.filters[:]  # serving elsewhere in this process installed one too
    logger.filters[:] = [f for f in before if not isinstance(f, AcceptErrorFilter)]
    logger.addFilter(installed)
    try:
        yield installed, now
    finally:
        logger.filters[:] = before


async def test_accept_errors_are_logged_once_per_interval_with_a_count(
    accept_filter: tuple[AcceptErrorFilter, list[float]], caplog: pytest.LogCaptureFixture,
) -> None:
    _, now = accept_filter
    loop = asyncio.get_running_loop()

    def accept_fails() -> None:
        # What asyncio's selector loop reports when accept() hits the descriptor limit.
        loop.call_exception_handler({
            "message": "socket.accept() out of system resource",
            "exception": OSError(errno.EMFILE, "Too many open files"),
        })

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        for _ in range(1000):
            accept_fails()
        first = [r for r in caplog.records if r.name == "asyncio"]
        now[0] += 10.0
        accept_fails()
        loop.call_exception_handler({"message": "something else"})
    records = [r for r in caplog.records if r.name == "asyncio"]

    assert len(first) == 1
    assert "\n" not in first[0].getMessage()
    assert first[0].exc_info is None  # no traceback per line
    assert "OSError" in first[0].getMessage()
    assert len(records) == 3
    assert "999 more suppressed" in records[1].getMessage()
    assert records[2].getMessage().startswith("something else")  # other errors pass


async def test_serving_installs_the_accept_error_filter(migrated_sqlite_url: str) -> None:
    async with live_gateway(migrated_sqlite_url, accept_error_log_interval_s=7.0):
        filters = [f for f in logging.getLogger("asyncio").filters
                   if isinstance(f, AcceptErrorFilter)]

        assert [f.interval_s for f in filters] == [7.0]


async def test_metrics_listener_has_the_same_limits(migrated_sqlite_url: str) -> None:
    from gateway.api.context import SERVICES_KEY
    from gateway.api.health import metrics_app

    port, metrics_port = free_port(), free_port()
    settings = Settings(database_url=migrated_sqlite_url, api_tokens=API_TOKENS,
                        http=HttpSettings(port=port, header_timeout_s=0.5),
                        metrics=MetricsSettings(port=metrics_port))
    gateway = bootstrap(settings)
    served = await serve(gateway.app, settings.http, settings.metrics,
                         metrics_app(gateway.app[SERVICES_KEY]))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", metrics_port)
        writer.write(b"GET /metr")
        answer = await closed_by_server(Client(reader, writer))

        assert answer.startswith(b"HTTP/1.1 408")
    finally:
        await served.close()
        await gateway.close()
