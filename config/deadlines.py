"""Schema and loader of `deadlines.toml`: the deadline policies routes refer to by name.

"Which deadline applies to which route is configuration": the terms come from different
regulations ([002: 2.8.7, 2.8.9], [001: 13, 21], [004: 10]) and each deployment decides
which apply to its routes. This module validates the file at start-up and turns it into
the domain's `DeadlinePolicies`; errors name the file and the offending key.
"""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    model_validator,
)

from config.errors import ConfigError
from config.files import load_model
from gateway.domain.deadlines import (
    DEFAULT_DAY_ENDS_AT,
    DEFAULT_POLICY,
    CalendarDays,
    CallbackRule,
    DeadlinePolicies,
    DeadlinePolicy,
    Minutes,
    RequestRule,
    Term,
    WorkingDays,
    WorkingDaysWithCutoff,
)

DEFAULT_FILE = "deadlines.toml"


class DeadlinesConfigError(ConfigError, ValueError):
    """The deadlines file is unreadable or wrong; the message names the file and the key."""


def _wall_clock(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("a local wall-clock time takes no time zone")
    return value


LocalTime = Annotated[time, AfterValidator(_wall_clock)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TermModel(_Strict):
    """One term: exactly one of working_days, calendar_days, minutes."""

    working_days: PositiveInt | None = None
    calendar_days: PositiveInt | None = None
    minutes: PositiveInt | None = None
    cutoff: LocalTime | None = None
    roll_to_working_day: bool | None = None

    @model_validator(mode="after")
    def _one_unit(self) -> Self:
        units = [name for name in ("working_days", "calendar_days", "minutes")
                 if getattr(self, name) is not None]
        if len(units) != 1:
            raise ValueError(
                "a term needs exactly one of working_days, calendar_days, minutes"
                + (f" (got {', '.join(units)})" if units else "")
            )
        if self.cutoff is not None and self.working_days is None:
            raise ValueError("cutoff applies to working_days only")
        if self.roll_to_working_day is not None and self.calendar_days is None:
            raise ValueError("roll_to_working_day applies to calendar_days only")
        return self

    def to_domain(self) -> Term:
        if self.working_days is not None:
            if self.cutoff is not None:
                return WorkingDaysWithCutoff(days=self.working_days, cutoff=self.cutoff)
            return WorkingDays(self.working_days)
        if self.calendar_days is not None:
            roll = True if self.roll_to_working_day is None else self.roll_to_working_day
            return CalendarDays(self.calendar_days, roll_to_working_day=roll)
        assert self.minutes is not None  # _one_unit guarantees one unit
        return Minutes(self.minutes)


class RequestModel(_Strict):
    send_within: TermModel
    answer_within: TermModel | None = None
    longest_answer: TermModel | None = None

    def to_domain(self) -> RequestRule:
        return RequestRule(
            send_within=self.send_within.to_domain(),
            answer_within=None if self.answer_within is None else self.answer_within.to_domain(),
            longest_answer=(
                None if self.longest_answer is None else self.longest_answer.to_domain()
            ),
        )


class PolicyModel(_Strict):
    urgent: TermModel
    control: TermModel
    feedback: TermModel | None = None
    request: RequestModel | None = None
    day_ends_at: LocalTime | None = None

    def to_domain(self, name: str, day_ends_at: time) -> DeadlinePolicy:
        return DeadlinePolicy(
            name=name,
            urgent=self.urgent.to_domain(),
            control=self.control.to_domain(),
            feedback=None if self.feedback is None else self.feedback.to_domain(),
            request=None if self.request is None else self.request.to_domain(),
            day_ends_at=day_ends_at if self.day_ends_at is None else self.day_ends_at,
        )


class CallbackModel(_Strict):
    """Returning a missed call [001: 13]."""

    by: LocalTime = time(12, 0)
    retries: NonNegativeInt = 2
    retry_after_min_minutes: NonNegativeInt = 30
    retry_after_max_minutes: NonNegativeInt = 60

    @model_validator(mode="after")
    def _interval(self) -> Self:
        if self.retry_after_min_minutes > self.retry_after_max_minutes:
            raise ValueError("retry_after_min_minutes is greater than retry_after_max_minutes")
        return self

    def to_domain(self) -> CallbackRule:
        return CallbackRule(
            by=self.by,
            retries=self.retries,
            retry_after_min=timedelta(minutes=self.retry_after_min_minutes),
            retry_after_max=timedelta(minutes=self.retry_after_max_minutes),
        )


class DeadlinesFile(_Strict):
    """The whole `deadlines.toml`."""

    day_ends_at: LocalTime = DEFAULT_DAY_ENDS_AT
    callback: CallbackModel = Field(default_factory=CallbackModel)
    policies: dict[str, PolicyModel]

    @model_validator(mode="after")
    def _policies_make_sense(self) -> Self:
        if DEFAULT_POLICY not in self.policies:
            raise ValueError(f"policies.{DEFAULT_POLICY} is required: routes without a "
                             "deadline_policy use it")
        for name, policy in self.policies.items():
            if not name.strip():
                raise ValueError("a policy name must not be blank")
            try:
                policy.to_domain(name, self.day_ends_at)
            except ValueError as exc:
                raise ValueError(f"policies.{name}: {exc}") from exc
        return self

    def to_domain(self) -> DeadlinePolicies:
        return DeadlinePolicies(
            policies=tuple(
                policy.to_domain(name, self.day_ends_at) for name, policy in self.policies.items()
            ),
            callback=self.callback.to_domain(),
        )


def load_deadline_policies(path: Path | None = None) -> DeadlinePolicies:
    """Read and validate the deadlines file; the shipped default when `path` is None."""
    return load_model(DeadlinesFile, path, DEFAULT_FILE, DeadlinesConfigError).to_domain()
