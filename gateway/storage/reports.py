"""The reports' SQL: read-only queries behind `ReportData`, the PBX import and the send ledger.

Kept apart from the appeals repository: reports read many rows at once and only the columns
they need (the monthly summary streams 100,000 calls without building appeals), and they
never lock anything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, and_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.domain.reporting import (
    CallbackTry,
    CallFact,
    ForwardingMark,
    PbxCall,
    WeeklyRow,
)
from gateway.domain.status import AppealStatus
from gateway.storage.tables import appeals, deliveries, pbx_calls, report_sends
from outbox import NewMessage, SqlOutboxStore

_a = appeals
FAILED_TRIES = ("no_answer", "busy", "unreachable")
CLOSED = (AppealStatus.DELIVERED.value, AppealStatus.REJECTED.value,
          AppealStatus.JOURNALED.value)
_CHUNK = 500


def _insert(engine_or_conn: AsyncEngine | AsyncConnection, table: Any) -> Any:
    """An INSERT that can skip rows already there, in the connection's dialect."""
    if engine_or_conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


class SqlReportData:
    """`ReportData` over the gateway's database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def weekly_rows(self, hotline: str, start: datetime, end: datetime) -> list[WeeklyRow]:
        stmt = (select(_a.c.received_at, _a.c.topic, _a.c.summary, _a.c.operator)
                .where(_a.c.hotline == hotline, _a.c.received_at >= start,
                       _a.c.received_at < end)
                .order_by(_a.c.received_at, _a.c.journal_id))
        async with self._engine.connect() as conn:
            return [WeeklyRow(*row) for row in await conn.execute(stmt)]

    async def call_facts(self, hotline: str, start: datetime,
                         end: datetime) -> AsyncIterator[CallFact]:
        stmt = (select(_a.c.received_at, _a.c.topic, _a.c.executor, _a.c.route_system,
                       _a.c.status, _a.c.due_at, _a.c.answer_ready_at, _a.c.delivered_at,
                       _a.c.overdue)
                .where(_a.c.hotline == hotline, _a.c.received_at >= start,
                       _a.c.received_at < end)
                .execution_options(yield_per=2000))
        async with self._engine.connect() as conn:
            result = await conn.stream(stmt)
            async for partition in result.partitions():
                for row in partition:
                    yield CallFact(*row)

    async def overdue_now(self, hotline: str) -> int:
        stmt = select(func.count()).where(_a.c.hotline == hotline, _a.c.overdue.is_(True),
                                          _a.c.status.not_in(CLOSED))
        async with self._engine.connect() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def forwarding_marks(self, hotline: str | None, start: datetime,
                               end: datetime) -> list[ForwardingMark]:
        stmt = (select(_a.c.id, _a.c.hotline, _a.c.journal_id, _a.c.received_at,
                       _a.c.route_system, _a.c.external_system, _a.c.external_number,
                       _a.c.external_stage, _a.c.status)
                .where(_a.c.received_at >= start, _a.c.received_at < end)
                .order_by(_a.c.received_at, _a.c.id))
        if hotline is not None:
            stmt = stmt.where(_a.c.hotline == hotline)
        async with self._engine.connect() as conn:
            return [ForwardingMark(*row) for row in await conn.execute(stmt)]

    async def known_numbers(self, system: str, numbers: Sequence[str]) -> set[str]:
        found: set[str] = set()
        async with self._engine.connect() as conn:
            for i in range(0, len(numbers), _CHUNK):
                stmt = select(_a.c.external_number).where(
                    _a.c.external_system == system,
                    _a.c.external_number.in_(list(numbers[i:i + _CHUNK])))
                found.update(r[0] for r in await conn.execute(stmt))
        return found

    async def pbx_calls(self, hotline: str, start: datetime, end: datetime) -> list[PbxCall]:
        t = pbx_calls
        stmt = (select(t.c.uniqueid, t.c.hotline, t.c.direction, t.c.caller, t.c.started_at,
                       t.c.answered, t.c.billsec, t.c.disposition, t.c.source)
                .where(t.c.hotline == hotline, t.c.started_at >= start, t.c.started_at < end)
                .order_by(t.c.started_at, t.c.uniqueid))
        async with self._engine.connect() as conn:
            return [PbxCall(*row) for row in await conn.execute(stmt)]

    async def callback_tries(self, hotline: str, start: datetime,
                             end: datetime) -> list[CallbackTry]:
        d = deliveries
        stmt = (select(d.c.at, d.c.outcome)
                .select_from(d.join(_a, _a.c.id == d.c.appeal_id))
                .where(_a.c.hotline == hotline, d.c.channel == "phone",
                       d.c.at >= start, d.c.at < end,
                       d.c.outcome.in_((*FAILED_TRIES, "delivered")))
                .order_by(d.c.at))
        async with self._engine.connect() as conn:
            return [CallbackTry(at, outcome == "delivered")
                    for at, outcome in await conn.execute(stmt)]


class SqlPbxCalls:
    """Stores imported CDR lines: all of a file's good rows in one transaction, or none."""

    def __init__(self, engine: AsyncEngine, outbox: SqlOutboxStore) -> None:
        self._engine = engine
        self._outbox = outbox

    async def store(self, calls: Sequence[PbxCall], imported_at: datetime,
                    progress: Callable[[int], None] | None = None) -> int:
        """How many were new; a CDR seen before (same uniqueid) is skipped."""
        inserted = 0
        async with self._outbox.transaction() as conn:
            for i in range(0, len(calls), _CHUNK):
                rows = [{"uniqueid": c.uniqueid, "source": c.source, "hotline": c.hotline,
                         "direction": c.direction, "caller": c.caller,
                         "started_at": c.started_at, "answered": c.answered,
                         "billsec": c.billsec, "disposition": c.disposition,
                         "imported_at": imported_at} for c in calls[i:i + _CHUNK]]
                stmt: Insert = _insert(conn, pbx_calls).on_conflict_do_nothing(
                    index_elements=["uniqueid"])
                result = await conn.execute(stmt.returning(pbx_calls.c.uniqueid), rows)
                inserted += len(result.all())
                if progress is not None:
                    progress(min(i + _CHUNK, len(calls)))
        return inserted


class SqlReportSends:
    """The ledger of scheduled sends; the unique (kind, hotline, period) decides who sends."""

    def __init__(self, engine: AsyncEngine, outbox: SqlOutboxStore) -> None:
        self._engine = engine
        self._outbox = outbox

    async def claim(self, kind: str, hotline: str, period: str, *, due_at: datetime,
                    now: datetime, late: bool, message: NewMessage) -> bool:
        """Records the send and enqueues its message in one transaction, unless recorded.

        Insert-if-absent on a unique key: a second replica's insert (or a restarted one's)
        does nothing, so it enqueues nothing; on PostgreSQL a concurrent insert waits for
        the first transaction and then sees the conflict.
        """
        async with self._outbox.transaction() as conn:
            stmt = (_insert(conn, report_sends)
                    .values(kind=kind, hotline=hotline, period=period, due_at=due_at,
                            enqueued_at=now, late=late)
                    .on_conflict_do_nothing(index_elements=["kind", "hotline", "period"])
                    .returning(report_sends.c.id))
            if (await conn.execute(stmt)).first() is None:
                return False
            await self._outbox.enqueue(conn, [message])
        return True

    async def mark_sent(self, kind: str, hotline: str, period: str, at: datetime) -> None:
        t = report_sends
        async with self._outbox.transaction() as conn:
            await conn.execute(update(t).where(and_(
                t.c.kind == kind, t.c.hotline == hotline, t.c.period == period,
                t.c.sent_at.is_(None))).values(sent_at=at))

    async def is_claimed(self, kind: str, hotline: str, period: str) -> bool:
        t = report_sends
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(t.c.id).where(
                t.c.kind == kind, t.c.hotline == hotline, t.c.period == period))).first()
        return row is not None
