"""Issue 12: /readyz is ready only when a write would succeed in time, and a database that
cannot take writes now is a 503 with Retry-After — not a 500, not a hang."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from sqlalchemy import make_url

from tests.conftest import OPERATOR, StartApi, valid_call

# Far beyond any time bound below: reaching it means the request hung.
HUNG_S = 60.0


async def call(api_client: Any, method: str, path: str, **kwargs: Any) -> ClientResponse:
    response: ClientResponse = await asyncio.wait_for(
        api_client.request(method, path, **kwargs), HUNG_S)
    await response.read()
    return response


def assert_not_ready(response: ClientResponse, body: dict[str, Any]) -> None:
    assert response.status == 503
    assert int(response.headers["Retry-After"]) > 0
    # Only "not ready": nothing about why (no driver error, no path, no class name).
    assert body["error"]["code"] == "not_ready"
    text = repr(body).lower()
    for detail in ("lock", "readonly", "read-only", "operational", "disk", "sqlite", "full"):
        assert detail not in text


def assert_unavailable(response: ClientResponse, body: dict[str, Any]) -> None:
    assert response.status == 503
    assert int(response.headers["Retry-After"]) > 0
    assert body["error"]["code"] == "unavailable"


def sqlite_path(url: str) -> Path:
    database = make_url(url).database
    assert database is not None
    return Path(database)


@pytest.fixture
def held_write_lock(migrated_sqlite_url: str) -> Iterator[sqlite3.Connection]:
    """Another process's long write transaction on the gateway's SQLite file."""
    holder = sqlite3.connect(sqlite_path(migrated_sqlite_url), isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield holder
    finally:
        holder.execute("ROLLBACK")
        holder.close()


async def test_readyz_is_ready_and_says_only_that(
    start_api: StartApi, migrated_sqlite_url: str
) -> None:
    api = await start_api(migrated_sqlite_url)

    response = await call(api.client, "GET", "/readyz")

    assert response.status == 200
    assert await response.json() == {"status": "ready"}


async def test_sqlite_write_lock_held_elsewhere_is_not_ready_and_intake_gets_503(
    start_api: StartApi, migrated_sqlite_url: str, held_write_lock: sqlite3.Connection
) -> None:
    api = await start_api(migrated_sqlite_url,
                          database={"busy_timeout_s": 0.2, "ready_timeout_s": 1.0})

    ready = await call(api.client, "GET", "/readyz")
    assert_not_ready(ready, await ready.json())
    intake = await call(api.client, "POST", "/api/v1/calls", json=valid_call(),
                        headers=OPERATOR)
    assert_unavailable(intake, await intake.json())
    health = await call(api.client, "GET", "/healthz")
    assert health.status == 200  # liveness does no database work

    held_write_lock.execute("ROLLBACK")
    held_write_lock.execute("BEGIN")  # the fixture's ROLLBACK still has one to end

    assert (await call(api.client, "GET", "/readyz")).status == 200
    accepted = await call(api.client, "POST", "/api/v1/calls", json=valid_call(),
                          headers=OPERATOR)
    assert accepted.status == 201


async def test_read_only_sqlite_database_is_not_ready_and_intake_gets_503(
    start_api: StartApi, migrated_sqlite_url: str
) -> None:
    path = sqlite_path(migrated_sqlite_url)
    writer = sqlite3.connect(path)  # keeps the WAL index a read-only reader needs
    try:
        api = await start_api(f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true")

        ready = await call(api.client, "GET", "/readyz")
        assert_not_ready(ready, await ready.json())
        intake = await call(api.client, "POST", "/api/v1/calls", json=valid_call(),
                            headers=OPERATOR)
        assert_unavailable(intake, await intake.json())
        assert (await call(api.client, "GET", "/healthz")).status == 200
    finally:
        writer.close()


async def test_sqlite_disk_below_the_free_space_floor_is_not_ready(
    start_api: StartApi, migrated_sqlite_url: str
) -> None:
    # A floor no disk here reaches: the file system is "full" as far as the floor says.
    api = await start_api(migrated_sqlite_url, database={"min_free_mb": 10**12})

    ready = await call(api.client, "GET", "/readyz")

    assert_not_ready(ready, await ready.json())


@pytest.mark.postgres
async def test_postgres_table_lock_is_not_ready_and_intake_gets_503_not_a_hang(
    start_api: StartApi, migrated_postgres_url: str
) -> None:
    import asyncpg

    api = await start_api(migrated_postgres_url,
                          database={"lock_timeout_s": 0.3, "ready_timeout_s": 1.0})
    holder = await asyncpg.connect(
        migrated_postgres_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("LOCK TABLE appeals IN ACCESS EXCLUSIVE MODE")

        ready = await call(api.client, "GET", "/readyz")
        assert_not_ready(ready, await ready.json())
        intake = await call(api.client, "POST", "/api/v1/calls", json=valid_call(),
                            headers=OPERATOR)
        assert_unavailable(intake, await intake.json())
        assert (await call(api.client, "GET", "/healthz")).status == 200

        await transaction.rollback()
    finally:
        await holder.close()

    assert (await call(api.client, "GET", "/readyz")).status == 200
    accepted = await call(api.client, "POST", "/api/v1/calls", json=valid_call(),
                          headers=OPERATOR)
    assert accepted.status == 201
