"""Which outbox store fits an engine: chosen by the engine's SQL dialect."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from outbox.postgres_store import PostgresOutboxStore
from outbox.sql_store import SqlOutboxStore
from outbox.sqlite_store import SQLiteOutboxStore


def store_for(engine: AsyncEngine, *, clock: Callable[[], float] | None = None) -> SqlOutboxStore:
    """The store matching the engine's dialect."""
    name = engine.dialect.name
    if name == "sqlite":
        return SQLiteOutboxStore(engine, clock=clock)
    if name == "postgresql":
        return PostgresOutboxStore(engine, clock=clock)
    raise ValueError(f"no outbox store for dialect {name!r}")
