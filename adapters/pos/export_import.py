"""Reads ПОС's own Excel export: the status path for regions granted no API access.

ПОС staff can export their message list to .xlsx (columns in DESIGN.md §2). This module
turns such a file into rows in our vocabulary — number, stage, status, dates, the «Факт»
text — using the same stage mapping as the API (`config/pos_mapping.toml`), and lists
the rows it could not read with the row number and a reason. Matching rows to appeals
and applying them is the caller's job.

Exports are edited by hand, so the header row is found by its names (any order, extra
columns ignored) and dates are accepted as real Excel dates or dd.mm.yyyy text. Reasons
never quote cell contents: a misplaced cell may hold a name or a phone number (152-ФЗ).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO
from zipfile import BadZipFile

from openpyxl import load_workbook
from openpyxl.utils.datetime import from_excel
from openpyxl.utils.exceptions import InvalidFileException

from adapters.errors import AdapterError
from adapters.pos.mapping import PosMapping, normalize_name
from gateway.domain.appeal import AppealStatus

COL_NUMBER = "Номер"
COL_EPGU_NUMBER = "Номер ЕПГУ"
COL_SOURCE = "Источник"
COL_CATEGORY = "Категория"
COL_SUBCATEGORY = "Подкатегория"
COL_FACT = "Факт"
COL_RECEIVED_BY = "Организация в которую поступило сообщение"
COL_HELD_BY = "Организация в которой находится сообщение"
COL_RECEIVED_ON = "Дата поступления"
COL_PLANNED = "Дата планируемого завершения работ"
COL_COMPLETED = "Дата фактического завершения работ"
COL_STAGE = "Стадия"
COL_STATUS = "Статус"
COL_OVERDUE = "Просрочено"
# ФИО координатора / исполнителя / руководителя are ПОС staff names: deliberately not read.

REQUIRED_COLUMNS = (COL_NUMBER, COL_STAGE)
HEADER_SEARCH_ROWS = 30
_DATE_FORMATS = ("%d.%m.%Y", "%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S", "%Y-%m-%d")
# Excel day numbers of 1950-01-01 .. 2100-01-01: anything else in a date column is a typo.
_SERIAL_RANGE = (18_264, 73_051)
_YES = frozenset({"да", "yes", "true", "1", "просрочено"})
_NO = frozenset({"нет", "no", "false", "0"})


class ExportFormatError(AdapterError, ValueError):
    """The file is not a ПОС export we can read at all (no header, not a workbook)."""


@dataclass(frozen=True, slots=True)
class ExportRow:
    """One message as the export shows it, mapped to our statuses."""

    row: int  # the spreadsheet's row number, for reports
    number: str  # «Номер»: ПОС's message number, the key to match appeals by
    stage: str  # the API stage code the «Стадия» name maps to
    stage_name: str  # «Стадия» as written in the file
    status: AppealStatus  # ours, from the stage unless «Статус» overrides it
    pos_status: str | None = None  # «Статус» as written in the file
    epgu_number: str | None = None
    received_on: date | None = None
    planned_completion: date | None = None
    completed_on: date | None = None  # «Дата фактического завершения работ»
    fact: str | None = None  # «Факт»: the message text (may hold personal data)
    organization: str | None = None  # where the message is now
    overdue: bool | None = None


@dataclass(frozen=True, slots=True)
class BadRow:
    row: int
    reason: str  # column names and rule only, never cell contents


@dataclass(frozen=True, slots=True)
class ExportImport:
    rows: list[ExportRow] = field(default_factory=list)
    bad_rows: list[BadRow] = field(default_factory=list)
    sheet: str | None = None


class _BadCell(ValueError):
    pass


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _date(value: object, column: str) -> date | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        # A date cell that lost its format: an Excel serial day number.
        if _SERIAL_RANGE[0] <= value < _SERIAL_RANGE[1]:
            converted = from_excel(value)
            if isinstance(converted, datetime):
                return converted.date()
            if isinstance(converted, date):
                return converted
        raise _BadCell(f"bad date in «{column}»")
    if isinstance(value, str):
        text = value.strip()
        for layout in _DATE_FORMATS:
            try:
                return datetime.strptime(text, layout).date()
            except ValueError:
                continue
    raise _BadCell(f"bad date in «{column}» (expected dd.mm.yyyy)")


def _flag(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    text = _text(value)
    if text is None:
        return None
    lowered = text.casefold()
    if lowered in _YES:
        return True
    if lowered in _NO:
        return False
    return None


def _header(cells: Sequence[object]) -> dict[str, int] | None:
    """Column positions by normalised name, when this row is the export's header."""
    positions: dict[str, int] = {}
    for index, cell in enumerate(cells):
        if isinstance(cell, str) and cell.strip():
            positions.setdefault(normalize_name(cell), index)
    if all(normalize_name(c) in positions for c in REQUIRED_COLUMNS):
        return positions
    return None


class _Row:
    """A data row addressed by column name; absent columns read as empty."""

    def __init__(self, cells: Sequence[object], positions: dict[str, int]) -> None:
        self._cells = cells
        self._positions = positions

    def __getitem__(self, column: str) -> object:
        index = self._positions.get(normalize_name(column))
        if index is None or index >= len(self._cells):
            return None
        return self._cells[index]


def parse_rows(rows: Iterable[Sequence[object]], mapping: PosMapping) -> ExportImport:
    """The core of the import over plain cell rows (1-based numbering), workbook-free."""
    result = ExportImport()
    positions: dict[str, int] | None = None
    first_seen: dict[str, int] = {}
    for number, cells in enumerate(rows, start=1):
        if positions is None:
            if number > HEADER_SEARCH_ROWS:
                break
            positions = _header(cells)
            continue
        if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
            continue
        parsed = _parse_row(number, _Row(cells, positions), mapping)
        if isinstance(parsed, BadRow):
            result.bad_rows.append(parsed)
            continue
        if parsed.number in first_seen:
            reason = f"duplicate «{COL_NUMBER}», first at row {first_seen[parsed.number]}"
            result.bad_rows.append(BadRow(number, reason))
            continue
        first_seen[parsed.number] = number
        result.rows.append(parsed)
    if positions is None:
        raise ExportFormatError(
            f"no header row with {', '.join(f'«{c}»' for c in REQUIRED_COLUMNS)} "
            f"in the first {HEADER_SEARCH_ROWS} rows"
        )
    return result


def _parse_row(row: int, cells: _Row, mapping: PosMapping) -> ExportRow | BadRow:
    number = _text(cells[COL_NUMBER])
    if number is None:
        return BadRow(row, f"missing «{COL_NUMBER}»")
    stage_name = _text(cells[COL_STAGE])
    if stage_name is None:
        return BadRow(row, f"missing «{COL_STAGE}»")
    stage = mapping.export.stage_code(stage_name)
    if stage is None:
        return BadRow(row, f"unknown «{COL_STAGE}»; add it to [export.stage_names]")
    pos_status = _text(cells[COL_STATUS])
    status = mapping.export.status_override(pos_status) if pos_status else None
    if status is None:
        status = mapping.status_for(stage)
    if status is None:  # a known stage always maps; kept for the type checker
        return BadRow(row, f"«{COL_STAGE}» maps to no status")
    try:
        received_on = _date(cells[COL_RECEIVED_ON], COL_RECEIVED_ON)
        planned = _date(cells[COL_PLANNED], COL_PLANNED)
        completed = _date(cells[COL_COMPLETED], COL_COMPLETED)
    except _BadCell as exc:
        return BadRow(row, str(exc))
    return ExportRow(
        row=row,
        number=number,
        stage=stage,
        stage_name=stage_name,
        status=status,
        pos_status=pos_status,
        epgu_number=_text(cells[COL_EPGU_NUMBER]),
        received_on=received_on,
        planned_completion=planned,
        completed_on=completed,
        fact=_text(cells[COL_FACT]),
        organization=_text(cells[COL_HELD_BY]),
        overdue=_flag(cells[COL_OVERDUE]),
    )


def read_export(source: str | Path | IO[bytes], mapping: PosMapping, *,
                sheet: str | None = None) -> ExportImport:
    """Parse an .xlsx export; the first sheet holding the header is used unless named."""
    try:
        workbook = load_workbook(source, read_only=True, data_only=True)
    except (InvalidFileException, BadZipFile, KeyError, OSError, ValueError) as exc:
        # What openpyxl raises for a file that is no .xlsx (CSV renamed, truncated zip).
        raise ExportFormatError(f"not a readable .xlsx workbook ({type(exc).__name__})") from None
    try:
        names: list[str] = [sheet] if sheet is not None else list(workbook.sheetnames)
        problem: ExportFormatError | None = None
        for name in names:
            if name not in workbook.sheetnames:
                raise ExportFormatError(f"no sheet named {name!r}")
            rows: Iterator[Sequence[object]] = workbook[name].iter_rows(values_only=True)
            try:
                result = parse_rows(rows, mapping)
            except ExportFormatError as exc:
                problem = exc
                continue
            return ExportImport(rows=result.rows, bad_rows=result.bad_rows, sheet=name)
        raise problem or ExportFormatError("the workbook has no sheets")
    finally:
        workbook.close()
