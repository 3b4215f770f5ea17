"""The unit of work over SQL: one transaction for the appeals, their events' rows and the
outbox rows they cause.

Writes take the outbox store's transaction, so on SQLite every writer of the process
takes turns on one lock instead of colliding in SQLite's busy handler (which sleeps up to
100 ms a time); on PostgreSQL it is a plain transaction and loaded appeals are locked.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.domain.ports import Clock
from gateway.services.unit_of_work import AlreadyStored, Changes, UnitOfWork
from gateway.storage.appeals import (
    SqlAppeals,
    write_appeals,
    write_audit,
    write_deliveries,
    write_history,
    write_interims,
)
from gateway.storage.callbacks import SqlCallbackTasks, write_tasks
from gateway.storage.cursors import SqlPollerCursors
from gateway.storage.mail import SqlMailRecords
from outbox import SqlOutboxStore

MOOT_REASON = "cancelled: no longer needed (the answer reached the applicant another way)"


class SqlUnitOfWork(UnitOfWork):
    def __init__(self, opener: Callable[[], AbstractAsyncContextManager[AsyncConnection]],
                 outbox: SqlOutboxStore, clock: Clock, *, writes: bool) -> None:
        super().__init__()
        self._opener = opener
        self._outbox = outbox
        self._clock = clock
        self._writes = writes
        self._stack = contextlib.AsyncExitStack()
        self._conn: AsyncConnection | None = None

    @property
    def connection(self) -> AsyncConnection:
        """For the storage package's own helpers; services never touch it."""
        assert self._conn is not None, "use the unit of work inside `async with`"
        return self._conn

    async def _begin(self) -> None:
        self._conn = await self._stack.enter_async_context(self._opener())
        self.appeals = SqlAppeals(self._conn, for_update=self._writes)
        self.callbacks = SqlCallbackTasks(self._conn, for_update=self._writes)
        self.cursors = SqlPollerCursors(self._conn)
        self.mail = SqlMailRecords(self._conn)

    async def _commit(self, changes: Changes) -> None:
        conn = self.connection
        try:
            if self._writes:
                await _write(conn, changes, self._outbox, self._clock)
            elif (changes.new or changes.updated or changes.audit or changes.messages
                  or changes.dismissed or changes.new_tasks or changes.updated_tasks):
                raise RuntimeError("a reading unit of work cannot save changes")
            await self._stack.aclose()
        except IntegrityError as exc:
            await self._stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise AlreadyStored(type(exc).__name__) from exc
        except BaseException as exc:
            await self._stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise

    async def _rollback(self, exc_type: type[BaseException], exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)


async def _write(conn: AsyncConnection, changes: Changes, outbox: SqlOutboxStore,
                 clock: Clock) -> None:
    now = clock.now()
    await write_appeals(conn, changes.new, changes.updated, now)
    await write_history(conn, changes.history)
    await write_deliveries(conn, changes.deliveries)
    await write_interims(conn, changes.interims)
    await write_tasks(conn, changes.new_tasks, changes.updated_tasks, now)
    await write_audit(conn, changes.audit)
    if changes.messages:
        await outbox.enqueue(conn, changes.messages)
    if changes.cancelled:
        await outbox.cancel(conn, changes.cancelled, MOOT_REASON)
    for key, reason in changes.dismissed:
        await outbox.cancel(conn, [key], reason)


class SqlStorage:
    """`Storage` on an engine and the outbox store that shares its database."""

    def __init__(self, engine: AsyncEngine, outbox: SqlOutboxStore, clock: Clock) -> None:
        self.engine = engine
        self._outbox = outbox
        self._clock = clock

    def write(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self._outbox.transaction, self._outbox, self._clock, writes=True)

    def read(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine.connect, self._outbox, self._clock, writes=False)

    @contextlib.asynccontextmanager
    async def turn(self, name: str) -> AsyncIterator[bool]:
        """Whether this replica takes the named turn (one poller per system): always on
        SQLite, by a session advisory lock on PostgreSQL."""
        if self.engine.dialect.name != "postgresql":
            yield True
            return
        key = zlib.crc32(f"gateway.{name}".encode())
        async with self.engine.connect() as conn:
            got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                      {"k": key})).scalar()
            try:
                yield bool(got)
            finally:
                if got:
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                await conn.commit()
