"""Where outbox rows live: one interface, a SQLite and a PostgreSQL implementation.

The dispatcher and the gateway only see `OutboxStore`. Every state transition is a single
UPDATE whose WHERE clause re-checks the state it expects (and, for a worker's outcome,
the lease owner and attempt), so concurrent workers, reclaims and late completions can
race freely: whichever statement commits first wins and the loser learns it from the
rows the statement returned.

Per-appeal order lives in the claim query: a row is due only when no earlier row with
the same `ordering_key` is unfinished (pending, leased or dead). A dead row therefore
holds back its appeal's later actions until an admin re-drives it.

SQLite: claims are `UPDATE ... RETURNING` in short transactions; the process sends its own
writes through one lock so they never wait in SQLite's busy handler. PostgreSQL: claims
lock candidate rows with `FOR UPDATE SKIP LOCKED` so replicas never queue behind each
other, lease times come from the database clock so host clock skew cannot expire a lease
early, and `enqueue` sends NOTIFY in the caller's transaction so listeners wake at commit.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog
from sqlalchemy import (
    ColumnElement,
    Float,
    and_,
    cast,
    delete,
    event,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import TextClause

from outbox.leases import Lease
from outbox.schema import State, outbox_messages

log = structlog.get_logger("outbox.store")

NOTIFY_CHANNEL = "outbox_messages"
MAX_REASON_CHARS = 500

_t = outbox_messages


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A row to enqueue. `payload` holds ids and small parameters, never personal data."""

    ordering_key: str
    target: str
    action: str
    payload: Mapping[str, Any]
    idempotency_key: str
    # Epoch seconds; None means due at once.
    available_at: float | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """A claimed row as a handler sees it.

    `attempt` counts claims since the row was created or last re-driven; an attempt above
    1 means an earlier one may already have had its effect, so the handler should look it
    up (by `idempotency_key`) before acting again.
    """

    id: int
    ordering_key: str
    target: str
    action: str
    payload: dict[str, Any]
    idempotency_key: str
    attempt: int
    created_at: float
    # Start of the retry window: created_at, or the time of the last re-drive.
    window_start: float

    @property
    def lease(self) -> Lease:
        return Lease(self.id, self.attempt)


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """A row as the admin API shows it."""

    id: int
    ordering_key: str
    target: str
    action: str
    payload: dict[str, Any]
    idempotency_key: str
    state: State
    attempts: int
    available_at: float
    lease_owner: str | None
    lease_expires_at: float | None
    last_error: str | None
    created_at: float
    updated_at: float
    finished_at: float | None
    redriven_at: float | None


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Counts for /status and /metrics: no payloads, no keys, nothing personal."""

    by_state: dict[str, int]
    by_target: dict[str, dict[str, int]]
    oldest_pending_age_s: float | None


class Verdict(StrEnum):
    DONE = "done"
    RETRY = "retry"
    DEAD = "dead"
    # Give the row back without an outcome (shutdown); the attempt still counts.
    RELEASE = "release"


@dataclass(frozen=True, slots=True)
class Settlement:
    """A worker's outcome for one lease."""

    lease: Lease
    verdict: Verdict
    retry_at: float | None = None
    reason: str | None = None

    @staticmethod
    def done(lease: Lease) -> Settlement:
        return Settlement(lease, Verdict.DONE)

    @staticmethod
    def retry(lease: Lease, at: float, reason: str) -> Settlement:
        return Settlement(lease, Verdict.RETRY, retry_at=at, reason=reason)

    @staticmethod
    def dead(lease: Lease, reason: str) -> Settlement:
        return Settlement(lease, Verdict.DEAD, reason=reason)

    @staticmethod
    def release(lease: Lease) -> Settlement:
        return Settlement(lease, Verdict.RELEASE)


def clip_reason(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…"


class OutboxStore(abc.ABC):
    """The outbox's storage. All methods but `enqueue` run their own short transaction."""

    @abc.abstractmethod
    async def enqueue(self, conn: AsyncConnection, messages: Sequence[NewMessage]) -> list[int]:
        """Insert rows inside the caller's transaction, so they commit with its state change.

        Rows of one `ordering_key` run in id order, so the caller must serialise
        enqueues per key (e.g. update the appeal row first in the same transaction).
        """

    @abc.abstractmethod
    async def claim(self, owner: str, limit: int, lease_s: float) -> list[Message]:
        """Lease up to `limit` due rows whose earlier rows (same ordering key) are done."""

    @abc.abstractmethod
    async def renew(self, owner: str, ids: Collection[int], lease_s: float) -> set[int]:
        """Extend the leases `owner` still holds; returns those ids (the rest were lost)."""

    @abc.abstractmethod
    async def settle(self, owner: str, settlements: Sequence[Settlement]) -> set[int]:
        """Write outcomes in one transaction; returns ids whose lease was still valid.

        An outcome is accepted only while the row is leased by `owner` for that attempt.
        """

    @abc.abstractmethod
    async def reclaim_expired(self) -> list[int]:
        """Return rows whose lease is still held and expired to the queue."""

    @abc.abstractmethod
    async def stats(self) -> OutboxStats: ...

    @abc.abstractmethod
    async def list_messages(
        self,
        state: State | None = None,
        *,
        target: str | None = None,
        limit: int = 100,
        after_id: int | None = None,
    ) -> list[MessageRecord]:
        """Rows in id order, paged by `after_id` (keyset, stable while rows change)."""

    @abc.abstractmethod
    async def get(self, message_id: int) -> MessageRecord | None: ...

    @abc.abstractmethod
    async def redrive(self, message_id: int) -> bool:
        """Dead → pending with a fresh attempt budget; False when the row is not dead."""

    @abc.abstractmethod
    async def redrive_all_dead(self, *, target: str | None = None) -> int: ...

    @abc.abstractmethod
    async def purge_done(self, older_than_s: float, *, limit: int = 10_000) -> int:
        """Delete finished rows older than the retention period; returns how many."""

    @abc.abstractmethod
    def notifications(self) -> contextlib.AbstractAsyncContextManager[asyncio.Event]:
        """An event set whenever new rows may have become due (best effort, never needed
        for correctness: dispatchers still poll)."""

    # Conveniences over `settle` for one row.

    async def complete(self, owner: str, lease: Lease) -> bool:
        return lease.id in await self.settle(owner, [Settlement.done(lease)])

    async def fail(self, owner: str, lease: Lease, retry_at: float, reason: str) -> bool:
        return lease.id in await self.settle(owner, [Settlement.retry(lease, retry_at, reason)])

    async def dead_letter(self, owner: str, lease: Lease, reason: str) -> bool:
        return lease.id in await self.settle(owner, [Settlement.dead(lease, reason)])

    async def release(self, owner: str, leases: Sequence[Lease]) -> set[int]:
        return await self.settle(owner, [Settlement.release(lease) for lease in leases])

    async def list_dead(
        self, limit: int = 100, *, after_id: int | None = None, target: str | None = None
    ) -> list[MessageRecord]:
        return await self.list_messages(State.DEAD, target=target, limit=limit, after_id=after_id)


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


_RETURNED = (
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


def _message(row: Any) -> Message:
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
            result = await conn.execute(insert(_t).returning(_t.c.id), rows[0])
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
        subscribers = self._subscribers

        def _committed(_conn: Connection) -> None:
            subscribers.wake()

        event.listen(conn.sync_connection, "commit", _committed, once=True)

    # -- claim -------------------------------------------------------------------------

    def _due_ids(self, now: ColumnElement[float], limit: int) -> Any:
        m = _t.alias("m")
        p = _t.alias("p")
        # The head of the appeal: its first unfinished row. A correlated scalar subquery
        # (not NOT EXISTS, which PostgreSQL turns into an anti-join over the whole table)
        # keeps the plan an ordered index walk that stops after `limit` rows.
        head_of_key = (
            select(func.min(p.c.id))
            .where(p.c.ordering_key == m.c.ordering_key, p.c.state != State.DONE.value)
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

    def _lease_values(
        self, owner: str, now: ColumnElement[float], lease_s: float
    ) -> dict[str, Any]:
        return {
            "state": State.LEASED.value,
            "lease_owner": owner,
            "lease_expires_at": now + lease_s,
            "attempts": _t.c.attempts + 1,
            "updated_at": now,
        }

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
            for attempt, ids in by_attempt.items():
                stmt = (
                    update(_t)
                    .where(
                        _t.c.id.in_(ids),
                        _t.c.attempts == attempt,
                        _t.c.state == State.LEASED.value,
                        _t.c.lease_owner == owner,
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
                accepted.update(r[0] for r in await conn.execute(stmt))
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

    async def purge_done(self, older_than_s: float, *, limit: int = 10_000) -> int:
        cutoff = self.app_now() - older_than_s
        victims = (
            select(_t.c.id)
            .where(_t.c.state == State.DONE.value, _t.c.finished_at < cutoff)
            .limit(limit)
            .scalar_subquery()
        )
        async with self._write() as conn:
            return int((await conn.execute(delete(_t).where(_t.c.id.in_(victims)))).rowcount)

    def notifications(self) -> contextlib.AbstractAsyncContextManager[asyncio.Event]:
        return self._local_notifications()

    @contextlib.asynccontextmanager
    async def _local_notifications(self) -> AsyncIterator[asyncio.Event]:
        with self._subscribers.subscribed() as ev:
            yield ev


class SQLiteOutboxStore(SqlOutboxStore):
    """SQLite: one writer at a time, so this process's writes take turns on a lock.

    The engine should be in WAL mode with a busy timeout (readers never block the writer;
    the gateway's own transactions wait their turn instead of failing). Notifications are
    in-process only: another process on the same file finds new rows at its next poll.
    """

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] | None = None) -> None:
        super().__init__(engine, clock=clock)
        self._write_lock = asyncio.Lock()

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

    async def claim(self, owner: str, limit: int, lease_s: float) -> list[Message]:
        now = self._now()
        stmt = (
            update(_t)
            .where(_t.c.id.in_(self._due_ids(now, limit).scalar_subquery()))
            .values(**self._lease_values(owner, now, lease_s))
            .returning(*_RETURNED)
        )
        async with self._write() as conn:
            return [_message(r) for r in await conn.execute(stmt)]


# Transaction-local: no sequential scans or sorts for the claim, and no JIT (the
# planner's worst-case cost estimate for the ordered walk would buy ~30 ms of compiling).
_PLAN_SETTINGS = text(
    "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_sort', 'off', true),"
    " set_config('enable_bitmapscan', 'off', true), set_config('jit', 'off', true)"
)


class PostgresOutboxStore(SqlOutboxStore):
    """PostgreSQL: replicas share the table; SKIP LOCKED keeps their claims disjoint.

    Without an explicit clock, lease times use the database clock, so replicas on hosts
    whose clocks disagree still agree on when a lease has expired.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Callable[[], float] | None = None,
        channel: str = NOTIFY_CHANNEL,
    ) -> None:
        super().__init__(engine, clock=clock)
        self.channel = channel
        self._claim_stmt = self._claim_sql()

    def _now(self) -> ColumnElement[float]:
        if self._clock is not None:
            return super()._now()
        return cast(func.extract("epoch", func.now()), Float)

    async def _after_enqueue(self, conn: AsyncConnection) -> None:
        # Delivered at commit, to every listening replica (this process included).
        await conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": self.channel})

    def _claim_sql(self) -> TextClause:
        """The claim as written SQL: its plan matters more than its portability.

        The only good plan walks `ix_outbox_state_available` in due order, probes each
        candidate's appeal head, locks and stops after `limit` rows. The planner cannot
        estimate the head filter and, on a table with stale statistics (say a million
        rows enqueued since the last ANALYZE), prefers scanning and sorting everything:
        hundreds of ms per claim. `_PLAN_SETTINGS` takes that choice away for this
        transaction only. `id = ANY(ARRAY(...))` makes the locked batch an init-plan
        feeding a primary-key probe (a join would hash the whole table). The rows stay
        locked until commit, so the outer UPDATE needs no second state check.
        """
        now = ":now" if self._clock is not None else "EXTRACT(EPOCH FROM now())::float8"
        returned = ", ".join(f"o.{c.name}" for c in _RETURNED)
        return text(
            f"""
            UPDATE outbox_messages AS o
               SET state = 'leased', lease_owner = :owner,
                   lease_expires_at = {now} + :lease_s,
                   attempts = o.attempts + 1, updated_at = {now}
             WHERE o.id = ANY(ARRAY(
                   SELECT m.id FROM outbox_messages AS m
                    WHERE m.state = 'pending' AND m.available_at <= {now}
                      AND m.id = (SELECT min(p.id) FROM outbox_messages AS p
                                   WHERE p.ordering_key = m.ordering_key
                                     AND p.state <> 'done')
                    ORDER BY m.available_at, m.id
                    LIMIT :limit
                      FOR UPDATE OF m SKIP LOCKED))
            RETURNING {returned}
            """  # noqa: S608 - only column names are interpolated
        )

    async def claim(self, owner: str, limit: int, lease_s: float) -> list[Message]:
        params: dict[str, Any] = {"owner": owner, "lease_s": lease_s, "limit": limit}
        if self._clock is not None:
            params["now"] = self._clock()
        async with self._write() as conn:
            await conn.execute(_PLAN_SETTINGS)
            result = await conn.execute(self._claim_stmt, params)
            return [_message(r) for r in result]

    def notifications(self) -> contextlib.AbstractAsyncContextManager[asyncio.Event]:
        return self._pg_notifications()

    @contextlib.asynccontextmanager
    async def _pg_notifications(self) -> AsyncIterator[asyncio.Event]:
        """LISTEN on a dedicated connection, re-opened if it drops."""
        with self._subscribers.subscribed() as ev:
            stop = asyncio.Event()
            keeper = asyncio.create_task(self._listen(ev, stop), name="outbox-listen")
            try:
                yield ev
            finally:
                stop.set()
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper

    async def _listen(self, ev: asyncio.Event, stop: asyncio.Event) -> None:
        def _notified(*_args: object) -> None:
            ev.set()

        delay = 1.0
        while not stop.is_set():
            try:
                async with self.engine.connect() as conn:
                    raw = await conn.get_raw_connection()
                    driver: Any = raw.driver_connection
                    await driver.add_listener(self.channel, _notified)
                    # Rows committed while we were not listening are found by this wake.
                    ev.set()
                    delay = 1.0
                    try:
                        while not stop.is_set() and not driver.is_closed():
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(stop.wait(), timeout=5.0)
                    finally:
                        if not driver.is_closed():
                            await driver.remove_listener(self.channel, _notified)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - polling covers us while we reconnect
                log.warning("outbox.listen_failed", error_type=type(exc).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                delay = min(delay * 2, 30.0)


def store_for(engine: AsyncEngine, *, clock: Callable[[], float] | None = None) -> SqlOutboxStore:
    """The store matching the engine's dialect."""
    name = engine.dialect.name
    if name == "sqlite":
        return SQLiteOutboxStore(engine, clock=clock)
    if name == "postgresql":
        return PostgresOutboxStore(engine, clock=clock)
    raise ValueError(f"no outbox store for dialect {name!r}")

