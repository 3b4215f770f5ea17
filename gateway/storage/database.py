"""One place that creates the database engine, with the pragmas SQLite needs to serve well."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.storage.sqlite_trips import internals_available, one_trip_connector

SQLITE_BUSY_TIMEOUT_MS = 10_000


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An engine for the URL: SQLite in WAL with a busy timeout, or PostgreSQL via asyncpg.

    SQL parameters are kept out of error messages: they hold personal data, and error
    messages end up in logs.
    """
    if is_sqlite(url):
        timeout_s = SQLITE_BUSY_TIMEOUT_MS / 1000
        parsed = make_url(url)
        if parsed.database in (None, "", ":memory:") or parsed.query or (
                not internals_available()):  # the stock path (see sqlite_trips)
            engine = create_async_engine(url, connect_args={"timeout": timeout_s},
                                         hide_parameters=True)
        else:  # a plain file: statements in one trip each (see sqlite_trips)
            engine = create_async_engine(
                url, async_creator=one_trip_connector(parsed.database, timeout_s=timeout_s),
                hide_parameters=True)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL: readers never block the single writer; NORMAL is durable in WAL mode.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                               hide_parameters=True)
