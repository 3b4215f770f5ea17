"""An appeal (обращение): a call taken by a hotline operator, and its life until the answer
reaches the citizen.

Every rule about how an appeal moves lives on the `Appeal` itself: its methods change it
and record what happened as events (`gateway.domain.events`), which the unit of work
turns into history, audit and outbox rows in the same commit. Services only load, call
one method, and commit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import TYPE_CHECKING

from gateway.domain import events as ev
from gateway.domain.callbacks import CallbackTooSoon, check_spacing
from gateway.domain.ports import ExternalRef, ExternalUpdate
from gateway.domain.route import Route
from gateway.domain.status import (
    READY_FOR_DELIVERY,
    REGISTERABLE,
    UNANSWERED,
    UNDELIVERED,
    AppealStatus,
    TransitionNotAllowed,
    can_transition,
    is_step_back,
)
from gateway.errors import GatewayError

__all__ = [
    "AnswerChannel",
    "AnswerClosed",
    "AnswerNotReady",
    "Appeal",
    "AppealStatus",
    "Applicant",
    "CallbackTooSoon",
    "CallbacksExhausted",
    "ConsultationOutcome",
    "Delivery",
    "DeliveryChannel",
    "DeliveryConflict",
    "DeliveryRecord",
    "DeliveryResult",
    "ExtensionLimit",
    "InterimAnswer",
    "JournalEntry",
    "JournalRefused",
    "NoRequestSent",
    "OverdueKind",
    "ResolveRefused",
    "ReviewResult",
    "StatusChange",
    "TransitionNotAllowed",
    "Urgency",
    "can_transition",
]

# Past these only a supervisor moves an appeal on.
_SUPERVISOR_DECIDES = frozenset({AppealStatus.REJECTED, AppealStatus.CLOSED})

# An extension moves the deadline to the end of the executor's new planned day.
PLANNED_DAY_ENDS_AT = time(18, 0)


class Urgency(StrEnum):
    URGENT = "urgent"  # «Срочно» [002: 2.8.7]
    CONTROL = "control"  # «Контроль»


class AnswerChannel(StrEnum):
    """How the applicant wants the answer."""

    PHONE = "phone"
    EMAIL = "email"
    POST = "post"


class DeliveryChannel(StrEnum):
    """How the answer actually reached the applicant (ПОС's confirmation channels).

    UNKNOWN: a target system reported the delivery without saying how; never chosen by
    a person.
    """

    PHONE = "phone"
    EMAIL = "email"
    POST = "post"
    HAND = "hand"
    UNKNOWN = "unknown"


class ConsultationOutcome(StrEnum):
    """«Итог консультации» [001: appendix 2]."""

    WITHIN_POWERS = "within_powers"  # «консультация в рамках полномочий»
    REFERENCE_INFO = "reference_info"  # «предоставлена справочная информация»
    FORWARDED = "forwarded"  # «вопрос передан в отдел, организацию»


class ReviewResult(StrEnum):
    """«Результат рассмотрения сообщения» [001: appendix 2]."""

    SATISFIED = "satisfied"  # «ответ дан, гражданин удовлетворен»
    EXPLAINED = "explained"  # «даны разъяснения»
    CALLBACK_NEEDED = "callback_needed"  # «…необходимо перезвонить» + date and time
    UNSATISFIED = "unsatisfied"  # «ответ дан, но гражданин не удовлетворён» + the reason
    NOT_REACHED = "not_reached"  # «недозвон/телефон недоступен/занято» + date and time
    OTHER = "other"  # «иное» + a comment


# [001: appendix 2] «обязательно заполнение поля «Комментарий»» for these four …
COMMENT_REQUIRED = frozenset({ReviewResult.CALLBACK_NEEDED, ReviewResult.UNSATISFIED,
                              ReviewResult.NOT_REACHED, ReviewResult.OTHER})
# … «с указанием даты и времени» for these two.
COMMENT_NEEDS_DATETIME = frozenset({ReviewResult.CALLBACK_NEEDED, ReviewResult.NOT_REACHED})


class OverdueKind(StrEnum):
    """Which deadline was missed; each is counted and listed on its own."""

    ANSWER = "answer"  # the answer's control term [002: 2.8.7]
    FEEDBACK = "feedback"  # feedback to the citizen within 3 working days [001: 21]
    REQUEST = "request"  # the information request [002: 2.8.9], [004: 10]
    REGISTRATION = "registration"  # journaled later than 1 hour after the call [001: 15]
    CALLBACK = "callback"  # a callback try later than the rule allows [001: 13]


class DeliveryResult(StrEnum):
    RECORDED = "recorded"
    ALREADY_RECORDED = "already_recorded"


class AnswerNotReady(GatewayError):
    def __init__(self, status: AppealStatus) -> None:
        super().__init__(status.value)
        self.status = status


class DeliveryConflict(GatewayError):
    """Delivered already, by another channel."""

    def __init__(self, recorded: str) -> None:
        super().__init__(recorded)
        self.recorded = recorded


class AnswerClosed(GatewayError):
    """An answer for an appeal that is past taking one (delivered, rejected, journaled)."""

    def __init__(self, status: AppealStatus) -> None:
        super().__init__(status.value)
        self.status = status


class NoRequestSent(GatewayError):
    """An extension for an appeal whose request to an official has not gone out."""


class ExtensionLimit(GatewayError):
    """[004: 10.3] the new term would pass 5 working days from the request."""

    def __init__(self, latest: datetime) -> None:
        super().__init__(latest.isoformat())
        self.latest = latest


class CallbacksExhausted(GatewayError):
    """[001: 13] three tries in all; after that the supervisor decides, not another retry."""

    def __init__(self, attempts: int) -> None:
        super().__init__(attempts)
        self.attempts = attempts


class JournalRefused(GatewayError):
    """A journal field breaks 001 appendix 2 (a «Комментарий» missing or without a date)."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(", ".join(sorted(fields)))
        self.fields = fields


class ResolveRefused(GatewayError):
    """The supervisor's action does not fit the appeal's state."""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """The journal's own fields [001: appendix 2]; a comment may hold personal data."""

    consultation_outcome: ConsultationOutcome | None = None
    review_result: ReviewResult | None = None
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class InterimAnswer:
    """[002: 2.8.10] the applicant told the reason of the delay and the expected date."""

    reason: str
    expected_at: datetime
    channel: str
    at: datetime
    by: str | None


@dataclass(frozen=True, slots=True)
class Applicant:
    """Personal data (152-ФЗ): never logged, never in metrics or /status."""

    last_name: str
    first_name: str
    middle_name: str | None = None
    phone: str | None = None  # E.164
    email: str | None = None
    postal_address: str | None = None
    # The caller's Госуслуги (ЕСИА) account id: optional here, required by ПОС's EAS
    # dialect (pos-eas.md §4.1), which the router keeps calls without it away from.
    epgu_id: int | None = None

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
class Delivery:
    """A confirmation that the answer reached the applicant, whoever saw it first."""

    channel: DeliveryChannel
    delivered_at: datetime
    by: str | None
    source: str  # gateway | pos | delo | email


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One try to pass the answer on: delivered, or a callback nobody answered."""

    channel: str
    outcome: str  # delivered | no_answer | busy | unreachable
    at: datetime
    by: str | None
    source: str


if TYPE_CHECKING:
    from gateway.domain.deadlines import CallbackAttempt

    # The next callback's window from the first miss and the failed tries [001: 13].
    CallbackPlanner = Callable[[datetime, Sequence[datetime]], CallbackAttempt | None]


@dataclass(slots=True, eq=False)
class Appeal:
    """The aggregate: change it only through its methods, which record events."""

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
    # [004: 10.2] when the official's answer to an e-mail request is due.
    request_due_at: datetime | None = None
    # When the first request actually went out (the extension limit counts from it
    # [004: 10.3]), and when the official was reminded of a late answer.
    request_sent_at: datetime | None = None
    request_reminded_at: datetime | None = None
    overdue: bool = False
    # [002: 2.8.10] when the "interim answer due" reminder went out.
    interim_reminded_at: datetime | None = None
    external: ExternalRef | None = None  # the record it became in the target system
    answer_text: str | None = None
    answer_ready_at: datetime | None = None
    delivered_at: datetime | None = None
    delivery_channel: str | None = None
    # [001: 13] failed callbacks so far, when the next is due, and the supervisor's flag.
    callback_attempts: int = 0
    next_callback_at: datetime | None = None
    needs_supervisor: bool = False
    # [001: 13] the latest moment for the next callback try (12:00 of the next working day
    # for the first, 60 minutes after a failed one for the others).
    callback_due_at: datetime | None = None
    # Missed deadlines besides the answer's own (`overdue`), each flagged once.
    feedback_overdue: bool = False
    request_overdue: bool = False
    registered_late: bool = False
    callback_late: bool = False
    # [002: 2.8.10] the last interim answer given, and the date it promised.
    interim_given_at: datetime | None = None
    interim_expected_at: datetime | None = None
    journal: JournalEntry = field(default_factory=JournalEntry)
    # The supervisor's reason for closing or re-routing (may name people: not logged).
    resolution: str | None = None
    reroutes: int = 0
    # A supervisor's reschedule starts a new series of callbacks from this moment.
    callbacks_from: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # What was loaded of the appeal's past: a bulk load leaves both empty.
    history: tuple[StatusChange, ...] = ()
    deliveries: tuple[DeliveryRecord, ...] = ()
    interims: tuple[InterimAnswer, ...] = ()
    events: list[ev.Event] = field(default_factory=list, repr=False)

    # -- intake ---------------------------------------------------------------------------

    def accepted(self, at: datetime, actor: str, *, registered_late: bool) -> None:
        """Just taken: its first status, and (if forwarded) the rows that forward it."""
        self._record_status(self.status, at, "intake", note=self.route.note)
        self.registered_late = registered_late  # [001: 15] flagged and counted
        self.events.append(ev.CallAccepted(
            self.id, at, actor, self.route.system.value, self.hotline, registered_late))

    # -- forwarding -----------------------------------------------------------------------

    @property
    def registration_key(self) -> str:
        """What the target system knows the record by: the appeal id, and after a
        supervisor's re-route a key of its own, so the new registration is a new record."""
        return self.id if not self.reroutes else f"{self.id}.r{self.reroutes}"

    def is_registered_in(self, system: str) -> bool:
        """The target system's record and its number are known: nothing left to register."""
        return (self.external is not None and self.external.system == system
                and self.external.number is not None)

    def knows_record_in(self, system: str) -> bool:
        return self.external is not None and self.external.system == system

    def register(self, ref: ExternalRef, at: datetime) -> None:
        """The target system holds it. Never moves it back: when the poller saw the record
        first, the status stays and only what the appeal lacked is added."""
        stage = ref.stage or (self.external.stage if self.external else None)
        self.external = replace(ref, stage=stage)
        if self.status in REGISTERABLE:
            self._move(AppealStatus.REGISTERED, at, ref.system, note=ref.number)
        self.events.append(ev.Registered(self.id, at, ref.system, ref.system, ref.id,
                                             ref.number))

    def request_sent(self, recipients: int, at: datetime,
                     answer_due: datetime | None = None) -> None:
        """[004: 10.1] a request went by e-mail; the first one registers the appeal.

        From now on the official's answer is due (`answer_due`, [004: 10.2]): with several
        authorities, by the latest of their terms.
        """
        if self.status is AppealStatus.ACCEPTED:
            self._move(AppealStatus.REGISTERED, at, "email", note="request sent")
        if self.request_sent_at is None:
            self.request_sent_at = at
        if answer_due is not None and (self.request_sent_at == at or self.request_due_at is None
                                       or answer_due > self.request_due_at):
            self.request_due_at = answer_due
        self.events.append(ev.RequestSent(self.id, at, "email", recipients))

    def answer_received(self, text: str, source: str, received_at: datetime, at: datetime,
                        actor: str) -> bool:
        """[004: 10.2] the official's answer came (by reply letter, phone, paper, fax).

        The appeal becomes ready for delivery. A second answer (another co-addressed
        authority [004: 10.1]) is added to the first while the appeal is not yet delivered;
        the same text again changes nothing (False). Delivered, rejected or journaled
        appeals take no answer: `AnswerClosed`.
        """
        text = text.strip()
        if not text:
            raise ValueError("an answer needs its text")
        if self.status in (AppealStatus.DELIVERED, AppealStatus.REJECTED,
                           AppealStatus.JOURNALED):
            raise AnswerClosed(self.status)
        if self.answer_text is not None and text in self.answer_text:
            return False
        self.events.append(ev.AnswerReceived(self.id, at, actor, source, received_at))
        if self.status in READY_FOR_DELIVERY:
            self.answer_text = f"{self.answer_text}\n\n{text}" if self.answer_text else text
            return True
        self.answer_text = text
        self.answer_ready_at = received_at
        if self.status is AppealStatus.FAILED:
            self._move(AppealStatus.REGISTERED, at, actor, note="answer received")
        self._move(AppealStatus.ANSWER_READY, at, actor, note=f"answer by {source}")
        self._answer_ready(at, actor)
        return True

    def extension_requested(self, until: datetime, reason: str, letter_ref: str | None,
                            latest: datetime | None, at: datetime, actor: str) -> None:
        """[004: 10.3] the official asks, with reasons, for more time. The new term never
        passes `latest` (5 working days from the request): beyond it `ExtensionLimit`."""
        if self.request_sent_at is None:
            raise NoRequestSent("no request to an official has been sent for this appeal")
        if self.status not in UNANSWERED:
            raise AnswerClosed(self.status)
        if not reason.strip():
            raise ValueError("an extension must state its reasons")
        if self.request_due_at is not None and until <= self.request_due_at:
            raise ValueError("the new term must be later than the current one")
        if latest is not None and until > latest:
            raise ExtensionLimit(latest)
        self.request_due_at = until
        self.request_reminded_at = None  # late again after the new term: remind again
        if self.due_at is not None and until > self.due_at:
            self.due_at = until
            self.overdue = False
        self._record_status(self.status, at, actor,
                            note=f"extension until {until.isoformat()}: {reason.strip()[:200]}")
        self.events.append(ev.RequestExtended(self.id, at, actor, until, letter_ref))

    def request_answer_late(self, now: datetime) -> bool:
        """[004: 10.2] the official's answer is past its term: remind once per term."""
        if self.request_reminded_at is not None or self.request_sent_at is None or (
                self.request_due_at is None or self.request_due_at >= now
                or self.status not in UNANSWERED):
            return False
        self.request_reminded_at = now
        self.events.append(ev.RequestAnswerLate(self.id, now, "sla", self.request_due_at))
        return True

    def forwarding_failed(self, action: str, reason: str, at: datetime, actor: str) -> None:
        """Forwarding was given up (a dead letter): an appeal not yet forwarded is failed,
        with the reason in its history, so it shows in ?status=failed for an admin."""
        if self.status is AppealStatus.ACCEPTED:
            self._move(AppealStatus.FAILED, at, actor, note=reason[:300])
        self.events.append(ev.ForwardingFailed(self.id, at, actor, action, reason[:300]))

    def forwarding_redriven(self, action: str, at: datetime, actor: str) -> None:
        """The dead action was re-driven: a failed appeal waits for forwarding again."""
        if self.status is AppealStatus.FAILED:
            self._move(AppealStatus.ACCEPTED, at, actor, note=f"re-driven: {action}")
        self.events.append(ev.ForwardingRedriven(self.id, at, actor, action))

    # -- what the target system says ------------------------------------------------------

    def apply_remote(self, change: ExternalUpdate, now: datetime, *, extends_deadline: bool,
                     zone: tzinfo) -> bool:
        """Applies one change from a poll or an export; False when it was known already.

        Idempotent: statuses only move forward, the answer text is stored when it differs,
        and a delivery is recorded once. Only systems whose planned date is an executor's
        extension (`extends_deadline`: «Дело») move our deadline; ПОС's planned completion
        is the platform's own term and must not hide a call going overdue.
        """
        system = change.system
        if self.reroutes and (self.external is None or self.external.system != system
                              or self.external.id != change.external_id):
            # After a re-route only the new record speaks; the abandoned one (which still
            # carries our id) and anything before the new registration are not applied.
            return False
        details = False
        if self.external is None:
            self.external = ExternalRef(system, change.external_id)
            details = True
        if self.external.stage != change.stage:
            self.external = replace(self.external, stage=change.stage)
            details = True
        if change.answer is not None and self.answer_text != change.answer.text:
            self.answer_text = change.answer.text
            self.answer_ready_at = change.answer.approved_at or change.updated_at
            details = True
        if change.planned_completion is not None and extends_deadline:
            planned = datetime.combine(change.planned_completion, PLANNED_DAY_ENDS_AT, zone)
            if self.due_at is None or planned > self.due_at:
                self.due_at = planned  # the executor's extension
                self.overdue = False
                self.mark_overdue(now)  # already past: overdue again, and recorded as such
                details = True

        wanted = change.status
        if self.status in _SUPERVISOR_DECIDES:
            # A rejection or a close is a supervisor's to undo, never a later report's.
            return self._touched(details, now, system)
        if wanted is AppealStatus.DELIVERED:
            return self._delivery_reported(change, now) or self._touched(details, now, system)
        if wanted != self.status and can_transition(self.status, wanted) and not is_step_back(
                self.status, wanted):
            self._move(wanted, now, system, note=change.stage)
            if wanted is AppealStatus.ANSWER_READY:
                self._answer_ready(now, system)
            return True
        return self._touched(details, now, system)

    def _delivery_reported(self, change: ExternalUpdate, now: datetime) -> bool:
        """A delivery seen upstream is a delivery: recorded with its row like any other
        (channel unknown when the source does not say)."""
        system = change.system
        reported = change.delivery
        delivery = Delivery(
            reported.channel if reported else DeliveryChannel.UNKNOWN,
            reported.confirmed_at if reported else change.updated_at,
            reported.confirmed_by if reported else None, system)
        if self.status not in READY_FOR_DELIVERY and self.status is not AppealStatus.DELIVERED \
                and can_transition(self.status, AppealStatus.ANSWER_READY):
            # Answered and delivered between two polls: pass through «Ответ готов к передаче».
            self._move(AppealStatus.ANSWER_READY, now, system,
                       note=AppealStatus.ANSWER_READY.value)
            self.events.append(ev.AnswerReady(self.id, now, system))
        try:
            return self.deliver(delivery, now, actor=system) is DeliveryResult.RECORDED
        except (AnswerNotReady, DeliveryConflict) as exc:
            self.events.append(ev.DeliveryNotApplied(self.id, now, system, system,
                                                         type(exc).__name__))
            return False

    def _answer_ready(self, at: datetime, actor: str) -> None:
        # The applicant chose e-mail: the gateway sends it, then confirms. Without the text
        # (an export row says only the stage) an operator delivers it.
        mail = self.answer_channel is AnswerChannel.EMAIL and bool(self.answer_text)
        self.events.append(ev.AnswerReady(self.id, at, actor, mail))

    def _touched(self, details: bool, at: datetime, actor: str) -> bool:
        if details:
            self.events.append(ev.RemoteDetailsChanged(self.id, at, actor))
        return details

    # -- delivery to the citizen -----------------------------------------------------------

    def needs_answer_letter(self) -> bool:
        """The gateway's own answer letter is still owed: not sent by ПОС, not delivered."""
        return self.status is AppealStatus.ANSWER_READY and self.answer_text is not None

    def deliver(self, delivery: Delivery, now: datetime, *, actor: str) -> DeliveryResult:
        """The answer reached the applicant. The first confirmation wins; repeating it is
        harmless; another channel afterwards is a conflict for a person to look at. One made
        here is passed on to the target system (ПОС: the channel; «Дело»: control removed
        only now [002: 2.8.11]); one seen there is not sent back."""
        if self.status is AppealStatus.DELIVERED:
            # A report that does not say how, or a first one that did not, conflicts with
            # nothing: only two named channels that differ need a person.
            if DeliveryChannel.UNKNOWN.value in (delivery.channel.value, self.delivery_channel) \
                    or self.delivery_channel == delivery.channel.value:
                return DeliveryResult.ALREADY_RECORDED
            raise DeliveryConflict(self.delivery_channel or DeliveryChannel.UNKNOWN.value)
        if self.status not in READY_FOR_DELIVERY:
            raise AnswerNotReady(self.status)
        channel = delivery.channel.value
        self._move(AppealStatus.DELIVERED, now, delivery.source, note=f"channel {channel}")
        self.delivered_at = delivery.delivered_at
        self.delivery_channel = channel
        self.next_callback_at = self.callback_due_at = None
        self.needs_supervisor = False
        self.deliveries = (*self.deliveries, DeliveryRecord(
            channel, "delivered", delivery.delivered_at, delivery.by, delivery.source))
        external = self.external
        confirm_in = (external.system if external is not None and external.system
                      != delivery.source else None)
        self.events.append(ev.Delivered(
            self.id, now, actor, channel, delivery.delivered_at, delivery.by, delivery.source,
            confirm_in))
        return DeliveryResult.RECORDED

    def callback_failed(self, outcome: str, tried_at: datetime, now: datetime, *,
                        plan_next: CallbackPlanner, actor: str,
                        min_gap: timedelta = timedelta(minutes=30)) -> CallbackAttempt | None:
        """[001: 13] nobody answered: the next try's window, or None when the supervisor
        must decide (the appeal is then flagged). A try sooner than `min_gap` after another
        is refused (CallbackTooSoon). Needs the appeal's deliveries loaded."""
        if self.status not in READY_FOR_DELIVERY:
            raise AnswerNotReady(self.status)
        if self.needs_supervisor:
            raise CallbacksExhausted(self.callback_attempts)
        earlier = self._series_tries()
        check_spacing(earlier, tried_at, min_gap)
        failed = sorted([*earlier, tried_at])
        start = min(self.answer_ready_at or failed[0], failed[0])
        if self.callbacks_from is not None:
            start = min(self.callbacks_from, failed[0])
        attempt = plan_next(start, failed)
        self.deliveries = (*self.deliveries, DeliveryRecord(
            DeliveryChannel.PHONE.value, outcome, tried_at, None, "gateway"))
        self.callback_attempts = len(failed)
        self.next_callback_at = attempt.not_before if attempt else None
        self.callback_due_at = attempt.not_after if attempt else None
        self.needs_supervisor = attempt is None
        self.events.append(ev.CallbackFailed(
            self.id, now, actor, outcome, tried_at, len(failed), self.needs_supervisor))
        return attempt

    def _series_tries(self) -> list[datetime]:
        """The failed tries of the current series (a supervisor's reschedule starts anew)."""
        return sorted(d.at for d in self.deliveries if d.outcome != "delivered" and (
            self.callbacks_from is None or d.at > self.callbacks_from))

    def schedule_callback(self, due_at: datetime, now: datetime) -> bool:
        """[001: 13] an answer to give by phone: the first try is due by `due_at` (12:00 of
        the next working day), known before anyone tries."""
        if (self.status not in READY_FOR_DELIVERY or self.answer_channel is not AnswerChannel.PHONE
                or self.callback_due_at is not None or self.callback_attempts
                or self.needs_supervisor):
            return False
        self.callback_due_at = due_at
        self.events.append(ev.CallbackScheduled(self.id, now, "sla", due_at))
        return True

    # -- the journal and the citizen -----------------------------------------------------

    def update_journal(self, entry: JournalEntry, now: datetime, actor: str) -> None:
        """The journal's own fields [001: appendix 2]; JournalRefused when a «Комментарий»
        the appendix requires is missing, or lacks the date and time it must hold."""
        fields = journal_refusal(entry)
        if fields:
            raise JournalRefused(fields)
        if entry == self.journal:
            return
        self.journal = entry
        self.events.append(ev.JournalUpdated(
            self.id, now, actor,
            entry.consultation_outcome.value if entry.consultation_outcome else None,
            entry.review_result.value if entry.review_result else None))

    def give_interim(self, interim: InterimAnswer, now: datetime, actor: str) -> None:
        """[002: 2.8.10] the applicant was told why the answer is late and when to expect it;
        this is the feedback [001: 21] too. Only while the answer is still owed."""
        if self.status not in UNDELIVERED:
            raise ResolveRefused(f"status {self.status.value}: no answer is owed any more")
        self.interim_given_at = interim.at
        self.interim_expected_at = interim.expected_at
        self.interims = (*self.interims, interim)
        self.events.append(ev.InterimGiven(
            self.id, now, actor, interim.channel, interim.at, interim.expected_at,
            self.external.system if self.external else None, interim))

    # -- the supervisor ------------------------------------------------------------------

    def close_unreachable(self, reason: str, now: datetime, actor: str) -> None:
        """After three failed callbacks [001: 13], or a failed forwarding: closed with the
        supervisor's reason."""
        if not (self.needs_supervisor and self.status in READY_FOR_DELIVERY) and (
                self.status is not AppealStatus.FAILED):
            raise ResolveRefused("only an appeal flagged after three failed callbacks, or a "
                                 "failed one, can be closed as unreachable")
        self.resolution = reason
        self.needs_supervisor = False
        self.next_callback_at = self.callback_due_at = None
        self._move(AppealStatus.CLOSED, now, actor, note="closed: unreachable")
        self.events.append(ev.Resolved(self.id, now, actor, "close_unreachable"))

    def reschedule_callback(self, until: datetime, reason: str, now: datetime,
                            actor: str) -> None:
        """A new series of callbacks [001: 13], its first try due by `until`."""
        if not (self.needs_supervisor and self.status in READY_FOR_DELIVERY):
            raise ResolveRefused("only an appeal flagged after three failed callbacks can "
                                 "be rescheduled")
        self.resolution = reason
        self.needs_supervisor = False
        self.callback_attempts = 0
        self.callbacks_from = now
        self.next_callback_at = now
        self.callback_due_at = until
        self.callback_late = False
        self.events.append(ev.Resolved(self.id, now, actor, "reschedule"))

    def reroute(self, route: Route, topic: str, due_at: datetime | None, reason: str,
                now: datetime, actor: str) -> None:
        """A rejection or a failed forwarding sent on along a new route: a new registration
        there, under a new deadline."""
        if self.status not in (AppealStatus.REJECTED, AppealStatus.FAILED):
            raise ResolveRefused("only a rejected or failed appeal can be re-routed")
        self.reroutes += 1
        self.route = route
        self.topic = topic
        self.external = None
        self.due_at = due_at
        self.overdue = False
        self.resolution = reason
        self._move(AppealStatus.ACCEPTED, now, actor, note=f"re-routed to {route.system.value}")
        self.events.append(ev.Resolved(self.id, now, actor, "reroute", self.reroutes))

    def close_rejected(self, reason: str, now: datetime, actor: str) -> None:
        """A rejection closed with the citizen informed: the reason becomes the answer to
        deliver through the usual desk (callback, letter), so the close is confirmed."""
        if self.status is not AppealStatus.REJECTED:
            raise ResolveRefused("not rejected")
        self.resolution = reason
        self.answer_text = reason
        self.answer_ready_at = now
        self._move(AppealStatus.ANSWER_READY, now, actor, note="rejection to be told")
        self.events.append(ev.Resolved(self.id, now, actor, "close_rejected"))
        self._answer_ready(now, actor)

        # -- deadlines -----------------------------------------------------------------------

    def mark_overdue(self, now: datetime) -> bool:
        """Past its deadline without the answer delivered; marked once."""
        if self.overdue or self.due_at is None or self.due_at >= now or (
                self.status not in UNDELIVERED):
            return False
        self.overdue = True
        self.events.append(ev.MarkedOverdue(self.id, now, "sla", self.due_at))
        return True

    def mark_late(self, kind: OverdueKind, now: datetime) -> bool:
        """One kind of deadline missed; each is flagged once and counted on its own."""
        if kind is OverdueKind.ANSWER:
            return self.mark_overdue(now)
        due = self._missed(kind, now)
        if due is None:
            return False
        if kind is OverdueKind.FEEDBACK:
            self.feedback_overdue = True
        elif kind is OverdueKind.REQUEST:
            self.request_overdue = True
        elif kind is OverdueKind.CALLBACK:
            self.callback_late = True
        self.events.append(ev.MarkedLate(self.id, now, "sla", due, kind.value))
        return True

    def _missed(self, kind: OverdueKind, now: datetime) -> datetime | None:
        if kind is OverdueKind.FEEDBACK:
            # [001: 21] feedback within 3 working days: a delivery or an interim answer.
            due = self.feedback_due_at
            if (not self.feedback_overdue and due is not None and due < now
                    and self.status in UNDELIVERED and self.interim_given_at is None):
                return due
        elif kind is OverdueKind.REQUEST:
            # [002: 2.8.9] the request within 1 working day; [004: 10] its answer.
            due = self.request_due_at
            if not self.request_overdue and due is not None and due < now \
                    and self.awaits_request():
                return due
        elif kind is OverdueKind.CALLBACK:
            due = self.callback_due_at
            if (not self.callback_late and due is not None and due < now
                    and self.status in READY_FOR_DELIVERY and not self.needs_supervisor):
                return due
        return None

    def awaits_request(self) -> bool:
        """Not yet passed on (any route), or, for e-mail routes, the official's answer."""
        return self.status in (AppealStatus.ACCEPTED, AppealStatus.FAILED) or (
            self.status in (AppealStatus.REGISTERED, AppealStatus.IN_PROGRESS)
            and self.route.system.value in ("email", "health"))

    def overdue_kinds(self) -> list[OverdueKind]:
        flags = {OverdueKind.ANSWER: self.overdue, OverdueKind.FEEDBACK: self.feedback_overdue,
                 OverdueKind.REQUEST: self.request_overdue,
                 OverdueKind.REGISTRATION: self.registered_late,
                 OverdueKind.CALLBACK: self.callback_late}
        return [kind for kind, flagged in flags.items() if flagged]

    def interim_due(self) -> bool:
        """[002: 2.8.10] reminded that an interim answer is due, and none given since."""
        return self.interim_reminded_at is not None and self.interim_given_at is None and (
            self.status in UNANSWERED)

    def remind_interim(self, now: datetime, lead: timedelta) -> bool:
        """[002: 2.8.10] the answer may not come in time: remind once, before the deadline,
        that an interim answer with the reason and the new date is due."""
        if self.interim_reminded_at is not None or self.due_at is None or (
                self.due_at >= now + lead) or self.status not in UNANSWERED:
            return False
        self.interim_reminded_at = now
        self.events.append(ev.InterimAnswerDue(self.id, now, "sla", self.due_at))
        return True

    # -- the one way a status changes ------------------------------------------------------

    def _move(self, wanted: AppealStatus, at: datetime, source: str,
              note: str | None = None) -> None:
        if wanted == self.status:
            return
        if not can_transition(self.status, wanted):
            raise TransitionNotAllowed(self.status, wanted)
        self.status = wanted
        self._record_status(wanted, at, source, note)

    def _record_status(self, status: AppealStatus, at: datetime, source: str,
                       note: str | None = None) -> None:
        self.history = (*self.history, StatusChange(status, at, source, note))
        self.events.append(ev.StatusChanged(self.id, at, source, status, note))


_DATE_TIME = re.compile(
    r"\b\d{1,2}\.\d{1,2}\.\d{4}[ T,]+\d{1,2}:\d{2}\b|\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def journal_refusal(entry: JournalEntry) -> dict[str, str]:
    """[001: appendix 2] «обязательно заполнение поля «Комментарий»» for four results, «с
    указанием даты и времени» for two of them (`dd.mm.yyyy hh:mm` or ISO 8601)."""
    result = entry.review_result
    comment = (entry.comment or "").strip()
    if result in COMMENT_REQUIRED and not comment:
        return {"comment": f"required when review_result is {result.value}"}
    if result in COMMENT_NEEDS_DATETIME and not _DATE_TIME.search(comment):
        return {"comment": "must hold the date and time (dd.mm.yyyy hh:mm or ISO 8601)"}
    return {}
