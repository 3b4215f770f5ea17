"""ПОС stages and statuses → our AppealStatus, loaded from `config/pos_mapping.toml`.

The regulations name the stages but no public ПОС API fixes their codes, so the mapping
is data a region can edit (DESIGN.md §2). It serves both paths in: the API's stage codes,
and the Russian names of ПОС's Excel export («Стадия», «Статус» columns), which map to
those codes first so there is one table of meanings.
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from gateway.domain.appeal import AppealStatus

DEFAULT_MAPPING_RESOURCE = "pos_mapping.toml"

# Statuses an outside system may report; the others belong to the gateway alone.
_REPORTABLE = frozenset(
    {AppealStatus.REGISTERED, AppealStatus.IN_PROGRESS, AppealStatus.ANSWER_READY,
     AppealStatus.ANSWER_SENT, AppealStatus.DELIVERED, AppealStatus.REJECTED}
)
_SPACES = re.compile(r"\s+")
_QUOTES = str.maketrans("", "", "«»\"'“”„")


def normalize_name(name: str) -> str:
    """How Russian names are compared: people type «ё» as «е», vary case, quotes and spaces."""
    return _SPACES.sub(" ", name.translate(_QUOTES).replace("ё", "е").replace("Ё", "Е")).strip(
    ).casefold()


def _check_reportable(table: dict[str, AppealStatus]) -> dict[str, AppealStatus]:
    for key, status in table.items():
        if status not in _REPORTABLE:
            raise ValueError(f"{key!r} maps to {status.value!r}, which ПОС cannot report")
    return table


class ExportMapping(BaseModel):
    """The Russian names of ПОС's Excel export."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage_names: dict[str, str] = Field(min_length=1)
    status_overrides: dict[str, AppealStatus] = Field(default_factory=dict)

    _stages: dict[str, str] = PrivateAttr(default_factory=dict)
    _statuses: dict[str, AppealStatus] = PrivateAttr(default_factory=dict)

    _validate_statuses = field_validator("status_overrides")(_check_reportable)

    def model_post_init(self, __context: Any) -> None:
        self._stages = {normalize_name(k): v for k, v in self.stage_names.items()}
        self._statuses = {normalize_name(k): v for k, v in self.status_overrides.items()}

    def stage_code(self, name: str) -> str | None:
        """The API stage code for a «Стадия» cell, or None when the name is unknown."""
        return self._stages.get(normalize_name(name))

    def status_override(self, name: str) -> AppealStatus | None:
        return self._statuses.get(normalize_name(name))


class PosMapping(BaseModel):
    """The whole mapping; validated at start-up so a typo fails loudly, not mid-poll."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stages: dict[str, AppealStatus] = Field(min_length=1)
    status_overrides: dict[str, AppealStatus] = Field(default_factory=dict)
    # Status for a stage not listed; None means "skip the record" (the poller sees nothing).
    unknown_stage: AppealStatus | None = AppealStatus.IN_PROGRESS
    export: ExportMapping

    _validate_stages = field_validator("stages", "status_overrides")(_check_reportable)

    @field_validator("unknown_stage", mode="before")
    @classmethod
    def _empty_means_skip(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("unknown_stage")
    @classmethod
    def _unknown_reportable(cls, value: AppealStatus | None) -> AppealStatus | None:
        if value is not None and value not in _REPORTABLE:
            raise ValueError(f"unknown_stage cannot be {value.value!r}")
        return value

    @model_validator(mode="after")
    def _export_names_known_stages(self) -> PosMapping:
        missing = sorted(set(self.export.stage_names.values()) - set(self.stages))
        if missing:
            raise ValueError(f"export.stage_names point at stages missing from [stages]: {missing}")
        return self

    def status_for(self, stage: str, status: str | None = None) -> AppealStatus | None:
        """Our status for a remote stage (and optional remote status); None: not mappable."""
        if status is not None:
            override = self.status_overrides.get(status)
            if override is not None:
                return override
        return self.stages.get(stage, self.unknown_stage)

    def is_known_stage(self, stage: str) -> bool:
        return stage in self.stages


def load_mapping(path: str | Path | None = None) -> PosMapping:
    """The mapping from a TOML file; None reads the default shipped in `config/`."""
    if path is None:
        text = resources.files("config").joinpath(DEFAULT_MAPPING_RESOURCE).read_text("utf-8")
    else:
        text = Path(path).read_text("utf-8")
    return PosMapping.model_validate(tomllib.loads(text))
