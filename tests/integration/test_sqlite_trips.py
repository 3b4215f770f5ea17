"""SQLAlchemy over the one-trip SQLite cursor: the results it relies on are all there."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.storage.database import create_engine
from gateway.storage.sqlite_trips import OneTripConnection, OneTripCursor

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
