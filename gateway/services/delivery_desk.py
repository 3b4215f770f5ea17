"""The operators' delivery desk: answers ready to pass on, failed callbacks, confirmations.

[001: 13] a callback nobody answers is tried twice more, 30–60 minutes apart; after the
third failed try the appeal is flagged for the supervisor rather than dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

import structlog

from gateway.domain.appeal import Appeal, Delivery, DeliveryResult
from gateway.domain.callbacks import ImplausibleAttemptTime, attempt_time_error
from gateway.domain.deadlines import CallbackAttempt, CallbackRule, next_callback_attempt
from gateway.domain.intake import Refusal, later_time_refusal
from gateway.domain.ports import Clock, WorkCalendar
from gateway.errors import GatewayError
from gateway.services.unit_of_work import Storage

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    appeal: Appeal
    attempts: int
    next_attempt_at: datetime | None
    next_attempt_by: datetime | None
    needs_supervisor: bool


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    appeal: Appeal
    result: DeliveryResult


class ImplausibleTime(GatewayError):
    """A reported time before the call or in the future: a typing error, refused."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


def _check_time(field: str, at: datetime, appeal: Appeal, now: datetime) -> None:
    refusal = later_time_refusal(field, at, appeal.received_at, now)
    if refusal is not None:
        raise ImplausibleTime(refusal)


class DeliveryDesk:
    def __init__(
        self, storage: Storage, clock: Clock, rule: CallbackRule,
        calendar: WorkCalendar, zone_of: Callable[[str], tzinfo],
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._rule = rule
        self._calendar = calendar
        self._zone_of = zone_of

    async def ready(self, limit: int = 100) -> list[Appeal]:
        """Answers waiting to reach the applicant, the most urgent callback first."""
        async with self._storage.read() as uow:
            return await uow.appeals.ready_for_delivery(limit)

    async def interim_due(self, limit: int = 100) -> list[Appeal]:
        """[002: 2.8.10] applicants owed an interim answer, the earliest deadline first."""
        async with self._storage.read() as uow:
            return await uow.appeals.interim_due(limit)

    async def record_attempt(
        self, appeal_id: str, outcome: str, at: datetime | None, actor: str
    ) -> AttemptResult:
        """Raises LookupError, ImplausibleAttemptTime, AnswerNotReady, CallbackTooSoon or
        CallbacksExhausted. The try's time is checked against the clock only: tries are
        typed in later from notes."""
        now = self._clock.now()
        if at is not None:
            error = attempt_time_error(at, now)
            if error is not None:
                raise ImplausibleAttemptTime(error)
        async with self._storage.write() as uow:
            appeal = await uow.appeals.get(appeal_id)
            if appeal is None:
                raise LookupError(appeal_id)
            zone = self._zone_of(appeal.hotline)

            def plan_next(start: datetime, failed: Sequence[datetime]) -> CallbackAttempt | None:
                return next_callback_attempt(start, failed, self._rule, self._calendar, zone)

            attempt = appeal.callback_failed(outcome, at or now, now, plan_next=plan_next,
                                             actor=actor, min_gap=self._rule.retry_after_min)
        log.info("delivery.attempt_failed", appeal_id=appeal_id, outcome=outcome,
                 attempts=appeal.callback_attempts, needs_supervisor=appeal.needs_supervisor)
        return AttemptResult(
            appeal=appeal,
            attempts=appeal.callback_attempts,
            next_attempt_at=attempt.not_before if attempt else None,
            next_attempt_by=attempt.not_after if attempt else None,
            needs_supervisor=appeal.needs_supervisor,
        )

    async def deliver(self, appeal_id: str, delivery: Delivery, actor: str) -> DeliveryOutcome:
        """Raises LookupError, ImplausibleTime, AnswerNotReady or DeliveryConflict."""
        now = self._clock.now()
        async with self._storage.write() as uow:
            appeal = await uow.appeals.get(appeal_id)
            if appeal is None:
                raise LookupError(appeal_id)
            if delivery.source == "gateway":  # reported by a person, not by a system
                _check_time("delivered_at", delivery.delivered_at, appeal, now)
            result = appeal.deliver(delivery, now, actor=actor)
        log.info("delivery.recorded", appeal_id=appeal_id, channel=delivery.channel.value,
                 source=delivery.source, result=result.value)
        return DeliveryOutcome(appeal, result)
