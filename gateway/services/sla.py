"""Watching deadlines: mark what is overdue, remind before an answer is late.

[002: 2.8.10] when the answer cannot come in time the applicant gets an interim answer
with the reason and the new date, so the reminder comes before the deadline, not after.
Each mark is one UPDATE that re-checks its condition, so several replicas watching at
once record every event exactly once.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import and_, insert, update

from gateway.domain.appeal import AppealStatus
from gateway.domain.ports import Clock
from gateway.storage.database import Database
from gateway.storage.tables import appeals, audit_log

log = structlog.get_logger(__name__)

# Still waiting for an answer or for its delivery: these can be late.
UNANSWERED = (AppealStatus.ACCEPTED, AppealStatus.REGISTERED, AppealStatus.IN_PROGRESS,
              AppealStatus.FAILED)
UNDELIVERED = (*UNANSWERED, AppealStatus.ANSWER_READY)


@dataclass(frozen=True, slots=True)
class SweepResult:
    overdue: list[str]
    reminded: list[str]


class SlaWatch:
    def __init__(
        self, db: Database, clock: Clock, *, interval_s: float = 60.0,
        reminder_lead: timedelta = timedelta(hours=24),
    ) -> None:
        self._db = db
        self._clock = clock
        self._interval_s = interval_s
        self._reminder_lead = reminder_lead

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged; the next sweep tries again
                log.warning("sla.sweep_failed", error_type=type(exc).__name__)
            await asyncio.sleep(self._interval_s * random.uniform(0.9, 1.1))

    async def sweep(self) -> SweepResult:
        now = self._clock.now()
        async with self._db.write() as conn:
            overdue = list((await conn.execute(
                update(appeals)
                .where(and_(appeals.c.overdue.is_(False), appeals.c.due_at < now,
                            appeals.c.status.in_([s.value for s in UNDELIVERED])))
                .values(overdue=True, updated_at=now)
                .returning(appeals.c.id, appeals.c.due_at)
            )).all())
            reminded = list((await conn.execute(
                update(appeals)
                .where(and_(appeals.c.interim_reminded_at.is_(None),
                            appeals.c.due_at < now + self._reminder_lead,
                            appeals.c.status.in_([s.value for s in UNANSWERED])))
                .values(interim_reminded_at=now, updated_at=now)
                .returning(appeals.c.id, appeals.c.due_at)
            )).all())
            events = [
                {"at": now, "actor": "sla", "action": "sla.overdue", "appeal_id": appeal_id,
                 "detail": {"due_at": _iso(due_at)}}
                for appeal_id, due_at in overdue
            ] + [
                {"at": now, "actor": "sla", "action": "sla.interim_answer_due",
                 "appeal_id": appeal_id, "detail": {"due_at": _iso(due_at)}}
                for appeal_id, due_at in reminded
            ]
            if events:
                await conn.execute(insert(audit_log), events)
        for appeal_id, _ in overdue:
            log.warning("sla.overdue", appeal_id=appeal_id)
        for appeal_id, _ in reminded:
            log.info("sla.interim_answer_due", appeal_id=appeal_id)
        return SweepResult([a for a, _ in overdue], [a for a, _ in reminded])


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
