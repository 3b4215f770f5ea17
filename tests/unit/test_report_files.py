"""The report files as a reader sees them: opened with openpyxl, cell by cell."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from adapters.reports.xlsx import CALLLOAD_COLUMNS, WEEKLY_COLUMNS, XlsxReportWriter
from gateway.calendar import HolidaysWorkCalendar
from gateway.clock import ManualClock
from gateway.domain.reporting import (
    BadPeriod,
    CallbackTry,
    CallFact,
    CallLoadDay,
    ForwardingMark,
    PbxCall,
    UpstreamRow,
    WeeklyRow,
    WorkingHours,
    iso_week,
    month,
    parse_period,
    percentile,
    previous_week,
    working_seconds,
)
from gateway.services.reports import ReportService

MOSCOW = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


class Rows:
    """ReportData over lists: the service's arithmetic without a database."""

    def __init__(self) -> None:
        self.weekly: list[WeeklyRow] = []
        self.facts: list[CallFact] = []
        self.marks: list[ForwardingMark] = []
        self.pbx: list[PbxCall] = []
        self.tries: list[CallbackTry] = []
        self.known: set[str] = set()

    async def weekly_rows(self, hotline: str, start: datetime,
                          end: datetime) -> list[WeeklyRow]:
        return [r for r in self.weekly if start <= r.received_at < end]

    async def call_facts(self, hotline: str, start: datetime,
                         end: datetime) -> AsyncIterator[CallFact]:
        for fact in self.facts:
            if start <= fact.received_at < end:
                yield fact

    async def overdue_now(self, hotline: str) -> int:
        return sum(f.overdue for f in self.facts)

    async def forwarding_marks(self, hotline: str | None, start: datetime,
                               end: datetime) -> list[ForwardingMark]:
        return [m for m in self.marks if start <= m.received_at < end]

    async def known_numbers(self, system: str, numbers: Sequence[str]) -> set[str]:
        return self.known & set(numbers)

    async def pbx_calls(self, hotline: str, start: datetime, end: datetime) -> list[PbxCall]:
        return [c for c in self.pbx if start <= c.started_at < end]

    async def callback_tries(self, hotline: str, start: datetime,
                             end: datetime) -> list[CallbackTry]:
        return [t for t in self.tries if start <= t.at < end]


def service(rows: Rows) -> ReportService:
    return ReportService(rows, XlsxReportWriter(), ManualClock(NOW), zone_of=lambda _: MOSCOW,
                         calendar=HolidaysWorkCalendar(), hotlines=frozenset({"122"}))


def book(content: bytes) -> openpyxl.Workbook:
    return openpyxl.load_workbook(io.BytesIO(content))


def msk(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=MOSCOW).astimezone(UTC)


# -- periods and arithmetic ------------------------------------------------------------


def test_periods_are_iso_weeks_months_and_inclusive_ranges() -> None:
    assert (iso_week("2026-W47").first, iso_week("2026-W47").last) == (
        date(2026, 11, 16), date(2026, 11, 22))
    assert (month("2026-02").first, month("2026-02").last) == (date(2026, 2, 1),
                                                                date(2026, 2, 28))
    assert parse_period("2026-11-01..2026-11-30").days()[-1] == date(2026, 11, 30)
    assert previous_week(date(2026, 11, 23)).label == "2026-W47"
    with pytest.raises(BadPeriod):
        parse_period("2026-13")


def test_working_time_counts_only_working_hours_of_working_days() -> None:
    cal = HolidaysWorkCalendar()
    hours = WorkingHours()
    # Friday 17:00 -> Monday 10:00: one hour on Friday and one on Monday.
    begin, finish = msk(date(2026, 11, 20), 17), msk(date(2026, 11, 23), 10)
    assert working_seconds(begin, finish, MOSCOW, hours, cal) == 2 * 3600
    # 2026-11-04 is a public holiday: none of it counts.
    assert working_seconds(msk(date(2026, 11, 4), 9), msk(date(2026, 11, 4), 18), MOSCOW,
                           hours, cal) == 0


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10.0] * 9 + [100.0], 90) == pytest.approx(19.0)
    assert percentile([], 50) is None


def test_call_load_norms_follow_appendix_1() -> None:
    day = CallLoadDay(date(2026, 11, 23), received=100, lost=6, outgoing=10, connected=4)
    assert day.accepted == 94 and day.lost_pct == 6.0 and day.availability_pct == 94.0
    assert day.outside_norms() == {"lost", "availability", "productivity"}
    assert CallLoadDay(date(2026, 11, 23), 100, 4, 10, 5).outside_norms() == frozenset()


# -- the files -------------------------------------------------------------------------


async def test_weekly_file_has_exactly_appendix_3_columns_in_local_time() -> None:
    rows = Rows()
    monday = date(2026, 11, 16)
    rows.weekly = [
        WeeklyRow(msk(monday, 9, 15), "Отопление", "Нет отопления", "Иванова А.А."),
        WeeklyRow(msk(monday + timedelta(days=7), 9), "Транспорт", "next week", "Петров"),
    ]
    ws = book(await service(rows).weekly_file("122", iso_week("2026-W47"))).active
    assert [c.value for c in ws[1]] == list(WEEKLY_COLUMNS)
    assert [c.value for c in ws[2]] == [datetime(2026, 11, 16, 9, 15), "Отопление",
                                        "Нет отопления", "Иванова А.А."]
    assert ws.max_row == 2


async def test_call_load_journal_has_formulas_norms_and_marks_cells_outside_them() -> None:
    rows = Rows()
    day = date(2026, 11, 23)

    def call(n: int, direction: str, answered: bool) -> PbxCall:
        return PbxCall(f"u{direction}{n}", "122", direction, "89170000000",
                       msk(day, 10) + timedelta(minutes=n), answered,
                       60 if answered else 0, "ANSWERED" if answered else "NO ANSWER",
                       "asterisk")

    rows.pbx = [call(i, "in", i >= 10) for i in range(100)]  # 10 lost of 100
    rows.pbx += [call(i, "out", i < 4) for i in range(8)]
    rows.tries = [CallbackTry(msk(day, 15), False), CallbackTry(msk(day, 16), True)]
    content = await service(rows).callload_file("122", parse_period("2026-11-23..2026-11-24"))
    ws = book(content).active
    assert [c.value for c in ws[2]] == list(CALLLOAD_COLUMNS)
    assert ws["A3"].value == "понедельник" and ws["B3"].value == datetime(2026, 11, 23)
    assert (ws["C3"].value, ws["D3"].value, ws["H3"].value, ws["I3"].value) == (100, 10, 10, 5)
    assert ws["E3"].value == '=IF(C3=0,"",D3/C3)'
    assert ws["F3"].value == "=C3-D3"
    assert ws["G3"].value == '=IF(C3=0,"",F3/C3)'
    assert ws["J3"].value == '=IF(H3=0,"",I3/H3)'
    # 10 % lost and 90 % availability miss their norms; 50 % productivity meets its own.
    assert ws["E3"].fill.fgColor.rgb.endswith("FFC7CE")
    assert ws["G3"].fill.fgColor.rgb.endswith("FFC7CE")
    assert not ws["J3"].fill.fgColor.rgb.endswith("FFC7CE")
    assert ws["A5"].value == "Нормативы"
    assert (ws["E5"].value, ws["G5"].value, ws["J5"].value) == ("<5%", ">95%", ">45%")
    values = openpyxl.load_workbook(io.BytesIO(content), data_only=True).active
    assert values["E3"].value == pytest.approx(0.1) and values["F3"].value == 90


async def test_monthly_file_counts_times_and_charts_without_personal_data() -> None:
    rows = Rows()
    first = date(2026, 11, 2)  # a Monday
    topics = Counter({"Отопление": 0, "Транспорт": 0})
    for i in range(30):
        topic = "Отопление" if i % 3 else "Транспорт"
        topics[topic] += 1
        received = msk(first, 10)
        ready = received + timedelta(hours=2 + i % 5)
        rows.facts.append(CallFact(
            received_at=received, topic=topic, executor="Министерство ЖКХ",
            route_system="pos" if i % 2 else "delo", status="delivered",
            due_at=received + timedelta(hours=4), answer_ready_at=ready,
            delivered_at=ready + timedelta(hours=1), overdue=False))
    rows.facts.append(CallFact(msk(first, 11), "Транспорт", "", "none", "journaled", None,
                               None, None, False))
    content = await service(rows).monthly_file("122", month("2026-11"))
    wb = book(content)
    assert wb.sheetnames[0] == "Сводка"
    summary = wb["Сводка"]
    assert summary["A4"].value == "Всего звонков"
    assert summary["B4"].value == "=SUM('По дням'!B2:B31)"
    on_time = sum(1 for i in range(30) if 2 + i % 5 <= 4)
    assert (summary["B5"].value, summary["B6"].value) == (on_time, 30 - on_time)
    assert summary["B7"].value.startswith("=IF(")
    routes = {r[0].value: r[1].value for r in wb["Маршруты"].iter_rows(min_row=2)}
    assert routes == {"ПОС": 15, "«Дело»": 15, "e-mail": 0, "не передавалось": 1}
    days = {r[0].value: r[1].value for r in wb["По дням"].iter_rows(min_row=2)}
    assert days[datetime(2026, 11, 2)] == 31 and len(days) == 30
    assert summary["A12"].value == "Звонок → ответ готов"
    assert summary["B12"].value == pytest.approx(4.0)  # median call -> answer, working hours
    assert summary["B13"].value == pytest.approx(1.0)  # answer -> delivered
    charts = summary._charts
    assert len(charts) == 3
    assert {type(c).__name__ for c in charts} == {"BarChart", "PieChart"}
    # No personal data: no operator, no summary, no applicant anywhere in the file.
    text = " ".join(str(c.value) for ws in wb for row in ws.iter_rows() for c in row)
    assert "Иванова" not in text and "Нет отопления" not in text


async def test_reconciliation_has_a_sheet_per_kind_of_mismatch() -> None:
    rows = Rows()
    day = date(2026, 11, 23)

    def mark(journal: str, system: str, number: str | None, stage: str | None) -> ForwardingMark:
        return ForwardingMark(f"id-{journal}", "122", journal, msk(day, 10), system,
                              system if number else None, number, stage, "registered")

    rows.marks = [mark("J1", "pos", "P-1", "in_work"), mark("J2", "pos", "P-2", "in_work"),
                  mark("J3", "pos", None, None), mark("J4", "delo", "D-4", "reg"),
                  mark("J5", "pos", "P-5", "in_work"), mark("J6", "none", None, None)]
    rows.known = {"P-OLD"}
    upstream = [UpstreamRow(2, "P-1", "in_work"), UpstreamRow(3, "P-2", "answer_ready"),
                UpstreamRow(4, "P-9", "in_work"), UpstreamRow(5, "P-OLD", "done")]
    wb = book(await service(rows).reconcile_file(None, parse_period("2026-11-23..2026-11-29"),
                                                 upstream))
    assert wb.sheetnames == ["Сверка", "Нет в системе", "Неизвестные в ПОС", "Этап расходится"]
    assert wb["Сверка"].max_row >= 7
    missing = [r[0].value for r in wb["Нет в системе"].iter_rows(min_row=2)]
    assert missing == ["J3", "J5"]  # no forwarding mark; number absent from the export
    unknown = [r[3].value for r in wb["Неизвестные в ПОС"].iter_rows(min_row=2)]
    assert unknown == ["P-9"]  # P-OLD is a call of another period
    stage = [(r[0].value, r[4].value, r[6].value)
             for r in wb["Этап расходится"].iter_rows(min_row=2)]
    assert stage == [("J2", "in_work", "answer_ready")]
