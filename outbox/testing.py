"""Test doubles that ship with the outbox: an in-memory store and a clock moved by hand.

`InMemoryStore` keeps the same rules as the SQL stores (per-key order, fenced outcomes,
reclaim only of expired leases) so unit tests of the dispatcher and of the gateway's
wiring run without a database, with a clock the test moves by hand. Tests that need a
real database build its engine the way the gateway does (`gateway.storage.database`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import Any

from outbox.leases import Lease
from outbox.messages import (
    Message,
    MessageRecord,
    NewMessage,
    OutboxStats,
    Settlement,
    Verdict,
    clip_reason,
)
from outbox.schema import FINISHED, State
from outbox.store import OutboxStore


class ManualClock:
    """A clock tests advance explicitly."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class InMemoryStore(OutboxStore):
    """The outbox rules over a dict of records. `enqueue` ignores its connection argument.

    Rows are the admin API's `MessageRecord`s, replaced (never mutated) on every change,
    so a record a caller holds is a snapshot, as one read from a database would be.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.rows: dict[int, MessageRecord] = {}
        self._next_id = 1
        self._events: set[asyncio.Event] = set()

    def _wake(self) -> None:
        for ev in self._events:
            ev.set()

    def _put(self, row: MessageRecord, **changes: Any) -> MessageRecord:
        new = dataclasses.replace(row, **changes)
        self.rows[new.id] = new
        return new

    async def cancel(self, conn: object, idempotency_keys: Sequence[str], reason: str) -> int:
        now = self.clock()
        cancelled = 0
        for row in list(self.rows.values()):
            if row.idempotency_key in idempotency_keys and row.state in (State.PENDING,
                                                                          State.DEAD):
                self._put(row, state=State.CANCELLED, last_error=reason, finished_at=now,
                          updated_at=now)
                cancelled += 1
        if cancelled:
            self._wake()
        return cancelled

    async def enqueue(self, conn: object, messages: Sequence[NewMessage]) -> list[int]:
        now = self.clock()
        ids = []
        for m in messages:
            row = MessageRecord(
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
                finished_at=None,
                redriven_at=None,
            )
            self.rows[row.id] = row
            ids.append(row.id)
            self._next_id += 1
        self._wake()
        return ids

    def _blocked(self, row: MessageRecord) -> bool:
        return any(
            other.ordering_key == row.ordering_key
            and other.id < row.id
            and other.state not in FINISHED
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
            row = self._put(
                row,
                state=State.LEASED,
                lease_owner=owner,
                lease_expires_at=now + lease_s,
                attempts=row.attempts + 1,
                updated_at=now,
            )
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

    def _holds(self, owner: str, lease: Lease) -> MessageRecord | None:
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
                self._put(row, lease_expires_at=now + lease_s)
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
            cleared: dict[str, Any] = {
                "lease_owner": None, "lease_expires_at": None, "updated_at": now
            }
            if s.verdict is Verdict.DONE:
                self._put(row, **cleared, state=State.DONE, finished_at=now)
            elif s.verdict is Verdict.RETRY:
                assert s.retry_at is not None
                self._put(row, **cleared, state=State.PENDING, available_at=s.retry_at,
                          last_error=clip_reason(s.reason or ""))
            elif s.verdict is Verdict.DEAD:
                self._put(row, **cleared, state=State.DEAD, finished_at=now,
                          last_error=clip_reason(s.reason or ""))
            else:
                self._put(row, **cleared, state=State.PENDING)
        if accepted:
            self._wake()
        return accepted

    async def reclaim_expired(self) -> list[int]:
        now = self.clock()
        ids = []
        for row in list(self.rows.values()):
            expires = row.lease_expires_at
            if row.state is State.LEASED and expires is not None and expires < now:
                self._put(
                    row,
                    state=State.PENDING,
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=now,
                    last_error="lease expired: the worker stopped or stalled",
                )
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

    @staticmethod
    def _copy(row: MessageRecord) -> MessageRecord:
        """The record with a payload of its own: callers may not change the stored row."""
        return dataclasses.replace(row, payload=copy.deepcopy(row.payload))

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
        return [self._copy(r) for r in rows[:limit]]

    async def get(self, message_id: int) -> MessageRecord | None:
        row = self.rows.get(message_id)
        return None if row is None else self._copy(row)

    def _redrive(self, row: MessageRecord) -> None:
        now = self.clock()
        self._put(
            row,
            state=State.PENDING,
            attempts=0,
            available_at=now,
            finished_at=None,
            redriven_at=now,
            updated_at=now,
        )

    async def redrive(self, message_id: int) -> bool:
        row = self.rows.get(message_id)
        if row is None or row.state is not State.DEAD:
            return False
        self._redrive(row)
        self._wake()
        return True

    async def redrive_all_dead(self, *, target: str | None = None) -> int:
        count = 0
        for row in list(self.rows.values()):
            if row.state is State.DEAD and (target is None or row.target == target):
                self._redrive(row)
                count += 1
        if count:
            self._wake()
        return count

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
