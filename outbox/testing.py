"""Test doubles that ship with the outbox: an in-memory store and an engine helper.

`InMemoryStore` keeps the same rules as the SQL stores (per-key order, fenced outcomes,
reclaim only of expired leases) so unit tests of the dispatcher and of the gateway's
wiring run without a database, with a clock the test moves by hand.

`open_engine` builds an engine the way the outbox expects (SQLite in WAL with a busy
timeout) for tests, the benchmark and the crash-test worker; the gateway builds its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from outbox.leases import Lease
from outbox.schema import State
from outbox.store import (
    Message,
    MessageRecord,
    NewMessage,
    OutboxStats,
    OutboxStore,
    Settlement,
    Verdict,
    clip_reason,
)

SQLITE_BUSY_TIMEOUT_MS = 10_000


def open_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An engine for tests and tools: SQLite in WAL with a busy timeout, or asyncpg."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.close()

        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size)


class ManualClock:
    """A clock tests advance explicitly."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class _Row:
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
    finished_at: float | None = None
    redriven_at: float | None = None


class InMemoryStore(OutboxStore):
    """The outbox rules over a dict. `enqueue` ignores its connection argument."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.rows: dict[int, _Row] = {}
        self._next_id = 1
        self._events: set[asyncio.Event] = set()

    def _wake(self) -> None:
        for ev in self._events:
            ev.set()

    async def enqueue(self, conn: object, messages: Sequence[NewMessage]) -> list[int]:
        now = self.clock()
        ids = []
        for m in messages:
            row = _Row(
                id=self._next_id,
                ordering_key=m.ordering_key,
                target=m.target,
                action=m.action,
                payload=copy.deepcopy(dict(m.payload)),
                idempotency_key=m.idempotency_key,
                state=State.PENDING,
                attempts=0,
                available_at=m.available_at if m.available_at is not None else now,
                lease_owner=None,
                lease_expires_at=None,
                last_error=None,
                created_at=now,
                updated_at=now,
            )
            self.rows[row.id] = row
            ids.append(row.id)
            self._next_id += 1
        self._wake()
        return ids

    def _blocked(self, row: _Row) -> bool:
        return any(
            other.ordering_key == row.ordering_key
            and other.id < row.id
            and other.state is not State.DONE
            for other in self.rows.values()
        )

    async def claim(self, owner: str, limit: int, lease_s: float) -> list[Message]:
        now = self.clock()
        due = sorted(
            (r for r in self.rows.values() if r.state is State.PENDING and r.available_at <= now),
            key=lambda r: (r.available_at, r.id),
        )
        claimed: list[Message] = []
        for row in due:
            if len(claimed) >= limit:
                break
            if self._blocked(row):
                continue
            row.state = State.LEASED
            row.lease_owner = owner
            row.lease_expires_at = now + lease_s
            row.attempts += 1
            row.updated_at = now
            claimed.append(
                Message(
                    id=row.id,
                    ordering_key=row.ordering_key,
                    target=row.target,
                    action=row.action,
                    payload=copy.deepcopy(row.payload),
                    idempotency_key=row.idempotency_key,
                    attempt=row.attempts,
                    created_at=row.created_at,
                    window_start=row.redriven_at or row.created_at,
                )
            )
        return claimed

    def _holds(self, owner: str, lease: Lease) -> _Row | None:
        row = self.rows.get(lease.id)
        if (
            row is None
            or row.state is not State.LEASED
            or row.lease_owner != owner
            or row.attempts != lease.attempt
        ):
            return None
        return row

    async def renew(self, owner: str, ids: Collection[int], lease_s: float) -> set[int]:
        now = self.clock()
        held = set()
        for i in ids:
            row = self.rows.get(i)
            if row is not None and row.state is State.LEASED and row.lease_owner == owner:
                row.lease_expires_at = now + lease_s
                held.add(i)
        return held

    async def settle(self, owner: str, settlements: Sequence[Settlement]) -> set[int]:
        now = self.clock()
        accepted = set()
        for s in settlements:
            row = self._holds(owner, s.lease)
            if row is None:
                continue
            accepted.add(row.id)
            row.lease_owner = None
            row.lease_expires_at = None
            row.updated_at = now
            if s.verdict is Verdict.DONE:
                row.state = State.DONE
                row.finished_at = now
            elif s.verdict is Verdict.RETRY:
                assert s.retry_at is not None
                row.state = State.PENDING
                row.available_at = s.retry_at
                row.last_error = clip_reason(s.reason or "")
            elif s.verdict is Verdict.DEAD:
                row.state = State.DEAD
                row.finished_at = now
                row.last_error = clip_reason(s.reason or "")
            else:
                row.state = State.PENDING
        if accepted:
            self._wake()
        return accepted

    async def reclaim_expired(self) -> list[int]:
        now = self.clock()
        ids = []
        for row in self.rows.values():
            expires = row.lease_expires_at
            if row.state is State.LEASED and expires is not None and expires < now:
                row.state = State.PENDING
                row.lease_owner = None
                row.lease_expires_at = None
                row.last_error = "lease expired: the worker stopped or stalled"
                ids.append(row.id)
        if ids:
            self._wake()
        return ids

    async def stats(self) -> OutboxStats:
        by_state = {s.value: 0 for s in State}
        by_target: dict[str, dict[str, int]] = {}
        oldest: float | None = None
        for row in self.rows.values():
            by_state[row.state.value] += 1
            by_target.setdefault(row.target, {s.value: 0 for s in State})[row.state.value] += 1
            if row.state is State.PENDING and (oldest is None or row.created_at < oldest):
                oldest = row.created_at
        age = None if oldest is None else max(0.0, self.clock() - oldest)
        return OutboxStats(by_state=by_state, by_target=by_target, oldest_pending_age_s=age)

    def _record(self, row: _Row) -> MessageRecord:
        return MessageRecord(
            id=row.id,
            ordering_key=row.ordering_key,
            target=row.target,
            action=row.action,
            payload=copy.deepcopy(row.payload),
            idempotency_key=row.idempotency_key,
            state=row.state,
            attempts=row.attempts,
            available_at=row.available_at,
            lease_owner=row.lease_owner,
            lease_expires_at=row.lease_expires_at,
            last_error=row.last_error,
            created_at=row.created_at,
            updated_at=row.updated_at,
            finished_at=row.finished_at,
            redriven_at=row.redriven_at,
        )

    async def list_messages(
        self,
        state: State | None = None,
        *,
        target: str | None = None,
        limit: int = 100,
        after_id: int | None = None,
    ) -> list[MessageRecord]:
        rows = [
            r
            for r in sorted(self.rows.values(), key=lambda r: r.id)
            if (state is None or r.state is state)
            and (target is None or r.target == target)
            and (after_id is None or r.id > after_id)
        ]
        return [self._record(r) for r in rows[:limit]]

    async def get(self, message_id: int) -> MessageRecord | None:
        row = self.rows.get(message_id)
        return None if row is None else self._record(row)

    def _redrive_row(self, row: _Row) -> None:
        now = self.clock()
        row.state = State.PENDING
        row.attempts = 0
        row.available_at = now
        row.finished_at = None
        row.redriven_at = now
        row.updated_at = now

    async def redrive(self, message_id: int) -> bool:
        row = self.rows.get(message_id)
        if row is None or row.state is not State.DEAD:
            return False
        self._redrive_row(row)
        self._wake()
        return True

    async def redrive_all_dead(self, *, target: str | None = None) -> int:
        count = 0
        for row in self.rows.values():
            if row.state is State.DEAD and (target is None or row.target == target):
                self._redrive_row(row)
                count += 1
        if count:
            self._wake()
        return count

    async def purge_done(self, older_than_s: float, *, limit: int = 10_000) -> int:
        cutoff = self.clock() - older_than_s
        victims = [
            r.id
            for r in self.rows.values()
            if r.state is State.DONE and r.finished_at is not None and r.finished_at < cutoff
        ][:limit]
        for i in victims:
            del self.rows[i]
        return len(victims)

    def notifications(self) -> contextlib.AbstractAsyncContextManager[asyncio.Event]:
        return self._notifications()

    @contextlib.asynccontextmanager
    async def _notifications(self) -> AsyncIterator[asyncio.Event]:
        ev = asyncio.Event()
        self._events.add(ev)
        try:
            yield ev
        finally:
            self._events.discard(ev)
