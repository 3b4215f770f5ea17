"""An official's answer to an e-mail request [004: 10.2–10.3], from the appeal's own methods
and the service over the fake storage: the answer, the extension and its limit, the
reminder when the answer is late, and the letters that carry it out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from adapters.email.letters import TemplateLetters
from config.calendar import build_work_calendar
from config.deadlines import load_deadline_policies
from gateway.clock import ManualClock
from gateway.domain import events as ev
from gateway.domain.appeal import (
    AnswerChannel,
    AnswerClosed,
    Appeal,
    AppealStatus,
    ExtensionLimit,
    NoRequestSent,
)
from gateway.domain.route import EmailTarget, Route, TargetSystem
from gateway.services import outbox_actions
from gateway.services.official_answers import OfficialAnswers
from gateway.services.planning import PolicyDeadlines
from tests.builders import make_appeal
from tests.fakes import FakeStorage

MOSCOW = ZoneInfo("Europe/Moscow")
ROUTE = Route(system=TargetSystem.EMAIL, executor="vet; city",
              email=(EmailTarget("Ветеринарная служба", ("vet@gov.test",)),
                     EmailTarget("Администрация города", ("city@gov.test", "duty@gov.test"))),
              deadline_policy="email")
# Tuesday 2026-11-24, 10:00 in Moscow: the request goes out.
SENT = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
DUE = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # 18:00 the same day
DEADLINES = PolicyDeadlines(load_deadline_policies(), build_work_calendar(), lambda _: MOSCOW)


def sent(**changes: object) -> Appeal:
    appeal = make_appeal(route=ROUTE, status=AppealStatus.ACCEPTED, **changes)
    appeal.request_sent(1, SENT, answer_due=DUE)
    appeal.events.clear()
    return appeal


def test_a_request_sent_starts_the_officials_term() -> None:
    appeal = make_appeal(route=ROUTE)
    appeal.request_sent(1, SENT, answer_due=DUE)
    later = DUE + timedelta(hours=1)
    appeal.request_sent(2, SENT + timedelta(minutes=1), answer_due=later)

    assert appeal.status is AppealStatus.REGISTERED
    assert appeal.request_sent_at == SENT  # the first request counts for the limit
    assert appeal.request_due_at == later  # the latest of the co-addressed terms


def test_an_answer_makes_the_appeal_ready_for_delivery() -> None:
    appeal = sent(answer_channel=AnswerChannel.EMAIL)

    assert appeal.answer_received("Собак отловят 25.11.", "email", SENT, SENT, "email")

    assert appeal.status is AppealStatus.ANSWER_READY
    assert appeal.answer_text == "Собак отловят 25.11."
    assert [type(e) for e in appeal.events if not isinstance(e, ev.StatusChanged)] == [
        ev.AnswerReceived, ev.AnswerReady]
    ready = next(e for e in appeal.events if isinstance(e, ev.AnswerReady))
    assert ready.mail_to_applicant  # the applicant chose e-mail: the gateway sends it


def test_a_second_authoritys_answer_is_added_and_a_repeat_changes_nothing() -> None:
    appeal = sent()
    appeal.answer_received("Ответ ветслужбы.", "email", SENT, SENT, "email")
    appeal.events.clear()

    assert appeal.answer_received("Ответ администрации.", "email", SENT, SENT, "email")
    assert not appeal.answer_received("Ответ ветслужбы.", "email", SENT, SENT, "email")

    assert appeal.answer_text == "Ответ ветслужбы.\n\nОтвет администрации."
    assert [type(e) for e in appeal.events] == [ev.AnswerReceived]


@pytest.mark.parametrize("status", [AppealStatus.DELIVERED, AppealStatus.REJECTED,
                                    AppealStatus.JOURNALED])
def test_a_closed_appeal_takes_no_answer(status: AppealStatus) -> None:
    appeal = make_appeal(route=ROUTE, status=status)

    with pytest.raises(AnswerClosed):
        appeal.answer_received("Ответ.", "phone", SENT, SENT, "operator")
    assert appeal.events == []


def test_an_empty_answer_is_refused() -> None:
    with pytest.raises(ValueError):
        sent().answer_received("   ", "email", SENT, SENT, "email")


def test_an_extension_moves_the_term_and_is_in_the_history() -> None:
    appeal = sent(due_at=DUE)
    until = DUE + timedelta(days=1)

    appeal.extension_requested(until, "Нужен выезд на место", "№ 12-34", None, SENT, "operator")

    assert (appeal.request_due_at, appeal.due_at) == (until, until)
    assert appeal.history[-1].status is AppealStatus.REGISTERED
    assert "extension until" in (appeal.history[-1].note or "")
    extended = next(e for e in appeal.events if isinstance(e, ev.RequestExtended))
    assert extended.audit_detail() == {"until": until.isoformat(), "letter_ref": "№ 12-34"}


def test_an_extension_past_five_working_days_from_the_request_is_refused() -> None:
    appeal = sent()
    latest = DEADLINES.request_answer_latest(SENT, ROUTE, "122")
    assert latest == datetime(2026, 11, 30, 15, 0, tzinfo=UTC)  # Mon 30.11, 18:00 [004: 10.3]

    appeal.extension_requested(latest, "Проверка", None, latest, SENT, "operator")  # the limit
    with pytest.raises(ExtensionLimit) as refused:
        sent().extension_requested(latest + timedelta(minutes=1), "Проверка", None, latest,
                                   SENT, "operator")
    assert refused.value.latest == latest


def test_an_extension_needs_a_request_sent_and_a_later_term() -> None:
    with pytest.raises(NoRequestSent):
        make_appeal(route=ROUTE).extension_requested(DUE, "Причина", None, None, SENT, "op")
    with pytest.raises(ValueError):
        sent().extension_requested(DUE, "Причина", None, None, SENT, "op")


def test_a_late_answer_is_reminded_once_per_term_to_every_authority() -> None:
    appeal = sent()
    assert not appeal.request_answer_late(DUE)  # not yet: due at that moment

    assert appeal.request_answer_late(DUE + timedelta(minutes=1))
    assert not appeal.request_answer_late(DUE + timedelta(hours=1))

    (late,) = [e for e in appeal.events if isinstance(e, ev.RequestAnswerLate)]
    messages = outbox_actions.messages_for(appeal, late)
    assert [(m.target, m.action, m.payload["authority"]) for m in messages] == [
        ("email", "reminder", "Ветеринарная служба"),
        ("email", "reminder", "Администрация города")]
    # After an extension the new term, once late, is reminded of again.
    appeal.extension_requested(DUE + timedelta(days=1), "Причина", None, None, DUE, "op")
    assert appeal.request_answer_late(DUE + timedelta(days=1, minutes=1))


def test_an_answered_request_is_not_late() -> None:
    appeal = sent()
    appeal.answer_received("Ответ.", "fax", SENT, SENT, "operator")

    assert not appeal.request_answer_late(DUE + timedelta(days=1))


def test_every_request_letter_names_all_the_co_addressed_authorities() -> None:
    appeal = make_appeal(route=ROUTE)
    letters = TemplateLetters()

    for target in ROUTE.email:
        mail = letters.request(appeal, target.authority, target.recipients, DUE)
        assert mail.to == target.recipients
        assert "Ветеринарная служба, Администрация города" in mail.text  # [004: 10.1]
    reminder = letters.reminder(appeal, "Ветеринарная служба", ("vet@gov.test",), DUE, SENT)
    assert "Напоминание" in reminder.subject
    assert reminder.idempotency_key.startswith(f"{appeal.id}:reminder:")


async def test_the_service_records_an_answer_by_hand_and_refuses_it_once_delivered() -> None:
    clock = ManualClock(SENT)
    storage = FakeStorage(clock)
    storage.put(sent())
    service = OfficialAnswers(storage, clock, DEADLINES.request_answer_latest)
    appeal_id = make_appeal().id

    await service.record_answer(appeal_id, "Ответ по телефону.", "phone", SENT, "operator")

    assert storage.appeals[appeal_id].status is AppealStatus.ANSWER_READY
    assert "answer.received" in storage.audit_actions(appeal_id)
    storage.appeals[appeal_id].status = AppealStatus.DELIVERED
    with pytest.raises(AnswerClosed):
        await service.record_answer(appeal_id, "Ещё ответ.", "paper", SENT, "operator")


async def test_the_sweep_reminds_each_late_request_once() -> None:
    clock = ManualClock(DUE - timedelta(minutes=1))
    storage = FakeStorage(clock)
    storage.put(sent())
    service = OfficialAnswers(storage, clock, DEADLINES.request_answer_latest)

    assert await service.remind_late() == []
    clock.advance(timedelta(minutes=2))
    assert await service.remind_late() == [make_appeal().id]
    assert await service.remind_late() == []
    assert storage.actions() == [("email", "reminder"), ("email", "reminder")]
