"""Which database errors mean "not now" (503 and Retry-After), from real SQLite and
PostgreSQL failures; and that the PostgreSQL engine carries its time bounds."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from gateway.storage.database import Timeouts, create_engine, unavailable_reason


def database(tmp_path: Path) -> Path:
    path = tmp_path / "x.db"
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE t (v TEXT)")
    setup.commit()
    setup.close()
    return path


def sqlite_error(path: Path, *statements: str, uri: bool = False) -> sqlite3.Error:
    target = f"file:{path}?mode=ro" if uri else str(path)
    connection = sqlite3.connect(target, uri=uri, timeout=0.05)
    try:
        for statement in statements:
            connection.execute(statement)
    except sqlite3.Error as error:
        return error
    finally:
        connection.close()
    raise AssertionError("the statements did not fail")


def test_a_full_sqlite_database_is_unavailable(tmp_path: Path) -> None:
    # max_page_count makes SQLite itself answer SQLITE_FULL, as a full disk does.
    error = sqlite_error(database(tmp_path), "PRAGMA max_page_count = 2",
                         "INSERT INTO t SELECT hex(randomblob(2000)) FROM "
                         "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n "
                         "WHERE i < 50) SELECT i FROM n)")

    assert unavailable_reason(error) == "disk_full"


def test_a_read_only_sqlite_database_is_unavailable(tmp_path: Path) -> None:
    error = sqlite_error(database(tmp_path), "INSERT INTO t VALUES ('x')", uri=True)

    assert unavailable_reason(error) == "read_only"


def test_a_locked_sqlite_database_is_unavailable(tmp_path: Path) -> None:
    path = database(tmp_path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        error = sqlite_error(path, "INSERT INTO t VALUES ('x')")
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert unavailable_reason(error) == "locked"


def test_a_wrong_statement_is_not_unavailability(tmp_path: Path) -> None:
    error = sqlite_error(database(tmp_path), "SELECT no_such_column FROM t")

    assert unavailable_reason(error) is None
    assert unavailable_reason(ValueError("x")) is None


def test_a_refused_connection_is_unavailable() -> None:
    assert unavailable_reason(ConnectionRefusedError(111, "refused")) == "unreachable"


@pytest.mark.postgres
async def test_postgres_statement_timeout_cancels_and_is_unavailable(postgres_url: str) -> None:
    engine = create_engine(postgres_url, timeouts=Timeouts(statement_s=0.2))
    try:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as cancelled:
                await conn.execute(text("SELECT pg_sleep(30)"))
            # The connection stays usable after the server cancelled the statement.
            await conn.rollback()
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()

    assert unavailable_reason(cancelled.value) == "timeout"


@pytest.mark.postgres
async def test_postgres_engine_has_lock_and_statement_timeouts(postgres_url: str) -> None:
    engine = create_engine(postgres_url, timeouts=Timeouts(statement_s=12, lock_s=3))
    try:
        async with engine.connect() as conn:
            statement = (await conn.execute(text("SHOW statement_timeout"))).scalar_one()
            lock = (await conn.execute(text("SHOW lock_timeout"))).scalar_one()
    finally:
        await engine.dispose()

    assert (statement, lock) == ("12s", "3s")


@pytest.mark.postgres
async def test_postgres_connection_the_server_closed_is_replaced_at_checkout(
        postgres_url: str) -> None:
    engine = create_engine(postgres_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
        other = create_engine(postgres_url)
        async with other.connect() as killer:
            await killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await other.dispose()
        for _ in range(200):  # the pooled connection hears the server hang up
            if driver.is_closed():
                break
            await asyncio.sleep(0.01)

        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() != pid
    finally:
        await engine.dispose()
