"""Issue 12: /metrics needs the admin token (or a listener of its own for the scraper),
and a scrape does not run a GROUP BY over the outbox each time."""

from __future__ import annotations

import re
import socket

import httpx

from config.settings import Settings
from gateway.api.context import SERVICES_KEY
from gateway.api.health import metrics_app
from gateway.api.server import serve
from gateway.bootstrap import bootstrap
from tests.conftest import ADMIN, API_TOKENS, DELIVERY, OPERATOR, StartApi, valid_call


def pending_rows(exposition: str) -> float:
    found = re.search(r'^outbox_rows_by_state\{state="pending"\} (\S+)$', exposition, re.M)
    assert found is not None, exposition
    return float(found.group(1))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_metrics_need_the_admin_token(
    start_api: StartApi, migrated_sqlite_url: str
) -> None:
    api = await start_api(migrated_sqlite_url)

    anonymous = await api.client.get("/metrics")
    operator = await api.client.get("/metrics", headers=OPERATOR)
    delivery = await api.client.get("/metrics", headers=DELIVERY)
    admin = await api.client.get("/metrics", headers=ADMIN)

    assert anonymous.status == 401
    assert operator.status == 403
    assert delivery.status == 403
    assert admin.status == 200
    assert "outbox_rows_by_state" in await admin.text()
    # Liveness and readiness stay open.
    assert (await api.client.get("/healthz")).status == 200
    assert (await api.client.get("/readyz")).status == 200


async def test_scrapes_within_the_cache_period_share_one_count(
    start_api: StartApi, migrated_sqlite_url: str
) -> None:
    api = await start_api(migrated_sqlite_url, metrics={"cache_s": 3600})

    before = await (await api.client.get("/metrics", headers=ADMIN)).text()
    queued = await api.client.post("/api/v1/calls", json=valid_call(), headers=OPERATOR)
    assert queued.status == 201
    assert await api.outbox_count() == 1
    cached = await (await api.client.get("/metrics", headers=ADMIN)).text()

    assert pending_rows(before) == 0
    assert pending_rows(cached) == 0  # counted at the first scrape, not again


async def test_counts_are_refreshed_once_the_cache_period_is_over(
    start_api: StartApi, migrated_sqlite_url: str
) -> None:
    api = await start_api(migrated_sqlite_url, metrics={"cache_s": 0})

    before = await (await api.client.get("/metrics", headers=ADMIN)).text()
    queued = await api.client.post("/api/v1/calls", json=valid_call(), headers=OPERATOR)
    assert queued.status == 201
    after = await (await api.client.get("/metrics", headers=ADMIN)).text()

    assert pending_rows(before) == 0
    assert pending_rows(after) == 1


async def test_a_metrics_listener_serves_the_scraper_without_a_token(
    migrated_sqlite_url: str,
) -> None:
    port, metrics_port = free_port(), free_port()
    settings = Settings(database_url=migrated_sqlite_url, api_tokens=API_TOKENS,
                        http={"port": port}, metrics={"port": metrics_port})
    gateway = bootstrap(settings)
    served = await serve(gateway.app, settings.http, settings.metrics,
                         metrics_app(gateway.app[SERVICES_KEY]))
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            scraper = await client.get(f"http://127.0.0.1:{metrics_port}/metrics")
            api_port = await client.get(f"http://127.0.0.1:{port}/metrics")
            nothing_else = await client.get(f"http://127.0.0.1:{metrics_port}/status")
    finally:
        await served.close()
        await gateway.close()

    assert scraper.status_code == 200
    assert "outbox_rows_by_state" in scraper.text
    assert api_port.status_code == 401  # the API's own /metrics still needs the token
    assert nothing_else.status_code == 404
