"""The Russian production calendar (производственный календарь) behind our WorkCalendar port.

Every deadline the gateway keeps is counted in working days [001: 21; 002: 2.8.7, 2.8.9;
004: 10.2–10.3], and the Russian calendar is not "Monday to Friday minus holidays": each
year a government decree moves days off (2026-01-09 is off in exchange for Saturday
2026-01-03) and turns some Saturdays into working days (2024-11-02). The `holidays`
package knows these transfers (`country_holidays("RU")` plus its `weekend_workdays`), so it
is the source; decrees published after the installed package version are added through
the project-owned overrides file (`config/calendar_overrides.toml`, loaded by
`config.calendar`), and an override always wins over the package.

Only this module imports `holidays`; the domain sees the `WorkCalendar` protocol.

Efficiency: the calendar is computed once per year into a sorted array of working-day
ordinals, so `is_working_day` is an index lookup and `add_working_days` is a binary search
plus one step per year crossed, however many days are added.
"""

from __future__ import annotations

import threading
from array import array
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

import holidays

COUNTRY = "RU"


@dataclass(frozen=True, slots=True)
class _Year:
    """One calendar year: a working-day flag per day and the working days in order."""

    first_ordinal: int
    flags: bytes  # flags[ordinal - first_ordinal] == 1 on a working day
    working: array[int]  # ordinals of the working days, ascending


class HolidaysWorkCalendar:
    """`WorkCalendar` from the `holidays` package's Russian calendar plus decree overrides.

    `extra_days_off` / `extra_working_days` come from decrees newer than the package; a
    date in both is a configuration error (ValueError), because which one a decree meant
    cannot be guessed.
    """

    def __init__(
        self,
        extra_days_off: Iterable[date] = (),
        extra_working_days: Iterable[date] = (),
    ) -> None:
        self._extra_days_off = frozenset(extra_days_off)
        self._extra_working_days = frozenset(extra_working_days)
        both = self._extra_days_off & self._extra_working_days
        if both:
            listed = ", ".join(d.isoformat() for d in sorted(both))
            raise ValueError(f"dates overridden both as days off and as working days: {listed}")
        self._years: dict[int, _Year] = {}
        self._lock = threading.Lock()

    def is_working_day(self, day: date) -> bool:
        year = self._year(day.year)
        return year.flags[day.toordinal() - year.first_ordinal] == 1

    def add_working_days(self, day: date, n: int) -> date:
        """The n-th working day after `day` (n >= 0; n == 0 gives `day` or the next working day).

        Counting starts the day after `day`, the way a term starts the day after the event
        it is counted from; so 3 working days after Tuesday 2025-12-30 is 2026-01-14, the
        New Year days off and the transferred 2025-12-31 and 2026-01-09 being skipped.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if n == 0:
            return day if self.is_working_day(day) else self.add_working_days(day, 1)
        year_number = day.year
        year = self._year(year_number)
        # Index of the wanted day among this year's working days; may run past the year.
        position = bisect_right(year.working, day.toordinal()) + n - 1
        while position >= len(year.working):
            position -= len(year.working)
            year_number += 1
            year = self._year(year_number)
        return date.fromordinal(year.working[position])

    def next_working_day(self, day: date) -> date:
        """The first working day strictly after `day`."""
        return self.add_working_days(day, 1)

    def _year(self, year_number: int) -> _Year:
        year = self._years.get(year_number)
        if year is None:
            with self._lock:
                year = self._years.get(year_number)
                if year is None:
                    year = self._build_year(year_number)
                    self._years[year_number] = year
        return year

    def _build_year(self, year_number: int) -> _Year:
        start = date(year_number, 1, 1)
        length = (date(year_number + 1, 1, 1) - start).days if year_number < 9999 else 365
        official = holidays.country_holidays(COUNTRY, years=year_number)
        weekend: frozenset[int] = frozenset(official.weekend)
        weekend_workdays: frozenset[date] = frozenset(official.weekend_workdays)
        flags = bytearray(length)
        working: array[int] = array("l")
        for offset in range(length):
            day = start + timedelta(days=offset)
            if day in self._extra_working_days:
                is_working = True
            elif day in self._extra_days_off:
                is_working = False
            else:
                is_working = (
                    day.weekday() not in weekend or day in weekend_workdays
                ) and day not in official
            if is_working:
                flags[offset] = 1
                working.append(day.toordinal())
        return _Year(first_ordinal=start.toordinal(), flags=bytes(flags), working=working)
