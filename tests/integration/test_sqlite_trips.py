"""SQLAlchemy over the one-trip SQLite cursor: the results it relies on are all there."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.storage import database
from gateway.storage.database import create_engine
from gateway.storage.sqlite_trips import (
    INTERNALS,
    OneTripConnection,
    OneTripCursor,
    internals_available,
    missing_internals,
)

metadata = MetaData()
items = Table("items", metadata, Column("id", Integer, primary_key=True),
              Column("name", String, unique=True, nullable=False))


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'trips.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


async def test_the_file_engine_uses_one_trip_cursors(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert isinstance(raw.driver_connection, OneTripConnection)
        assert isinstance(raw.driver_connection.cursor(), OneTripCursor)


async def test_rows_counts_and_ids_come_back(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        one = await conn.execute(insert(items).values(name="a"))
        assert one.inserted_primary_key == (1,)
        returned = await conn.execute(insert(items).returning(items.c.id),
                                      [{"name": "b"}, {"name": "c"}])
        assert sorted(r[0] for r in returned) == [2, 3]
        many = await conn.execute(insert(items), [{"name": f"n{i}"} for i in range(100)])
        assert many.rowcount == 100
        changed = await conn.execute(
            update(items).where(items.c.id <= 3).values(name=items.c.name + "!"))
        assert changed.rowcount == 3

    async with engine.connect() as conn:
        result = await conn.execute(select(items.c.name).order_by(items.c.id))
        assert result.keys() == ["name"]
        names = result.scalars().all()
    assert names[:3] == ["a!", "b!", "c!"] and len(names) == 103


async def test_a_constraint_error_is_sqlalchemys_and_rolls_back(engine: AsyncEngine) -> None:
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(insert(items).values(name="x"))
            await conn.execute(insert(items).values(name="x"))

    async with engine.connect() as conn:
        assert (await conn.execute(select(items))).all() == []


async def test_an_in_memory_database_keeps_the_stock_driver() -> None:
    engine = create_engine("sqlite+aiosqlite:///:memory:")
    try:
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            assert not isinstance(raw.driver_connection, OneTripConnection)
    finally:
        await engine.dispose()


# --- the aiosqlite internals it reaches into (issue 11) --------------------------------------


def test_the_installed_aiosqlite_has_every_internal_one_trip_cursors_use() -> None:
    # Failing here means aiosqlite changed: revisit sqlite_trips and the pin in pyproject.
    assert missing_internals() == (), (
        f"aiosqlite {version('aiosqlite')} lacks {missing_internals()}; the gateway falls "
        "back to the stock (slower) path")
    assert internals_available()


class _ThreadConnection(threading.Thread):
    """aiosqlite's Connection as it was before 0.22: the worker thread itself, no `_thread`."""

    def __init__(self, connector: Any, iter_chunk_size: int) -> None:
        super().__init__()
        self._connection: sqlite3.Connection | None = None

    @property
    def _conn(self) -> sqlite3.Connection:
        assert self._connection is not None
        return self._connection

    async def _execute(self, fn: Any, *args: Any) -> Any:
        return fn(*args)


class _Bare:
    def __init__(self, connector: Any, iter_chunk_size: int) -> None:
        pass


def test_an_aiosqlite_without_the_internals_is_recognised() -> None:
    assert missing_internals(_ThreadConnection) == ("_thread",)
    assert missing_internals(_Bare) == INTERNALS


async def test_without_the_internals_the_engine_takes_the_stock_aiosqlite_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "internals_available", lambda: False)
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'stock.db'}")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            raw = await conn.get_raw_connection()
            assert type(raw.driver_connection) is aiosqlite.Connection
            await conn.execute(insert(items), [{"name": "a"}, {"name": "b"}])
        async with engine.connect() as conn:
            names = (await conn.execute(select(items.c.name).order_by(items.c.id))).scalars()
            assert names.all() == ["a", "b"]
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
            assert mode == "wal"  # the same pragmas on either path
    finally:
        await engine.dispose()
