"""The reports' settings file (`config/reports.toml`): weekly schedules and recipients,
working hours, and how CDR lines are told apart; a bad entry stops start-up by name."""

from __future__ import annotations

from datetime import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from config.errors import ConfigError
from config.files import load_model


class ReportsConfigError(ConfigError, ValueError):
    """config/reports.toml (or the file named by reports_file) is not usable."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WeeklyEntry(_Strict):
    hotline: str = Field(min_length=1, max_length=32)
    recipients: list[EmailStr] = Field(default_factory=list)
    send_at: time = time(8, 0)
    due_by: time = time(10, 0)

    @model_validator(mode="after")
    def _send_before_due(self) -> WeeklyEntry:
        if self.send_at > self.due_by:
            raise ValueError("send_at must not be after due_by")
        return self


class HoursEntry(_Strict):
    start: time = time(9, 0)
    end: time = time(18, 0)

    @model_validator(mode="after")
    def _ordered(self) -> HoursEntry:
        if self.end <= self.start:
            raise ValueError("working hours must end after they start")
        return self


class PbxEntry(_Strict):
    inbound_contexts: list[str] = Field(default_factory=list)
    outbound_contexts: list[str] = Field(default_factory=list)
    extension_max_digits: int = Field(default=4, ge=1, le=10)
    times_in_utc: bool = False


class ReportsConfig(_Strict):
    weekly: list[WeeklyEntry] = Field(default_factory=list)
    working_hours: HoursEntry = HoursEntry()
    pbx: PbxEntry = PbxEntry()

    @model_validator(mode="after")
    def _one_schedule_per_hotline(self) -> ReportsConfig:
        codes = [w.hotline for w in self.weekly]
        doubled = sorted({c for c in codes if codes.count(c) > 1})
        if doubled:
            raise ValueError(f"more than one [[weekly]] for hotline(s) {', '.join(doubled)}")
        return self


def load_reports_config(path: Path | None = None) -> ReportsConfig:
    return load_model(ReportsConfig, path, "reports.toml", ReportsConfigError)
