"""The reports the regulations require, built from the gateway's own data and the PBX's.

001 §19 (weekly, appendix 3), 001 §18 and 002 2.8.12 (monthly summary), 000 (weekly
reconciliation against the forwarding marks) and 001 appendix 1 (the call-load journal).
The figures are computed here; reading the database is `ReportData`'s job (read-only
queries in `gateway.storage.reports`) and drawing the file is `ReportWriter`'s (XlsxWriter
in `adapters.reports`), so the numbers are tested without either.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import date, datetime, tzinfo
from typing import Protocol

from gateway.domain.ports import Clock, WorkCalendar
from gateway.domain.reporting import (
    CallbackTry,
    CallFact,
    CallLoadDay,
    CallLoadReport,
    ForwardingMark,
    Mismatch,
    MonthlyReport,
    PbxCall,
    Period,
    ReconcileReport,
    Spread,
    UpstreamRow,
    WeeklyReport,
    WeeklyRow,
    WorkingHours,
    percentile,
    working_seconds,
)
from gateway.domain.status import AppealStatus
from gateway.errors import GatewayError


class ReportData(Protocol):
    """Read-only queries the reports need; `gateway.storage.reports` answers them in SQL."""

    async def weekly_rows(self, hotline: str, start: datetime,
                          end: datetime) -> list[WeeklyRow]: ...

    def call_facts(self, hotline: str, start: datetime,
                   end: datetime) -> AsyncIterator[CallFact]: ...

    async def overdue_now(self, hotline: str) -> int: ...

    async def forwarding_marks(self, hotline: str | None, start: datetime,
                               end: datetime) -> list[ForwardingMark]: ...

    async def known_numbers(self, system: str, numbers: Sequence[str]) -> set[str]: ...

    async def pbx_calls(self, hotline: str, start: datetime, end: datetime) -> list[PbxCall]: ...

    async def callback_tries(self, hotline: str, start: datetime,
                             end: datetime) -> list[CallbackTry]: ...


class ReportWriter(Protocol):
    """Draws a report as an .xlsx file (bytes); `adapters.reports.xlsx` is the real one."""

    def weekly(self, report: WeeklyReport) -> bytes: ...

    def monthly(self, report: MonthlyReport) -> bytes: ...

    def reconcile(self, report: ReconcileReport) -> bytes: ...

    def callload(self, report: CallLoadReport) -> bytes: ...


Progress = Callable[[int], None]

# ПОС export / our stages compared without case and spacing differences.
def _same_stage(ours: str | None, theirs: str) -> bool:
    return " ".join((ours or "").lower().split()) == " ".join(theirs.lower().split())


FORWARDED_SYSTEMS = frozenset({"pos", "delo"})
ANSWERED = frozenset({AppealStatus.ANSWER_READY.value, AppealStatus.ANSWER_SENT.value,
                      AppealStatus.DELIVERED.value})


class UnknownHotline(GatewayError, ValueError):
    """A report asked for a hotline this gateway does not serve."""


class ReportService:
    def __init__(self, data: ReportData, writer: ReportWriter, clock: Clock, *,
                 zone_of: Callable[[str], tzinfo], calendar: WorkCalendar,
                 hours: WorkingHours | None = None,
                 hotlines: frozenset[str] | None = None) -> None:
        self._data = data
        self._writer = writer
        self._clock = clock
        self._zone_of = zone_of
        self._calendar = calendar
        self._hours = hours or WorkingHours()
        self._hotlines = hotlines

    def check_hotline(self, hotline: str) -> None:
        if self._hotlines is not None and hotline not in self._hotlines:
            known = ", ".join(sorted(self._hotlines))
            raise UnknownHotline(f"hotline {hotline!r} is not configured; known: {known}")

    # -- weekly [001: 19, appendix 3] --------------------------------------------------

    async def weekly(self, hotline: str, period: Period) -> WeeklyReport:
        self.check_hotline(hotline)
        zone = self._zone_of(hotline)
        start, end = period.bounds(zone)
        rows = await self._data.weekly_rows(hotline, start, end)
        return WeeklyReport(hotline, period, zone, rows)

    async def weekly_file(self, hotline: str, period: Period) -> bytes:
        return self._writer.weekly(await self.weekly(hotline, period))

    # -- monthly [001: 18; 002: 2.8.12] ------------------------------------------------

    async def monthly(self, hotline: str, period: Period,
                      progress: Progress | None = None) -> MonthlyReport:
        self.check_hotline(hotline)
        zone = self._zone_of(hotline)
        start, end = period.bounds(zone)
        per_day: Counter[date] = Counter()
        topics: Counter[str] = Counter()
        executors: Counter[str] = Counter()
        routes: Counter[str] = Counter()
        results: Counter[str] = Counter()
        on_time = late = past_due = total = 0
        to_answer: list[float] = []
        to_delivery: list[float] = []
        now = self._clock.now()
        async for fact in self._data.call_facts(hotline, start, end):
            total += 1
            per_day[fact.received_at.astimezone(zone).date()] += 1
            topics[fact.topic] += 1
            executors[fact.executor or "—"] += 1
            routes[fact.route_system] += 1
            results[fact.status] += 1
            if fact.answer_ready_at is not None:
                if fact.due_at is not None:
                    if fact.answer_ready_at <= fact.due_at:
                        on_time += 1
                    else:
                        late += 1
                to_answer.append(self._work_s(fact.received_at, fact.answer_ready_at, zone))
                if fact.delivered_at is not None:
                    to_delivery.append(
                        self._work_s(fact.answer_ready_at, fact.delivered_at, zone))
            elif (fact.status not in ANSWERED and fact.due_at is not None
                  and fact.due_at < now):
                past_due += 1
            if progress is not None and total % 10_000 == 0:
                progress(total)
        if progress is not None:
            progress(total)
        return MonthlyReport(
            hotline=hotline, period=period, total=total,
            per_day=[(day, per_day.get(day, 0)) for day in period.days()],
            by_topic=topics.most_common(), by_executor=executors.most_common(),
            by_route=_routes(routes), by_result=results.most_common(),
            answered_on_time=on_time, answered_late=late, unanswered_past_due=past_due,
            to_answer=_spread(to_answer), to_delivery=_spread(to_delivery),
            overdue_now=await self._data.overdue_now(hotline), generated_at=now,
        )

    async def monthly_file(self, hotline: str, period: Period,
                           progress: Progress | None = None) -> bytes:
        return self._writer.monthly(await self.monthly(hotline, period, progress))

    def _work_s(self, begin: datetime, finish: datetime, zone: tzinfo) -> float:
        return working_seconds(begin, finish, zone, self._hours, self._calendar)

    # -- reconciliation [000: weekly count against the forwarding marks] -----------------

    async def reconcile(self, hotline: str | None, period: Period,
                        upstream: Sequence[UpstreamRow] | None = None) -> ReconcileReport:
        if hotline is not None:
            self.check_hotline(hotline)
        zone = self._zone_of(hotline or "")
        start, end = period.bounds(zone)
        marks = await self._data.forwarding_marks(hotline, start, end)
        report = ReconcileReport(hotline, period, zone, marks, upstream is not None)
        for mark in marks:
            if mark.route_system in FORWARDED_SYSTEMS and not mark.external_number:
                report.missing_upstream.append(Mismatch(
                    "missing_upstream", None, mark, None,
                    f"нет отметки о передаче в {_system_name(mark.route_system)}"))
        if upstream is None:
            return report
        exported = {row.number: row for row in upstream}
        for mark in marks:
            if mark.external_system != "pos" or not mark.external_number:
                continue
            row = exported.get(mark.external_number)
            if row is None:
                report.missing_upstream.append(Mismatch(
                    "missing_upstream", mark.external_number, mark, None,
                    "номера нет в выгрузке ПОС"))
            elif not _same_stage(mark.external_stage, row.stage):
                report.stage_mismatch.append(Mismatch(
                    "stage_mismatch", mark.external_number, mark, row,
                    "этап в шлюзе и в выгрузке ПОС различается"))
        ours = {m.external_number for m in marks if m.external_system == "pos"}
        others = [n for n in exported if n not in ours]
        known = await self._data.known_numbers("pos", others) if others else set()
        for number in others:
            if number not in known:
                report.unknown_upstream.append(Mismatch(
                    "unknown_upstream", number, None, exported[number],
                    "в шлюзе нет звонка с этим номером ПОС"))
        return report

    async def reconcile_file(self, hotline: str | None, period: Period,
                             upstream: Sequence[UpstreamRow] | None = None) -> bytes:
        return self._writer.reconcile(await self.reconcile(hotline, period, upstream))

    # -- call-load journal [001: appendix 1] --------------------------------------------

    async def callload(self, hotline: str, period: Period) -> CallLoadReport:
        self.check_hotline(hotline)
        zone = self._zone_of(hotline)
        start, end = period.bounds(zone)
        received: Counter[date] = Counter()
        lost: Counter[date] = Counter()
        outgoing: Counter[date] = Counter()
        connected: Counter[date] = Counter()
        for call in await self._data.pbx_calls(hotline, start, end):
            day = call.started_at.astimezone(zone).date()
            if call.direction == "in":
                received[day] += 1
                if not call.answered:
                    lost[day] += 1
            elif call.direction == "out":
                outgoing[day] += 1
                if call.answered and call.billsec > 0:
                    connected[day] += 1
        tries = await self._data.callback_tries(hotline, start, end)
        for attempt in tries:
            day = attempt.at.astimezone(zone).date()
            outgoing[day] += 1
            if attempt.connected:
                connected[day] += 1
        days = [CallLoadDay(day, received[day], lost[day], outgoing[day], connected[day])
                for day in period.days()]
        return CallLoadReport(hotline, period, days, len(tries))

    async def callload_file(self, hotline: str, period: Period) -> bytes:
        return self._writer.callload(await self.callload(hotline, period))


def missed_calls_to_call_back(calls: Sequence[PbxCall], zone: tzinfo) -> list[PbxCall]:
    """[001: 13–14] the missed inbound calls to call back: one per number per local day.

    The seam to issue 13's callback tasks: each returned call (the first missed one of its
    number that day) becomes one task; the CDR's uniqueid is its idempotency key.
    """
    seen: set[tuple[str, date]] = set()
    chosen: list[PbxCall] = []
    for call in sorted(calls, key=lambda c: (c.started_at, c.uniqueid)):
        if call.direction != "in" or call.answered or not call.caller:
            continue
        key = (call.caller, call.started_at.astimezone(zone).date())
        if key not in seen:
            seen.add(key)
            chosen.append(call)
    return chosen


def _spread(seconds: list[float]) -> Spread:
    med, p90 = percentile(seconds, 50), percentile(seconds, 90)
    return Spread(len(seconds), None if med is None else med / 3600,
                  None if p90 is None else p90 / 3600)


ROUTE_ORDER = ("pos", "delo", "email", "none")


def _routes(counts: Counter[str]) -> list[tuple[str, int]]:
    ordered = [(r, counts.get(r, 0)) for r in ROUTE_ORDER]
    return ordered + sorted((r, n) for r, n in counts.items() if r not in ROUTE_ORDER)


def _system_name(system: str) -> str:
    return {"pos": "ПОС", "delo": "«Дело»"}.get(system, system)

