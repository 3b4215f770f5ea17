"""The JSON shapes the gateway's own API answers with (contracts/gateway-api.md).

Each is built in one place from what the services return, and written with
`model_dump(mode="json")`. Times are ISO 8601 with offset, in the hotline's own zone, as
its operators read time. An appeal is written in one place (`AppealOut`, which the single
appeal extends); the intake answer and the delivery worklist reuse its parts (`RouteOut`,
`ApplicantOut`, `ExternalRefOut`). The constructors take the domain's `Appeal`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, PlainSerializer

from gateway.domain.appeal import Appeal, Applicant, DeliveryRecord, DeliveryResult
from gateway.services.delivery_desk import AttemptResult
from gateway.services.unit_of_work import AppealPage, AttachmentInfo, UnmatchedMail

# isoformat() exactly (+00:00, never Z): the answers keep the spelling they always had.
Time = Annotated[datetime, PlainSerializer(datetime.isoformat, return_type=str)]


def _local(value: datetime | None, zone: tzinfo | None) -> datetime | None:
    if value is None or zone is None:
        return value
    return value.astimezone(zone)


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class RouteOut(_View):
    system: str
    executor: str
    due_at: Time | None

    @classmethod
    def of(cls, appeal: Appeal, zone: tzinfo) -> RouteOut:
        return cls(system=appeal.route.system.value, executor=appeal.route.executor,
                   due_at=_local(appeal.due_at, zone))


class IntakeOut(_View):
    """POST /api/v1/calls: 201 for a new call, 200 with the same body for a repeat."""

    id: str
    status: Literal["accepted"] = "accepted"
    route: RouteOut

    @classmethod
    def of(cls, appeal: Appeal, zone: tzinfo) -> IntakeOut:
        return cls(id=appeal.id, route=RouteOut.of(appeal, zone))


class ApplicantOut(_View):
    """Personal data: only for roles allowed to see it (operator, delivery, admin)."""

    last_name: str
    first_name: str
    middle_name: str | None
    phone: str | None
    email: str | None
    postal_address: str | None

    @classmethod
    def of(cls, applicant: Applicant) -> ApplicantOut:
        return cls(last_name=applicant.last_name, first_name=applicant.first_name,
                   middle_name=applicant.middle_name, phone=applicant.phone,
                   email=applicant.email, postal_address=applicant.postal_address)


class ExternalRefOut(_View):
    system: str | None
    id: str | None
    number: str | None


class ExternalOut(ExternalRefOut):
    stage: str | None


class DeadlinesOut(_View):
    due_at: Time | None
    feedback_due_at: Time | None
    request_due_at: Time | None
    overdue: bool


class AnswerOut(_View):
    text: str
    ready_at: Time | None


class StatusChangeOut(_View):
    status: str
    at: Time
    source: str
    note: str | None


class DeliveryRecordOut(_View):
    channel: str
    outcome: str
    at: Time
    by: str | None
    source: str

    @classmethod
    def of(cls, record: DeliveryRecord, zone: tzinfo) -> DeliveryRecordOut:
        return cls(channel=record.channel, outcome=record.outcome,
                   at=_local(record.at, zone), by=record.by, source=record.source)


class AttachmentOut(_View):
    """A reply's attachment [002: 4.5]; downloaded at /api/v1/calls/{id}/attachments/{id}."""

    id: str
    filename: str
    content_type: str
    size: int

    @classmethod
    def of(cls, info: AttachmentInfo) -> AttachmentOut:
        return cls(id=info.id, filename=info.filename, content_type=info.content_type,
                   size=info.size)


class UnmatchedMailOut(_View):
    """A reply the mailbox reader left for an operator: GET /api/v1/mail/unmatched."""

    id: str
    received_at: Time
    reason: str
    sender: str
    subject: str
    text: str
    call_id: str | None  # the call it seemed to answer, when one was found
    attachments: list[AttachmentOut]

    @classmethod
    def of(cls, mail: UnmatchedMail, zone: tzinfo) -> UnmatchedMailOut:
        return cls(id=mail.id, received_at=mail.received_at.astimezone(zone),
                   reason=mail.reason, sender=mail.sender, subject=mail.subject,
                   text=mail.text, call_id=mail.appeal_id,
                   attachments=[AttachmentOut.of(a) for a in mail.attachments])


class AppealOut(_View):
    """An appeal as listed: GET /api/v1/calls."""

    id: str
    journal_id: str
    hotline: str
    received_at: Time
    operator: str
    applicant: ApplicantOut
    problem_address: str | None
    topic: str
    summary: str
    repeat: bool
    urgency: str
    answer_channel: str | None
    informational: bool
    status: str
    route: RouteOut
    external: ExternalOut | None
    deadlines: DeadlinesOut
    answer: AnswerOut | None
    created_at: Time
    updated_at: Time

    @classmethod
    def of(cls, appeal: Appeal, zone: tzinfo) -> AppealOut:
        return cls(**_appeal_fields(appeal, zone))


class AppealDetailOut(AppealOut):
    """One appeal with its status history and deliveries: GET /api/v1/calls/{id}."""

    history: list[StatusChangeOut]
    deliveries: list[DeliveryRecordOut]
    attachments: list[AttachmentOut] = []  # of officials' replies [002: 4.5]

    @classmethod
    def of(cls, appeal: Appeal, zone: tzinfo,
           attachments: tuple[AttachmentInfo, ...] = ()) -> AppealDetailOut:
        return cls(
            **_appeal_fields(appeal, zone),
            attachments=[AttachmentOut.of(a) for a in attachments],
            history=[StatusChangeOut(status=c.status.value, at=_local(c.at, zone),
                                     source=c.source, note=c.note)
                     for c in appeal.history],
            deliveries=[DeliveryRecordOut.of(d, zone) for d in appeal.deliveries],
        )


def _external(appeal: Appeal) -> ExternalOut | None:
    ref = appeal.external
    if ref is None:
        return None
    return ExternalOut(system=ref.system, id=ref.id, number=ref.number, stage=ref.stage)


def _appeal_fields(appeal: Appeal, zone: tzinfo) -> dict[str, Any]:
    return {
        "id": appeal.id,
        "journal_id": appeal.journal_id,
        "hotline": appeal.hotline,
        "received_at": _local(appeal.received_at, zone),
        "operator": appeal.operator,
        "applicant": ApplicantOut.of(appeal.applicant),
        "problem_address": appeal.problem_address,
        "topic": appeal.topic,
        "summary": appeal.summary,
        "repeat": appeal.repeat,
        "urgency": appeal.urgency.value,
        "answer_channel": appeal.answer_channel.value if appeal.answer_channel else None,
        "informational": appeal.informational,
        "status": appeal.status.value,
        "route": RouteOut.of(appeal, zone),
        "external": _external(appeal),
        "deadlines": DeadlinesOut(
            due_at=_local(appeal.due_at, zone),
            feedback_due_at=_local(appeal.feedback_due_at, zone),
            request_due_at=_local(appeal.request_due_at, zone),
            overdue=appeal.overdue,
        ),
        "answer": AnswerOut(text=appeal.answer_text, ready_at=_local(appeal.answer_ready_at, zone))
        if appeal.answer_text is not None else None,
        "created_at": _local(appeal.created_at, zone),
        "updated_at": _local(appeal.updated_at, zone),
    }


class AppealPageOut(_View):
    items: list[AppealOut]
    next_cursor: str | None

    @classmethod
    def of(cls, page: AppealPage, zone_of: Callable[[str], tzinfo]) -> AppealPageOut:
        return cls(items=[AppealOut.of(a, zone_of(a.hotline)) for a in page.items],
                   next_cursor=page.next_cursor)


class ReadyOut(_View):
    """An answer waiting to reach the applicant: an item of GET /api/v1/deliveries."""

    id: str
    journal_id: str
    external: ExternalRefOut
    answer_text: str | None
    answer_ready_at: Time | None
    applicant: ApplicantOut
    answer_channel: str | None
    due_at: Time | None
    attempts: int
    next_attempt_at: Time | None
    needs_supervisor: bool

    @classmethod
    def of(cls, appeal: Appeal, zone: tzinfo) -> ReadyOut:
        ref = appeal.external
        return cls(
            id=appeal.id,
            journal_id=appeal.journal_id,
            external=ExternalRefOut(system=ref.system if ref else None,
                                    id=ref.id if ref else None,
                                    number=ref.number if ref else None),
            answer_text=appeal.answer_text,
            answer_ready_at=_local(appeal.answer_ready_at, zone),
            applicant=ApplicantOut.of(appeal.applicant),
            answer_channel=appeal.answer_channel.value if appeal.answer_channel else None,
            due_at=_local(appeal.feedback_due_at or appeal.due_at, zone),
            attempts=appeal.callback_attempts,
            next_attempt_at=_local(appeal.next_callback_at, zone),
            needs_supervisor=appeal.needs_supervisor,
        )


class ReadyListOut(_View):
    items: list[ReadyOut]


class AttemptOut(_View):
    """POST /api/v1/calls/{id}/attempts: the failed try counted, and the next one planned."""

    id: str
    attempts: int
    next_attempt_at: Time | None
    next_attempt_by: Time | None
    needs_supervisor: bool

    @classmethod
    def of(cls, appeal_id: str, result: AttemptResult, zone: tzinfo) -> AttemptOut:
        return cls(id=appeal_id, attempts=result.attempts,
                   next_attempt_at=_local(result.next_attempt_at, zone),
                   next_attempt_by=_local(result.next_attempt_by, zone),
                   needs_supervisor=result.needs_supervisor)


class DeliveryOut(_View):
    """POST /api/v1/calls/{id}/delivery: the appeal's state once the delivery is recorded."""

    id: str
    status: str
    channel: str | None
    delivered_at: Time | None
    result: str

    @classmethod
    def of(cls, appeal: Appeal, result: DeliveryResult, zone: tzinfo) -> DeliveryOut:
        return cls(id=appeal.id, status=appeal.status.value, channel=appeal.delivery_channel,
                   delivered_at=_local(appeal.delivered_at, zone), result=result.value)
