"""Schema and loader of `calendar_overrides.toml`: decrees newer than the `holidays` package.

The government publishes each year's transfers of days off by decree, sometimes after the
installed `holidays` release; until the package is upgraded, admins add the decree's days
here (Working days, DESIGN.md §3). Every entry names its decree so that an auditor can
check why a deadline moved. A date listed both as a day off and as a working day is
refused at start-up, naming the entry and the file, rather than guessed at.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from config.errors import ConfigError
from config.files import load_model
from gateway.calendar import HolidaysWorkCalendar

DEFAULT_FILE = "calendar_overrides.toml"


class CalendarOverridesError(ConfigError, ValueError):
    """The overrides file is unreadable or wrong; the message names the file and the entry."""


class CalendarOverride(BaseModel):
    """One day a decree changes, e.g. a Saturday made a working day."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    date: dt.date
    decree: str = Field(min_length=1, description="The act this comes from, with its number")
    note: str | None = None


class CalendarOverrides(BaseModel):
    """The whole file: `[[days_off]]` and `[[working_days]]` entries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days_off: tuple[CalendarOverride, ...] = ()
    working_days: tuple[CalendarOverride, ...] = ()

    @model_validator(mode="after")
    def _each_date_once(self) -> Self:
        seen: dict[dt.date, tuple[str, str]] = {}
        for kind, entries in (("days_off", self.days_off), ("working_days", self.working_days)):
            for index, entry in enumerate(entries):
                here = f"{kind}[{index}] ({entry.date.isoformat()}, {entry.decree})"
                earlier = seen.get(entry.date)
                if earlier is not None:
                    earlier_kind, earlier_entry = earlier
                    problem = (
                        "is listed twice" if earlier_kind == kind
                        else "is both an added day off and an added working day"
                    )
                    raise ValueError(f"{here}: the date {problem} (see also {earlier_entry})")
                seen[entry.date] = (kind, here)
        return self

    def day_off_dates(self) -> frozenset[dt.date]:
        return frozenset(entry.date for entry in self.days_off)

    def working_day_dates(self) -> frozenset[dt.date]:
        return frozenset(entry.date for entry in self.working_days)


def load_calendar_overrides(path: Path | None = None) -> CalendarOverrides:
    """Read and validate the overrides file; the shipped default when `path` is None."""
    return load_model(CalendarOverrides, path, DEFAULT_FILE, CalendarOverridesError)



def build_work_calendar(path: Path | None = None) -> HolidaysWorkCalendar:
    """The production calendar with the overrides file applied (the shipped one by default)."""
    overrides = load_calendar_overrides(path)
    return HolidaysWorkCalendar(
        extra_days_off=overrides.day_off_dates(),
        extra_working_days=overrides.working_day_dates(),
    )
