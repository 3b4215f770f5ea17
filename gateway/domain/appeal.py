"""An appeal (обращение): a call taken by a hotline operator, and its life until the answer
reaches the citizen."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from gateway.domain.route import Route


class Urgency(StrEnum):
    URGENT = "urgent"  # «Срочно» [002: 2.8.7]
    CONTROL = "control"  # «Контроль»


class AnswerChannel(StrEnum):
    """How the applicant wants the answer."""

    PHONE = "phone"
    EMAIL = "email"
    POST = "post"


class DeliveryChannel(StrEnum):
    """How the answer actually reached the applicant (ПОС's confirmation channels)."""

    PHONE = "phone"
    EMAIL = "email"
    POST = "post"
    HAND = "hand"


class AppealStatus(StrEnum):
    ACCEPTED = "accepted"  # stored and queued
    JOURNALED = "journaled"  # informational: answered on the spot, not forwarded [002: 2.8.2]
    REGISTERED = "registered"  # the target system holds it
    IN_PROGRESS = "in_progress"  # the target system is working on it
    ANSWER_READY = "answer_ready"  # «Ответ готов к передаче»
    ANSWER_SENT = "answer_sent"  # «Ответ отправлен заявителю» (ПОС e-mailed it itself)
    DELIVERED = "delivered"  # «Ответ передан заявителю»
    REJECTED = "rejected"  # the target system refused it, with a reason
    FAILED = "failed"  # forwarding failed for good (dead letter); needs an admin


_ALLOWED: dict[AppealStatus, frozenset[AppealStatus]] = {
    AppealStatus.ACCEPTED: frozenset(
        {AppealStatus.REGISTERED, AppealStatus.FAILED, AppealStatus.REJECTED,
         AppealStatus.IN_PROGRESS, AppealStatus.ANSWER_READY}
    ),
    AppealStatus.REGISTERED: frozenset(
        {AppealStatus.IN_PROGRESS, AppealStatus.ANSWER_READY, AppealStatus.ANSWER_SENT,
         AppealStatus.DELIVERED, AppealStatus.REJECTED}
    ),
    AppealStatus.IN_PROGRESS: frozenset(
        {AppealStatus.ANSWER_READY, AppealStatus.ANSWER_SENT, AppealStatus.DELIVERED,
         AppealStatus.REJECTED}
    ),
    AppealStatus.ANSWER_READY: frozenset(
        {AppealStatus.ANSWER_SENT, AppealStatus.DELIVERED, AppealStatus.IN_PROGRESS}
    ),
    AppealStatus.ANSWER_SENT: frozenset({AppealStatus.DELIVERED}),
    AppealStatus.FAILED: frozenset({AppealStatus.ACCEPTED, AppealStatus.REGISTERED}),
    AppealStatus.DELIVERED: frozenset(),
    AppealStatus.REJECTED: frozenset(),
    AppealStatus.JOURNALED: frozenset(),
}

OPEN_STATUSES: frozenset[AppealStatus] = frozenset(
    {AppealStatus.ACCEPTED, AppealStatus.REGISTERED, AppealStatus.IN_PROGRESS,
     AppealStatus.ANSWER_READY, AppealStatus.FAILED}
)


class TransitionNotAllowed(Exception):
    def __init__(self, current: AppealStatus, wanted: AppealStatus) -> None:
        super().__init__(f"status {current.value} cannot change to {wanted.value}")
        self.current = current
        self.wanted = wanted


def can_transition(current: AppealStatus, wanted: AppealStatus) -> bool:
    return current == wanted or wanted in _ALLOWED[current]


@dataclass(frozen=True, slots=True)
class Applicant:
    """Personal data (152-ФЗ): never logged, never in metrics or /status."""

    last_name: str
    first_name: str
    middle_name: str | None = None
    phone: str | None = None  # E.164
    email: str | None = None
    postal_address: str | None = None

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.last_name, self.first_name, self.middle_name) if p)


@dataclass(frozen=True, slots=True)
class StatusChange:
    status: AppealStatus
    at: datetime
    source: str  # "intake", "pos", "delo", "email", "operator", "admin", "sla"
    note: str | None = None  # no personal data


@dataclass(frozen=True, slots=True)
class Appeal:
    id: str
    hotline: str
    journal_id: str
    received_at: datetime
    operator: str
    applicant: Applicant
    problem_address: str | None  # the problem's address, not the applicant's [003]
    topic: str
    summary: str
    repeat: bool
    urgency: Urgency
    answer_channel: AnswerChannel | None  # None: informational, answered on the spot
    informational: bool
    status: AppealStatus
    route: Route
    due_at: datetime | None
    feedback_due_at: datetime | None = None
    history: tuple[StatusChange, ...] = field(default_factory=tuple)

    def moved_to(self, wanted: AppealStatus, at: datetime, source: str,
                 note: str | None = None) -> Appeal:
        """The appeal after a status change; the same appeal when nothing changes."""
        if wanted == self.status:
            return self
        if not can_transition(self.status, wanted):
            raise TransitionNotAllowed(self.status, wanted)
        return replace(
            self, status=wanted, history=(*self.history, StatusChange(wanted, at, source, note))
        )
