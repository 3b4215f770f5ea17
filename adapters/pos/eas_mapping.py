"""ПОС EAS event codes → our AppealStatus, loaded from `config/pos_eas_mapping.toml`.

EAS reports a history of event codes, not stages (pos-eas.md §5); which codes exist is
known only from one integrator's table, so the meaning of each is data a region edits.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from adapters.pos.mapping import _check_reportable
from gateway.domain.appeal import AppealStatus

DEFAULT_RESOURCE = "pos_eas_mapping.toml"


class EasMapping(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    codes: dict[str, AppealStatus] = Field(min_length=1)
    terminal: frozenset[str] = frozenset({"SEND_RESPONSE", "MODERATION_DECLINE"})
    unknown_code: AppealStatus | None = AppealStatus.IN_PROGRESS

    _validate_codes = field_validator("codes")(_check_reportable)

    @field_validator("unknown_code", mode="before")
    @classmethod
    def _empty_means_skip(cls, value: object) -> object:
        return None if value == "" else value

    def status_for(self, code: str) -> AppealStatus | None:
        return self.codes.get(code, self.unknown_code)

    def is_known(self, code: str) -> bool:
        return code in self.codes

    def is_terminal(self, code: str) -> bool:
        return code in self.terminal


def load_eas_mapping(path: str | Path | None = None) -> EasMapping:
    if path is None:
        text = resources.files("config").joinpath(DEFAULT_RESOURCE).read_text("utf-8")
    else:
        text = Path(path).read_text("utf-8")
    return EasMapping.model_validate(tomllib.loads(text))
