"""What happened to an appeal, as the appeal itself reports it.

The appeal's methods record these; the unit of work turns them, in one place, into the
history, delivery, audit and outbox rows committed with the appeal. An event carries no
personal data: its `audit_detail` goes to the audit log as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from gateway.domain.status import AppealStatus


@dataclass(frozen=True, slots=True)
class Event:
    appeal_id: str
    at: datetime
    actor: str  # a role or a component ("operator", "pos", "sla"), never a person's name

    # The audit log's name for it; None: the history or the appeal row records it enough.
    audit_action: ClassVar[str | None] = None

    def audit_detail(self) -> dict[str, Any] | None:
        return None


@dataclass(frozen=True, slots=True)
class StatusChanged(Event):
    status: AppealStatus
    note: str | None = None  # no personal data


@dataclass(frozen=True, slots=True)
class CallAccepted(Event):
    """Stored: for a forwarded call the outbox rows that carry it out go in the same commit."""

    audit_action: ClassVar[str | None] = "call.accepted"
    route_system: str
    hotline: str
    registered_late: bool = False  # [001: 15] later than an hour after the call

    def audit_detail(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"route": self.route_system, "hotline": self.hotline}
        if self.registered_late:
            detail["registered_late"] = True
        return detail


@dataclass(frozen=True, slots=True)
class Registered(Event):
    audit_action: ClassVar[str | None] = "call.registered"
    system: str
    external_id: str
    number: str | None

    def audit_detail(self) -> dict[str, Any]:
        return {"external_id": self.external_id, "number": self.number}


@dataclass(frozen=True, slots=True)
class RequestSent(Event):
    """[004: 10.1] the e-mail request went to one competent authority."""

    audit_action: ClassVar[str | None] = "email.request_sent"
    recipients: int

    def audit_detail(self) -> dict[str, Any]:
        return {"recipients": self.recipients}


@dataclass(frozen=True, slots=True)
class RemoteDetailsChanged(Event):
    """The target system's stage, answer text or planned date changed; no status change."""


@dataclass(frozen=True, slots=True)
class AnswerReady(Event):
    """«Ответ готов к передаче». `mail_to_applicant`: the gateway sends the answer letter."""

    audit_action: ClassVar[str | None] = "answer.ready"
    mail_to_applicant: bool = False


@dataclass(frozen=True, slots=True)
class Delivered(Event):
    """«Ответ передан заявителю». `confirm_in`: the target system still has to be told."""

    audit_action: ClassVar[str | None] = "delivery.recorded"
    channel: str
    delivered_at: datetime
    by: str | None
    source: str
    confirm_in: str | None = None

    def audit_detail(self) -> dict[str, Any]:
        return {"channel": self.channel, "source": self.source,
                "delivered_at": self.delivered_at.isoformat(), "by": self.by}


@dataclass(frozen=True, slots=True)
class DeliveryNotApplied(Event):
    """A target system reported a delivery the appeal cannot take; a person looks at it."""

    audit_action: ClassVar[str | None] = "delivery.not_applied"
    system: str
    reason: str

    def audit_detail(self) -> dict[str, Any]:
        return {"system": self.system, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class CallbackFailed(Event):
    """[001: 13] a callback nobody answered."""

    audit_action: ClassVar[str | None] = "delivery.attempt_failed"
    outcome: str
    tried_at: datetime
    attempts: int
    needs_supervisor: bool

    def audit_detail(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "at": self.tried_at.isoformat(),
                "attempts": self.attempts, "needs_supervisor": self.needs_supervisor}


@dataclass(frozen=True, slots=True)
class MarkedOverdue(Event):
    audit_action: ClassVar[str | None] = "sla.overdue"
    due_at: datetime

    def audit_detail(self) -> dict[str, Any]:
        return {"due_at": self.due_at.isoformat()}


@dataclass(frozen=True, slots=True)
class MarkedLate(Event):
    """A deadline besides the answer's was missed: feedback [001: 21], the request
    [002: 2.8.9], a callback [001: 13]."""

    audit_action: ClassVar[str | None] = "sla.late"
    due_at: datetime
    kind: str  # OverdueKind

    def audit_detail(self) -> dict[str, Any]:
        return {"due_at": self.due_at.isoformat(), "kind": self.kind}


@dataclass(frozen=True, slots=True)
class CallbackScheduled(Event):
    """[001: 13] an answer to give by phone: the first try's latest moment is known."""

    due_at: datetime


@dataclass(frozen=True, slots=True)
class JournalUpdated(Event):
    """The journal's own fields [001: appendix 2]; the comment is not audited (it may name
    people)."""

    audit_action: ClassVar[str | None] = "journal.updated"
    consultation_outcome: str | None
    review_result: str | None

    def audit_detail(self) -> dict[str, Any]:
        return {"consultation_outcome": self.consultation_outcome,
                "review_result": self.review_result}


@dataclass(frozen=True, slots=True)
class InterimGiven(Event):
    """[002: 2.8.10] an interim answer reached the applicant. `answer` is the record the
    unit of work stores (its reason may hold personal data, so it is not audited)."""

    audit_action: ClassVar[str | None] = "interim.recorded"
    channel: str
    given_at: datetime
    expected_at: datetime
    system: str | None
    answer: Any = None  # gateway.domain.appeal.InterimAnswer

    def audit_detail(self) -> dict[str, Any]:
        return {"channel": self.channel, "at": self.given_at.isoformat(),
                "expected_at": self.expected_at.isoformat()}


@dataclass(frozen=True, slots=True)
class Resolved(Event):
    """A supervisor's decision: close_unreachable, reschedule, reroute, close_rejected."""

    audit_action: ClassVar[str | None] = "supervisor.resolved"
    action: str
    reroutes: int = 0

    def audit_detail(self) -> dict[str, Any]:
        return {"action": self.action}


@dataclass(frozen=True, slots=True)
class InterimAnswerDue(Event):
    """[002: 2.8.10] the answer will not come in time: an interim answer is due."""

    audit_action: ClassVar[str | None] = "sla.interim_answer_due"
    due_at: datetime

    def audit_detail(self) -> dict[str, Any]:
        return {"due_at": self.due_at.isoformat()}


@dataclass(frozen=True, slots=True)
class ForwardingFailed(Event):
    """An action that carries the appeal out was given up (a dead letter)."""

    audit_action: ClassVar[str | None] = "forwarding.failed"
    action: str
    reason: str  # written by adapters without personal data

    def audit_detail(self) -> dict[str, Any]:
        return {"action": self.action, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class ForwardingRedriven(Event):
    """An admin re-drove the dead action: the appeal waits for forwarding again."""

    audit_action: ClassVar[str | None] = "forwarding.redriven"
    action: str

    def audit_detail(self) -> dict[str, Any]:
        return {"action": self.action}


@dataclass(frozen=True, slots=True)
class AnswerReceived(Event):
    """An official's answer reached the contact centre: a reply letter, or by phone, paper
    or fax recorded by an operator [004: 10.2]."""

    audit_action: ClassVar[str | None] = "answer.received"
    source: str  # email | phone | paper | fax | other
    received_at: datetime

    def audit_detail(self) -> dict[str, Any]:
        return {"source": self.source, "received_at": self.received_at.isoformat()}


@dataclass(frozen=True, slots=True)
class RequestExtended(Event):
    """[004: 10.3] the official asked for more time, with reasons; the term moved."""

    audit_action: ClassVar[str | None] = "request.extended"
    until: datetime
    letter_ref: str | None = None

    def audit_detail(self) -> dict[str, Any]:
        return {"until": self.until.isoformat(), "letter_ref": self.letter_ref}


@dataclass(frozen=True, slots=True)
class RequestAnswerLate(Event):
    """[004: 10.2] the official's answer to the request is late (overdue kind "request");
    a reminder letter goes to every authority the request went to."""

    audit_action: ClassVar[str | None] = "request.answer_late"
    due_at: datetime

    def audit_detail(self) -> dict[str, Any]:
        return {"due_at": self.due_at.isoformat()}
