"""SQLite statements in one trip to aiosqlite's thread instead of three or four.

SQLAlchemy's aiosqlite adapter opens a cursor, executes, fetches and closes it, each an
await on aiosqlite's worker thread. A trip costs little alone, but each waits for the
event loop to come round, and a writer holds SQLite's write lock across all of them, so
under load these waits lengthen every other writer's wait too. Here `cursor()`
returns a cursor that does all four in one function run on that thread and keeps the
rows, description and counts for SQLAlchemy to read.

It reaches into three private parts of aiosqlite.Connection: `_execute` (runs a function
on the connection's worker thread), `_conn` (the sqlite3 connection there) and `_thread`
(the worker, made a daemon as SQLAlchemy does). They exist in the pinned range
(pyproject.toml): aiosqlite before 0.22 has no `_thread`, its Connection being the thread
itself. When any is missing, `internals_available()` is false and the engine takes the
stock aiosqlite path instead (gateway/storage/database.py);
tests/integration/test_sqlite_trips.py fails loudly on such a version, so the pin and this
module are revisited rather than silently slower.
"""

from __future__ import annotations

import functools
import inspect
import sqlite3
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import aiosqlite

# What this module uses of aiosqlite.Connection beyond its public API.
INTERNALS = ("_execute", "_conn", "_thread")

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


def missing_internals(connection_class: type[Any] = aiosqlite.Connection) -> tuple[str, ...]:
    """Which of `INTERNALS` this aiosqlite lacks (empty: one-trip cursors can be used)."""
    missing = []
    if not inspect.iscoroutinefunction(getattr(connection_class, "_execute", None)):
        missing.append("_execute")
    if not isinstance(getattr(connection_class, "_conn", None), property):
        missing.append("_conn")
    try:  # an instance attribute: look at a connection that is never started
        probe = connection_class(lambda: sqlite3.connect(":memory:"), 64)
        thread = getattr(probe, "_thread", None)
    except Exception:  # noqa: BLE001 - any surprise here means "not the API we know"
        thread = None
    if not isinstance(thread, threading.Thread):
        missing.append("_thread")
    return tuple(missing)


@functools.cache
def internals_available() -> bool:
    """Whether the installed aiosqlite has what one-trip cursors need (checked once)."""
    return not missing_internals()


def one_trip_connector(
    path: str, *, timeout_s: float
) -> Callable[[], Coroutine[Any, Any, OneTripConnection]]:
    """An `async_creator` for `create_async_engine`: aiosqlite with one-trip cursors.

    Only for an aiosqlite where `internals_available()`; the caller checks.
    """

    async def connect() -> OneTripConnection:
        connection = OneTripConnection(lambda: sqlite3.connect(path, timeout=timeout_s), 64)
        # As SQLAlchemy does for aiosqlite: a forgotten connection must not hold exit.
        connection._thread.daemon = True
        await connection
        return connection

    return connect
