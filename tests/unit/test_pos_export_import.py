"""Import of ПОС's own Excel export, from workbooks generated with XlsxWriter."""

from __future__ import annotations

import io
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import xlsxwriter

from adapters.pos.export_import import ExportFormatError, read_export
from adapters.pos.mapping import PosMapping, load_mapping
from gateway.domain.appeal import AppealStatus

HEADER = [
    "Номер", "Номер ЕПГУ", "Источник", "Категория", "Подкатегория", "Факт",
    "Организация в которую поступило сообщение", "Организация в которой находится сообщение",
    "Дата поступления", "Дата планируемого завершения работ",
    "Дата фактического завершения работ", "Стадия", "Статус", "Просрочено",
    "ФИО координатора", "ФИО исполнителя", "ФИО руководителя",
]
COORDINATOR = "Сидоров Сидор Сидорович"


def row(number: Any, stage: str = "Исполнение", status: str = "В работе", *,
        planned: Any = "05.12.2026", fact_date: Any = None, fact: str = "Яма на дороге",
        overdue: Any = "Нет", received: Any = "23.11.2026") -> dict[str, Any]:
    return {
        "Номер": number, "Номер ЕПГУ": "EPGU-1", "Источник": "Центр мониторинга 112",
        "Категория": "Дороги", "Подкатегория": "Ямы", "Факт": fact,
        "Организация в которую поступило сообщение": "Правительство области",
        "Организация в которой находится сообщение": "Минтранс",
        "Дата поступления": received, "Дата планируемого завершения работ": planned,
        "Дата фактического завершения работ": fact_date, "Стадия": stage, "Статус": status,
        "Просрочено": overdue, "ФИО координатора": COORDINATOR,
        "ФИО исполнителя": "Петров Петр", "ФИО руководителя": "Николаев Николай",
    }


def workbook(rows: list[dict[str, Any]], *, header: list[str] | None = None,
             preamble: int = 0, sheet: str = "Сообщения") -> io.BytesIO:
    """An export as ПОС might produce it; dates given as `date` become real date cells."""
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    sheet_ = book.add_worksheet(sheet)
    date_format = book.add_format({"num_format": "dd.mm.yyyy"})
    columns = header or HEADER
    for r in range(preamble):
        sheet_.write(r, 0, f"Выгрузка сообщений, лист {r + 1}")
    for c, name in enumerate(columns):
        sheet_.write(preamble, c, name)
    for r, values in enumerate(rows, start=preamble + 1):
        for c, name in enumerate(columns):
            value = values.get(name)
            if value is None:
                continue
            if isinstance(value, datetime | date):
                sheet_.write_datetime(r, c, value, date_format)
            else:
                sheet_.write(r, c, value)
    book.close()
    buffer.seek(0)
    return buffer


@pytest.fixture(scope="module")
def mapping() -> PosMapping:
    return load_mapping()


def test_rows_are_read_and_mapped(mapping: PosMapping) -> None:
    file = workbook([
        row("1001", "Ответ готов к передаче", "Ответ подготовлен", planned="05.12.2026",
            fact_date="01.12.2026", fact="Яму заделали"),
        row(1002, "Координация", overdue="Да"),
        row("1003", "ответ передан заявителю"),
        row("1004", "Модерация", "Отклонено"),
    ])

    result = read_export(file, mapping)

    assert result.bad_rows == []
    first, second, third, fourth = result.rows
    assert (first.row, first.number, first.stage, first.status) == (
        2, "1001", "answer_ready", AppealStatus.ANSWER_READY
    )
    assert first.planned_completion == date(2026, 12, 5)
    assert first.completed_on == date(2026, 12, 1)
    assert first.fact == "Яму заделали"
    assert first.pos_status == "Ответ подготовлен"
    assert first.organization == "Минтранс"
    assert second.number == "1002"  # a numeric cell, read as the number's text
    assert second.status == AppealStatus.IN_PROGRESS and second.overdue is True
    assert third.stage == "answer_delivered" and third.status == AppealStatus.DELIVERED
    assert fourth.status == AppealStatus.REJECTED  # «Статус» wins over «Стадия»


def test_header_is_found_by_names_in_any_order_below_a_preamble(mapping: PosMapping) -> None:
    header = ["Лишняя колонка", "Стадия", "Статус", "Номер",
              "Дата планируемого завершения работ"]
    file = workbook([row("2001", "Утверждение")], header=header, preamble=3)

    result = read_export(file, mapping)

    assert [(r.row, r.number, r.stage) for r in result.rows] == [(5, "2001", "confirmation")]
    assert result.rows[0].fact is None  # the column is absent, not an error


def test_real_date_cells_are_accepted(mapping: PosMapping) -> None:
    file = workbook([row("3001", planned=date(2026, 12, 24), fact_date=datetime(2026, 12, 20))])

    result = read_export(file, mapping)

    assert result.rows[0].planned_completion == date(2026, 12, 24)
    assert result.rows[0].completed_on == date(2026, 12, 20)


def test_bad_rows_are_reported_with_their_row_number_and_no_personal_data(
    mapping: PosMapping,
) -> None:
    secret = "Иванова Мария, +79161234567"
    file = workbook([
        row("4001"),
        row(None, fact=secret),  # missing number
        row("4003", planned="32.13.2026"),  # bad date
        row("4004", fact_date=secret),  # personal data typed into a date column
        row("4005", "Архив"),  # unknown stage
        row("4006", ""),  # missing stage
        row("4001"),  # duplicate number
        {},  # an empty row is skipped silently
        row("4009", planned=7),  # a number in a date column that is no plausible date
    ])

    result = read_export(file, mapping)

    assert [r.number for r in result.rows] == ["4001"]
    reasons = {bad.row: bad.reason for bad in result.bad_rows}
    assert set(reasons) == {3, 4, 5, 6, 7, 8, 10}
    assert "Номер" in reasons[3]
    assert "Дата планируемого завершения работ" in reasons[4]
    assert "Дата фактического завершения работ" in reasons[5]
    assert "Стадия" in reasons[6] and "Архив" not in reasons[6]
    assert "Стадия" in reasons[7]
    assert "first at row 2" in reasons[8]
    assert "Дата планируемого" in reasons[10]
    for reason in reasons.values():
        assert "Иванова" not in reason and "+7916" not in reason and COORDINATOR not in reason


def test_staff_names_are_not_carried(mapping: PosMapping) -> None:
    result = read_export(workbook([row("5001")]), mapping)

    assert COORDINATOR not in repr(result.rows[0])


def test_a_file_without_the_header_is_refused(mapping: PosMapping) -> None:
    file = workbook([{"Номер": "1"}], header=["Номер", "Что-то ещё"])

    with pytest.raises(ExportFormatError):
        read_export(file, mapping)


def test_a_file_that_is_no_workbook_is_refused(mapping: PosMapping, tmp_path: Path) -> None:
    path = tmp_path / "export.xlsx"
    path.write_text("Номер;Стадия\n1;Исполнение\n", encoding="utf-8")

    with pytest.raises(ExportFormatError):
        read_export(path, mapping)


def test_reads_from_a_path(mapping: PosMapping, tmp_path: Path) -> None:
    path = tmp_path / "export.xlsx"
    path.write_bytes(workbook([row("6001", "Согласование")]).getvalue())

    result = read_export(path, mapping)

    assert result.sheet == "Сообщения"
    assert result.rows[0].stage == "approval"


def test_stage_names_come_from_configuration(tmp_path: Path) -> None:
    config = tmp_path / "mapping.toml"
    config.write_text(
        '[stages]\nexecution = "in_progress"\nanswer_ready = "answer_ready"\n'
        '[export.stage_names]\n"В исполнении" = "execution"\n"Готово" = "answer_ready"\n',
        encoding="utf-8",
    )
    custom = load_mapping(config)

    result = read_export(workbook([row("7001", "Готово"), row("7002", "Исполнение")]), custom)

    assert [r.status for r in result.rows] == [AppealStatus.ANSWER_READY]
    assert [b.row for b in result.bad_rows] == [3]


def test_a_mapping_to_an_unknown_stage_fails_at_load(tmp_path: Path) -> None:
    config = tmp_path / "mapping.toml"
    config.write_text(
        '[stages]\nexecution = "in_progress"\n[export.stage_names]\n"Готово" = "answer_ready"\n',
        encoding="utf-8",
    )

    with pytest.raises(ValueError, match="answer_ready"):
        load_mapping(config)
