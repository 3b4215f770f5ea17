"""Returning calls [001: 12–14]: the spacing of tries, and the missed-call callback task.

«Сотрудник АМО совершает обратный звонок не позднее 12:00 часов следующего рабочего дня.
Если гражданин не ответил на телефонный звонок, сотрудник АМО перезванивает еще 2 раза с
интервалом 30-60 минут» [001: 13]; «По каждому пропущенному в рабочее время вызову …
необходимо перезвонить в соответствии с п. 13» [001: 14]; the answering machine out of
hours takes a voicemail to call back [001: 12].

The same rule governs two things: an answer to give by phone (on the `Appeal`) and a
missed call or voicemail (the `CallbackTask` here, an aggregate of its own: it has no
journal entry and no appeal until someone reaches the caller).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from gateway.errors import GatewayError

if TYPE_CHECKING:
    from gateway.domain.deadlines import CallbackAttempt

    CallbackPlanner = Callable[[datetime, Sequence[datetime]], CallbackAttempt | None]

# An attempt's `at` is checked against the clock only: tries are often typed in later
# from notes (a week at most), and a clock may run a little ahead.
ATTEMPT_MAX_AGE = timedelta(days=7)
ATTEMPT_MAX_AHEAD = timedelta(minutes=5)


class CallbackTooSoon(GatewayError):
    """[001: 13] «с интервалом 30-60 минут»: a try sooner than that after another one."""

    def __init__(self, next_allowed_at: datetime) -> None:
        super().__init__(next_allowed_at.isoformat())
        self.next_allowed_at = next_allowed_at


class AttemptsExhausted(GatewayError):
    """[001: 13] three tries in all; after that a supervisor decides."""

    def __init__(self, attempts: int) -> None:
        super().__init__(attempts)
        self.attempts = attempts


class ImplausibleAttemptTime(GatewayError, ValueError):
    """An attempt more than 7 days ago or more than 5 minutes ahead: a typing error."""

    def __init__(self, field_error: str) -> None:
        super().__init__(field_error)
        self.field_error = field_error


def attempt_time_error(at: datetime, now: datetime) -> str | None:
    """Why `at` cannot be a try's time, or None (the clock only, not the call's time)."""
    if at - now > ATTEMPT_MAX_AHEAD:
        return "cannot be more than 5 minutes ahead of now"
    if now - at > ATTEMPT_MAX_AGE:
        return "cannot be more than 7 days ago"
    return None


def check_spacing(previous: Sequence[datetime], at: datetime, min_gap: timedelta) -> None:
    """[001: 13] a try closer than `min_gap` to another one is refused, with the moment the
    next one is allowed (tries are ordered by their time, so one typed in later from notes
    is checked against both neighbours)."""
    if any(abs(at - earlier) < min_gap for earlier in previous):
        raise CallbackTooSoon(max(previous) + min_gap)


class TaskState(StrEnum):
    OPEN = "open"
    REACHED = "reached"  # the caller was reached
    EXHAUSTED = "exhausted"  # three failed tries: a supervisor decides


@dataclass(frozen=True, slots=True)
class CallbackTry:
    at: datetime
    outcome: str  # no_answer | busy | unreachable | reached


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """What happened to a task, for the audit log (no phone, no voicemail text)."""

    task_id: str
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any]
    audit_action: ClassVar[str] = "callback"


@dataclass(slots=True, eq=False)
class CallbackTask:
    """A missed call or a voicemail to return [001: 12, 14]; phone and voicemail are
    personal data: never logged, never in /status."""

    id: str
    hotline: str
    phone: str
    missed_at: datetime
    due_at: datetime  # 12:00 of the next working day [001: 13]
    voicemail: str | None = None
    state: TaskState = TaskState.OPEN
    tries: tuple[CallbackTry, ...] = ()
    next_attempt_at: datetime | None = None
    next_attempt_by: datetime | None = None
    late: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    events: list[TaskEvent] = field(default_factory=list, repr=False)

    @classmethod
    def missed(cls, task_id: str, hotline: str, phone: str, missed_at: datetime,
               voicemail: str | None, first: CallbackAttempt, now: datetime,
               actor: str) -> CallbackTask:
        task = cls(task_id, hotline, phone, missed_at, first.not_after, voicemail,
                   next_attempt_at=first.not_before, next_attempt_by=first.not_after)
        task.events.append(TaskEvent(task_id, now, actor, "callback.task_created",
                                     {"hotline": hotline, "voicemail": voicemail is not None}))
        return task

    @property
    def failed(self) -> list[datetime]:
        return sorted(t.at for t in self.tries if t.outcome != "reached")

    def attempt(self, outcome: str, at: datetime, now: datetime, *, plan_next: CallbackPlanner,
                min_gap: timedelta, actor: str) -> CallbackAttempt | None:
        """One try: reached closes the task; a failed one plans the next, or after the third
        leaves the task to a supervisor. Raises AttemptsExhausted, CallbackTooSoon."""
        if self.state is not TaskState.OPEN:
            raise AttemptsExhausted(len(self.failed))
        check_spacing([t.at for t in self.tries], at, min_gap)
        self.tries = tuple(sorted((*self.tries, CallbackTry(at, outcome)), key=lambda t: t.at))
        nxt: CallbackAttempt | None = None
        if outcome == "reached":
            self.state = TaskState.REACHED
        else:
            nxt = plan_next(self.missed_at, self.failed)
            if nxt is None:
                self.state = TaskState.EXHAUSTED
        self.next_attempt_at = nxt.not_before if nxt else None
        self.next_attempt_by = nxt.not_after if nxt else None
        self.events.append(TaskEvent(self.id, now, actor, "callback.attempt", {
            "outcome": outcome, "at": at.isoformat(), "attempts": len(self.tries),
            "state": self.state.value}))
        return nxt

    def mark_late(self, now: datetime) -> bool:
        """[001: 13] the next try's latest moment passed with the task still open."""
        due = self.next_attempt_by or self.due_at
        if self.late or self.state is not TaskState.OPEN or due >= now:
            return False
        self.late = True
        self.events.append(TaskEvent(self.id, now, "sla", "sla.callback_late",
                                     {"due_at": due.isoformat()}))
        return True
