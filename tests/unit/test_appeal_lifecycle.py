"""An appeal's life, from its own methods: each rule as the regulations and the target systems
make it, and the events each step records. Pure: no storage, no clock, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

import pytest

from config.calendar import build_work_calendar
from gateway.domain import events as ev
from gateway.domain.appeal import (
    PLANNED_DAY_ENDS_AT,
    AnswerChannel,
    AnswerNotReady,
    Appeal,
    AppealStatus,
    CallbacksExhausted,
    Delivery,
    DeliveryChannel,
    DeliveryConflict,
    DeliveryRecord,
    DeliveryResult,
    StatusChange,
)
from gateway.domain.deadlines import CallbackAttempt, CallbackRule, next_callback_attempt
from gateway.domain.ports import Answer, ConfirmedDelivery, ExternalRef, ExternalUpdate
from gateway.domain.route import DeloTarget, EmailTarget, Route, TargetSystem
from tests.builders import make_appeal

MOSCOW = ZoneInfo("Europe/Moscow")
CALENDAR = build_work_calendar()
CALLBACK_RULE = CallbackRule()

# Tuesday 2026-11-24, a working day: 10:00 in Moscow.
NOW = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
POS_ID = "100500"
POS_NUMBER = "ПОС-2026-100500"
POS_RECORD = ExternalRef("pos", POS_ID, POS_NUMBER, "Зарегистрировано")
ANSWER = "Отопление восстановлено 24.11.2026."

DELO_ROUTE = Route(system=TargetSystem.DELO, executor="Министерство ЖКХ",
                   delo=DeloTarget("0.1", "0.2", "0.3"), deadline_policy="delo")
EMAIL_ROUTE = Route(system=TargetSystem.EMAIL, executor="Министерство транспорта",
                    email=(EmailTarget("roads", ("roads@gov.test",)),), deadline_policy="email")

E = TypeVar("E", bound=ev.Event)


def events_of(appeal: Appeal, kind: type[E]) -> list[E]:
    return [e for e in appeal.events if isinstance(e, kind)]


def registered(**changes: object) -> Appeal:
    values: dict[str, object] = {"status": AppealStatus.REGISTERED, "external": POS_RECORD}
    return make_appeal(**{**values, **changes})


def ready(**changes: object) -> Appeal:
    values: dict[str, object] = {
        "status": AppealStatus.ANSWER_READY, "answer_text": ANSWER,
        "answer_ready_at": NOW - timedelta(hours=1),
        "external": ExternalRef("pos", POS_ID, POS_NUMBER, "Ответ готов")}
    return registered(**{**values, **changes})


def remote(status: AppealStatus, stage: str = "В работе", *, system: str = "pos",
           updated_at: datetime = NOW, **fields: object) -> ExternalUpdate:
    """One change as a status source reports it, already in our vocabulary."""
    return ExternalUpdate(system=system, external_id=POS_ID, appeal_id=None, stage=stage,
                          status=status, updated_at=updated_at, **fields)  # type: ignore[arg-type]


def apply(appeal: Appeal, change: ExternalUpdate, *, extends_deadline: bool = False) -> bool:
    return appeal.apply_remote(change, NOW, extends_deadline=extends_deadline, zone=MOSCOW)


def plan_next(start: datetime, failed: Sequence[datetime]) -> CallbackAttempt | None:
    return next_callback_attempt(start, failed, CALLBACK_RULE, CALENDAR, MOSCOW)


def msk(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 24, hour, minute, tzinfo=MOSCOW)


# -- intake ---------------------------------------------------------------------------------


def test_an_accepted_call_records_its_first_status_and_the_call_accepted_event() -> None:
    appeal = make_appeal()
    appeal.accepted(NOW, "operator", registered_late=False)
    assert appeal.history == (StatusChange(AppealStatus.ACCEPTED, NOW, "intake"),)
    (accepted,) = events_of(appeal, ev.CallAccepted)
    assert (accepted.route_system, accepted.hotline, accepted.actor) == ("pos", "122", "operator")
    assert accepted.audit_detail() == {"route": "pos", "hotline": "122"}


def test_a_call_registered_more_than_an_hour_late_says_so_in_its_audit_entry() -> None:
    """[001: 15] a call is due in the tracking system within the hour."""
    appeal = make_appeal()
    appeal.accepted(NOW, "operator", registered_late=True)
    (accepted,) = events_of(appeal, ev.CallAccepted)
    assert accepted.audit_detail()["registered_late"] is True


# -- registration ---------------------------------------------------------------------------


def test_register_moves_an_accepted_appeal_to_registered_with_its_number() -> None:
    appeal = make_appeal()
    appeal.register(POS_RECORD, NOW)
    assert appeal.status is AppealStatus.REGISTERED
    assert appeal.external == POS_RECORD
    assert appeal.is_registered_in("pos")
    assert appeal.history[-1] == StatusChange(AppealStatus.REGISTERED, NOW, "pos", POS_NUMBER)
    (registration,) = events_of(appeal, ev.Registered)
    assert (registration.system, registration.external_id, registration.number) == (
        "pos", POS_ID, POS_NUMBER)
    assert [type(e) for e in appeal.events] == [ev.StatusChanged, ev.Registered]


def test_register_after_a_dead_letter_moves_the_failed_appeal_to_registered() -> None:
    appeal = make_appeal(status=AppealStatus.FAILED)
    appeal.register(POS_RECORD, NOW)
    assert appeal.status is AppealStatus.REGISTERED


def test_register_never_moves_an_appeal_back_when_the_poller_saw_the_record_first() -> None:
    # The poller found the record (by our id) and its progress before the register call's
    # own answer arrived: only the number is missing.
    appeal = make_appeal(status=AppealStatus.IN_PROGRESS,
                         external=ExternalRef("pos", POS_ID, None, "В работе"))
    assert appeal.knows_record_in("pos") and not appeal.is_registered_in("pos")

    appeal.register(ExternalRef("pos", POS_ID, POS_NUMBER), NOW)

    assert appeal.status is AppealStatus.IN_PROGRESS
    assert appeal.external == ExternalRef("pos", POS_ID, POS_NUMBER, "В работе")
    assert appeal.is_registered_in("pos")
    assert events_of(appeal, ev.StatusChanged) == []
    assert len(events_of(appeal, ev.Registered)) == 1


def test_a_record_in_another_system_does_not_count_as_registered() -> None:
    appeal = registered()
    assert not appeal.is_registered_in("delo")
    assert not appeal.knows_record_in("delo")


def test_the_first_email_request_registers_the_appeal_and_each_request_is_recorded() -> None:
    """[004: 10.1] one request to each competent authority."""
    appeal = make_appeal(route=EMAIL_ROUTE)
    appeal.request_sent(1, NOW)
    appeal.request_sent(2, NOW + timedelta(minutes=1))
    assert appeal.status is AppealStatus.REGISTERED
    assert [c.status for c in appeal.history] == [AppealStatus.REGISTERED]
    assert [e.recipients for e in events_of(appeal, ev.RequestSent)] == [1, 2]


# -- what the target system says ------------------------------------------------------------


def test_a_new_stage_without_a_status_change_is_recorded_as_details_only() -> None:
    appeal = registered()
    assert apply(appeal, remote(AppealStatus.REGISTERED, "Назначен исполнитель"))
    assert appeal.status is AppealStatus.REGISTERED
    assert appeal.external is not None and appeal.external.stage == "Назначен исполнитель"
    assert [type(e) for e in appeal.events] == [ev.RemoteDetailsChanged]


def test_a_change_known_already_changes_nothing() -> None:
    appeal = registered()
    change = remote(AppealStatus.IN_PROGRESS)
    assert apply(appeal, change)
    appeal.events.clear()
    assert not apply(appeal, change)
    assert appeal.events == []


def test_progress_moves_the_status_forward_with_the_remote_stage_in_the_history() -> None:
    appeal = registered()
    assert apply(appeal, remote(AppealStatus.IN_PROGRESS, "В работе"))
    assert appeal.status is AppealStatus.IN_PROGRESS
    assert appeal.history[-1] == StatusChange(AppealStatus.IN_PROGRESS, NOW, "pos", "В работе")


def test_a_change_for_an_appeal_not_yet_registered_records_the_remote_record() -> None:
    # The poller matched the record by our id before the register call's answer came back.
    appeal = make_appeal()
    assert apply(appeal, remote(AppealStatus.IN_PROGRESS))
    assert appeal.external == ExternalRef("pos", POS_ID, None, "В работе")
    assert appeal.status is AppealStatus.IN_PROGRESS


def test_an_answer_with_its_text_for_an_email_applicant_asks_the_gateway_to_mail_it() -> None:
    approved = NOW - timedelta(minutes=30)
    appeal = registered(answer_channel=AnswerChannel.EMAIL)
    assert apply(appeal, remote(AppealStatus.ANSWER_READY, "Ответ готов",
                                answer=Answer(ANSWER, approved_at=approved)))
    assert appeal.status is AppealStatus.ANSWER_READY
    assert (appeal.answer_text, appeal.answer_ready_at) == (ANSWER, approved)
    (answer_ready,) = events_of(appeal, ev.AnswerReady)
    assert answer_ready.mail_to_applicant is True
    assert appeal.needs_answer_letter()


def test_an_answer_without_its_text_is_left_to_an_operator_even_for_email() -> None:
    # An export row names only the stage: there is nothing to mail.
    appeal = registered(answer_channel=AnswerChannel.EMAIL)
    assert apply(appeal, remote(AppealStatus.ANSWER_READY, "Ответ готов"))
    (answer_ready,) = events_of(appeal, ev.AnswerReady)
    assert answer_ready.mail_to_applicant is False


def test_an_answer_for_a_phone_applicant_is_not_mailed() -> None:
    appeal = registered(answer_channel=AnswerChannel.PHONE)
    apply(appeal, remote(AppealStatus.ANSWER_READY, "Ответ готов", answer=Answer(ANSWER)))
    (answer_ready,) = events_of(appeal, ev.AnswerReady)
    assert answer_ready.mail_to_applicant is False
    assert appeal.answer_ready_at == NOW  # no approval time given: when it was reported


def test_a_stale_or_replayed_step_back_never_moves_the_appeal_back() -> None:
    appeal = ready()
    assert not apply(appeal, remote(AppealStatus.IN_PROGRESS, "Ответ готов"))
    assert appeal.status is AppealStatus.ANSWER_READY
    assert appeal.events == []


def test_an_answer_sent_back_for_rework_keeps_the_appeal_ready_and_records_the_new_text() -> None:
    appeal = ready()
    assert apply(appeal, remote(AppealStatus.IN_PROGRESS, "На доработке",
                                answer=Answer("Уточнённый ответ")))
    assert appeal.status is AppealStatus.ANSWER_READY
    assert appeal.answer_text == "Уточнённый ответ"
    assert [type(e) for e in appeal.events] == [ev.RemoteDetailsChanged]


def test_an_answer_sent_by_pos_itself_needs_no_letter_from_the_gateway() -> None:
    appeal = ready(answer_channel=AnswerChannel.EMAIL)
    assert apply(appeal, remote(AppealStatus.ANSWER_SENT, "Ответ отправлен заявителю"))
    assert appeal.status is AppealStatus.ANSWER_SENT
    assert not appeal.needs_answer_letter()


def test_an_executors_later_planned_date_in_delo_extends_the_deadline() -> None:
    appeal = registered(route=DELO_ROUTE, overdue=True,
                        external=ExternalRef("delo", POS_ID, "Д-17", "На исполнении"))
    later = date(2026, 12, 10)
    assert apply(appeal, remote(AppealStatus.REGISTERED, "На исполнении", system="delo",
                                planned_completion=later), extends_deadline=True)
    assert appeal.due_at == datetime.combine(later, PLANNED_DAY_ENDS_AT, MOSCOW)
    assert appeal.overdue is False
    assert [type(e) for e in appeal.events] == [ev.RemoteDetailsChanged]


def test_an_earlier_planned_date_never_shortens_the_deadline() -> None:
    appeal = registered(route=DELO_ROUTE,
                        external=ExternalRef("delo", POS_ID, "Д-17", "На исполнении"))
    due = appeal.due_at
    assert not apply(appeal, remote(AppealStatus.REGISTERED, "На исполнении", system="delo",
                                    planned_completion=date(2026, 11, 25)),
                     extends_deadline=True)
    assert appeal.due_at == due


def test_a_planned_date_from_pos_is_its_own_term_and_does_not_move_the_deadline() -> None:
    appeal = registered(external=ExternalRef("pos", POS_ID, POS_NUMBER, "В работе"))
    due = appeal.due_at
    assert not apply(appeal, remote(AppealStatus.REGISTERED, "В работе",
                                    planned_completion=date(2027, 1, 30)))
    assert appeal.due_at == due


def test_a_delivery_reported_upstream_passes_through_answer_ready_and_is_recorded() -> None:
    confirmed = NOW - timedelta(minutes=10)
    appeal = registered(status=AppealStatus.IN_PROGRESS)
    assert apply(appeal, remote(AppealStatus.DELIVERED, "Ответ передан заявителю",
                                delivery=ConfirmedDelivery(DeliveryChannel.PHONE, confirmed,
                                                           "Петрова")))
    assert appeal.status is AppealStatus.DELIVERED
    assert [c.status for c in appeal.history[-2:]] == [AppealStatus.ANSWER_READY,
                                                       AppealStatus.DELIVERED]
    (answer_ready,) = events_of(appeal, ev.AnswerReady)
    assert answer_ready.mail_to_applicant is False
    (delivered,) = events_of(appeal, ev.Delivered)
    assert (delivered.channel, delivered.delivered_at, delivered.by, delivered.source) == (
        "phone", confirmed, "Петрова", "pos")
    assert delivered.confirm_in is None  # never confirmed back to the system that said so
    assert appeal.deliveries[-1] == DeliveryRecord("phone", "delivered", confirmed, "Петрова",
                                                   "pos")


def test_a_delivery_reported_without_its_channel_is_recorded_as_unknown() -> None:
    appeal = ready(route=DELO_ROUTE, external=ExternalRef("delo", POS_ID, "Д-17", "Исполнено"))
    reported = NOW - timedelta(hours=2)
    assert apply(appeal, remote(AppealStatus.DELIVERED, "Снят с контроля", system="delo",
                                updated_at=reported), extends_deadline=True)
    (delivered,) = events_of(appeal, ev.Delivered)
    assert (delivered.channel, delivered.delivered_at, delivered.by) == ("unknown", reported,
                                                                         None)
    assert delivered.confirm_in is None
    assert appeal.delivery_channel == "unknown"


def test_a_replayed_delivery_report_changes_nothing() -> None:
    appeal = ready()
    change = remote(AppealStatus.DELIVERED, "Ответ передан заявителю",
                    delivery=ConfirmedDelivery(DeliveryChannel.POST, NOW))
    assert apply(appeal, change)
    appeal.events.clear()
    assert not apply(appeal, change)
    assert appeal.events == []


def test_an_unknown_channel_delivery_after_a_known_one_is_already_recorded() -> None:
    appeal = ready()
    appeal.deliver(Delivery(DeliveryChannel.PHONE, NOW, "Петрова", "gateway"), NOW,
                   actor="delivery")
    appeal.events.clear()
    # «Дело» or an export says only that it was delivered: the same delivery, known already.
    assert not apply(appeal, remote(AppealStatus.DELIVERED, "Ответ готов"))
    assert appeal.delivery_channel == "phone"
    assert appeal.events == []


def test_a_named_channel_after_an_unknown_one_is_the_same_delivery_not_a_conflict() -> None:
    appeal = ready()
    assert apply(appeal, remote(AppealStatus.DELIVERED, "Ответ передан заявителю"))
    appeal.events.clear()

    result = appeal.deliver(Delivery(DeliveryChannel.PHONE, NOW, "Петрова", "gateway"), NOW,
                            actor="delivery")

    assert result is DeliveryResult.ALREADY_RECORDED
    assert appeal.events == []


def test_an_extension_already_past_marks_the_appeal_overdue_with_its_audit_event() -> None:
    appeal = registered(route=DELO_ROUTE,
                        external=ExternalRef("delo", POS_ID, "Д-17", "На исполнении"),
                        due_at=NOW - timedelta(days=3))
    yesterday = (NOW - timedelta(days=1)).date()
    assert apply(appeal, remote(AppealStatus.REGISTERED, "На исполнении", system="delo",
                                planned_completion=yesterday), extends_deadline=True)
    assert appeal.overdue is True
    (marked,) = events_of(appeal, ev.MarkedOverdue)
    assert marked.due_at == appeal.due_at


def test_a_delivery_reported_by_another_channel_is_left_for_a_person() -> None:
    appeal = ready()
    appeal.deliver(Delivery(DeliveryChannel.PHONE, NOW, None, "gateway"), NOW, actor="delivery")
    appeal.events.clear()
    assert not apply(appeal, remote(AppealStatus.DELIVERED, "Ответ готов",
                                    delivery=ConfirmedDelivery(DeliveryChannel.POST, NOW)))
    assert appeal.delivery_channel == "phone"
    (not_applied,) = events_of(appeal, ev.DeliveryNotApplied)
    assert not_applied.audit_detail() == {"system": "pos", "reason": "DeliveryConflict"}


# -- delivery to the citizen ----------------------------------------------------------------


def test_the_first_delivery_is_recorded_with_its_channel_and_ends_the_callbacks() -> None:
    appeal = ready(next_callback_at=NOW + timedelta(minutes=30))
    delivered_at = NOW - timedelta(minutes=5)
    result = appeal.deliver(Delivery(DeliveryChannel.PHONE, delivered_at, "Петрова", "gateway"),
                            NOW, actor="delivery")
    assert result is DeliveryResult.RECORDED
    assert appeal.status is AppealStatus.DELIVERED
    assert (appeal.delivered_at, appeal.delivery_channel) == (delivered_at, "phone")
    assert appeal.next_callback_at is None
    assert appeal.history[-1] == StatusChange(AppealStatus.DELIVERED, NOW, "gateway",
                                              "channel phone")
    (delivered,) = events_of(appeal, ev.Delivered)
    assert delivered.actor == "delivery"


def test_the_same_delivery_again_is_already_recorded() -> None:
    appeal = ready()
    delivery = Delivery(DeliveryChannel.PHONE, NOW, None, "gateway")
    appeal.deliver(delivery, NOW, actor="delivery")
    appeal.events.clear()
    assert appeal.deliver(delivery, NOW, actor="delivery") is DeliveryResult.ALREADY_RECORDED
    assert appeal.events == []


def test_a_delivery_by_another_channel_after_the_first_is_a_conflict() -> None:
    appeal = ready()
    appeal.deliver(Delivery(DeliveryChannel.PHONE, NOW, None, "gateway"), NOW, actor="delivery")
    with pytest.raises(DeliveryConflict) as conflict:
        appeal.deliver(Delivery(DeliveryChannel.POST, NOW, None, "gateway"), NOW,
                       actor="delivery")
    assert conflict.value.recorded == "phone"
    assert appeal.delivery_channel == "phone"


@pytest.mark.parametrize("status", [AppealStatus.ACCEPTED, AppealStatus.REGISTERED,
                                    AppealStatus.IN_PROGRESS, AppealStatus.REJECTED])
def test_an_answer_not_ready_cannot_be_delivered(status: AppealStatus) -> None:
    appeal = registered(status=status)
    with pytest.raises(AnswerNotReady) as not_ready:
        appeal.deliver(Delivery(DeliveryChannel.PHONE, NOW, None, "gateway"), NOW,
                       actor="delivery")
    assert not_ready.value.status is status
    assert appeal.events == []


def test_an_answer_pos_mailed_itself_can_still_be_confirmed_delivered() -> None:
    appeal = ready(status=AppealStatus.ANSWER_SENT)
    assert appeal.deliver(Delivery(DeliveryChannel.EMAIL, NOW, None, "gateway"), NOW,
                          actor="delivery") is DeliveryResult.RECORDED


def test_a_delivery_made_in_the_gateway_for_a_pos_appeal_is_confirmed_in_pos() -> None:
    appeal = ready()
    appeal.deliver(Delivery(DeliveryChannel.PHONE, NOW, None, "gateway"), NOW, actor="delivery")
    (delivered,) = events_of(appeal, ev.Delivered)
    assert delivered.confirm_in == "pos"


def test_a_delivery_made_in_the_gateway_for_a_delo_appeal_removes_control_there() -> None:
    """[002: 2.8.11] «Дело» takes an appeal off control only once the answer reached the
    applicant."""
    appeal = ready(route=DELO_ROUTE, external=ExternalRef("delo", "D1", "Д-17", "Исполнено"))
    appeal.deliver(Delivery(DeliveryChannel.POST, NOW, None, "gateway"), NOW, actor="delivery")
    (delivered,) = events_of(appeal, ev.Delivered)
    assert delivered.confirm_in == "delo"


def test_a_delivery_for_an_email_route_appeal_is_confirmed_nowhere() -> None:
    appeal = ready(route=EMAIL_ROUTE, external=None)
    appeal.deliver(Delivery(DeliveryChannel.PHONE, NOW, None, "gateway"), NOW, actor="delivery")
    (delivered,) = events_of(appeal, ev.Delivered)
    assert delivered.confirm_in is None


def test_the_gateways_answer_letter_is_owed_only_while_the_answer_waits() -> None:
    assert ready().needs_answer_letter()
    assert not ready(answer_text=None).needs_answer_letter()
    assert not ready(status=AppealStatus.ANSWER_SENT).needs_answer_letter()
    delivered = ready()
    delivered.deliver(Delivery(DeliveryChannel.PHONE, NOW, None, "gateway"), NOW,
                      actor="delivery")
    assert not delivered.needs_answer_letter()


# -- callbacks [001: 13] --------------------------------------------------------------------


def fail_callback(appeal: Appeal, tried_at: datetime) -> CallbackAttempt | None:
    return appeal.callback_failed("no_answer", tried_at, tried_at, plan_next=plan_next,
                                  actor="delivery")


def test_a_callback_nobody_answered_is_tried_again_30_to_60_minutes_later() -> None:
    """[001: 13] «перезванивает еще 2 раза с интервалом 30-60 минут»."""
    appeal = ready(answer_ready_at=msk(9))
    attempt = fail_callback(appeal, msk(10, 5))
    assert attempt is not None
    assert (attempt.number, attempt.not_before, attempt.not_after) == (2, msk(10, 35),
                                                                       msk(11, 5))
    assert (appeal.callback_attempts, appeal.next_callback_at) == (1, msk(10, 35))
    assert not appeal.needs_supervisor
    assert appeal.deliveries[-1] == DeliveryRecord("phone", "no_answer", msk(10, 5), None,
                                                   "gateway")
    (failed,) = events_of(appeal, ev.CallbackFailed)
    assert (failed.attempts, failed.needs_supervisor) == (1, False)


def test_after_three_failed_callbacks_the_supervisor_decides() -> None:
    """[001: 13] three tries in all; then the appeal is flagged, not dropped."""
    appeal = ready(answer_ready_at=msk(9))
    second = fail_callback(appeal, msk(10, 5))
    third = fail_callback(appeal, msk(10, 40))
    assert second is not None and third is not None
    assert (third.number, third.not_before) == (3, msk(11, 10))
    assert fail_callback(appeal, msk(11, 15)) is None
    assert appeal.needs_supervisor
    assert (appeal.callback_attempts, appeal.next_callback_at) == (3, None)
    assert [e.needs_supervisor for e in events_of(appeal, ev.CallbackFailed)] == [
        False, False, True]
    assert appeal.status is AppealStatus.ANSWER_READY  # still waiting for its delivery


def test_a_fourth_callback_is_refused_once_the_supervisor_must_decide() -> None:
    """[001: 13]"""
    appeal = ready(answer_ready_at=msk(9))
    for tried_at in (msk(10, 5), msk(10, 40), msk(11, 15)):
        fail_callback(appeal, tried_at)
    appeal.events.clear()
    with pytest.raises(CallbacksExhausted) as exhausted:
        fail_callback(appeal, msk(12))
    assert exhausted.value.attempts == 3
    assert appeal.events == []


def test_failed_callbacks_are_counted_from_the_appeals_recorded_tries() -> None:
    # Two tries were recorded earlier (loaded with the appeal): this one is the last.
    earlier = tuple(DeliveryRecord("phone", "busy", t, None, "gateway")
                    for t in (msk(10, 5), msk(10, 40)))
    appeal = ready(answer_ready_at=msk(9), deliveries=earlier, callback_attempts=2)
    assert fail_callback(appeal, msk(11, 15)) is None
    assert appeal.needs_supervisor


def test_a_callback_cannot_fail_before_the_answer_is_ready() -> None:
    appeal = registered()
    with pytest.raises(AnswerNotReady):
        fail_callback(appeal, msk(10))


# -- deadlines ------------------------------------------------------------------------------


def test_an_appeal_past_its_deadline_is_marked_overdue_once() -> None:
    appeal = registered(due_at=NOW - timedelta(minutes=1))
    assert appeal.mark_overdue(NOW)
    assert not appeal.mark_overdue(NOW + timedelta(hours=1))
    assert appeal.overdue
    assert events_of(appeal, ev.MarkedOverdue) == [
        ev.MarkedOverdue(appeal.id, NOW, "sla", NOW - timedelta(minutes=1))]


def test_an_appeal_is_not_overdue_until_its_deadline_has_passed() -> None:
    assert not registered(due_at=NOW).mark_overdue(NOW)
    assert not registered(due_at=None).mark_overdue(NOW)


def test_a_ready_answer_not_yet_delivered_can_be_overdue_but_a_delivered_one_cannot() -> None:
    assert ready(due_at=NOW - timedelta(days=1)).mark_overdue(NOW)
    delivered = ready(due_at=NOW - timedelta(days=1), status=AppealStatus.DELIVERED)
    assert not delivered.mark_overdue(NOW)


def test_an_interim_answer_is_reminded_once_before_the_deadline() -> None:
    """[002: 2.8.10] the answer will not come in time: an interim answer with the reason and
    the new date is due, so the reminder comes before the deadline."""
    lead = timedelta(hours=24)
    appeal = registered(due_at=NOW + timedelta(hours=20))
    assert appeal.remind_interim(NOW, lead)
    assert not appeal.remind_interim(NOW + timedelta(hours=1), lead)
    assert appeal.interim_reminded_at == NOW
    assert [type(e) for e in appeal.events] == [ev.InterimAnswerDue]


def test_no_interim_reminder_while_the_deadline_is_far_or_once_the_answer_is_ready() -> None:
    """[002: 2.8.10]"""
    lead = timedelta(hours=24)
    assert not registered(due_at=NOW + timedelta(hours=25)).remind_interim(NOW, lead)
    assert not ready(due_at=NOW + timedelta(hours=2)).remind_interim(NOW, lead)
