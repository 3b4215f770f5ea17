"""The Russian production calendar: transfers, working Saturdays, overrides, speed."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import holidays
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.calendar import HolidaysWorkCalendar
from gateway.domain.ports import WorkCalendar

CALENDAR = HolidaysWorkCalendar()

days = st.dates(min_value=date(2000, 1, 1), max_value=date(2040, 12, 31))
counts = st.integers(min_value=0, max_value=800)


def test_calendar_implements_the_work_calendar_port() -> None:
    calendar: WorkCalendar = HolidaysWorkCalendar()
    assert calendar.is_working_day(date(2025, 3, 3))


@pytest.mark.parametrize(
    "day",
    [
        date(2025, 2, 24),  # Monday after Sunday 2025-02-23: the holiday was moved to May 8
        date(2024, 11, 2),  # working Saturday
        date(2024, 12, 28),  # working Saturday
        date(2025, 11, 1),  # working Saturday
        date(2026, 1, 12),  # first working day of 2026
    ],
)
def test_transferred_and_working_saturdays_are_working_days(day: date) -> None:
    assert CALENDAR.is_working_day(day)


@pytest.mark.parametrize(
    "day",
    [
        date(2026, 1, 9),  # Friday, day off moved from Saturday 2026-01-03
        date(2026, 3, 9),  # Monday after Sunday 2026-03-08
        date(2026, 5, 11),  # Monday after Saturday 2026-05-09
        date(2026, 12, 31),  # Thursday, day off moved from Sunday 2026-01-04
        date(2025, 12, 31),
        date(2025, 5, 2),
        date(2025, 5, 8),
        date(2025, 3, 8),  # Saturday holiday
        date(2025, 3, 9),  # plain Sunday
    ],
)
def test_holidays_and_transferred_days_are_days_off(day: date) -> None:
    assert not CALENDAR.is_working_day(day)


def test_three_working_days_after_2025_12_30_is_2026_01_14() -> None:
    assert CALENDAR.add_working_days(date(2025, 12, 30), 3) == date(2026, 1, 14)


def test_zero_working_days_is_the_day_itself_when_it_is_a_working_day() -> None:
    assert CALENDAR.add_working_days(date(2025, 3, 3), 0) == date(2025, 3, 3)


def test_zero_working_days_from_a_day_off_is_the_next_working_day() -> None:
    assert CALENDAR.add_working_days(date(2026, 1, 1), 0) == date(2026, 1, 12)


def test_next_working_day_skips_the_may_holidays() -> None:
    assert CALENDAR.next_working_day(date(2026, 4, 30)) == date(2026, 5, 4)
    assert CALENDAR.next_working_day(date(2026, 5, 8)) == date(2026, 5, 12)


def test_a_working_saturday_counts_as_a_working_day() -> None:
    assert CALENDAR.next_working_day(date(2024, 11, 1)) == date(2024, 11, 2)


def test_next_working_day_is_strictly_after_a_working_day() -> None:
    assert CALENDAR.next_working_day(date(2025, 3, 3)) == date(2025, 3, 4)


def test_adding_negative_working_days_is_refused() -> None:
    with pytest.raises(ValueError, match="n must be >= 0"):
        CALENDAR.add_working_days(date(2025, 3, 3), -1)


def test_adding_across_the_year_end_continues_in_the_next_year() -> None:
    assert CALENDAR.add_working_days(date(2024, 12, 27), 1) == date(2024, 12, 28)
    assert CALENDAR.add_working_days(date(2024, 12, 28), 1) == date(2025, 1, 9)


def test_an_override_day_off_wins_over_the_package() -> None:
    calendar = HolidaysWorkCalendar(extra_days_off=[date(2025, 3, 4)])
    assert not calendar.is_working_day(date(2025, 3, 4))
    assert calendar.next_working_day(date(2025, 3, 3)) == date(2025, 3, 5)


def test_an_override_working_day_wins_over_the_package() -> None:
    calendar = HolidaysWorkCalendar(extra_working_days=[date(2026, 1, 9), date(2026, 1, 10)])
    assert calendar.is_working_day(date(2026, 1, 9))
    assert calendar.is_working_day(date(2026, 1, 10))
    assert calendar.add_working_days(date(2025, 12, 30), 3) == date(2026, 1, 12)


def test_a_date_overridden_both_ways_is_refused() -> None:
    with pytest.raises(ValueError, match="2026-01-09"):
        HolidaysWorkCalendar(extra_days_off=[date(2026, 1, 9)],
                             extra_working_days=[date(2026, 1, 9)])


def test_each_year_is_read_from_the_package_once(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Any] = []
    real = holidays.country_holidays

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(kwargs.get("years"))
        return real(*args, **kwargs)

    monkeypatch.setattr(holidays, "country_holidays", counting)
    calendar = HolidaysWorkCalendar()
    for _ in range(3):
        last = calendar.add_working_days(date(2024, 1, 1), 1_000)
        calendar.is_working_day(date(2025, 6, 1))
    assert last.year == 2028
    assert sorted(built) == [2024, 2025, 2026, 2027, 2028]


def test_a_long_span_is_counted_a_year_at_a_time() -> None:
    start = date(2025, 1, 1)
    far = CALENDAR.add_working_days(start, 10_000)
    assert CALENDAR.is_working_day(far)
    assert date(2064, 1, 1) < far < date(2066, 1, 1)


def _step_by_step(calendar: HolidaysWorkCalendar, day: date, n: int) -> date:
    current = day
    if n == 0:
        while not calendar.is_working_day(current):
            current += timedelta(days=1)
        return current
    while n:
        current += timedelta(days=1)
        if calendar.is_working_day(current):
            n -= 1
    return current


@given(day=days, n=counts)
def test_adding_working_days_agrees_with_counting_day_by_day(day: date, n: int) -> None:
    assert CALENDAR.add_working_days(day, n) == _step_by_step(CALENDAR, day, n)


@given(day=days, n=counts)
def test_a_working_day_deadline_is_a_working_day_at_or_after_the_start(day: date, n: int) -> None:
    result = CALENDAR.add_working_days(day, n)
    assert CALENDAR.is_working_day(result)
    assert result >= day
    if n > 0:
        assert result > day


@given(day=days, n=counts, more=st.integers(min_value=0, max_value=300))
def test_adding_more_working_days_never_gives_an_earlier_day(day: date, n: int, more: int) -> None:
    assert CALENDAR.add_working_days(day, n) <= CALENDAR.add_working_days(day, n + more)


@given(day=days, later=st.integers(min_value=0, max_value=400), n=counts)
def test_a_later_start_never_gives_an_earlier_day(day: date, later: int, n: int) -> None:
    assert CALENDAR.add_working_days(day, n) <= CALENDAR.add_working_days(
        day + timedelta(days=later), n
    )


@given(day=days)
def test_the_next_working_day_is_the_first_working_day_after(day: date) -> None:
    following = CALENDAR.next_working_day(day)
    assert following > day
    assert CALENDAR.is_working_day(following)
    between = (day + timedelta(days=offset) for offset in range(1, (following - day).days))
    assert not any(CALENDAR.is_working_day(d) for d in between)
