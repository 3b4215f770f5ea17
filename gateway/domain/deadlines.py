"""Deadlines (сроки): when an appeal's answer, the citizen's feedback and requests fall due.

The regulations give terms in working days, calendar days, minutes and clock times:

- «Срочно» — the answer within 5 working days; «Контроль» — within 10 days [002: 2.8.7];
- feedback to the citizen within 3 working days of the call [001: 21];
- an information request to the responsible official within 1 working day of the call
  [002: 2.8.9], or by e-mail within 15 minutes of it [004: 10.1];
- the official's answer within 1 working day; a request received after 16:00 is answered
  by 16:00 of the next working day; never later than 5 working days, extensions included
  [004: 10.2–10.3];
- a missed call is returned by 12:00 of the next working day, then tried twice more
  30–60 minutes apart [001: 13].

Which of these apply to an appeal depends on where it is routed, so the rules are data: a
`DeadlinePolicy` names one term per purpose, the routing table refers to a policy by name
(`Route.deadline_policy`), and `config/deadlines.toml` holds the policies. This module is
pure: stdlib and the `WorkCalendar` port only. All datetimes must be aware; results are in
the hotline's time zone, because "the next working day" and "16:00" are local facts —
a call at 23:30 Moscow time is already the next day in Yekaterinburg.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import TypeAlias, assert_never

from gateway.domain.appeal import Urgency
from gateway.domain.ports import WorkCalendar
from gateway.errors import GatewayError

DEFAULT_POLICY = "default"

DEFAULT_DAY_ENDS_AT = time(18, 0)
"""When a deadline counted in days ends, in local time.

The regulations count whole days ("в течение 5 рабочих дней"), not hours from the call, so
a day-count deadline lasts to the end of the day it falls on: the executor has all of that
day and an answer given during it is on time. We take the end of the *working* day rather
than midnight because the work that meets the deadline is done in office hours — the
regulations themselves think in them («до 16-00 часов» [004: 10.2], «не позднее 12:00»
[001: 13]) — so an item still open when the office closes is overdue in fact, and /status
shows it as such while staff can still act on it, not hours later. 18:00 is the usual end
of the working day of Russian administrations; each policy may set its own.
"""


def _require_positive(value: int, what: str) -> None:
    if value < 1:
        raise ValueError(f"{what} must be at least 1, got {value}")


@dataclass(frozen=True, slots=True)
class WorkingDays:
    """N working days after the day it is counted from, ending when that working day ends.

    Counting starts the day after the event, as terms do: feedback for a call on Tuesday
    2025-12-30 is due on the third working day after it, 2026-01-14 [001: 21].
    """

    days: int

    def __post_init__(self) -> None:
        _require_positive(self.days, "working days")


@dataclass(frozen=True, slots=True)
class CalendarDays:
    """N calendar days after the day it is counted from («Контроль»: 10 days [002: 2.8.7]).

    With `roll_to_working_day` a term whose last day is a day off ends on the next working
    day — the general rule for terms (Civil Code art. 193), and the only day on which the
    executor's office can meet it.
    """

    days: int
    roll_to_working_day: bool = True

    def __post_init__(self) -> None:
        _require_positive(self.days, "calendar days")


@dataclass(frozen=True, slots=True)
class Minutes:
    """Elapsed time from the event, working hours or not (request within 15 min [004: 10.1])."""

    minutes: int

    def __post_init__(self) -> None:
        _require_positive(self.minutes, "minutes")


@dataclass(frozen=True, slots=True)
class WorkingDaysWithCutoff:
    """N working days counting the day of receipt, with a daily cutoff [004: 10.2–10.3].

    «в течение одного рабочего дня с момента поступления запроса…; в случае поступления
    запроса после 16-00 часов ответ на него подлежит направлению на следующий рабочий день
    до 16-00 часов». The cutoff clause only makes sense as a relief, so a request received
    on a working day up to the cutoff counts that day as its first and is due when it ends;
    one received after the cutoff is due at the cutoff time N working days later; one
    received on a day off is taken as received on the next working day, before the cutoff.
    """

    days: int = 1
    cutoff: time = time(16, 0)

    def __post_init__(self) -> None:
        _require_positive(self.days, "working days")
        if self.cutoff.tzinfo is not None:
            raise ValueError("the cutoff is a local wall-clock time and takes no time zone")


Term: TypeAlias = WorkingDays | CalendarDays | Minutes | WorkingDaysWithCutoff


@dataclass(frozen=True, slots=True)
class RequestRule:
    """An information request to the responsible official, and the official's answer.

    `send_within` — by e-mail within 15 minutes of the call [004: 10.1], or within 1 working
    day [002: 2.8.9]. `answer_within` — the answer's term from when the request was sent
    [004: 10.2]; `longest_answer` — the limit no extension may pass [004: 10.3].
    """

    send_within: Term
    answer_within: Term | None = None
    longest_answer: Term | None = None


@dataclass(frozen=True, slots=True)
class DeadlinePolicy:
    """Which terms apply to appeals on a route; routes name a policy (`Route.deadline_policy`).

    The defaults are those of the regulations: «Срочно» 5 working days, «Контроль» 10 days
    [002: 2.8.7], feedback within 3 working days [001: 21], no information request.
    """

    name: str
    urgent: Term = WorkingDays(5)
    control: Term = CalendarDays(10)
    feedback: Term | None = WorkingDays(3)
    request: RequestRule | None = None
    day_ends_at: time = DEFAULT_DAY_ENDS_AT

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a deadline policy needs a name")
        if self.day_ends_at.tzinfo is not None:
            raise ValueError("day_ends_at is a local wall-clock time and takes no time zone")
        for term in self._terms():
            # A request in time for the cutoff is due when the day ends; a day ending first
            # would put that deadline before the request arrived.
            if isinstance(term, WorkingDaysWithCutoff) and term.cutoff > self.day_ends_at:
                raise ValueError(
                    f"cutoff {term.cutoff.isoformat('minutes')} is after the end of the "
                    f"working day {self.day_ends_at.isoformat('minutes')}"
                )

    def _terms(self) -> tuple[Term, ...]:
        terms: list[Term | None] = [self.urgent, self.control, self.feedback]
        if self.request is not None:
            terms += [self.request.send_within, self.request.answer_within,
                      self.request.longest_answer]
        return tuple(term for term in terms if term is not None)

    def answer_term(self, urgency: Urgency) -> Term:
        """The control term of the answer for a call of this urgency [002: 2.8.7]."""
        if urgency is Urgency.URGENT:
            return self.urgent
        if urgency is Urgency.CONTROL:
            return self.control
        assert_never(urgency)


@dataclass(frozen=True, slots=True)
class CallbackRule:
    """Returning a missed call [001: 13–14].

    «не позднее 12:00 часов следующего рабочего дня. Если гражданин не ответил…, перезванивает
    еще 2 раза с интервалом 30-60 минут».
    """

    by: time = time(12, 0)
    retries: int = 2
    retry_after_min: timedelta = timedelta(minutes=30)
    retry_after_max: timedelta = timedelta(minutes=60)

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if not timedelta(0) <= self.retry_after_min <= self.retry_after_max:
            raise ValueError("retry interval must satisfy 0 <= retry_after_min <= retry_after_max")
        if self.by.tzinfo is not None:
            raise ValueError("`by` is a local wall-clock time and takes no time zone")


class UnknownDeadlinePolicy(GatewayError, KeyError):
    """A route names a deadline policy the configuration does not define."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = tuple(known)

    def __str__(self) -> str:
        return f"unknown deadline policy {self.name!r}; defined: {', '.join(self.known)}"


@dataclass(frozen=True, slots=True)
class DeadlinePolicies:
    """All policies of a deployment by name, plus the hotline-wide callback rule."""

    policies: tuple[DeadlinePolicy, ...]
    callback: CallbackRule = field(default_factory=CallbackRule)

    def __post_init__(self) -> None:
        names = [policy.name for policy in self.policies]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"deadline policies defined twice: {', '.join(duplicates)}")
        if DEFAULT_POLICY not in names:
            raise ValueError(f"the {DEFAULT_POLICY!r} deadline policy is required (routes use it)")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(policy.name for policy in self.policies)

    def named(self, name: str) -> DeadlinePolicy:
        """The policy `name`; `UnknownDeadlinePolicy` (a KeyError) when there is none."""
        for policy in self.policies:
            if policy.name == name:
                return policy
        raise UnknownDeadlinePolicy(name, self.names)


@dataclass(frozen=True, slots=True)
class Deadlines:
    """The deadlines fixed at intake, all aware and in the hotline's time zone."""

    policy: str
    due_at: datetime  # control term of the answer [002: 2.8.7]; the operator tells the caller
    feedback_due_at: datetime | None  # [001: 21]
    request_due_at: datetime | None  # request to the responsible official sent by [004: 10.1]


@dataclass(frozen=True, slots=True)
class RequestAnswerDeadline:
    """When the official's answer to a sent request is due, and the limit for extensions."""

    due_at: datetime | None  # [004: 10.2]
    latest_at: datetime | None  # [004: 10.3]


@dataclass(frozen=True, slots=True)
class CallbackAttempt:
    """The window for the next try to return a missed call [001: 13]."""

    number: int  # 1: the callback itself; 2 and on: the re-tries
    not_before: datetime
    not_after: datetime


def _local(moment: datetime, tz: tzinfo, what: str) -> datetime:
    """`moment` in the hotline's zone; naive datetimes are refused, their zone is a guess."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime, got naive {moment.isoformat()}")
    return moment.astimezone(tz)


def _at(day: date, clock: time, tz: tzinfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=tz)


def term_end(
    term: Term, start: datetime, calendar: WorkCalendar, tz: tzinfo,
    day_ends_at: time = DEFAULT_DAY_ENDS_AT,
) -> datetime:
    """When `term`, counted from the aware moment `start`, ends, in the zone `tz`."""
    local = _local(start, tz, "start")
    today = local.date()
    if isinstance(term, WorkingDays):
        return _at(calendar.add_working_days(today, term.days), day_ends_at, tz)
    if isinstance(term, CalendarDays):
        last = today + timedelta(days=term.days)
        if term.roll_to_working_day:
            last = calendar.add_working_days(last, 0)
        return _at(last, day_ends_at, tz)
    if isinstance(term, Minutes):
        return (start.astimezone(UTC) + timedelta(minutes=term.minutes)).astimezone(tz)
    if isinstance(term, WorkingDaysWithCutoff):
        if not calendar.is_working_day(today):
            first = calendar.next_working_day(today)
            return _at(calendar.add_working_days(first, term.days - 1), day_ends_at, tz)
        if local.time() > term.cutoff:
            return _at(calendar.add_working_days(today, term.days), term.cutoff, tz)
        return _at(calendar.add_working_days(today, term.days - 1), day_ends_at, tz)
    assert_never(term)


def compute_deadlines(
    received_at: datetime, urgency: Urgency, policy: DeadlinePolicy,
    calendar: WorkCalendar, tz: tzinfo,
) -> Deadlines:
    """The deadlines of a call received at `received_at`, as intake stores them.

    The answer's term follows the call's urgency [002: 2.8.7]; feedback and the request are
    present only when the policy has them.
    """
    _local(received_at, tz, "received_at")
    ends = policy.day_ends_at
    return Deadlines(
        policy=policy.name,
        due_at=term_end(policy.answer_term(urgency), received_at, calendar, tz, ends),
        feedback_due_at=(
            None if policy.feedback is None
            else term_end(policy.feedback, received_at, calendar, tz, ends)
        ),
        request_due_at=(
            None if policy.request is None
            else term_end(policy.request.send_within, received_at, calendar, tz, ends)
        ),
    )


def request_answer_deadline(
    request_sent_at: datetime, policy: DeadlinePolicy, calendar: WorkCalendar, tz: tzinfo,
) -> RequestAnswerDeadline:
    """When the answer to a request sent at `request_sent_at` is due [004: 10.2–10.3].

    Counted from when the request actually went out, which is when the official received it.
    """
    _local(request_sent_at, tz, "request_sent_at")
    rule = policy.request
    if rule is None:
        raise ValueError(f"deadline policy {policy.name!r} has no information request")
    ends = policy.day_ends_at
    return RequestAnswerDeadline(
        due_at=(
            None if rule.answer_within is None
            else term_end(rule.answer_within, request_sent_at, calendar, tz, ends)
        ),
        latest_at=(
            None if rule.longest_answer is None
            else term_end(rule.longest_answer, request_sent_at, calendar, tz, ends)
        ),
    )


def next_callback_attempt(
    missed_at: datetime, failed_attempts: Sequence[datetime], rule: CallbackRule,
    calendar: WorkCalendar, tz: tzinfo,
) -> CallbackAttempt | None:
    """The window for the next try to return a call missed at `missed_at` [001: 13].

    `failed_attempts` are the times of the tries nobody answered, in order. The first try
    is due by `rule.by` (12:00) of the next working day; each further try comes 30–60
    minutes after the previous one; None once the re-tries are used up.
    """
    missed = _local(missed_at, tz, "missed_at")
    tries = [_local(attempt, tz, "failed attempt") for attempt in failed_attempts]
    previous = missed
    for attempt in tries:
        if attempt < previous:
            raise ValueError("failed attempts must be in order and not before the missed call")
        previous = attempt
    if not tries:
        by = _at(calendar.next_working_day(missed.date()), rule.by, tz)
        return CallbackAttempt(number=1, not_before=missed, not_after=by)
    if len(tries) > rule.retries:
        return None
    last = tries[-1].astimezone(UTC)  # elapsed time: add in UTC, show in local time
    return CallbackAttempt(
        number=len(tries) + 1,
        not_before=(last + rule.retry_after_min).astimezone(tz),
        not_after=(last + rule.retry_after_max).astimezone(tz),
    )
