"""The operators' delivery desk: answers ready to pass on, failed callbacks, confirmations.

[001: 13] a callback nobody answers is tried twice more, 30–60 minutes apart; after the
third failed try the appeal is flagged for the supervisor rather than dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

import structlog
from sqlalchemy import and_, insert, select, update

from gateway.domain.appeal import AppealStatus
from gateway.domain.deadlines import CallbackRule, next_callback_attempt
from gateway.domain.ports import Clock, WorkCalendar
from gateway.services.delivery import (
    READY_FOR_DELIVERY,
    AnswerNotReady,
    Delivery,
    DeliveryResult,
    record_delivery,
)
from gateway.services.outbox_actions import Enqueue
from gateway.storage import appeals as repo
from gateway.storage.database import Database
from gateway.storage.tables import appeals, deliveries

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    attempts: int
    next_attempt_at: datetime | None
    next_attempt_by: datetime | None
    needs_supervisor: bool


class CallbacksExhausted(Exception):
    """[001: 13] three tries in all; after that the supervisor decides, not another retry."""

    def __init__(self, attempts: int) -> None:
        super().__init__(attempts)
        self.attempts = attempts


class DeliveryDesk:
    def __init__(
        self, db: Database, enqueue: Enqueue, clock: Clock, rule: CallbackRule,
        calendar: WorkCalendar, zone_of: Callable[[str], tzinfo],
    ) -> None:
        self._db = db
        self._enqueue = enqueue
        self._clock = clock
        self._rule = rule
        self._calendar = calendar
        self._zone_of = zone_of

    async def ready(self, limit: int = 100) -> list[repo.StoredAppeal]:
        """Answers waiting to reach the applicant, the most urgent callback first."""
        async with self._db.read() as conn:
            ids = (await conn.execute(
                select(appeals.c.id)
                .where(appeals.c.status == AppealStatus.ANSWER_READY.value)
                .order_by(appeals.c.needs_supervisor.desc(),
                          appeals.c.next_callback_at.is_(None),
                          appeals.c.next_callback_at, appeals.c.answer_ready_at, appeals.c.id)
                .limit(limit)
            )).scalars().all()
            found = [await repo.get_appeal(conn, appeal_id) for appeal_id in ids]
        return [s for s in found if s is not None]

    async def record_attempt(
        self, appeal_id: str, outcome: str, at: datetime | None, actor: str
    ) -> AttemptResult:
        now = self._clock.now()
        when = at or now
        async with self._db.write() as conn:
            stored = await repo.get_appeal(conn, appeal_id)
            if stored is None:
                raise LookupError(appeal_id)
            if stored.appeal.status not in READY_FOR_DELIVERY:
                raise AnswerNotReady(stored.appeal.status)
            if stored.needs_supervisor:
                raise CallbacksExhausted(stored.callback_attempts)
            failed = sorted([d.at for d in stored.deliveries if d.outcome != "delivered"] + [when])
            start = min(stored.answer_ready_at or failed[0], failed[0])
            attempt = next_callback_attempt(start, failed, self._rule, self._calendar,
                                            self._zone_of(stored.appeal.hotline))
            await conn.execute(insert(deliveries).values(
                appeal_id=appeal_id, channel="phone", outcome=outcome, at=when, by=None,
                source="gateway", recorded_at=now))
            needs_supervisor = attempt is None
            values: dict[str, Any] = {
                "callback_attempts": len(failed),
                "next_callback_at": attempt.not_before if attempt else None,
                "needs_supervisor": needs_supervisor,
                "updated_at": now,
            }
            await conn.execute(update(appeals).where(and_(appeals.c.id == appeal_id))
                               .values(**values))
            await repo.record_audit(
                conn, at=now, actor=actor, action="delivery.attempt_failed", appeal_id=appeal_id,
                detail={"outcome": outcome, "at": when.isoformat(), "attempts": len(failed),
                        "needs_supervisor": needs_supervisor})
        log.info("delivery.attempt_failed", appeal_id=appeal_id, outcome=outcome,
                 attempts=len(failed), needs_supervisor=needs_supervisor)
        return AttemptResult(
            attempts=len(failed),
            next_attempt_at=attempt.not_before if attempt else None,
            next_attempt_by=attempt.not_after if attempt else None,
            needs_supervisor=needs_supervisor,
        )

    async def deliver(self, appeal_id: str, delivery: Delivery, actor: str) -> DeliveryResult:
        now = self._clock.now()
        async with self._db.write() as conn:
            result = await record_delivery(conn, appeal_id, delivery, now=now,
                                           enqueue=self._enqueue, actor=actor)
        log.info("delivery.recorded", appeal_id=appeal_id, channel=delivery.channel.value,
                 source=delivery.source, result=result.value)
        return result
