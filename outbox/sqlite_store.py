"""The outbox on SQLite: one writer at a time, claims as `UPDATE ... RETURNING`.

Claims and outcomes run in short transactions, and this process's writes (the gateway's
own included, through `transaction()`) take turns on one asyncio lock so they never meet
inside SQLite, whose busy handler sleeps up to 100 ms per collision.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    String,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from outbox.messages import Message
from outbox.schema import State, outbox_messages
from outbox.sql_store import CLAIM_RETURNS, SqlOutboxStore, claimed_message

_t = outbox_messages


class SQLiteOutboxStore(SqlOutboxStore):
    """SQLite: one writer at a time, so this process's writes take turns on a lock.

    The engine should be in WAL mode with a busy timeout (readers never block the writer;
    the gateway's own transactions wait their turn instead of failing). Notifications are
    in-process only: another process on the same file finds new rows at its next poll.
    """

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] | None = None) -> None:
        super().__init__(engine, clock=clock)
        self._write_lock = asyncio.Lock()
        self._claim_stmt = self._claim_sql()

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    async def _insert_many(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[int]:
        """One multi-row INSERT: SQLAlchemy cannot promise SQLite's RETURNING order and would
        insert row by row, a round trip each. Rows of one statement get increasing rowids
        in VALUES order while this transaction holds the write lock, so sorted ids match."""
        result = await conn.execute(insert(_t).returning(_t.c.id), rows)
        return sorted(r[0] for r in result)

    def _due_ids(self, now: ColumnElement[float], limit: Any) -> Any:
        m = _t.alias("m")
        p = _t.alias("p")
        # The head of the appeal: its first unfinished row. A correlated scalar subquery
        # (not NOT EXISTS, which PostgreSQL turns into an anti-join over the whole table)
        # keeps the plan an ordered index walk that stops after `limit` rows.
        head_of_key = (
            select(func.min(p.c.id))
            # Written term by term so SQLite sees the partial index's `state <> 'done'`.
            .where(p.c.ordering_key == m.c.ordering_key, p.c.state != State.DONE.value,
                   p.c.state != State.CANCELLED.value)
            .scalar_subquery()
        )
        return (
            select(m.c.id)
            .where(
                m.c.state == State.PENDING.value,
                m.c.available_at <= now,
                m.c.id == head_of_key,
            )
            .order_by(m.c.available_at, m.c.id)
            .limit(limit)
        )

    def _lease_values(self, owner: Any, now: ColumnElement[float], lease_s: Any) -> dict[str, Any]:
        return {
            "state": State.LEASED.value,
            "lease_owner": owner,
            "lease_expires_at": now + lease_s,
            "attempts": _t.c.attempts + 1,
            "updated_at": now,
        }

    def _claim_sql(self) -> Any:
        """Built once (it runs for every batch); owner, limit, lease and now are parameters."""
        now = self._now_sql()
        limit = bindparam("limit", type_=Integer)
        return (
            update(_t)
            .where(_t.c.id.in_(self._due_ids(now, limit).scalar_subquery()))
            .values(**self._lease_values(bindparam("owner", type_=String), now,
                                         bindparam("lease_s", type_=Float)))
            .returning(*CLAIM_RETURNS)
        )

    async def claim(self, owner: str, limit: int, lease_s: float) -> list[Message]:
        params = {"owner": owner, "limit": limit, "lease_s": lease_s, **self._now_params()}
        async with self._write() as conn:
            return [claimed_message(r) for r in await conn.execute(self._claim_stmt, params)]
