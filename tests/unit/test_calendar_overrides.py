"""The project-owned overrides file: decrees newer than the `holidays` package."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from config.calendar import (
    CalendarOverridesError,
    build_work_calendar,
    load_calendar_overrides,
)
from gateway.calendar import HolidaysWorkCalendar

DECREE = "Постановление Правительства РФ от 01.10.2098 № 1 «О переносе выходных дней в 2099 году»"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "calendar_overrides.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_overrides_file_loads() -> None:
    overrides = load_calendar_overrides()
    assert all(entry.decree for entry in (*overrides.days_off, *overrides.working_days))


def test_the_shipped_overrides_keep_the_official_calendar() -> None:
    calendar = build_work_calendar()
    package = HolidaysWorkCalendar()
    for day in (date(2025, 2, 24), date(2024, 11, 2), date(2026, 1, 9), date(2026, 12, 31)):
        assert calendar.is_working_day(day) == package.is_working_day(day)


def test_overrides_take_effect_in_the_calendar(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
[[days_off]]
date = 2099-05-04
decree = "{DECREE}"
note = "moved from Saturday 2099-01-03"

[[working_days]]
date = 2099-01-03
decree = "{DECREE}"
""",
    )
    assert date(2099, 5, 4).weekday() == 0 and date(2099, 1, 3).weekday() == 5
    calendar = build_work_calendar(path)
    assert not calendar.is_working_day(date(2099, 5, 4))
    assert calendar.is_working_day(date(2099, 1, 3))


def test_entries_keep_their_decree(tmp_path: Path) -> None:
    path = write(tmp_path, f'[[days_off]]\ndate = 2099-05-04\ndecree = "{DECREE}"\n')
    (entry,) = load_calendar_overrides(path).days_off
    assert entry.date == date(2099, 5, 4)
    assert entry.decree == DECREE


def test_a_date_both_off_and_on_is_refused_naming_the_entry_and_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
[[days_off]]
date = 2099-05-04
decree = "{DECREE}"

[[working_days]]
date = 2099-05-04
decree = "{DECREE}"
""",
    )
    with pytest.raises(CalendarOverridesError) as caught:
        load_calendar_overrides(path)
    message = str(caught.value)
    assert str(path) in message
    assert "working_days[0]" in message and "days_off[0]" in message
    assert "2099-05-04" in message
    assert "both an added day off and an added working day" in message


def test_a_date_listed_twice_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
[[days_off]]
date = 2099-05-04
decree = "{DECREE}"

[[days_off]]
date = 2099-05-04
decree = "{DECREE}"
""",
    )
    with pytest.raises(CalendarOverridesError, match=r"days_off\[1\].*listed twice"):
        load_calendar_overrides(path)


def test_an_entry_without_its_decree_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "[[days_off]]\ndate = 2099-05-04\n")
    with pytest.raises(CalendarOverridesError, match=r"days_off\.0\.decree"):
        load_calendar_overrides(path)


def test_a_blank_decree_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '[[working_days]]\ndate = 2099-01-03\ndecree = "  "\n')
    with pytest.raises(CalendarOverridesError, match=r"working_days\.0\.decree"):
        load_calendar_overrides(path)


def test_an_impossible_date_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, f'[[days_off]]\ndate = "2099-13-01"\ndecree = "{DECREE}"\n')
    with pytest.raises(CalendarOverridesError, match=r"days_off\.0\.date"):
        load_calendar_overrides(path)


def test_an_unknown_key_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, f'[[holidays]]\ndate = 2099-05-04\ndecree = "{DECREE}"\n')
    with pytest.raises(CalendarOverridesError, match="holidays"):
        load_calendar_overrides(path)


def test_a_file_that_is_not_toml_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[[days_off]\n")
    with pytest.raises(CalendarOverridesError, match="not valid TOML") as caught:
        load_calendar_overrides(path)
    assert str(path) in str(caught.value)


def test_a_missing_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(CalendarOverridesError, match=r"absent\.toml"):
        load_calendar_overrides(path)
