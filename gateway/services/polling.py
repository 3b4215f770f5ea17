"""Following the target systems: read what changed since a stored cursor, apply it, move on.

A cycle costs ceil(changed / page size) + 1 requests whatever the number of open appeals.
Each page's changes and the cursor after it commit together, so a crash repeats at most
one page, and applying a change twice does nothing the second time (statuses only move
forward; the answer and the delivery are recorded once). On PostgreSQL one replica polls
each system at a time: the cycle runs under a session advisory lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, time, tzinfo
from typing import Any

import structlog
from sqlalchemy import select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.domain.appeal import AppealStatus, can_transition
from gateway.domain.ports import Clock, ExternalUpdate, StatusSource
from gateway.services.delivery import (
    AnswerNotReady,
    Delivery,
    DeliveryConflict,
    record_delivery,
)
from gateway.services.outbox_actions import Enqueue
from gateway.storage import appeals as repo
from gateway.storage.tables import appeals, poller_cursors

log = structlog.get_logger(__name__)

# An extension moves the deadline to the end of the executor's new planned day.
PLANNED_DAY_ENDS_AT = time(18, 0)
ERROR_BACKOFF_MAX_S = 300.0


@dataclass(frozen=True, slots=True)
class CycleResult:
    requests: int
    updates: int
    applied: int


class Poller:
    def __init__(
        self,
        system: str,
        source: StatusSource,
        engine: AsyncEngine,
        clock: Clock,
        *,
        enqueue: Enqueue,
        zone_of: Callable[[str], tzinfo],
        interval_s: float,
        page_size: int,
    ) -> None:
        self.system = system
        self._source = source
        self._engine = engine
        self._clock = clock
        self._enqueue = enqueue
        self._zone_of = zone_of
        self._interval_s = interval_s
        self._page_size = page_size

    async def run(self) -> None:
        """Poll until cancelled; failures are recorded for /status and backed off."""
        failures = 0
        while True:
            try:
                async with self._turn() as ours:
                    if ours:
                        await self.poll_once()
                failures = 0
                delay = self._interval_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - recorded, then tried again later
                failures += 1
                await self._record_error(exc)
                delay = min(ERROR_BACKOFF_MAX_S, self._interval_s * 2 ** min(failures, 8))
            await asyncio.sleep(delay * random.uniform(0.9, 1.1))

    async def poll_once(self) -> CycleResult:
        cursor = await self._load_cursor()
        requests = updates = applied = 0
        while True:
            page = await self._source.fetch_updates(cursor, self._page_size)
            requests += 1
            updates += len(page.updates)
            next_cursor = page.next_cursor or page.resume_from or cursor
            now = self._clock.now()
            async with self._engine.begin() as conn:
                for update_ in page.updates:
                    applied += await self._apply(conn, update_, now)
                await self._save_cursor(conn, next_cursor, now)
            cursor = next_cursor
            if page.next_cursor is None:
                break
        log.info("poll.cycle", system=self.system, requests=requests, updates=updates,
                 applied=applied)
        return CycleResult(requests, updates, applied)

    # -- applying one change ----------------------------------------------------------------

    async def _apply(self, conn: AsyncConnection, change: ExternalUpdate, now: datetime) -> int:
        stored = await self._find(conn, change)
        if stored is None:
            return 0  # not ours (entered in ПОС by hand) or not yet recorded
        appeal = stored.appeal
        extra: dict[str, Any] = {}
        if stored.external_id is None:
            extra.update(external_system=self.system, external_id=change.external_id)
        if stored.external_stage != change.stage:
            extra["external_stage"] = change.stage
        if change.answer is not None and stored.answer_text != change.answer.text:
            extra.update(answer_text=change.answer.text,
                         answer_ready_at=change.answer.approved_at or change.updated_at)
        if change.planned_completion is not None:
            planned = datetime.combine(change.planned_completion, PLANNED_DAY_ENDS_AT,
                                       self._zone_of(appeal.hotline))
            if appeal.due_at is None or planned > appeal.due_at:
                extra["due_at"] = planned  # the executor's extension
                extra["overdue"] = planned < now

        wanted = AppealStatus(change.status)
        changed = 0
        if wanted is AppealStatus.DELIVERED and change.delivery is not None:
            # Confirmed directly in ПОС: record it like any other confirmation.
            if extra:
                await self._update(conn, appeal.id, extra, now)
            try:
                await record_delivery(
                    conn, appeal.id,
                    Delivery(change.delivery.channel, change.delivery.confirmed_at,
                             change.delivery.confirmed_by, self.system),
                    now=now, enqueue=self._enqueue, actor=self.system,
                )
                return 1
            except (AnswerNotReady, DeliveryConflict) as exc:
                if isinstance(exc, AnswerNotReady) and can_transition(
                        appeal.status, AppealStatus.DELIVERED):
                    after = appeal.moved_to(AppealStatus.DELIVERED, now, self.system)
                    await repo.save_status(conn, appeal, after, now=now, extra={
                        "delivered_at": change.delivery.confirmed_at,
                        "delivery_channel": change.delivery.channel.value})
                    return 1
                log.warning("poll.delivery_not_applied", system=self.system,
                            appeal_id=appeal.id, reason=type(exc).__name__)
                return 0
        if wanted != appeal.status and can_transition(appeal.status, wanted) and not (
                _is_step_back(appeal.status, wanted)):
            after = appeal.moved_to(wanted, now, self.system, note=change.stage)
            if await repo.save_status(conn, appeal, after, now=now, extra=extra):
                changed = 1
                if wanted is AppealStatus.ANSWER_READY:
                    await repo.record_audit(conn, at=now, actor=self.system,
                                            action="answer.ready", appeal_id=appeal.id)
        elif extra:
            await self._update(conn, appeal.id, extra, now)
            changed = 1
        return changed

    async def _find(
        self, conn: AsyncConnection, change: ExternalUpdate
    ) -> repo.StoredAppeal | None:
        if change.appeal_id:
            stored = await repo.get_appeal(conn, change.appeal_id)
            if stored is not None:
                return stored
        row = (await conn.execute(
            select(appeals.c.id).where(appeals.c.external_system == self.system,
                                       appeals.c.external_id == change.external_id)
        )).first()
        return await repo.get_appeal(conn, row[0]) if row else None

    async def _update(self, conn: AsyncConnection, appeal_id: str, values: dict[str, Any],
                      now: datetime) -> None:
        await conn.execute(update(appeals).where(appeals.c.id == appeal_id)
                           .values(**values, updated_at=now))

    # -- cursor and errors ------------------------------------------------------------------

    async def _load_cursor(self) -> str | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(poller_cursors.c.cursor)
                                      .where(poller_cursors.c.system == self.system))).first()
        return row[0] if row else None

    async def _save_cursor(self, conn: AsyncConnection, cursor: str | None, now: datetime) -> None:
        await _upsert(conn, {"system": self.system, "cursor": cursor, "last_success_at": now,
                             "last_error": None, "updated_at": now},
                      ["cursor", "last_success_at", "last_error", "updated_at"])

    async def _record_error(self, exc: Exception) -> None:
        now = self._clock.now()
        reason = getattr(exc, "reason", None) or type(exc).__name__
        log.warning("poll.failed", system=self.system, error=str(reason)[:300])
        with contextlib.suppress(Exception):
            async with self._engine.begin() as conn:
                await _upsert(conn, {"system": self.system, "last_error": str(reason)[:300],
                                     "last_error_at": now, "updated_at": now},
                              ["last_error", "last_error_at", "updated_at"])

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[bool]:
        """Whether this replica polls this cycle: always on SQLite, by advisory lock on PG."""
        if self._engine.dialect.name != "postgresql":
            yield True
            return
        key = zlib.crc32(f"gateway.poller.{self.system}".encode())
        async with self._engine.connect() as conn:
            got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})).scalar()
            try:
                yield bool(got)
            finally:
                if got:
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                await conn.commit()


_FORWARD_ORDER = [AppealStatus.ACCEPTED, AppealStatus.REGISTERED, AppealStatus.IN_PROGRESS,
                  AppealStatus.ANSWER_READY, AppealStatus.ANSWER_SENT, AppealStatus.DELIVERED]


def _is_step_back(current: AppealStatus, wanted: AppealStatus) -> bool:
    """A replayed or stale page must never move an appeal back (answer_ready → in_progress).

    An answer sent back for rework in the target system shows up as a new answer text,
    which is recorded; the appeal stays ready for delivery meanwhile.
    """
    if current in _FORWARD_ORDER and wanted in _FORWARD_ORDER:
        return _FORWARD_ORDER.index(wanted) < _FORWARD_ORDER.index(current)
    return False


async def _upsert(conn: AsyncConnection, values: dict[str, Any], on_conflict: list[str]) -> None:
    dialect = conn.dialect.name
    insert_ = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(poller_cursors)
    statement = insert_.values(**values).on_conflict_do_update(
        index_elements=[poller_cursors.c.system],
        set_={name: values[name] for name in on_conflict},
    )
    await conn.execute(statement)

