"""Issue 13: the rules a rule-by-rule audit of the regulations found missing or contradicted,
each specified by the clause it quotes. Services run over the in-memory unit of work."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest

from config.calendar import build_work_calendar
from config.deadlines import load_deadline_policies
from gateway.clock import ManualClock
from gateway.domain.appeal import (
    AnswerChannel,
    AppealStatus,
    CallbacksExhausted,
    CallbackTooSoon,
    ConsultationOutcome,
    Delivery,
    DeliveryChannel,
    InterimAnswer,
    JournalEntry,
    JournalRefused,
    OverdueKind,
    ResolveRefused,
    ReviewResult,
)
from gateway.domain.callbacks import AttemptsExhausted, ImplausibleAttemptTime, TaskState
from gateway.domain.ports import ExternalRef, ExternalUpdate
from gateway.domain.route import DeloTarget, Route, TargetSystem
from gateway.domain.routing import UnknownTopic
from gateway.services import outbox_actions
from gateway.services.callbacks import CallbackDesk, MissedCall, MissedCallRefused
from gateway.services.delivery_desk import DeliveryDesk
from gateway.services.export_import import ExportedRow, import_rows
from gateway.services.journal import JournalChanges, JournalDesk
from gateway.services.planning import PolicyDeadlines
from gateway.services.sla import SlaWatch
from gateway.services.status import StatusReport
from gateway.services.supervision import Resolution, Supervision
from outbox import OutboxStats
from tests.builders import POS_ROUTE, make_appeal
from tests.fakes import FakeStorage

MOSCOW = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)  # Monday 10:00 in Moscow
READY_AT = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # Monday 11:00 in Moscow
TUESDAY_NOON = datetime(2026, 11, 24, 12, 0, tzinfo=MOSCOW)
POLICIES = load_deadline_policies()
CALENDAR = build_work_calendar(None)
DELO_ROUTE = Route(system=TargetSystem.DELO, executor="Отдел ЖКХ",
                   delo=DeloTarget(rubric_code="01", controller_due="0.2D1.",
                                   executor_due="0.2D2."), deadline_policy="delo")


def zone_of(hotline: str) -> tzinfo:
    return MOSCOW


class Routes:
    def route(self, topic: str, hotline: str, informational: bool) -> Route:
        if topic == "Отопление":
            return POS_ROUTE
        if topic == "Дороги":
            return DELO_ROUTE
        raise UnknownTopic(topic)

    def canonical_topic(self, name: str) -> str:
        self.route(name, "122", False)
        return name


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def storage(clock: ManualClock) -> FakeStorage:
    return FakeStorage(clock)


@pytest.fixture
def callbacks(storage: FakeStorage, clock: ManualClock) -> CallbackDesk:
    return CallbackDesk(storage, clock, POLICIES.callback, CALENDAR, zone_of, frozenset({"122"}))


@pytest.fixture
def desk(storage: FakeStorage, clock: ManualClock) -> DeliveryDesk:
    return DeliveryDesk(storage, clock, POLICIES.callback, CALENDAR, zone_of)


@pytest.fixture
def sla(storage: FakeStorage, clock: ManualClock, callbacks: CallbackDesk) -> SlaWatch:
    return SlaWatch(storage, clock, first_callback_due=callbacks.first_due)


def ready(**changes: object) -> dict[str, object]:
    return {"status": AppealStatus.ANSWER_READY, "answer_text": "Отопление включено",
            "answer_ready_at": READY_AT, "external": ExternalRef("pos", "100500", "ПОС-1"),
            **changes}


# -- [003] «ответ отправлен заявителю» is not the end -----------------------------------------


async def test_answer_sent_stays_in_the_delivery_worklist_until_a_delivery_is_confirmed(
        storage: FakeStorage, desk: DeliveryDesk) -> None:
    """[003] «На данном этапе процесс … НЕ заканчивается»: ПОС e-mailing the answer itself
    («ответ отправлен заявителю») is not a confirmed delivery."""
    sent = storage.put(make_appeal(**ready(status=AppealStatus.ANSWER_SENT)))

    assert [a.id for a in await desk.ready()] == [sent.id]

    await desk.deliver(sent.id, Delivery(DeliveryChannel.EMAIL, NOW, "Петрова", "gateway"),
                       actor="operator")
    assert await desk.ready() == []


async def test_answer_sent_is_still_watched_for_the_answers_deadline(
        storage: FakeStorage, sla: SlaWatch) -> None:
    """[003] answer_sent can be overdue: only a confirmed delivery ends the watch."""
    sent = storage.put(make_appeal(**ready(status=AppealStatus.ANSWER_SENT,
                                           due_at=NOW - timedelta(minutes=1))))

    result = await sla.sweep()

    assert result.overdue == [sent.id]
    assert storage.appeals[sent.id].overdue


def test_answer_sent_after_the_gateways_own_letter_sends_no_second_one() -> None:
    """[003] the gateway sent the answer letter; ПОС's later answer_sent is no new letter."""
    appeal = make_appeal(**ready(answer_channel=AnswerChannel.EMAIL))
    change = ExternalUpdate("pos", "100500", None, "Ответ отправлен", AppealStatus.ANSWER_SENT, NOW)

    appeal.apply_remote(change, NOW, extends_deadline=False, zone=MOSCOW)

    assert appeal.status is AppealStatus.ANSWER_SENT
    assert [m for e in appeal.events for m in outbox_actions.messages_for(appeal, e)] == []


# -- [001: 13] callbacks ----------------------------------------------------------------------


async def test_the_first_callback_term_is_noon_of_the_next_working_day_before_any_try(
        storage: FakeStorage, sla: SlaWatch, callbacks: CallbackDesk) -> None:
    """[001: 13] «не позднее 12:00 часов следующего рабочего дня»: computed for every answer
    to give by phone, and shown in the worklist before the first try."""
    appeal = storage.put(make_appeal(**ready()))

    work = await callbacks.worklist()
    assert [(a.id, due) for a, due in work.answers] == [(appeal.id, TUESDAY_NOON)]

    result = await sla.sweep()
    assert result.scheduled == [appeal.id]
    assert storage.appeals[appeal.id].callback_due_at == TUESDAY_NOON


async def test_a_callback_sooner_than_30_minutes_after_the_last_is_refused_with_when(
        storage: FakeStorage, desk: DeliveryDesk, clock: ManualClock) -> None:
    """[001: 13] «еще 2 раза с интервалом 30-60 минут»."""
    appeal = storage.put(make_appeal(**ready()))
    first = READY_AT + timedelta(minutes=10)
    clock.set(first + timedelta(minutes=20))
    await desk.record_attempt(appeal.id, "no_answer", first, actor="operator")

    with pytest.raises(CallbackTooSoon) as refused:
        await desk.record_attempt(appeal.id, "busy", first + timedelta(minutes=20),
                                  actor="operator")

    assert refused.value.next_allowed_at == first + timedelta(minutes=30)
    assert storage.appeals[appeal.id].callback_attempts == 1


async def test_a_callback_not_retried_within_60_minutes_is_flagged_late(
        storage: FakeStorage, desk: DeliveryDesk, sla: SlaWatch, clock: ManualClock) -> None:
    """[001: 13] the retry comes 30–60 minutes after the previous try: after 60 it is late,
    and counted as a callback overdue."""
    appeal = storage.put(make_appeal(**ready()))
    tried = READY_AT + timedelta(minutes=5)
    clock.set(tried)
    result = await desk.record_attempt(appeal.id, "no_answer", tried, actor="operator")
    assert result.next_attempt_by == tried + timedelta(minutes=60)

    clock.set(tried + timedelta(minutes=61))
    swept = await sla.sweep()

    assert swept.late[OverdueKind.CALLBACK] == [appeal.id]
    assert storage.appeals[appeal.id].overdue_kinds() == [OverdueKind.CALLBACK]


async def test_attempt_times_are_checked_against_the_clock_only_and_ordered(
        storage: FakeStorage, desk: DeliveryDesk, clock: ManualClock) -> None:
    """The contract: at most 7 days ago (tries typed in later from notes), at most 5
    minutes ahead; a try typed in out of order is ordered by its time."""
    appeal = storage.put(make_appeal(**ready(answer_ready_at=NOW + timedelta(days=2))))
    clock.set(NOW + timedelta(days=2, hours=3))
    later = NOW + timedelta(days=2, hours=2)
    earlier = NOW + timedelta(days=2, hours=1)
    await desk.record_attempt(appeal.id, "no_answer", later, actor="operator")
    await desk.record_attempt(appeal.id, "busy", earlier, actor="operator")

    with pytest.raises(ImplausibleAttemptTime):
        await desk.record_attempt(appeal.id, "busy", clock.now() - timedelta(days=8),
                                  actor="operator")
    with pytest.raises(ImplausibleAttemptTime):
        await desk.record_attempt(appeal.id, "busy", clock.now() + timedelta(minutes=6),
                                  actor="operator")
    stored = storage.appeals[appeal.id]
    assert stored.callback_attempts == 2
    assert stored.next_callback_at == later + timedelta(minutes=30)


# -- [001: 12, 14] missed calls and voicemail -------------------------------------------------


async def test_a_missed_call_becomes_a_callback_task_due_by_noon_next_working_day(
        storage: FakeStorage, callbacks: CallbackDesk) -> None:
    """[001: 14] «По каждому пропущенному в рабочее время вызову … необходимо перезвонить в
    соответствии с п. 13»; [001: 12] a voicemail likewise. The same call again is the same
    task."""
    call = MissedCall("122", "8 900 123-45-67", NOW, "Перезвоните, пожалуйста")

    first = await callbacks.report_missed(call, actor="operator")
    again = await callbacks.report_missed(replace(call, phone="+79001234567"), actor="operator")

    assert first.created and not again.created
    assert again.task.id == first.task.id
    assert first.task.due_at == TUESDAY_NOON
    assert len(storage.tasks) == 1
    assert "callback.task_created" in storage.audit_actions()
    # No personal data in the audit: neither the phone nor the voicemail.
    assert all("+7900" not in str(e.detail) and "Перезвоните" not in str(e.detail)
               for e in storage.audit)


async def test_a_missed_call_task_is_tried_three_times_then_left_to_a_supervisor(
        storage: FakeStorage, callbacks: CallbackDesk, clock: ManualClock) -> None:
    """[001: 13] the callback and «еще 2 раза»; a fourth try is refused."""
    task = (await callbacks.report_missed(MissedCall("122", "+79001234567", NOW),
                                          actor="operator")).task
    for minutes in (60, 100, 140):
        clock.set(NOW + timedelta(minutes=minutes))
        await callbacks.attempt(task.id, "no_answer", None, actor="operator")

    assert storage.tasks[task.id].state is TaskState.EXHAUSTED
    clock.set(NOW + timedelta(minutes=200))
    with pytest.raises(AttemptsExhausted):
        await callbacks.attempt(task.id, "no_answer", None, actor="operator")


async def test_a_missed_call_try_too_soon_is_refused_and_reaching_the_caller_closes_it(
        storage: FakeStorage, callbacks: CallbackDesk, clock: ManualClock) -> None:
    task = (await callbacks.report_missed(MissedCall("122", "+79001234567", NOW),
                                          actor="operator")).task
    clock.set(NOW + timedelta(minutes=60))
    await callbacks.attempt(task.id, "busy", None, actor="operator")
    clock.set(NOW + timedelta(minutes=70))
    with pytest.raises(CallbackTooSoon):
        await callbacks.attempt(task.id, "reached", None, actor="operator")

    clock.set(NOW + timedelta(minutes=95))
    done, _ = await callbacks.attempt(task.id, "reached", None, actor="operator")
    assert done.state is TaskState.REACHED
    assert (await callbacks.worklist()).tasks == []


async def test_a_missed_call_task_past_its_term_is_counted_as_a_late_callback(
        storage: FakeStorage, callbacks: CallbackDesk, sla: SlaWatch,
        clock: ManualClock) -> None:
    task = (await callbacks.report_missed(MissedCall("122", "+79001234567", NOW),
                                          actor="operator")).task
    clock.set(TUESDAY_NOON + timedelta(minutes=1))

    assert (await sla.sweep()).late_tasks == [task.id]
    report = await StatusReport(storage, _NoOutbox(), clock, "t", ()).report()
    assert report["appeals"]["overdue_by_kind"]["callback"] == 1


async def test_a_missed_call_with_an_unknown_hotline_or_bad_phone_is_refused(
        callbacks: CallbackDesk) -> None:
    with pytest.raises(MissedCallRefused) as refused:
        await callbacks.report_missed(MissedCall("999", "12", NOW), actor="operator")
    assert set(refused.value.fields) == {"hotline", "phone"}


# -- [001: appendix 2] the journal's own fields -----------------------------------------------


@pytest.mark.parametrize("result", [ReviewResult.CALLBACK_NEEDED, ReviewResult.UNSATISFIED,
                                    ReviewResult.NOT_REACHED, ReviewResult.OTHER])
def test_four_review_results_need_a_comment(result: ReviewResult) -> None:
    """[001: appendix 2] «обязательно заполнение поля «Комментарий»»."""
    with pytest.raises(JournalRefused) as refused:
        make_appeal().update_journal(JournalEntry(review_result=result), NOW, "operator")
    assert set(refused.value.fields) == {"comment"}


@pytest.mark.parametrize("result", [ReviewResult.CALLBACK_NEEDED, ReviewResult.NOT_REACHED])
def test_callback_needed_and_not_reached_need_a_date_and_time_in_the_comment(
        result: ReviewResult) -> None:
    """[001: appendix 2] «с указанием даты и времени планируемого звонка» / «попытки»."""
    appeal = make_appeal()
    with pytest.raises(JournalRefused):
        appeal.update_journal(JournalEntry(review_result=result, comment="позже"), NOW, "op")

    appeal.update_journal(JournalEntry(review_result=result, comment="24.11.2026 10:30"),
                          NOW, "operator")
    appeal.update_journal(JournalEntry(review_result=result,
                                       comment="перезвонить 2026-11-24T10:30"), NOW, "op")
    assert appeal.journal.review_result is result


def test_satisfied_and_explained_need_no_comment() -> None:
    appeal = make_appeal()
    appeal.update_journal(JournalEntry(ConsultationOutcome.REFERENCE_INFO,
                                       ReviewResult.EXPLAINED), NOW, "operator")
    assert appeal.journal.consultation_outcome is ConsultationOutcome.REFERENCE_INFO


async def test_a_patch_changes_only_the_journal_fields_it_sends(storage: FakeStorage,
                                                                clock: ManualClock) -> None:
    appeal = storage.put(make_appeal())
    journal = JournalDesk(storage, clock)
    await journal.update(appeal.id, JournalChanges(
        frozenset({"consultation_outcome"}),
        JournalEntry(consultation_outcome=ConsultationOutcome.FORWARDED)), actor="operator")
    await journal.update(appeal.id, JournalChanges(
        frozenset({"review_result", "comment"}),
        JournalEntry(review_result=ReviewResult.OTHER, comment="уточнить")), actor="operator")

    assert storage.appeals[appeal.id].journal == JournalEntry(
        ConsultationOutcome.FORWARDED, ReviewResult.OTHER, "уточнить")
    assert storage.audit_actions(appeal.id) == ["journal.updated", "journal.updated"]
    assert all("уточнить" not in str(e.detail) for e in storage.audit)


# -- [002: 2.8.10] interim answers ------------------------------------------------------------


async def test_an_interim_answer_is_recorded_and_clears_the_reminder(
        storage: FakeStorage, clock: ManualClock, sla: SlaWatch, desk: DeliveryDesk) -> None:
    """[002: 2.8.10] «В случае невозможности положительного решения обязаны немедленно
    информировать»: the reminder shows in the worklist until an interim answer is given."""
    appeal = storage.put(make_appeal(status=AppealStatus.REGISTERED,
                                     due_at=NOW + timedelta(hours=3)))
    await sla.sweep()
    assert [a.id for a in await desk.interim_due()] == [appeal.id]

    await JournalDesk(storage, clock).interim(appeal.id, InterimAnswer(
        "Нужна проверка подрядчика", NOW + timedelta(days=5), "phone", NOW, "Иванова"),
        actor="operator")

    stored = storage.appeals[appeal.id]
    assert stored.interim_expected_at == NOW + timedelta(days=5)
    assert not stored.interim_due()
    assert await desk.interim_due() == []
    assert [i.reason for _, i, _ in storage.interims] == ["Нужна проверка подрядчика"]
    assert "interim.recorded" in storage.audit_actions(appeal.id)


async def test_no_interim_answer_once_the_answer_was_delivered(storage: FakeStorage,
                                                               clock: ManualClock) -> None:
    appeal = storage.put(make_appeal(status=AppealStatus.DELIVERED))
    with pytest.raises(ResolveRefused):
        await JournalDesk(storage, clock).interim(appeal.id, InterimAnswer(
            "x", NOW, "phone", NOW, None), actor="operator")


# -- every stored deadline is watched ---------------------------------------------------------


async def test_feedback_within_3_working_days_is_watched_and_an_interim_answer_counts(
        storage: FakeStorage, sla: SlaWatch) -> None:
    """[001: 21] «срок предоставления обратной связи гражданам – не более 3 рабочих дня»."""
    silent = storage.put(make_appeal(id="a-1", status=AppealStatus.REGISTERED,
                                     feedback_due_at=NOW - timedelta(minutes=1)))
    storage.put(make_appeal(id="a-2", journal_id="J-2", status=AppealStatus.REGISTERED,
                            feedback_due_at=NOW - timedelta(minutes=1),
                            interim_given_at=NOW - timedelta(days=1)))

    result = await sla.sweep()

    assert result.late[OverdueKind.FEEDBACK] == [silent.id]


async def test_the_delo_information_request_within_one_working_day_is_watched(
        storage: FakeStorage, sla: SlaWatch) -> None:
    """[002: 2.8.9] «Оператор в течение 1 рабочего дня … оформляет информационный запрос»:
    not registered in «Дело» by then is a request overdue; registered in time is not."""
    late = storage.put(make_appeal(id="a-1", route=DELO_ROUTE,
                                   request_due_at=NOW - timedelta(minutes=1)))
    storage.put(make_appeal(id="a-2", journal_id="J-2", route=DELO_ROUTE,
                            status=AppealStatus.REGISTERED,
                            request_due_at=NOW - timedelta(minutes=1)))

    result = await sla.sweep()

    assert result.late[OverdueKind.REQUEST] == [late.id]


async def test_each_kind_of_overdue_is_counted_on_its_own_in_status(
        storage: FakeStorage, clock: ManualClock) -> None:
    """/status `overdue_by_kind`; a late registration [001: 15] «не позднее 1 часа» is
    flagged and counted, not only audited."""
    storage.put(make_appeal(id="a-1", overdue=True, registered_late=True))
    storage.put(make_appeal(id="a-2", journal_id="J-2", feedback_overdue=True))
    storage.put(make_appeal(id="a-3", journal_id="J-3", request_overdue=True))

    report = await StatusReport(storage, _NoOutbox(), clock, "t", ()).report()

    assert report["appeals"]["overdue_by_kind"] == {
        "answer": 1, "feedback": 1, "request": 1, "registration": 1, "callback": 0}
    page = await _page(storage, OverdueKind.REGISTRATION)
    assert page == ["a-1"]


def test_a_late_registration_is_flagged_at_intake() -> None:
    """[001: 15] «не позднее 1 часа с момента поступления»."""
    appeal = make_appeal()
    appeal.accepted(NOW + timedelta(hours=2), "operator", registered_late=True)
    assert appeal.overdue_kinds() == [OverdueKind.REGISTRATION]


# -- the supervisor ---------------------------------------------------------------------------


async def _flagged(storage: FakeStorage, desk: DeliveryDesk, clock: ManualClock) -> str:
    appeal = storage.put(make_appeal(**ready()))
    for minutes in (10, 50, 90):
        clock.set(READY_AT + timedelta(minutes=minutes))
        await desk.record_attempt(appeal.id, "no_answer", None, actor="operator")
    assert storage.appeals[appeal.id].needs_supervisor
    return appeal.id


def supervision(storage: FakeStorage, clock: ManualClock) -> Supervision:
    return Supervision(storage, clock, Routes(),
                       PolicyDeadlines(POLICIES, CALENDAR, zone_of))


async def test_an_appeal_flagged_after_three_failed_callbacks_is_closed_as_unreachable(
        storage: FakeStorage, desk: DeliveryDesk, clock: ManualClock) -> None:
    """[001: 13] after the third failed try a supervisor decides: close, with a reason."""
    appeal_id = await _flagged(storage, desk, clock)

    await supervision(storage, clock).resolve(
        appeal_id, Resolution("close_unreachable", "телефон недоступен"), actor="supervisor")

    stored = storage.appeals[appeal_id]
    assert stored.status is AppealStatus.CLOSED and not stored.needs_supervisor
    assert await desk.ready() == []
    assert "supervisor.resolved" in storage.audit_actions(appeal_id)


async def test_a_flagged_appeal_rescheduled_starts_a_new_series_of_callbacks(
        storage: FakeStorage, desk: DeliveryDesk, clock: ManualClock) -> None:
    appeal_id = await _flagged(storage, desk, clock)
    until = clock.now() + timedelta(days=1)

    await supervision(storage, clock).resolve(
        appeal_id, Resolution("reschedule", "просил звонить вечером", until),
        actor="supervisor")

    stored = storage.appeals[appeal_id]
    assert not stored.needs_supervisor and stored.callback_due_at == until
    clock.set(clock.now() + timedelta(hours=2))
    result = await desk.record_attempt(appeal_id, "busy", None, actor="operator")
    assert result.attempts == 1 and not result.needs_supervisor


async def test_a_flagged_appeal_without_a_supervisor_gets_no_fourth_try(
        storage: FakeStorage, desk: DeliveryDesk, clock: ManualClock) -> None:
    appeal_id = await _flagged(storage, desk, clock)
    clock.set(clock.now() + timedelta(hours=1))
    with pytest.raises(CallbacksExhausted):
        await desk.record_attempt(appeal_id, "busy", None, actor="operator")


async def test_a_pos_rejection_is_rerouted_with_a_new_registration(
        storage: FakeStorage, clock: ManualClock) -> None:
    """A rejection is a supervisor's: a new route, a new registration under new keys."""
    appeal = storage.put(make_appeal(status=AppealStatus.REJECTED,
                                     external=ExternalRef("pos", "100500", "ПОС-1")))
    page = await _page(storage, None, flag="rejected")
    assert page == [appeal.id]

    await supervision(storage, clock).resolve(
        appeal.id, Resolution("reroute", "не в компетенции", topic="Дороги"),
        actor="supervisor")

    stored = storage.appeals[appeal.id]
    assert stored.status is AppealStatus.ACCEPTED and stored.external is None
    assert stored.route.system is TargetSystem.DELO and stored.topic == "Дороги"
    assert [(m.target, m.action, m.idempotency_key) for m in storage.messages] == [
        ("delo", "register", f"{appeal.id}:reroute:1")]


async def test_a_pos_rejection_closed_is_told_to_the_citizen_through_the_desk(
        storage: FakeStorage, clock: ManualClock, desk: DeliveryDesk) -> None:
    appeal = storage.put(make_appeal(status=AppealStatus.REJECTED))

    await supervision(storage, clock).resolve(
        appeal.id, Resolution("close_unreachable", "Вопрос не в ведении области"),
        actor="supervisor")

    stored = storage.appeals[appeal.id]
    assert stored.status is AppealStatus.ANSWER_READY
    assert stored.answer_text == "Вопрос не в ведении области"
    assert [a.id for a in await desk.ready()] == [appeal.id]


def test_after_a_reroute_the_abandoned_record_is_not_applied() -> None:
    """The rejected ПОС message still carries our id; only the new record speaks."""
    appeal = make_appeal(status=AppealStatus.REJECTED, external=ExternalRef("pos", "100500"))
    appeal.reroute(POS_ROUTE, "Отопление", NOW + timedelta(days=5), "другая организация",
                   NOW, "supervisor")
    old = ExternalUpdate("pos", "100500", appeal.id, "Отклонено", AppealStatus.REJECTED, NOW)

    assert appeal.apply_remote(old, NOW, extends_deadline=False, zone=MOSCOW) is False
    appeal.register(ExternalRef("pos", "100777", "ПОС-777"), NOW)
    new = ExternalUpdate("pos", "100777", appeal.registration_key, "В работе",
                         AppealStatus.IN_PROGRESS, NOW)
    assert appeal.apply_remote(new, NOW, extends_deadline=False, zone=MOSCOW)
    assert appeal.status is AppealStatus.IN_PROGRESS
    assert appeal.apply_remote(old, NOW, extends_deadline=False, zone=MOSCOW) is False


async def test_a_later_poll_does_not_undo_a_rejection() -> None:
    appeal = make_appeal(status=AppealStatus.REJECTED)
    change = ExternalUpdate("pos", "100500", None, "В работе", AppealStatus.IN_PROGRESS, NOW)
    appeal.apply_remote(change, NOW, extends_deadline=False, zone=MOSCOW)
    assert appeal.status is AppealStatus.REJECTED


async def test_reschedule_of_an_appeal_not_flagged_is_refused(
        storage: FakeStorage, clock: ManualClock) -> None:
    appeal = storage.put(make_appeal(**ready()))
    with pytest.raises(ResolveRefused):
        await supervision(storage, clock).resolve(
            appeal.id, Resolution("reschedule", "x", NOW + timedelta(days=1)), actor="s")


# -- export import records the channel --------------------------------------------------------


async def test_a_delivery_from_the_export_without_a_channel_is_stored_as_unknown(
        storage: FakeStorage, clock: ManualClock) -> None:
    """A delivery learned from ПОС's Excel export is a delivery row (channel unknown,
    source pos), never a bare status change."""
    appeal = storage.put(make_appeal(**ready()))
    change = ExternalUpdate("pos", "100500", None, "Ответ передан", AppealStatus.DELIVERED, NOW)

    await import_rows(storage, "pos", [ExportedRow(2, "ПОС-1", change)], clock=clock,
                      zone_of=zone_of)

    assert storage.appeals[appeal.id].status is AppealStatus.DELIVERED
    assert [(d.channel, d.outcome, d.source) for _, d, _ in storage.deliveries] == [
        ("unknown", "delivered", "pos")]


# -- helpers ----------------------------------------------------------------------------------


class _NoOutbox:
    async def stats(self) -> OutboxStats:
        return OutboxStats(by_state={}, oldest_pending_age_s=None, by_target={})


async def _page(storage: FakeStorage, kind: OverdueKind | None,
                flag: str | None = None) -> Sequence[str]:
    async with storage.read() as uow:
        page = await uow.appeals.page(status=None, updated_since=None, overdue=kind,
                                      limit=50, cursor=None, flag=flag)
    return [a.id for a in page.items]


