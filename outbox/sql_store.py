"""The SQL both dialects share: enqueue, renew, settle, reclaim and the admin queries.

Each transition is a single UPDATE whose WHERE clause re-checks the state it expects (and,
for a worker's outcome, the lease owner and attempt); the ids it returns tell the caller
which rows it won. The dialect subclasses (`outbox.sqlite_store`, `outbox.postgres_store`)
supply the claim, the clock lease times use, how writers take turns and how listeners wake.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Update,
    and_,
    bindparam,
    event,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from outbox.messages import (
    Message,
    MessageRecord,
    NewMessage,
    OutboxStats,
    Settlement,
    Verdict,
    clip_reason,
)
from outbox.schema import State, outbox_messages
from outbox.store import OutboxStore

_t = outbox_messages

# The statements every row passes through are built once (constructing one costs more
# than SQLAlchemy's cached compile of it); values travel as parameters.
_INSERT_ONE = insert(_t).returning(_t.c.id)


_WAKE_AT_COMMIT = "outbox_wake_at_commit"


def _wake_at_commit(conn: Connection) -> None:
    subscribers = conn.info.pop(_WAKE_AT_COMMIT, None)
    if subscribers is not None:
        subscribers.wake()


def _forget_wake(conn: Connection) -> None:
    conn.info.pop(_WAKE_AT_COMMIT, None)


class _Subscribers:
    """Events of everyone in this process waiting for new rows."""

    def __init__(self) -> None:
        self._events: set[asyncio.Event] = set()

    def wake(self) -> None:
        for ev in self._events:
            ev.set()

    @contextlib.contextmanager
    def subscribed(self) -> Any:
        ev = asyncio.Event()
        self._events.add(ev)
        try:
            yield ev
        finally:
            self._events.discard(ev)


CLAIM_RETURNS = (
    _t.c.id,
    _t.c.ordering_key,
    _t.c.target,
    _t.c.action,
    _t.c.payload,
    _t.c.idempotency_key,
    _t.c.attempts,
    _t.c.created_at,
    _t.c.redriven_at,
)


def claimed_message(row: Any) -> Message:
    """The handler's view of a row a claim returned (columns in `CLAIM_RETURNS` order)."""
    created = row[7]
    return Message(
        id=row[0],
        ordering_key=row[1],
        target=row[2],
        action=row[3],
        payload=row[4],
        idempotency_key=row[5],
        attempt=row[6],
        created_at=created,
        window_start=row[8] if row[8] is not None else created,
    )


def _record(row: Any) -> MessageRecord:
    m = row._mapping
    return MessageRecord(
        id=m["id"],
        ordering_key=m["ordering_key"],
        target=m["target"],
        action=m["action"],
        payload=m["payload"],
        idempotency_key=m["idempotency_key"],
        state=State(m["state"]),
        attempts=m["attempts"],
        available_at=m["available_at"],
        lease_owner=m["lease_owner"],
        lease_expires_at=m["lease_expires_at"],
        last_error=m["last_error"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        finished_at=m["finished_at"],
        redriven_at=m["redriven_at"],
    )


class SqlOutboxStore(OutboxStore):
    """The SQL both dialects share; subclasses supply the claim and the clock."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] | None = None) -> None:
        self.engine = engine
        self._clock = clock
        self._subscribers = _Subscribers()

    # -- time --------------------------------------------------------------------------

    def app_now(self) -> float:
        return self._clock() if self._clock is not None else time.time()

    def _now(self) -> ColumnElement[float]:
        """The time lease comparisons use, as SQL (a bound value unless overridden)."""
        return literal(self.app_now(), Float)

    def _now_sql(self) -> ColumnElement[float]:
        """`_now()` for statements built once: the parameter `now` unless overridden,
        filled in by `_now_params()`."""
        return bindparam("now", type_=Float)

    def _now_params(self) -> dict[str, Any]:
        return {"now": self.app_now()}

    def _settle_done_stmt(self) -> Update:
        stmt = self.__dict__.get("_settle_done")
        if stmt is None:
            now = self._now_sql()
            stmt = self.__dict__["_settle_done"] = (
                update(_t)
                .where(
                    _t.c.id.in_(bindparam("ids", expanding=True)),
                    _t.c.attempts == bindparam("attempt"),
                    _t.c.state == State.LEASED.value,
                    _t.c.lease_owner == bindparam("owner"),
                )
                .values(
                    state=State.DONE.value,
                    lease_owner=None,
                    lease_expires_at=None,
                    finished_at=now,
                    updated_at=now,
                )
                .returning(_t.c.id)
            )
        return stmt

    # -- writing helpers ---------------------------------------------------------------

    def transaction(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction that takes its turn with the outbox's own writes.

        Use it for the caller's transactions that enqueue (`async with store.transaction()
        as conn: ...; await store.enqueue(conn, ...)`). On SQLite this process's writers
        then queue on one asyncio lock instead of colliding inside SQLite, whose busy
        handler sleeps up to 100 ms per collision; on PostgreSQL it is `engine.begin()`.
        Do not call the store's other methods while holding it.
        """
        return self._write()

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.begin() as conn:
            yield conn

    # -- enqueue -----------------------------------------------------------------------

    async def cancel(self, conn: AsyncConnection, idempotency_keys: Sequence[str],
                     reason: str) -> int:
        if not idempotency_keys:
            return 0
        now = self.app_now()
        result = await conn.execute(
            update(_t)
            .where(_t.c.idempotency_key.in_(sorted(set(idempotency_keys))),
                   _t.c.state.in_([State.PENDING.value, State.DEAD.value]))
            .values(state=State.CANCELLED.value, last_error=clip_reason(reason),
                    finished_at=now, updated_at=now))
        if result.rowcount:
            # A cancelled head frees its appeal's later rows: let dispatchers look again.
            await self._after_enqueue(conn)
        return int(result.rowcount or 0)

    async def enqueue(self, conn: AsyncConnection, messages: Sequence[NewMessage]) -> list[int]:
        if not messages:
            return []
        now = self.app_now()
        rows = [
            {
                "ordering_key": m.ordering_key,
                "target": m.target,
                "action": m.action,
                "payload": dict(m.payload),
                "idempotency_key": m.idempotency_key,
                "state": State.PENDING.value,
                "attempts": 0,
                "available_at": m.available_at if m.available_at is not None else now,
                "created_at": now,
                "updated_at": now,
            }
            for m in messages
        ]
        if len(rows) == 1:
            result = await conn.execute(_INSERT_ONE, rows[0])
            ids = [result.scalar_one()]
        else:
            ids = await self._insert_many(conn, rows)
        await self._after_enqueue(conn)
        return ids

    async def _insert_many(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[int]:
        result = await conn.execute(
            insert(_t).returning(_t.c.id, sort_by_parameter_order=True), rows
        )
        return [r[0] for r in result]

    async def _after_enqueue(self, conn: AsyncConnection) -> None:
        """Wake local dispatchers once the caller's transaction commits."""
        # A mark read by one engine-wide listener: adding and removing a listener per
        # transaction cost more than the single-row INSERT itself.
        assert conn.sync_connection is not None
        conn.sync_connection.info[_WAKE_AT_COMMIT] = self._subscribers
        listening = self.engine.sync_engine
        if not event.contains(listening, "commit", _wake_at_commit):
            event.listen(listening, "commit", _wake_at_commit)
            event.listen(listening, "rollback", _forget_wake)

    # -- leases ------------------------------------------------------------------------

    async def renew(self, owner: str, ids: Collection[int], lease_s: float) -> set[int]:
        if not ids:
            return set()
        now = self._now()
        stmt = (
            update(_t)
            .where(
                _t.c.id.in_(list(ids)),
                _t.c.state == State.LEASED.value,
                _t.c.lease_owner == owner,
            )
            .values(lease_expires_at=now + lease_s)
            .returning(_t.c.id)
        )
        async with self._write() as conn:
            result = await conn.execute(stmt)
            return {r[0] for r in result}

    async def settle(self, owner: str, settlements: Sequence[Settlement]) -> set[int]:
        if not settlements:
            return set()
        accepted: set[int] = set()
        done = [s.lease for s in settlements if s.verdict is Verdict.DONE]
        others = [s for s in settlements if s.verdict is not Verdict.DONE]
        now = self._now()
        async with self._write() as conn:
            # One UPDATE per attempt number (nearly always just attempt 1): a plain
            # `id IN (...)` is a primary-key probe on both databases, where a row-value
            # IN over (id, attempts) plans poorly on PostgreSQL.
            by_attempt: dict[int, list[int]] = {}
            for lease in done:
                by_attempt.setdefault(lease.attempt, []).append(lease.id)
            done_stmt = self._settle_done_stmt()
            for attempt, ids in by_attempt.items():
                params = {"ids": ids, "attempt": attempt, "owner": owner, **self._now_params()}
                accepted.update(r[0] for r in await conn.execute(done_stmt, params))
            for s in others:
                values: dict[str, Any] = {
                    "lease_owner": None,
                    "lease_expires_at": None,
                    "updated_at": now,
                }
                if s.verdict is Verdict.RETRY:
                    assert s.retry_at is not None
                    values.update(
                        state=State.PENDING.value,
                        available_at=s.retry_at,
                        last_error=clip_reason(s.reason or ""),
                    )
                elif s.verdict is Verdict.DEAD:
                    values.update(
                        state=State.DEAD.value,
                        finished_at=now,
                        last_error=clip_reason(s.reason or ""),
                    )
                else:
                    values.update(state=State.PENDING.value)
                stmt = (
                    update(_t)
                    .where(
                        _t.c.id == s.lease.id,
                        _t.c.attempts == s.lease.attempt,
                        _t.c.state == State.LEASED.value,
                        _t.c.lease_owner == owner,
                    )
                    .values(**values)
                    .returning(_t.c.id)
                )
                accepted.update(r[0] for r in await conn.execute(stmt))
        if done and accepted:
            # A finished row may unblock the next row of its appeal.
            self._subscribers.wake()
        return accepted

    async def reclaim_expired(self) -> list[int]:
        now = self._now()
        stmt = (
            update(_t)
            .where(_t.c.state == State.LEASED.value, _t.c.lease_expires_at < now)
            .values(
                state=State.PENDING.value,
                lease_owner=None,
                lease_expires_at=None,
                updated_at=now,
                last_error="lease expired: the worker stopped or stalled",
            )
            .returning(_t.c.id)
        )
        async with self._write() as conn:
            ids = [r[0] for r in await conn.execute(stmt)]
        if ids:
            self._subscribers.wake()
        return ids

    # -- admin -------------------------------------------------------------------------

    async def stats(self) -> OutboxStats:
        by_state = {s.value: 0 for s in State}
        by_target: dict[str, dict[str, int]] = {}
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(_t.c.target, _t.c.state, func.count()).group_by(_t.c.target, _t.c.state)
            )
            for target, state, count in rows:
                by_state[state] = by_state.get(state, 0) + count
                per = by_target.setdefault(target, {s.value: 0 for s in State})
                per[state] = count
            oldest = (
                await conn.execute(
                    select(func.min(_t.c.created_at)).where(_t.c.state == State.PENDING.value)
                )
            ).scalar()
        age = None if oldest is None else max(0.0, self.app_now() - float(oldest))
        return OutboxStats(by_state=by_state, by_target=by_target, oldest_pending_age_s=age)

    async def list_messages(
        self,
        state: State | None = None,
        *,
        target: str | None = None,
        limit: int = 100,
        after_id: int | None = None,
    ) -> list[MessageRecord]:
        stmt = select(_t).order_by(_t.c.id).limit(limit)
        if state is not None:
            stmt = stmt.where(_t.c.state == state.value)
        if target is not None:
            stmt = stmt.where(_t.c.target == target)
        if after_id is not None:
            stmt = stmt.where(_t.c.id > after_id)
        async with self.engine.connect() as conn:
            return [_record(r) for r in await conn.execute(stmt)]

    async def get(self, message_id: int) -> MessageRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(_t).where(_t.c.id == message_id))).first()
        return None if row is None else _record(row)

    def _redrive_values(self) -> dict[str, Any]:
        now = self.app_now()
        return {
            "state": State.PENDING.value,
            "attempts": 0,
            "available_at": now,
            "finished_at": None,
            "redriven_at": now,
            "updated_at": now,
        }

    async def redrive(self, message_id: int) -> bool:
        stmt = (
            update(_t)
            .where(_t.c.id == message_id, _t.c.state == State.DEAD.value)
            .values(**self._redrive_values())
            .returning(_t.c.id)
        )
        async with self._write() as conn:
            ok = (await conn.execute(stmt)).first() is not None
        if ok:
            self._subscribers.wake()
        return ok

    async def redrive_all_dead(self, *, target: str | None = None) -> int:
        conditions = [_t.c.state == State.DEAD.value]
        if target is not None:
            conditions.append(_t.c.target == target)
        stmt = update(_t).where(and_(*conditions)).values(**self._redrive_values())
        async with self._write() as conn:
            count = (await conn.execute(stmt)).rowcount
        if count:
            self._subscribers.wake()
        return int(count)

    def notifications(self) -> contextlib.AbstractAsyncContextManager[asyncio.Event]:
        return self._local_notifications()

    @contextlib.asynccontextmanager
    async def _local_notifications(self) -> AsyncIterator[asyncio.Event]:
        with self._subscribers.subscribed() as ev:
            yield ev
