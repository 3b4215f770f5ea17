"""Where a call goes and to whom: the value routing produces and adapters consume."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
    # Why the call went elsewhere than its rule says (no personal data); kept in history.
    note: str | None = None

    @classmethod
    def none(cls, executor: str = "") -> Route:
        return cls(system=TargetSystem.NONE, executor=executor)


NO_EPGU_NOTE = ("no epguId: ПОС (external appeal system) takes appeals only with the caller's "
                "Госуслуги id; sent to the fallback")


@dataclass(frozen=True, slots=True)
class EpguFallback:
    """Where a ПОС-bound call without the caller's Госуслуги id goes instead.

    ПОС's EAS dialect requires `applicant.epguId` and nothing public sends an appeal
    without it (shared/contracts/pos-eas.md §4.1, §9.5): the domain keeps the id optional,
    the router keeps such calls away from ПОС, and the reason stays in the history.
    """

    route: Route  # e-mail or «Дело», with its own deadline policy

    def apply(self, route: Route, has_epgu_id: bool) -> Route:
        if route.system is not TargetSystem.POS or has_epgu_id:
            return route
        return replace(self.route, note=NO_EPGU_NOTE)
