"""Readiness: does the database accept a write now, within a time bound?

`SELECT 1` answers while every write fails: a SQLite file on a full or read-only disk,
a PostgreSQL table locked by a long transaction (issue 12). So the probe takes the
write path intake takes — the outbox store's transaction, its locks and the tables it writes — and
rolls back, leaving nothing behind and needing no table of its own.

A rolled-back write on SQLite never reaches the disk, so for a SQLite file the free
space of its file system is checked too.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from sqlalchemy import URL, false, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.storage.database import unavailable_reason
from gateway.storage.tables import appeals
from outbox.schema import outbox_messages

# What intake writes: a lock on either of these stalls it.
_WRITTEN_BY_INTAKE = (appeals, outbox_messages)


class _RollBack(Exception):
    """Leaves the probe's transaction the way any failed write leaves it: rolled back."""


class WriteProbe:
    def __init__(self, engine: AsyncEngine,
                 writer: Callable[[], AbstractAsyncContextManager[AsyncConnection]], *,
                 timeout_s: float = 2.0, min_free_bytes: int = 0) -> None:
        self._writer = writer
        self._timeout_s = timeout_s
        self._min_free_bytes = min_free_bytes
        self._dialect = engine.url.get_backend_name()
        self._sqlite_file = _sqlite_file(engine.url)

    async def not_ready(self) -> str | None:
        """None when ready, else a fixed word saying why (safe to log, never shown)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._write_and_roll_back()
        except _RollBack:
            pass
        except TimeoutError:
            return "timeout"
        except Exception as error:  # noqa: BLE001 - any failure to write means not ready
            return unavailable_reason(error) or type(error).__name__
        if self._sqlite_file is not None and self._min_free_bytes:
            try:
                free = await asyncio.to_thread(_free_bytes, self._sqlite_file)
            except OSError:
                return "io_error"
            if free < self._min_free_bytes:
                return "disk_full"
        return None

    async def _write_and_roll_back(self) -> None:
        # The database's own bound sits inside ours, so it answers before we give up on it.
        bound_ms = max(1, round(self._timeout_s * 800))
        async with self._writer() as conn:
            if self._dialect == "postgresql":
                await conn.execute(text(f"SET LOCAL lock_timeout = {bound_ms}"))
                await conn.execute(text(f"SET LOCAL statement_timeout = {bound_ms}"))
                await _touch(conn)
            else:
                busy = (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one()
                await conn.execute(text(f"PRAGMA busy_timeout = {bound_ms}"))
                try:
                    await _touch(conn)
                finally:
                    await conn.execute(text(f"PRAGMA busy_timeout = {int(busy)}"))
            raise _RollBack


async def _touch(conn: AsyncConnection) -> None:
    """An UPDATE of no row still takes the table's write lock (PostgreSQL: ROW EXCLUSIVE;
    SQLite: the database's write lock), and fails on a read-only database."""
    for table in _WRITTEN_BY_INTAKE:
        await conn.execute(update(table).where(false()).values(id=table.c.id))


def _sqlite_file(url: URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database.removeprefix("file:")).resolve()


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(path.parent).free
