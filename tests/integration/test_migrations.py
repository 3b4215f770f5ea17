"""The migrations build exactly the schema the code declares, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from gateway.storage.database import create_engine
from gateway.storage.migrate import head_revision, upgrade
from gateway.storage.tables import metadata as gateway_metadata
from outbox import metadata as outbox_metadata


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, [gateway_metadata, outbox_metadata]))


async def _check(url: str) -> None:
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
            revision = await conn.run_sync(
                lambda c: MigrationContext.configure(c).get_current_revision())
        assert revision == head_revision()
    finally:
        await engine.dispose()


async def test_migrations_match_the_tables_on_sqlite(sqlite_url: str) -> None:
    await _check(sqlite_url)


@pytest.mark.postgres
async def test_migrations_match_the_tables_on_postgresql(migrated_postgres_url: str) -> None:
    await _check(migrated_postgres_url)
