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

from gateway.domain.appeal import (
    Appeal,
    Applicant,
    DeliveryRecord,
    DeliveryResult,
    InterimAnswer,
)
from gateway.domain.callbacks import CallbackTask
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
    # Every kind of missed deadline: answer, feedback, request, registration, callback.
    overdue_kinds: list[str]
    # [001: 13] the latest moment of the next callback try.
    callback_due_at: Time | None
    # [002: 2.8.10] reminded that an interim answer is due, and none given since.
    interim_due: bool
    interim_reminded_at: Time | None
    interim_given_at: Time | None
    interim_expected_at: Time | None

    @classmethod
    def of(cls, appeal: Appeal, zone: tzinfo) -> DeadlinesOut:
        return cls(
            due_at=_local(appeal.due_at, zone),
            feedback_due_at=_local(appeal.feedback_due_at, zone),
            request_due_at=_local(appeal.request_due_at, zone),
            overdue=appeal.overdue,
            overdue_kinds=[k.value for k in appeal.overdue_kinds()],
            callback_due_at=_local(appeal.callback_due_at, zone),
            interim_due=appeal.interim_due(),
            interim_reminded_at=_local(appeal.interim_reminded_at, zone),
            interim_given_at=_local(appeal.interim_given_at, zone),
            interim_expected_at=_local(appeal.interim_expected_at, zone),
        )


class JournalOut(_View):
    """[001: appendix 2] «Итог консультации», «Результат рассмотрения», «Комментарий»."""

    consultation_outcome: str | None
    review_result: str | None
    comment: str | None


class InterimOut(_View):
    reason: str
    expected_at: Time
    channel: str
    at: Time
    by: str | None

    @classmethod
    def of(cls, interim: InterimAnswer, zone: tzinfo) -> InterimOut:
        return cls(reason=interim.reason, expected_at=_local(interim.expected_at, zone),
                   channel=interim.channel, at=_local(interim.at, zone), by=interim.by)


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
    journal: JournalOut
    callback_attempts: int
    needs_supervisor: bool
    resolution: str | None
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
    interims: list[InterimOut]

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
            interims=[InterimOut.of(i, zone) for i in appeal.interims],
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
        "deadlines": DeadlinesOut.of(appeal, zone),
        "journal": JournalOut(
            consultation_outcome=(appeal.journal.consultation_outcome.value
                                  if appeal.journal.consultation_outcome else None),
            review_result=(appeal.journal.review_result.value
                           if appeal.journal.review_result else None),
            comment=appeal.journal.comment),
        "callback_attempts": appeal.callback_attempts,
        "needs_supervisor": appeal.needs_supervisor,
        "resolution": appeal.resolution,
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
    status: str
    # [001: 13] by when the next callback must be made (the first: 12:00 of the next
    # working day), known before the first try; and whether one was late.
    callback_due_at: Time | None
    callback_late: bool

    @classmethod
    def of(cls, appeal: Appeal, zone: tzinfo,
           callback_due_at: datetime | None = None) -> ReadyOut:
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
            status=appeal.status.value,
            callback_due_at=_local(appeal.callback_due_at or callback_due_at, zone),
            callback_late=appeal.callback_late,
        )


class InterimDueOut(_View):
    """[002: 2.8.10] an answer that will not come in time: tell the applicant why and when."""

    id: str
    journal_id: str
    due_at: Time | None
    interim_reminded_at: Time | None
    applicant: ApplicantOut
    answer_channel: str | None

    @classmethod
    def of(cls, appeal: Appeal, zone: tzinfo) -> InterimDueOut:
        return cls(id=appeal.id, journal_id=appeal.journal_id,
                   due_at=_local(appeal.due_at, zone),
                   interim_reminded_at=_local(appeal.interim_reminded_at, zone),
                   applicant=ApplicantOut.of(appeal.applicant),
                   answer_channel=appeal.answer_channel.value if appeal.answer_channel else None)


class ReadyListOut(_View):
    items: list[ReadyOut]
    interim_due: list[InterimDueOut] = []


class CallbackTaskOut(_View):
    """An item of GET /api/v1/callbacks: a missed call, or an answer to give by phone."""

    kind: Literal["missed_call", "answer"]
    id: str
    hotline: str
    phone: str | None
    at: Time | None  # the missed call's time, or when the answer became ready
    voicemail: str | None
    due_at: Time | None  # [001: 13] 12:00 of the next working day
    attempts: int
    next_attempt_at: Time | None
    next_attempt_by: Time | None
    late: bool
    state: str

    @classmethod
    def of_task(cls, task: CallbackTask, zone: tzinfo) -> CallbackTaskOut:
        return cls(kind="missed_call", id=task.id, hotline=task.hotline, phone=task.phone,
                   at=_local(task.missed_at, zone), voicemail=task.voicemail,
                   due_at=_local(task.due_at, zone), attempts=len(task.tries),
                   next_attempt_at=_local(task.next_attempt_at, zone),
                   next_attempt_by=_local(task.next_attempt_by, zone), late=task.late,
                   state=task.state.value)

    @classmethod
    def of_answer(cls, appeal: Appeal, due: datetime | None, zone: tzinfo) -> CallbackTaskOut:
        return cls(kind="answer", id=appeal.id, hotline=appeal.hotline,
                   phone=appeal.applicant.phone, at=_local(appeal.answer_ready_at, zone),
                   voicemail=None, due_at=_local(due, zone),
                   attempts=appeal.callback_attempts,
                   next_attempt_at=_local(appeal.next_callback_at, zone),
                   next_attempt_by=_local(appeal.callback_due_at or due, zone),
                   late=appeal.callback_late,
                   state="needs_supervisor" if appeal.needs_supervisor else "open")


class CallbackListOut(_View):
    items: list[CallbackTaskOut]


class MissedCallOut(_View):
    """POST /api/v1/missed-calls: 201 new, 200 the same missed call again."""

    id: str
    due_at: Time

    @classmethod
    def of(cls, task: CallbackTask, zone: tzinfo) -> MissedCallOut:
        return cls(id=task.id, due_at=_local(task.due_at, zone))


class TaskAttemptOut(_View):
    id: str
    attempts: int
    state: str
    next_attempt_at: Time | None
    next_attempt_by: Time | None

    @classmethod
    def of(cls, task: CallbackTask, zone: tzinfo) -> TaskAttemptOut:
        return cls(id=task.id, attempts=len(task.tries), state=task.state.value,
                   next_attempt_at=_local(task.next_attempt_at, zone),
                   next_attempt_by=_local(task.next_attempt_by, zone))


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
