"""SQLite statements in one trip to aiosqlite's thread instead of three or four.

SQLAlchemy's aiosqlite adapter opens a cursor, executes, fetches and closes it, each an
await on aiosqlite's worker thread. A trip costs little alone, but it waits for the event
loop to come round, and on SQLite the writer holds the process's write lock across all of
them: under load the lock convoy, not SQL, set the latency of every call. Here `cursor()`
returns a cursor that does all four in one function run on that thread and keeps the
rows, description and counts for SQLAlchemy to read.

Hand-written because no library offers it. It relies on two aiosqlite internals that
SQLAlchemy's own adapter relies on too (the worker queue behind `_execute`, the sqlite3
connection `_conn`); the whole test suite runs through it on every change.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite

_Outcome = tuple[Any, int, int | None, list[Any]]


def _run(connection: aiosqlite.Connection, sql: str, parameters: Any, many: bool) -> _Outcome:
    """In the worker thread: the whole cursor life of one statement."""
    cursor = connection._conn.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class OneTripCursor:
    """The async cursor SQLAlchemy's adapter drives, backed by rows already fetched."""

    arraysize = 1

    def __init__(self, connection: OneTripConnection) -> None:
        self._connection = connection
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: list[Any] = []

    async def __aenter__(self) -> OneTripCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None

    async def execute(self, sql: str, parameters: Any = ()) -> OneTripCursor:
        await self._trip(sql, parameters, many=False)
        return self

    async def executemany(self, sql: str, parameters: Any) -> OneTripCursor:
        await self._trip(sql, parameters, many=True)
        return self

    async def _trip(self, sql: str, parameters: Any, *, many: bool) -> None:
        outcome: _Outcome = await self._connection._execute(  # type: ignore[no-untyped-call]
            _run, self._connection, sql, parameters, many)
        self.description, self.rowcount, self.lastrowid, self._rows = outcome

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        count = self.arraysize if size is None else size
        taken, self._rows = self._rows[:count], self._rows[count:]
        return taken

    async def fetchall(self) -> Sequence[Any]:
        taken, self._rows = self._rows, []
        return taken

    async def close(self) -> None:
        self._rows = []


class OneTripConnection(aiosqlite.Connection):
    def cursor(self) -> OneTripCursor:  # type: ignore[override]
        """No trip: SQLAlchemy enters it with `async with`, and it opens in `_run`."""
        return OneTripCursor(self)


def one_trip_connector(path: str, *, timeout_s: float) -> Any:
    """An `async_creator` for `create_async_engine`: aiosqlite with one-trip cursors."""

    async def connect() -> OneTripConnection:
        connection = OneTripConnection(lambda: sqlite3.connect(path, timeout=timeout_s), 64)
        # As SQLAlchemy does for aiosqlite: a forgotten connection must not hold exit.
        connection._thread.daemon = True
        await connection
        return connection

    return connect
