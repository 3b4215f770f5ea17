"""The arithmetic of the reports the regulations require: periods, working time, norms.

Kept pure so the report service and its tests share one definition of "the past week"
[001: 19], "working hours" [002: 2.9] and the call-load norms [001: appendix 1].
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

from gateway.domain.ports import WorkCalendar
from gateway.errors import GatewayError


class BadPeriod(GatewayError, ValueError):
    """A report period that is neither an ISO week, a month nor a date range."""


@dataclass(frozen=True, slots=True)
class Period:
    """Whole local days, `first`..`last` inclusive, with the label the files carry."""

    first: date
    last: date
    label: str

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise BadPeriod(f"period ends before it starts: {self.label}")

    def bounds(self, tz: tzinfo) -> tuple[datetime, datetime]:
        """[start, end) as aware datetimes in the hotline's zone."""
        start = datetime.combine(self.first, time(0), tz)
        end = datetime.combine(self.last + timedelta(days=1), time(0), tz)
        return start, end

    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]


_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")
MAX_PERIOD_DAYS = 400


def iso_week(label: str) -> Period:
    m = _WEEK.match(label)
    if m is None:
        raise BadPeriod(f"not an ISO week (2026-W47): {label!r}")
    try:
        monday = date.fromisocalendar(int(m[1]), int(m[2]), 1)
    except ValueError as exc:
        raise BadPeriod(f"no such week: {label!r}") from exc
    return Period(monday, monday + timedelta(days=6), label)


def month(label: str) -> Period:
    m = _MONTH.match(label)
    if m is None or not 1 <= int(m[2]) <= 12:
        raise BadPeriod(f"not a month (2026-11): {label!r}")
    first = date(int(m[1]), int(m[2]), 1)
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return Period(first, following - timedelta(days=1), label)


def date_range(first: str, last: str) -> Period:
    """`to` is inclusive (the API contract)."""
    try:
        start, end = date.fromisoformat(first), date.fromisoformat(last)
    except ValueError as exc:
        raise BadPeriod(f"dates must be YYYY-MM-DD: {first!r}..{last!r}") from exc
    if (end - start).days > MAX_PERIOD_DAYS:
        raise BadPeriod(f"a period is at most {MAX_PERIOD_DAYS} days")
    return Period(start, end, f"{start.isoformat()}..{end.isoformat()}")


def parse_period(text: str) -> Period:
    """`2026-W47`, `2026-11` or `2026-11-01..2026-11-30`."""
    text = text.strip()
    if _WEEK.match(text):
        return iso_week(text)
    if _MONTH.match(text):
        return month(text)
    m = _RANGE.match(text)
    if m:
        return date_range(m[1], m[2])
    raise BadPeriod(f"period must be 2026-W47, 2026-11 or 2026-11-01..2026-11-30: {text!r}")


def week_label(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def previous_week(today: date) -> Period:
    """[001: 19] «о звонках ... в течение истекшей недели»: the Monday–Sunday before today's."""
    return iso_week(week_label(today - timedelta(days=7)))


@dataclass(frozen=True, slots=True)
class WorkingHours:
    """The contact centre's day [002: 2.9: 9:00–18:00 on working days]."""

    start: time = time(9, 0)
    end: time = time(18, 0)

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError("working hours must end after they start")


def working_seconds(begin: datetime, finish: datetime, tz: tzinfo, hours: WorkingHours,
                    calendar: WorkCalendar) -> float:
    """Seconds of working time between two moments (0 when `finish` is not after `begin`)."""
    if finish <= begin:
        return 0.0
    a, b = begin.astimezone(tz), finish.astimezone(tz)
    total = 0.0
    day = a.date()
    while day <= b.date():
        if calendar.is_working_day(day):
            open_at = datetime.combine(day, hours.start, tz)
            close_at = datetime.combine(day, hours.end, tz)
            lo, hi = max(a, open_at), min(b, close_at)
            if hi > lo:
                total += (hi - lo).total_seconds()
        day += timedelta(days=1)
    return total


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


# [001: appendix 1] «Нормативы»: losses under 5 %, availability over 95 %,
# outgoing productivity over 45 %.
LOST_NORM_PCT = 5.0
AVAILABILITY_NORM_PCT = 95.0
PRODUCTIVITY_NORM_PCT = 45.0


@dataclass(frozen=True, slots=True)
class CallLoadDay:
    """One line of the call-load journal; the percentages follow appendix 1's formulas."""

    day: date
    received: int
    lost: int
    outgoing: int
    connected: int

    @property
    def accepted(self) -> int:
        return self.received - self.lost  # F = C - D

    @property
    def lost_pct(self) -> float | None:
        return None if not self.received else self.lost / self.received * 100  # E = D/C

    @property
    def availability_pct(self) -> float | None:
        return None if not self.received else self.accepted / self.received * 100  # G = F/C

    @property
    def productivity_pct(self) -> float | None:
        return None if not self.outgoing else self.connected / self.outgoing * 100  # J = I/H

    def outside_norms(self) -> frozenset[str]:
        """Which of lost / availability / productivity miss their norm."""
        bad = set()
        if self.lost_pct is not None and not self.lost_pct < LOST_NORM_PCT:
            bad.add("lost")
        if self.availability_pct is not None and not self.availability_pct > AVAILABILITY_NORM_PCT:
            bad.add("availability")
        if self.productivity_pct is not None and not self.productivity_pct > PRODUCTIVITY_NORM_PCT:
            bad.add("productivity")
        return frozenset(bad)


# -- what the reports are made of (the storage reads them, the writers draw them) --------


@dataclass(frozen=True, slots=True)
class WeeklyRow:
    """A line of 001 appendix 3. Personal data: the operator's name and the summary."""

    received_at: datetime
    topic: str
    summary: str
    operator: str


@dataclass(frozen=True, slots=True)
class CallFact:
    """What the monthly summary needs of one call: no personal data at all."""

    received_at: datetime
    topic: str
    executor: str
    route_system: str
    status: str
    due_at: datetime | None
    answer_ready_at: datetime | None
    delivered_at: datetime | None
    overdue: bool


@dataclass(frozen=True, slots=True)
class ForwardingMark:
    """A call and the record it became upstream (000: «отметки о передаче»)."""

    appeal_id: str
    hotline: str
    journal_id: str
    received_at: datetime
    route_system: str
    external_system: str | None
    external_number: str | None
    external_stage: str | None
    status: str


@dataclass(frozen=True, slots=True)
class UpstreamRow:
    """A row of ПОС's Excel export, as `adapters.pos.export_import` read it."""

    row: int
    number: str
    stage: str


@dataclass(frozen=True, slots=True)
class PbxCall:
    """A CDR line in our vocabulary: which way it went and whether anyone answered."""

    uniqueid: str
    hotline: str
    direction: str  # in | out | internal
    caller: str | None  # the caller's number: personal data, kept for the callback only
    started_at: datetime
    answered: bool
    billsec: int
    disposition: str
    source: str  # asterisk | freeswitch


@dataclass(frozen=True, slots=True)
class CallbackTry:
    """A phone try the gateway recorded (deliveries table): `connected` when it reached them."""

    at: datetime
    connected: bool


@dataclass(frozen=True, slots=True)
class WeeklyReport:
    hotline: str
    period: Period
    zone: tzinfo
    rows: list[WeeklyRow]


@dataclass(frozen=True, slots=True)
class Spread:
    """Median and 90th percentile of a duration, in working hours."""

    count: int
    median_h: float | None
    p90_h: float | None


@dataclass(frozen=True, slots=True)
class MonthlyReport:
    hotline: str
    period: Period
    total: int
    per_day: list[tuple[date, int]]
    by_topic: list[tuple[str, int]]
    by_executor: list[tuple[str, int]]
    by_route: list[tuple[str, int]]
    by_result: list[tuple[str, int]]
    answered_on_time: int
    answered_late: int
    unanswered_past_due: int
    to_answer: Spread
    to_delivery: Spread
    overdue_now: int
    generated_at: datetime


@dataclass(frozen=True, slots=True)
class Mismatch:
    kind: str  # missing_upstream | unknown_upstream | stage_mismatch
    number: str | None
    mark: ForwardingMark | None
    upstream: UpstreamRow | None
    reason: str


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    hotline: str | None
    period: Period
    zone: tzinfo
    marks: list[ForwardingMark]
    export_given: bool
    missing_upstream: list[Mismatch] = field(default_factory=list)
    unknown_upstream: list[Mismatch] = field(default_factory=list)
    stage_mismatch: list[Mismatch] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CallLoadReport:
    hotline: str
    period: Period
    days: list[CallLoadDay]
    callback_tries: int
