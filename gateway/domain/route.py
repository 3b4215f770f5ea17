"""Where a call goes and to whom: the value routing produces and adapters consume."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class TargetSystem(StrEnum):
    POS = "pos"
    DELO = "delo"
    EMAIL = "email"
    HEALTH = "health"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class PosTarget:
    """ПОС addressing: category and subcategory decide which organizations may receive."""

    category_id: int
    subcategory_id: int
    organization_id: int
    text_prefix: str = "Центр мониторинга 112"


@dataclass(frozen=True, slots=True)
class DeloTarget:
    """«Дело» addressing: rubric, executor department and controller (DUE codes)."""

    rubric_code: str
    executor_due: str
    controller_due: str


@dataclass(frozen=True, slots=True)
class EmailTarget:
    """Responsible persons of every competent authority [004: 10.1]."""

    authority: str
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Route:
    """The routing decision stored on the appeal at intake."""

    system: TargetSystem
    executor: str
    pos: PosTarget | None = None
    delo: DeloTarget | None = None
    email: tuple[EmailTarget, ...] = field(default_factory=tuple)
    deadline_policy: str = "default"

    @classmethod
    def none(cls, executor: str = "") -> Route:
        return cls(system=TargetSystem.NONE, executor=executor)
