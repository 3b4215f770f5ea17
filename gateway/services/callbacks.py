"""Returning calls [001: 12–14]: missed calls and voicemail become callback tasks, tried
under the §13 rule, and listed with the answers to give by phone.

«Сотрудник АМО совершает обратный звонок не позднее 12:00 часов следующего рабочего дня.
Если гражданин не ответил…, перезванивает еще 2 раза с интервалом 30-60 минут» [001: 13].
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

import structlog

from gateway.domain.appeal import AnswerChannel, Appeal
from gateway.domain.callbacks import (
    CallbackTask,
    ImplausibleAttemptTime,
    attempt_time_error,
)
from gateway.domain.deadlines import CallbackAttempt, CallbackRule, next_callback_attempt
from gateway.domain.intake import InvalidPhone, normalise_phone
from gateway.domain.ports import Clock, WorkCalendar
from gateway.errors import GatewayError
from gateway.services.unit_of_work import AlreadyStored, Storage

log = structlog.get_logger(__name__)


class MissedCallRefused(GatewayError, ValueError):
    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(", ".join(sorted(fields)))
        self.fields = fields


@dataclass(frozen=True, slots=True)
class MissedCall:
    hotline: str
    phone: str
    at: datetime
    voicemail: str | None = None


@dataclass(frozen=True, slots=True)
class MissedCallResult:
    task: CallbackTask
    created: bool


@dataclass(frozen=True, slots=True)
class CallbackList:
    """The callback worklist: missed calls, and answers to give by phone with the term of
    their next try (the first one computed before anyone tries)."""

    tasks: list[CallbackTask]
    answers: list[tuple[Appeal, datetime | None]]


class CallbackDesk:
    def __init__(self, storage: Storage, clock: Clock, rule: CallbackRule,
                 calendar: WorkCalendar, zone_of: Callable[[str], tzinfo],
                 hotlines: frozenset[str]) -> None:
        self._storage = storage
        self._clock = clock
        self._rule = rule
        self._calendar = calendar
        self._zone_of = zone_of
        self._hotlines = hotlines

    def first_due(self, start: datetime, hotline: str) -> datetime:
        """[001: 13] «не позднее 12:00 часов следующего рабочего дня»."""
        first = next_callback_attempt(start, [], self._rule, self._calendar,
                                      self._zone_of(hotline))
        assert first is not None  # the first try always has a window
        return first.not_after

    def _planner(self, hotline: str) -> Callable[[datetime, Sequence[datetime]],
                                                 CallbackAttempt | None]:
        zone = self._zone_of(hotline)

        def plan(start: datetime, failed: Sequence[datetime]) -> CallbackAttempt | None:
            return next_callback_attempt(start, failed, self._rule, self._calendar, zone)

        return plan

    def _checked(self, call: MissedCall, now: datetime) -> MissedCall:
        fields: dict[str, str] = {}
        if call.hotline not in self._hotlines:
            fields["hotline"] = f"not configured; known: {', '.join(sorted(self._hotlines))}"
        phone = call.phone
        try:
            phone = normalise_phone(call.phone)
        except InvalidPhone as exc:
            fields["phone"] = str(exc)
        error = attempt_time_error(call.at, now)
        if error is not None:
            fields["at"] = error
        if fields:
            raise MissedCallRefused(fields)
        return MissedCall(call.hotline, phone, call.at, call.voicemail)

    async def report_missed(self, call: MissedCall, actor: str) -> MissedCallResult:
        """A callback task for the call; the same hotline + phone + time again is the same
        task. Raises MissedCallRefused."""
        now = self._clock.now()
        call = self._checked(call, now)
        first = self._planner(call.hotline)(call.at, [])
        assert first is not None
        try:
            async with self._storage.write() as uow:
                known = await uow.callbacks.find(call.hotline, call.phone, call.at)
                if known is not None:
                    return MissedCallResult(known, created=False)
                task = CallbackTask.missed(str(uuid.uuid4()), call.hotline, call.phone,
                                           call.at, call.voicemail, first, now, actor)
                uow.callbacks.add(task)
        except AlreadyStored:
            async with self._storage.read() as uow:
                known = await uow.callbacks.find(call.hotline, call.phone, call.at)
            if known is None:
                raise
            return MissedCallResult(known, created=False)
        log.info("callback.task_created", task_id=task.id, hotline=call.hotline)
        return MissedCallResult(task, created=True)

    async def attempt(self, task_id: str, outcome: str, at: datetime | None,
                      actor: str) -> tuple[CallbackTask, CallbackAttempt | None]:
        """Raises LookupError, ImplausibleAttemptTime, CallbackTooSoon, AttemptsExhausted."""
        now = self._clock.now()
        at = at or now
        error = attempt_time_error(at, now)
        if error is not None:
            raise ImplausibleAttemptTime(error)
        async with self._storage.write() as uow:
            task = await uow.callbacks.get(task_id)
            if task is None:
                raise LookupError(task_id)
            nxt = task.attempt(outcome, at, now, plan_next=self._planner(task.hotline),
                               min_gap=self._rule.retry_after_min, actor=actor)
        log.info("callback.attempt", task_id=task_id, outcome=outcome, state=task.state.value)
        return task, nxt

    async def worklist(self, limit: int = 100) -> CallbackList:
        now = self._clock.now()
        async with self._storage.read() as uow:
            tasks = await uow.callbacks.open_tasks(limit)
            ready = await uow.appeals.ready_for_delivery(limit)
        answers = []
        for appeal in ready:
            if appeal.answer_channel is not AnswerChannel.PHONE:
                continue
            due = appeal.callback_due_at
            if due is None and not appeal.needs_supervisor:
                due = self.first_due(appeal.answer_ready_at or now, appeal.hotline)
            answers.append((appeal, due))
        return CallbackList(tasks, answers)
