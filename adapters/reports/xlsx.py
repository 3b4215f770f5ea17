"""The reports drawn as .xlsx files with XlsxWriter: the layouts the regulations prescribe.

An adapter rather than core: the figures are the service's (`gateway.services.reports`);
this module only knows a file format and its layout, like the letter templates know
e-mail. Formulas carry their computed values, so a reader that does not recalculate
(openpyxl, a mail preview) still shows the numbers; charts are native Excel charts.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import Any

import xlsxwriter

from gateway.domain.reporting import (
    AVAILABILITY_NORM_PCT,
    LOST_NORM_PCT,
    PRODUCTIVITY_NORM_PCT,
    CallLoadReport,
    Mismatch,
    MonthlyReport,
    ReconcileReport,
    Spread,
    WeeklyReport,
)

# [001: appendix 3], in its order (the API contract repeats it).
WEEKLY_COLUMNS = ("Дата и время звонка", "Тематика сообщения", "Суть", "ФИО оператора")
# [001: appendix 1], columns A–J.
CALLLOAD_COLUMNS = (
    "День недели", "Дата", "Поступило, шт.", "Потери, шт.", "Потери, %", "Принято, шт.",
    "Доступность, %", "Совершено звонков, шт.", "Дозвоны, шт.", "Продуктивность исх./зв., %",
)
WEEKDAYS = ("понедельник", "вторник", "среда", "четверг", "пятница", "суббота",
            "воскресенье")
ROUTE_NAMES = {"pos": "ПОС", "delo": "«Дело»", "email": "e-mail", "none": "не передавалось"}
RESULT_NAMES = {
    "accepted": "принято", "journaled": "дан ответ при звонке", "registered": "зарегистрировано",
    "in_progress": "на рассмотрении", "answer_ready": "ответ готов к передаче",
    "answer_sent": "ответ отправлен заявителю", "delivered": "ответ передан заявителю",
    "rejected": "отклонено", "failed": "сбой передачи",
}
MISMATCH_SHEETS = (
    ("missing_upstream", "Нет в системе"),
    ("unknown_upstream", "Неизвестные в ПОС"),
    ("stage_mismatch", "Этап расходится"),
)


class _Book:
    """An in-memory workbook with the few formats the reports share."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.wb = xlsxwriter.Workbook(self.buffer, {"in_memory": True,
                                                    "remove_timezone": True})
        self.head = self.wb.add_format({"bold": True, "text_wrap": True, "valign": "top",
                                        "bg_color": "#DDEBF7", "border": 1})
        self.when = self.wb.add_format({"num_format": "dd.mm.yyyy hh:mm"})
        self.day = self.wb.add_format({"num_format": "dd.mm.yyyy"})
        self.wrap = self.wb.add_format({"text_wrap": True, "valign": "top"})
        self.pct = self.wb.add_format({"num_format": "0.0%"})
        self.bad_pct = self.wb.add_format({"num_format": "0.0%", "bg_color": "#FFC7CE",
                                           "font_color": "#9C0006"})
        self.hours = self.wb.add_format({"num_format": "0.0"})
        self.bold = self.wb.add_format({"bold": True})
        self.title = self.wb.add_format({"bold": True, "font_size": 13})

    def header(self, ws: Any, row: int, names: Sequence[str]) -> None:
        for col, name in enumerate(names):
            ws.write_string(row, col, name, self.head)

    def close(self) -> bytes:
        self.wb.close()
        return self.buffer.getvalue()


def _local(moment: datetime, zone: tzinfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


class XlsxReportWriter:
    """`ReportWriter` with XlsxWriter."""

    # -- weekly [001: appendix 3] ------------------------------------------------------

    def weekly(self, report: WeeklyReport) -> bytes:
        book = _Book()
        ws = book.wb.add_worksheet("Еженедельный отчет")
        book.header(ws, 0, WEEKLY_COLUMNS)
        for i, row in enumerate(report.rows, start=1):
            ws.write_datetime(i, 0, _local(row.received_at, report.zone), book.when)
            ws.write_string(i, 1, row.topic, book.wrap)
            ws.write_string(i, 2, row.summary, book.wrap)
            ws.write_string(i, 3, row.operator, book.wrap)
        ws.set_column(0, 0, 18)
        ws.set_column(1, 1, 32)
        ws.set_column(2, 2, 60)
        ws.set_column(3, 3, 26)
        ws.freeze_panes(1, 0)
        return book.close()

    # -- monthly [001: 18; 002: 2.8.12] --------------------------------------------------

    def monthly(self, report: MonthlyReport) -> bytes:
        book = _Book()
        summary = book.wb.add_worksheet("Сводка")
        days = book.wb.add_worksheet("По дням")
        book.header(days, 0, ("Дата", "Звонков"))
        for i, (day, count) in enumerate(report.per_day, start=1):
            days.write_datetime(i, 0, datetime.combine(day, datetime.min.time()), book.day)
            days.write_number(i, 1, count)
        days.set_column(0, 0, 12)
        last_day_row = len(report.per_day)
        tables = {
            "Тематики": ("Тематика", report.by_topic, None),
            "Исполнители": ("Исполнитель", report.by_executor, None),
            "Маршруты": ("Маршрут", report.by_route, ROUTE_NAMES),
            "Результаты": ("Результат", report.by_result, RESULT_NAMES),
        }
        for name, (label, counts, names) in tables.items():
            ws = book.wb.add_worksheet(name)
            book.header(ws, 0, (label, "Звонков"))
            for i, (key, count) in enumerate(counts, start=1):
                ws.write_string(i, 0, names.get(key, key) if names else key)
                ws.write_number(i, 1, count)
            ws.set_column(0, 0, 48)

        summary.write_string(0, 0, f"Сводка за {report.period.label}, линия {report.hotline}",
                             book.title)
        summary.write_string(1, 0, f"Сформировано {report.generated_at:%Y-%m-%d %H:%M} UTC")
        figures: list[tuple[str, Any]] = [
            ("Всего звонков", ("formula", f"=SUM('По дням'!B2:B{last_day_row + 1})",
                               report.total)),
            ("Ответ подготовлен в срок", report.answered_on_time),
            ("Ответ подготовлен с опозданием", report.answered_late),
            ("Доля ответов в срок", ("pct", "=IF(B5+B6=0,\"\",B5/(B5+B6))",
                                     _share(report.answered_on_time, report.answered_late))),
            ("Без ответа, срок истёк", report.unanswered_past_due),
            ("Просрочено сейчас", report.overdue_now),
        ]
        row = 3
        for label, value in figures:
            summary.write_string(row, 0, label)
            if isinstance(value, tuple):
                kind, formula, cached = value
                summary.write_formula(row, 1, formula, book.pct if kind == "pct" else None,
                                      "" if cached is None else cached)
            else:
                summary.write_number(row, 1, value)
            row += 1
        row += 1
        summary.write_string(row, 0, "Время в рабочих часах", book.bold)
        summary.write_string(row, 1, "Медиана, ч", book.bold)
        summary.write_string(row, 2, "90-й процентиль, ч", book.bold)
        summary.write_string(row, 3, "Звонков", book.bold)
        for label, spread in (("Звонок → ответ готов", report.to_answer),
                              ("Ответ готов → передан заявителю", report.to_delivery)):
            row += 1
            _spread_row(summary, book, row, label, spread)
        summary.set_column(0, 0, 36)
        summary.set_column(1, 3, 16)

        per_day = book.wb.add_chart({"type": "column"})
        per_day.add_series({"name": "Звонков в день",
                            "categories": ["По дням", 1, 0, max(last_day_row, 1), 0],
                            "values": ["По дням", 1, 1, max(last_day_row, 1), 1]})
        per_day.set_title({"name": "Звонки по дням"})
        per_day.set_legend({"none": True})
        summary.insert_chart(row + 2, 0, per_day, {"x_scale": 1.6})

        top = min(len(report.by_topic), 10)
        topics = book.wb.add_chart({"type": "bar"})
        topics.add_series({"name": "Звонков",
                           "categories": ["Тематики", 1, 0, max(top, 1), 0],
                           "values": ["Тематики", 1, 1, max(top, 1), 1]})
        topics.set_title({"name": "Основные тематики"})
        topics.set_legend({"none": True})
        topics.set_y_axis({"reverse": True})
        summary.insert_chart(row + 2, 5, topics, {"x_scale": 1.4})

        on_time = book.wb.add_chart({"type": "pie"})
        on_time.add_series({"name": "Ответы в срок",
                            "categories": ["Сводка", 4, 0, 5, 0],
                            "values": ["Сводка", 4, 1, 5, 1]})
        on_time.set_title({"name": "Доля ответов в срок"})
        summary.insert_chart(row + 18, 0, on_time)
        summary.activate()
        return book.close()

    # -- reconciliation [000] -----------------------------------------------------------

    def reconcile(self, report: ReconcileReport) -> bytes:
        book = _Book()
        ws = book.wb.add_worksheet("Сверка")
        columns = ("№ в журнале", "Линия", "Дата и время звонка", "Маршрут", "Система",
                   "Номер", "Этап", "Статус")
        book.header(ws, 0, columns)
        for i, m in enumerate(report.marks, start=1):
            ws.write_string(i, 0, m.journal_id)
            ws.write_string(i, 1, m.hotline)
            ws.write_datetime(i, 2, _local(m.received_at, report.zone), book.when)
            ws.write_string(i, 3, ROUTE_NAMES.get(m.route_system, m.route_system))
            ws.write_string(i, 4, ROUTE_NAMES.get(m.external_system or "", "") or "")
            ws.write_string(i, 5, m.external_number or "")
            ws.write_string(i, 6, m.external_stage or "")
            ws.write_string(i, 7, RESULT_NAMES.get(m.status, m.status))
        ws.set_column(0, 7, 18)
        ws.freeze_panes(1, 0)
        totals = len(report.marks) + 2
        ws.write_string(totals, 0, "Звонков за период", book.bold)
        ws.write_formula(totals, 1, f"=COUNTA(A2:A{len(report.marks) + 1})", None,
                         len(report.marks))
        if not report.export_given:
            ws.write_string(totals + 1, 0, "Выгрузка ПОС не дана: сверены только отметки "
                                           "о передаче.")
        groups = {"missing_upstream": report.missing_upstream,
                  "unknown_upstream": report.unknown_upstream,
                  "stage_mismatch": report.stage_mismatch}
        for kind, title in MISMATCH_SHEETS:
            _mismatch_sheet(book, title, groups[kind], report.zone)
        return book.close()

    # -- call-load journal [001: appendix 1] ---------------------------------------------

    def callload(self, report: CallLoadReport) -> bytes:
        book = _Book()
        ws = book.wb.add_worksheet("Звонковая нагрузка")
        ws.write_string(0, 0, "Электронный журнал учета звонковой нагрузки на телефон доверия, "
                              f"линия {report.hotline}, {report.period.label}", book.title)
        book.header(ws, 1, CALLLOAD_COLUMNS)
        first = 2
        for i, day in enumerate(report.days):
            r = first + i
            n = r + 1  # the Excel row number
            bad = day.outside_norms()
            ws.write_string(r, 0, WEEKDAYS[day.day.weekday()])
            ws.write_datetime(r, 1, datetime.combine(day.day, datetime.min.time()), book.day)
            ws.write_number(r, 2, day.received)
            ws.write_number(r, 3, day.lost)
            ws.write_formula(r, 4, f'=IF(C{n}=0,"",D{n}/C{n})',
                             book.bad_pct if "lost" in bad else book.pct,
                             _frac(day.lost_pct))
            ws.write_formula(r, 5, f"=C{n}-D{n}", None, day.accepted)
            ws.write_formula(r, 6, f'=IF(C{n}=0,"",F{n}/C{n})',
                             book.bad_pct if "availability" in bad else book.pct,
                             _frac(day.availability_pct))
            ws.write_number(r, 7, day.outgoing)
            ws.write_number(r, 8, day.connected)
            ws.write_formula(r, 9, f'=IF(H{n}=0,"",I{n}/H{n})',
                             book.bad_pct if "productivity" in bad else book.pct,
                             _frac(day.productivity_pct))
        last = first + len(report.days) - 1
        norms = last + 1
        ws.write_string(norms, 0, "Нормативы", book.bold)
        ws.write_string(norms, 4, f"<{LOST_NORM_PCT:g}%", book.bold)
        ws.write_string(norms, 6, f">{AVAILABILITY_NORM_PCT:g}%", book.bold)
        ws.write_string(norms, 9, f">{PRODUCTIVITY_NORM_PCT:g}%", book.bold)
        ws.write_string(norms + 2, 0, "В исходящих учтены попытки обратного звонка, "
                                      f"записанные в шлюзе: {report.callback_tries}.")
        ws.set_column(0, 1, 13)
        ws.set_column(2, 9, 14)
        ws.set_row(1, 45)
        ws.freeze_panes(2, 2)
        return book.close()


def _spread_row(ws: Any, book: _Book, row: int, label: str, spread: Spread) -> None:
    ws.write_string(row, 0, label)
    for col, value in ((1, spread.median_h), (2, spread.p90_h)):
        if value is None:
            ws.write_string(row, col, "—")
        else:
            ws.write_number(row, col, round(value, 2), book.hours)
    ws.write_number(row, 3, spread.count)


def _mismatch_sheet(book: _Book, title: str, items: list[Mismatch], zone: tzinfo) -> None:
    ws = book.wb.add_worksheet(title)
    book.header(ws, 0, ("№ в журнале", "Дата и время звонка", "Маршрут", "Номер",
                        "Этап в шлюзе", "Строка выгрузки", "Этап в выгрузке", "Расхождение"))
    for i, item in enumerate(items, start=1):
        mark, upstream = item.mark, item.upstream
        ws.write_string(i, 0, mark.journal_id if mark else "")
        if mark is not None:
            ws.write_datetime(i, 1, _local(mark.received_at, zone), book.when)
            ws.write_string(i, 2, ROUTE_NAMES.get(mark.route_system, mark.route_system))
            ws.write_string(i, 4, mark.external_stage or "")
        ws.write_string(i, 3, item.number or "")
        if upstream is not None:
            ws.write_number(i, 5, upstream.row)
            ws.write_string(i, 6, upstream.stage)
        ws.write_string(i, 7, item.reason)
    ws.set_column(0, 7, 18)
    ws.set_column(7, 7, 44)


def _share(on_time: int, late: int) -> float | None:
    return None if on_time + late == 0 else on_time / (on_time + late)


def _frac(pct: float | None) -> float | str:
    return "" if pct is None else pct / 100

